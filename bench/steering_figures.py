"""The steering bench's parts besides `success`: the extraction, repeng's vectors against
ours, generation speed, and the trade-off fits (docs/results/steering.md, speed.md)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from side_env import side_python
from steering_common import BUDGET, HERE, SETTINGS, extract, instrument_shift, save, success_key

from valuescope.backends.base import Chat, GenerationParams
from valuescope.instruments.dilemma import load_dilemmas
from valuescope.steering.calibration import calibrate
from valuescope.steering.operators import Steering, Term, perplexity
from valuescope.vectors.contrast import load_contrast
from valuescope.vectors.controlvector import import_directions, load_directions
from valuescope.vectors.extract import VectorSet

REPENG_VENV = HERE / ".venv-repeng"
REPENG_PIN = "repeng==0.4.0"


def part_vectors(backend: Any, results: dict[str, Any], vec_path: Path) -> VectorSet:
    if "vectors" in results and vec_path.exists():
        return VectorSet.load(vec_path)
    contrast = load_contrast("schwartz")
    found = extract(backend, contrast)
    found.save(vec_path)
    results["vectors"] = {
        "seconds": round(found.seconds, 1),
        "pairs": len(contrast.pairs),
        "layers": found.num_layers,
        "values": {
            v: {"best_layer": vv.best_layer, "accuracy": vv.best.accuracy}
            for v, vv in found.values.items()
        },
    }
    save(results)
    return found


def repeng_python() -> Path:
    return side_python(REPENG_VENV, REPENG_PIN, "repeng, valuescope")


def part_repeng(backend: Any, ours: VectorSet, values: list[str], results: dict[str, Any],
                runs: Path) -> None:  # fmt: skip
    """repeng's vectors at our chosen layers, measured by the same calibration and audit."""
    contrast = load_contrast("schwartz")
    instrument = load_dilemmas("schwartz-dilemmas")
    plain_ppl = perplexity(backend)
    done = results.setdefault("repeng", {})
    for value in values:
        if value in done:
            continue
        layer = ours[value].best_layer
        gguf = runs / f"repeng-{value}.gguf"
        if not gguf.exists():
            started = time.perf_counter()
            subprocess.run([str(repeng_python()), str(HERE / "repeng_child.py"), value,
                            str(layer), str(gguf)], check=True)  # fmt: skip
            train_seconds = time.perf_counter() - started
        else:
            train_seconds = float("nan")
        theirs = import_directions(load_directions(gguf), value, backend, contrast, str(gguf))
        cal = calibrate(backend, theirs, contrast, value, 1.0, BUDGET, layers=[layer],
                        baseline_ppl=plain_ppl, refine=SETTINGS.refine)  # fmt: skip
        steering = Steering(theirs, [Term(value, layer, cal.coef)])
        shift = instrument_shift(backend, instrument, value, steering, runs / "repeng")
        done[value] = {"layer": layer, "coef": cal.coef, "fluency_cost": cal.fluency_cost,
                       "calibration_shift": cal.shift, "instrument": shift,
                       "accuracy": theirs[value].layers[layer].probe_accuracy,
                       "train_seconds": round(train_seconds, 1)}  # fmt: skip
        done[value]["calibration"] = SETTINGS.calibration
        ours_shift = (results.get(success_key(), {}).get(value, {}).get("instrument", {})
                      .get("shift"))  # fmt: skip
        if ours_shift is not None and shift["shift"]:
            done[value]["ours_over_repeng"] = ours_shift / shift["shift"]
        save(results)
        print("repeng", value, json.dumps(done[value]), flush=True)


def part_speed(backend: Any, vectors: VectorSet, results: dict[str, Any]) -> None:
    prompts = [Chat(f"Tell me about your favourite place number {k}.") for k in range(16)]
    params = GenerationParams(max_new_tokens=48, temperature=0.0)
    tokenizer = backend.tokenizer

    def rate(steering: Steering | None) -> float | None:
        started = time.perf_counter()
        with steering.apply(backend) if steering else contextlib.nullcontext():
            texts = backend.generate(prompts, params)
        seconds = time.perf_counter() - started
        tokens = sum(len(tokenizer(t[0], add_special_tokens=False)["input_ids"]) for t in texts)
        return tokens / seconds if tokens else None  # no text: no rate, not 0 tokens/s

    value = "benevolence"
    layer = vectors[value].best_layer
    rate(None)  # warm-up
    figures: dict[str, float | None] = {}
    for name, steering in (
        ("plain", None),
        ("add", Steering(vectors, [Term(value, layer, 2.0)], "add")),
        ("gated", Steering(vectors, [Term(value, layer, 1.0)], "gated")),
        ("plain again", None),
    ):
        found = rate(steering)
        figures[name] = round(found, 1) if found is not None else None
    if None in figures.values():
        print("speed: the model generated no text under "
              f"{', '.join(k for k, v in figures.items() if v is None)}; tokens/s left empty",
              file=sys.stderr)  # fmt: skip
    results["speed"] = {"tokens_per_s": figures, "prompts": 16, "max_new_tokens": 48,
                        "batch_size": backend.batch_size,
                        "forward_tokens_per_s": forward_rates(backend, vectors)}  # fmt: skip
    save(results)
    print("speed", figures, flush=True)


def forward_rates(backend: Any, vectors: VectorSet) -> dict[str, float]:
    """Fixed work (16 x 128 tokens, 3 forward passes): the hooks' own cost, free of the
    confound that steered generations may stop at a different length. The token ids are drawn
    from 100-9,999 (past most special tokens), inside a smaller model's vocabulary."""
    vocab = backend.model.get_input_embeddings().num_embeddings
    low, high = min(100, vocab // 2), min(10_000, vocab)
    ids = torch.randint(low, high, (16, 128), generator=torch.Generator().manual_seed(0))
    layer = vectors["benevolence"].best_layer

    def rate(steering: Steering | None) -> float:
        with torch.inference_mode():
            if steering is None:
                backend.model(input_ids=ids, logits_to_keep=1)
                started = time.perf_counter()
                for _ in range(3):
                    backend.model(input_ids=ids, logits_to_keep=1)
            else:
                with steering.apply(backend):
                    backend.model(input_ids=ids, logits_to_keep=1)
                    started = time.perf_counter()
                    for _ in range(3):
                        backend.model(input_ids=ids, logits_to_keep=1)
        return round(3 * ids.numel() / (time.perf_counter() - started), 1)

    return {
        "plain": rate(None),
        "add": rate(Steering(vectors, [Term("benevolence", layer, 2.0)], "add")),
        "gated": rate(Steering(vectors, [Term("benevolence", layer, 1.0)], "gated")),
        "plain again": rate(None),
    }


def r_squared(y: np.ndarray, fitted: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1 - float(((y - fitted) ** 2).sum()) / total if total else float("nan")


def part_tradeoff(backend: Any, vectors: VectorSet, values: list[str], results: dict[str, Any],
                  runs: Path) -> None:  # fmt: skip
    instrument = load_dilemmas("schwartz-dilemmas")
    plain_ppl = perplexity(backend)
    done = results.setdefault("tradeoff", {})
    for value in values:
        if value in done:
            continue
        layer = vectors[value].best_layer
        gap = vectors[value].layers[layer].gap
        points = []
        for coef in (0.5, 1, 2, 3, 4, 6, 8, 12):
            steering = Steering(vectors, [Term(value, layer, coef)])
            with steering.apply(backend):
                ppl = perplexity(backend)
            shift = instrument_shift(backend, instrument, value, steering, runs / "tradeoff")
            points.append({"coef": coef, "norm": coef * gap, "shift": shift["shift"],
                           "ppl_increase": ppl / plain_ppl - 1})  # fmt: skip
            print("tradeoff", value, points[-1], flush=True)
        norm = np.array([0.0] + [p["norm"] for p in points])
        shifts = np.array([0.0] + [p["shift"] for p in points])
        cost = np.array([0.0] + [p["ppl_increase"] for p in points])
        linear = np.polyfit(norm, shifts, 1)
        quad = np.polyfit(norm, cost, 2)
        lin_cost = np.polyfit(norm, cost, 1)
        done[value] = {
            "layer": layer,
            "points": points,
            "shift_linear": {"slope": linear[0], "intercept": linear[1],
                             "r2": r_squared(shifts, np.polyval(linear, norm))},
            "cost_quadratic": {"coefs": list(quad), "r2": r_squared(cost, np.polyval(quad, norm))},
            "cost_linear_r2": r_squared(cost, np.polyval(lin_cost, norm)),
        }  # fmt: skip
        save(results)
