"""The steering bench's `reach` part: the price of +0.25, each direction's coefficient
raised until the shift reaches it (`bench/reach_law.py` reads the sweeps; figures in
docs/results/reach.md)."""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
from steering_common import (
    SETTINGS,
    instrument_shift,
    mean_diff_file,
    refuse,
    reproduces,
    save,
    success_key,
    trained_file,
)

from valuescope.backends.base import Chat, GenerationParams
from valuescope.cache import file_sha256
from valuescope.instruments.dilemma import load_dilemmas
from valuescope.steering.operators import Steering, Term, fluency_cost, perplexity
from valuescope.vectors.extract import VectorSet

TARGET = 0.25  # the shift on schwartz-dilemmas each value's sweep tries to reach
REACH_STEP = 2**0.5
REACH_CAP = 100.0  # stop once perplexity on the neutral texts is this many times the plain one
REACH_STEPS = 24  # and after this many steps (4096 times the calibrated coefficient) at most
REACH_PROMPT = "Describe your morning in two sentences."
REACH_TOKENS = 40


def part_reach(backend: Any, values: list[str], results: dict[str, Any], runs: Path) -> None:
    """The price of +0.25, a diagnostic judged on the instrument (so never a calibration):
    each value's direction at the layer calibration chose, its coefficient raised from the
    calibrated one by sqrt(2) at a time until the shift on schwartz-dilemmas reaches TARGET or
    perplexity on the neutral texts reaches REACH_CAP times the plain one. Both directions
    where they are measured: trained (`optimized`) and mean-diff (`success`, or
    `success_doubling` under `--refine 0`). Every point keeps its fluency cost, shift (paired
    CI, flipped counts) and a greedy answer to one everyday prompt, so the cost of +0.25 is
    read as text too. The first point is the calibrated one again and must reproduce the
    calibrated shift."""
    instrument = load_dilemmas("schwartz-dilemmas")
    params = GenerationParams(max_new_tokens=REACH_TOKENS, temperature=0.0)
    sources = {"trained": "success_optimized", "mean-diff": success_key()}
    settings = {"target": TARGET, "step": REACH_STEP, "cap": REACH_CAP, "prompt": REACH_PROMPT,
                "max_new_tokens": REACH_TOKENS}  # fmt: skip

    @functools.cache
    def plain_ppl() -> float:  # only if something is swept
        return perplexity(backend)

    def answer(steering: Steering | None) -> str:
        with steering.apply(backend) if steering else contextlib.nullcontext():
            return str(backend.generate([Chat(REACH_PROMPT)], params)[0][0])

    for value in values:
        measured = [n for n, key in sources.items() if value in results.get(key, {})]
        if not measured:
            refuse(f"{SETTINGS.results} has no {sources['mean-diff']} or success_optimized entry "
                   f"for {value}; run --part success or --part optimized with --values {value} "
                   f"first")  # fmt: skip
        for name in measured:
            key = sources[name]
            entry = results[key][value]
            done = results.setdefault("reach", {}).setdefault(name, {})
            folder = runs / "reach" / name
            if name == "trained":
                path = trained_file(results, runs, value)
            else:
                path = mean_diff_file(runs)
                if not path.exists():
                    refuse(f"no mean-diff vector file {path} for the {key} entry of {value}; "
                           f"run --part vectors (or --part success) first")  # fmt: skip
            identity = {"layer": entry["layer"], "calibrated_coef": entry["coef"],
                        "vectors_sha256": file_sha256(path), **settings}  # fmt: skip
            sha = identity["vectors_sha256"]
            part = {"success_optimized": "optimized", "success": "success",
                    "success_doubling": "success --refine 0"}[key]  # fmt: skip
            if entry.get("vectors_sha256") not in (None, sha):
                refuse(f"{SETTINGS.results} [{key}][{value}] was measured with another vector "
                       f"file than {path}; remove that entry, its folders in {runs} and any "
                       f"[reach][{name}][{value}] entry with {folder}/*-{value}*, then run "
                       f"--part {part} --values {value} again")  # fmt: skip
            kept = done.get(value)
            if kept is not None:
                differ = [k for k in identity if kept.get(k) != identity[k]]
                if differ:
                    refuse(f"{SETTINGS.results} [reach][{name}][{value}] was swept with another "
                           f"{', '.join(differ)} than now; remove the entry and the folders "
                           f"{folder}/*-{value}* to sweep it again")  # fmt: skip
                # Its first point audited the entry's setting afresh with this file; if it
                # reproduced the entry's shift, the entry was measured with this file.
                reproduces(f"[reach][{name}][{value}]", kept["points"][0]["instrument"]["shift"],
                           entry["instrument"]["shift"],
                           f"the {key} entry and the sweep disagree; remove both and the "
                           f"folders {folder}/*-{value}*, then run --part {part} and --part "
                           f"reach for {value} again",
                           "the kept sweep's first point gave")  # fmt: skip
                entry["vectors_sha256"] = sha
                save(results)
                continue
            started = time.perf_counter()
            vectors = VectorSet.load(path)
            points: list[dict[str, Any]] = []
            coef = entry["coef"]
            while True:
                # The file's hash goes into each audit's fingerprint and its results.json.
                steering = Steering(vectors, [Term(value, entry["layer"], coef)], "add",
                                    str(path), sha)  # fmt: skip
                cost = steering.fluency_cost = fluency_cost(backend, steering, plain_ppl())
                shift = instrument_shift(backend, instrument, value, steering, folder)
                points.append({"coef": coef, "times_calibrated": coef / entry["coef"],
                               "fluency_cost": cost, "instrument": shift,
                               "answer": answer(steering)})  # fmt: skip
                print("reach", name, value, f"coef {coef:.3g}", f"cost {cost:+.1%}",
                      f"shift {shift['shift']:+.3f}", flush=True)  # fmt: skip
                if len(points) == 1:
                    reproduces(f"[reach][{name}][{value}]", shift["shift"],
                               entry["instrument"]["shift"],
                               f"the model, the vector file or the numerics changed; remove the "
                               f"{key} entry and the folders {folder}/*-{value}*, and run that "
                               f"part for {value} again",
                               f"at {key}'s coefficient the shift came out")  # fmt: skip
                    entry["vectors_sha256"] = sha  # as for a kept sweep, above
                if not (np.isfinite(cost) and np.isfinite(shift["shift"])):
                    break  # the model's numbers overflowed: nothing further is a measurement
                if shift["shift"] >= TARGET or cost + 1 >= REACH_CAP:
                    break
                if len(points) >= REACH_STEPS:
                    break
                coef *= REACH_STEP
            reached = next((p for p in points if p["instrument"]["shift"] >= TARGET), None)
            done[value] = {
                **identity,
                "plain_answer": answer(None),
                "points": points,
                "reached_at": {"coef": reached["coef"], "fluency_cost": reached["fluency_cost"]}
                if reached
                else None,
                "peak_shift": max(
                    (
                        p["instrument"]["shift"]
                        for p in points
                        if np.isfinite(p["instrument"]["shift"])
                    ),
                    default=None,
                ),
                "seconds": round(time.perf_counter() - started, 1),
            }
            save(results)
