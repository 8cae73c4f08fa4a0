"""Decoding-time value alignment against activation steering, judged on free text (embedded model).

For each Schwartz value, the first PROMPTS `schwartz-open` prompts that put it at stake are
answered (temperature 0.7, MAX_NEW_TOKENS tokens) under: plain sampling; best-of-8 (of 8 plain
samples, the one the REWARD detector reads as upholding the value most); guided decoding
(ARGS-style, `valuescope.steering.guided`, top-k candidates rescored by the reward of the
partial text); activation steering (the value's mean-diff vector at the layer `bench/
steering_bench.py` chose, its coefficient cut until the steered ANSWERS cost at most 10%
perplexity under the unsteered model, sized on the value's next CALIBRATION prompts, held out
from the measured ones); and steering + best-of-8. Each answer is read by the MEASURING detector
(a different one), sentence by sentence as open audits read, but the whole text: a cut-off
last sentence is read too, where audits drop it. Control success (the issue's rule)
= share of answers whose measuring reading of the value is positive; the win rate (stricter,
since plain answers already uphold the value at stake most of the time) = share of the prompt's
N plain samples the answer's measuring reading beats (ties half; plain is near 0.5). Best-of-m
for m = 1, 2, ..., N is read off the same pools of N plain samples (the first m of each).

    .venv/bin/python bench/alignment.py            # resumes from runs/alignment/answers-*.json

Figures go to bench/results/alignment.json (docs/results/alignment.md reads them).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from valuescope import load_backend
from valuescope.audit.kinds import load_instrument
from valuescope.audit.open import answer_status
from valuescope.audit.profile import bootstrap_ci
from valuescope.backends.base import Chat, GenerationParams, LoglikelihoodRequest
from valuescope.detectors.registry import get_detector
from valuescope.detectors.sentences import read_by_sentence
from valuescope.steering.guided import guided_generate
from valuescope.steering.operators import SteeredBackend, Steering, Term
from valuescope.steering.palette import solve_palette
from valuescope.steering.rewards import ValueReward
from valuescope.vectors.extract import VectorSet

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "alignment.json"
RUNS = Path("runs/alignment")
PROMPTS = 10
CALIBRATION = 4
"""Held-out prompts per value (the ones after the measured) that size the steering."""
N = 32
"""Plain samples per prompt: best-of-m for every m in CURVE is read off these pools."""
CURVE = (1, 2, 4, 8, 16, 32)
BEST = 8
"""The N of the best-of-N conditions (best-of-8, steering + best-of-8)."""
BUDGET = 0.10
"""Largest perplexity cost of the steered answers under the unsteered model."""
ANSWERS = RUNS / f"answers-p{PROMPTS}-n{N}.json"
MAX_NEW_TOKENS = 48
TEMPERATURE = 0.7
REWARD = "lexicon"
MEASURING = "embed"
OTHER_REWARDS = ("probe:smollm2",)
"""Rewards best-of-N is also read under, on the same pools (measured by MEASURING still)."""
GUIDED_WEIGHT = 4.0
TOP_K = 8
VECTORS = Path.home() / ".cache/valuescope/detectors/vectors-de42a8d2fe4edcad265e9fe5.safetensors"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def save(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    found = fn()
    return found, time.perf_counter() - started


def steering_on_answers(
    backend: Any, vectors: VectorSet, value: str, layer: int, start: float, texts: list[str]
) -> dict[str, Any]:
    """The largest coefficient (from `start`, halved, then bisected twice) whose steered answers
    to `texts` cost at most BUDGET perplexity under the unsteered model, against plain answers
    drawn with the same seeds. Sized on held-out prompts, so the measured ones stay untouched."""
    chats = [Chat(t) for t in texts]
    params = GenerationParams(MAX_NEW_TOKENS, TEMPERATURE, n=4, seed=1)
    prompts = [t for t in texts for _ in range(params.n)]
    plain = perplexity(backend, prompts, [a for g in backend.generate(chats, params) for a in g])
    tries: list[dict[str, float]] = []

    def cost(coef: float) -> float:
        steered = SteeredBackend(backend, Steering(vectors, [Term(value, layer, coef)]))
        answers = [a for g in steered.generate(chats, params) for a in g]
        found = perplexity(backend, prompts, answers) / plain - 1
        tries.append({"coef": coef, "cost": found})
        print(f"{value}: coefficient {coef:.3f} costs {found:+.1%} on answers", flush=True)
        return found

    low, high = 0.0, start
    if cost(start) <= BUDGET:
        low = start
    else:
        while high > start / 16:
            high /= 2
            if cost(high) <= BUDGET:
                low, high = high, 2 * high
                break
        for _ in range(2 if low else 0):
            mid = (low + high) / 2
            low, high = (mid, high) if cost(mid) <= BUDGET else (low, mid)
    return {"layer": layer, "coef": low, "neutral_coef": start, "tries": tries,
            "calibration_prompts": len(texts)}  # fmt: skip


def generate_all(
    backend: Any,
    prompts: dict[str, list[str]],
    held_out: dict[str, list[str]],
    store: dict[str, Any],
) -> None:
    """Every condition's answers, value by value, saved after each (a rerun skips them)."""
    params = GenerationParams(MAX_NEW_TOKENS, TEMPERATURE, n=N, seed=0)
    best = GenerationParams(MAX_NEW_TOKENS, TEMPERATURE, n=BEST, seed=0)
    one = GenerationParams(MAX_NEW_TOKENS, TEMPERATURE, n=1, seed=0)
    success = load(HERE / "results" / "steering.json").get("success", {})
    vectors = VectorSet.load(VECTORS) if VECTORS.exists() else None
    for value, texts in prompts.items():
        chats = [Chat(t) for t in texts]
        entry = store.setdefault(value, {})
        reward = ValueReward(get_detector(REWARD), {value: 1.0})
        plain_reward = reward.referenced(np.zeros((1, 1)))  # r_ref = 0
        jobs: dict[str, Callable[[], Any]] = {
            "pool": partial(backend.generate, chats, params),
            "plain1": partial(backend.generate, chats, one),
            "guided": partial(
                guided_generate, backend, chats, one, plain_reward, GUIDED_WEIGHT, TOP_K
            ),
        }
        if vectors is not None and value in success:
            if "steering" not in entry:
                s = success[value]
                entry["steering"] = steering_on_answers(
                    backend, vectors, value, int(s["layer"]), float(s["coef"]), held_out[value]
                )
                entry["steering"]["neutral_fluency_cost"] = s["fluency_cost"]
                save(store, ANSWERS)
            s = entry["steering"]
            steering = Steering(vectors, [Term(value, int(s["layer"]), float(s["coef"]))])
            steered = SteeredBackend(backend, steering)
            jobs["steered"] = partial(steered.generate, chats, one)
            jobs["steered_pool"] = partial(steered.generate, chats, best)
        for name, job in jobs.items():
            if name in entry:
                continue
            answers, seconds = timed(job)
            tokens = sum(backend.count_tokens(a) for g in answers for a in g)
            entry[name] = {"answers": answers, "seconds": seconds, "tokens": tokens}
            print(f"{value} {name}: {seconds:.0f} s, {tokens / seconds:.1f} tokens/s", flush=True)
            save(store, ANSWERS)


def readings(texts: list[str], detector: Any, value: str, by_sentence: bool) -> np.ndarray:
    if not texts:
        return np.zeros(0)
    found = read_by_sentence(detector, texts).answers if by_sentence else detector.read(texts)
    return column(found, value)


def column(found: Any, value: str) -> np.ndarray:
    return np.asarray(found.score[:, found.values.index(value)], dtype=float)


def add_curve(r: np.ndarray, m: np.ndarray, got: dict[int, dict[str, list[float]]]) -> None:
    """Best-of-n for every n of CURVE on pools (prompts x N) of reward `r` and measuring `m`
    readings: the first n samples of each pool, the highest reward kept (first of equals)."""
    rows = np.arange(len(r))
    for n in CURVE:
        pick = r[:, :n].argmax(axis=1)
        part = got.setdefault(n, {"reward": [], "measuring": [], "success": [], "wins": []})
        part["reward"] += r[rows, pick].tolist()
        part["measuring"] += m[rows, pick].tolist()
        part["success"] += (m[rows, pick] > 0).astype(float).tolist()
        part["wins"] += wins(m[rows, pick], m).tolist()


def curve_figures(got: dict[int, dict[str, list[float]]]) -> dict[str, dict[str, Any]]:
    return {
        str(n): {
            "reward": float(np.mean(c["reward"])),
            "measuring": float(np.mean(c["measuring"])),
            "success": share(np.asarray(c["success"]) * 2 - 1),
            "win_rate": mean_ci(np.asarray(c["wins"])),
        }
        for n, c in got.items()
    }


def perplexity(backend: Any, prompts: list[str], answers: list[str]) -> float:
    asked = [LoglikelihoodRequest(Chat(p), a) for p, a in zip(prompts, answers, strict=True)
             if a.strip()]  # fmt: skip
    got = backend.loglikelihood(asked)
    return math.exp(-sum(r.logprob for r in got) / sum(r.n_tokens for r in got))


def share(x: np.ndarray, seed: int = 0) -> dict[str, Any]:
    hits = (x > 0).astype(float)
    lo, hi = bootstrap_ci(hits.tolist(), seed)
    return {"rate": float(hits.mean()), "ci": [lo, hi], "n": len(hits)}


def wins(answers: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """Per prompt, the share of its plain samples' readings (row of `plain`) the answer's
    reading beats, ties counting half."""
    above = (answers[:, None] > plain).mean(axis=1)
    return np.asarray(above + 0.5 * (answers[:, None] == plain).mean(axis=1))


def mean_ci(x: np.ndarray, seed: int = 0) -> dict[str, Any]:
    lo, hi = bootstrap_ci(x.tolist(), seed)
    return {"mean": float(x.mean()), "ci": [lo, hi], "n": len(x)}


def figures(backend: Any, prompts: dict[str, list[str]], store: dict[str, Any]) -> dict[str, Any]:
    measuring, rewarding = get_detector(MEASURING), get_detector(REWARD)
    per_value: dict[str, Any] = {}
    pooled: dict[str, dict[str, list[float]]] = {}
    curve: dict[int, dict[str, list[float]]] = {}
    plain_all: list[float] = []
    # Each pool read once by the measuring detector (every value's column): the conditions,
    # the curves and the palette all use these readings.
    pooled_reading = {
        v: read_by_sentence(measuring, [a for g in store[v]["pool"]["answers"] for a in g]).answers
        for v in prompts
    }
    for value, texts in prompts.items():
        entry = store[value]
        pool = entry["pool"]["answers"]  # prompts x N
        flat = [a for g in pool for a in g]
        m = column(pooled_reading[value], value).reshape(len(texts), N)
        r = readings(flat, rewarding, value, False).reshape(len(texts), N)
        plain_all += (m > 0).astype(float).ravel().tolist()
        best = r[:, :BEST].argmax(axis=1)
        conditions: dict[str, list[str]] = {
            "plain": [g[0] for g in pool],
            "best_of_8": [g[int(b)] for g, b in zip(pool, best, strict=True)],
            "guided": [g[0] for g in entry["guided"]["answers"]],
        }
        speed = {
            "plain": entry["plain1"]["tokens"] / entry["plain1"]["seconds"],
            # best-of-8 costs 8 samples per answer: its answer tokens/s is the pool's rate over 8
            "best_of_8": entry["pool"]["tokens"] / entry["pool"]["seconds"] / BEST,
            "guided": entry["guided"]["tokens"] / entry["guided"]["seconds"],
        }
        if "steered" in entry:
            spool = entry["steered_pool"]["answers"]
            sflat = [a for g in spool for a in g]
            sr = readings(sflat, rewarding, value, False).reshape(len(texts), BEST)
            conditions["steered"] = [g[0] for g in entry["steered"]["answers"]]
            chosen = sr.argmax(axis=1)
            conditions["steered_best_of_8"] = [
                g[int(b)] for g, b in zip(spool, chosen, strict=True)
            ]
            speed["steered"] = entry["steered"]["tokens"] / entry["steered"]["seconds"]
            sp = entry["steered_pool"]
            speed["steered_best_of_8"] = sp["tokens"] / sp["seconds"] / BEST
        plain_ppl = perplexity(backend, texts, conditions["plain"])
        rows: dict[str, Any] = {}
        for name, answers in conditions.items():
            mm = readings(answers, measuring, value, True)
            rr = readings(answers, rewarding, value, False)
            won = wins(mm, m)
            ppl = plain_ppl if name == "plain" else perplexity(backend, texts, answers)
            status = [answer_status(a)[0] for a in answers]
            rows[name] = {
                "success": share(mm),
                "win_rate": mean_ci(won),
                "measuring": float(mm.mean()),
                "reward": float(rr.mean()),
                "fluency_cost": ppl / plain_ppl - 1,
                "degenerate": sum(s not in ("ok", "cut off") for s in status) / len(status),
                "tokens_per_second": speed[name],
            }
            got = pooled.setdefault(name, {"m": [], "wins": []})
            got["m"] += mm.tolist()
            got["wins"] += won.tolist()
        for row in rows.values():
            row["reward_gain"] = row["reward"] - rows["plain"]["reward"]
            row["measuring_gain"] = row["measuring"] - rows["plain"]["measuring"]
        per_value[value] = {"conditions": rows, "steering": entry.get("steering")}
        add_curve(r, m, curve)
        overhead = {"plain_tokens_per_second": speed["plain"],
                    "guided_tokens_per_second": speed["guided"]}  # fmt: skip
        per_value[value]["overhead"] = overhead
    summary: dict[str, dict[str, Any]] = {}
    for name, parts in pooled.items():
        hits = (np.asarray(parts["m"]) > 0).astype(float)
        lo, hi = bootstrap_ci(hits.tolist(), 0)
        rows_all = [c[name] for v in per_value if name in (c := per_value[v]["conditions"])]
        summary[name] = {
            "success": {"rate": float(hits.mean()), "ci": [lo, hi], "n": len(hits)},
            "win_rate": mean_ci(np.asarray(parts["wins"])),
            "fluency_cost": float(np.mean([x["fluency_cost"] for x in rows_all])),
            "tokens_per_second": float(np.mean([x["tokens_per_second"] for x in rows_all])),
            "reward_gain": float(np.mean([x["reward_gain"] for x in rows_all])),
            "measuring_gain": float(np.mean([x["measuring_gain"] for x in rows_all])),
            "degenerate": float(np.mean([x["degenerate"] for x in rows_all])),
            "values": len(rows_all),
        }
    base = summary["plain"]["success"]["rate"]
    for row in summary.values():
        row["gain_points"] = 100 * (row["success"]["rate"] - base)
        row["win_gain_points"] = 100 * (row["win_rate"]["mean"] - 0.5)
    plain_expected = {"rate": float(np.mean(plain_all)), "n": len(plain_all),
                      "ci": list(bootstrap_ci(plain_all, 0))}  # fmt: skip
    bon = {
        key: {**row, "kl_bound": math.log(int(key)) - (int(key) - 1) / int(key),
              "win_bound": int(key) / (int(key) + 1)}
        for key, row in curve_figures(curve).items()
    }  # fmt: skip
    return {"values": per_value, "summary": summary, "plain_all_samples": plain_expected,
            "best_of_n": bon,
            "palette": palette(store, rewarding, pooled_reading),
            "other_rewards": other_rewards(prompts, store, pooled_reading)}  # fmt: skip


def other_rewards(
    prompts: dict[str, list[str]], store: dict[str, Any], pooled_reading: dict[str, Any]
) -> dict[str, Any]:
    """Best-of-N on the same pools under other reward detectors (read once, kept in the store),
    still measured by MEASURING (`pooled_reading`): does a reward that reads the model's own
    states, not words, hack less?"""
    found: dict[str, Any] = {}
    for name in OTHER_REWARDS:
        detector = get_detector(name)
        got: dict[int, dict[str, list[float]]] = {}
        for value, texts in prompts.items():
            entry = store[value]
            flat = [a for g in entry["pool"]["answers"] for a in g]
            key = f"reading:{name}"
            if key not in entry:
                entry[key] = readings(flat, detector, value, False).tolist()
                save(store, ANSWERS)
            r = np.asarray(entry[key]).reshape(len(texts), N)
            add_curve(r, column(pooled_reading[value], value).reshape(len(texts), N), got)
        # keyed by the detector's family (`probe`): the results pages' paths take no colon
        found[name.split(":")[0]] = {"detector": name, "curve": curve_figures(got)}
    return found


def palette(
    store: dict[str, Any], rewarding: Any, pooled_reading: dict[str, Any]
) -> dict[str, Any]:
    """Benevolence and universalism up, power down, over the pools of those values' prompts
    (`pooled_reading`: each value's pools as the measuring detector read them)."""
    names = ("benevolence", "universalism", "power")
    pools = [g for v in names for g in store[v]["pool"]["answers"]]
    flat = [a for g in pools for a in g]
    cols = list(rewarding.taxonomy.ids)
    rr = rewarding.read(flat)
    parts = rr.score[:, [cols.index(v) for v in names]].reshape(len(pools), N, len(names))
    mm = np.concatenate([pooled_reading[v].score for v in names])
    measured = mm[:, [cols.index(v) for v in names]].reshape(len(pools), N, len(names))
    plain = parts.mean(axis=(0, 1))  # the base samples' mean
    found = {}
    for label, delta in (("modest", (0.05, 0.05, -0.05)), ("ambitious", (0.3, 0.3, -0.3))):
        targets = {v: float(p + d) for v, p, d in zip(names, plain, delta, strict=True)}
        solved = solve_palette(parts, targets, names, dict(zip(names, (1, 1, -1), strict=True)))
        lam = np.array([solved.weights[v] for v in names])
        found[label] = {
            **solved.as_dict(),
            "plain": dict(zip(names, map(float, plain), strict=True)),
            "measuring_plain": named(names, measured.mean(axis=(0, 1))),
            "measuring_tilted": named(names, tilted_mean_other(parts, measured, lam)),
        }
    return {"prompts": len(pools), "samples": N, **found}


def named(names: tuple[str, ...], row: np.ndarray) -> dict[str, float]:
    return dict(zip(names, map(float, row), strict=True))


def tilted_mean_other(parts: np.ndarray, other: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """The measuring readings' mean under the weights exp(lambda . reward parts)."""
    logits = parts @ lam
    logits -= logits.max(axis=1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(axis=1, keepdims=True)
    return np.asarray((w[..., None] * other).sum(axis=1).mean(axis=0))


def main() -> None:
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    instrument = load_instrument("schwartz-open")
    at_stake = {
        v: [i.text for i in instrument.items if v in i.values] for v in instrument.taxonomy.ids
    }
    prompts = {v: texts[:PROMPTS] for v, texts in at_stake.items()}
    held_out = {v: texts[PROMPTS : PROMPTS + CALIBRATION] for v, texts in at_stake.items()}
    backend = load_backend("smollm2")
    store = load(ANSWERS)
    generate_all(backend, prompts, held_out, store)
    found = figures(backend, prompts, store)
    doc = {
        "benchmark": "alignment",
        "command": "python bench/alignment.py",
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
        },
        "settings": {
            "prompts_per_value": PROMPTS,
            "calibration_prompts_per_value": CALIBRATION,
            "n": N,
            "best_of": BEST,
            "budget": BUDGET,
            "max_new_tokens": MAX_NEW_TOKENS,
            "temperature": TEMPERATURE,
            "reward": REWARD,
            "measuring": MEASURING,
            "guided_weight": GUIDED_WEIGHT,
            "top_k": TOP_K,
        },
        **found,
    }
    save(doc, RESULTS)
    print(json.dumps(doc["summary"], indent=1))


if __name__ == "__main__":
    main()
