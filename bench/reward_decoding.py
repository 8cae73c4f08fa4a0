"""Reward-guided decoding with the value probe, against activation steering (embedded model).

valuescope steers in two ways: adding vectors, and reward-guided decoding. This measures the
second, `valuescope.steering.decoding.ProbeTilted` with the mean-diff vectors as the reward,
on the same figures as the added vectors: at each position the model's next-token distribution
p becomes p', tilted among the K most likely candidates toward those the probe reads as
upholding the value (that module's docstring gives p'), read at the value's best layer.

Per value the weight w is calibrated on the fluency cost alone (perplexity of the neutral
texts under p', against plain), doubling from 1 until it passes the 10% budget (or halving
until it is within), then two geometric bisections, as `valuescope steer` calibrates a
coefficient. The largest w within budget is then judged on the `schwartz-dilemmas` items that
decide the value, against the same plain run and with the same paired CI and flipped counts as
`steering_bench.py --part success` (whose mean-diff shifts at the same budget are kept beside).

    .venv/bin/python bench/reward_decoding.py                       # all ten values; resumes
    .venv/bin/python bench/reward_decoding.py --values universalism,power

Figures go to bench/results/reward-decoding.json (docs/results/reward-decoding.md reads them),
runs to runs/reward-decoding/.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from steering_common import (
    BUDGET,
    audit_deciding,
    compared,
    load_results,
    mean_diff_at,
    refuse,
    save,
    values_arg,
)

from valuescope import load_backend
from valuescope.backends.local import LocalBackend
from valuescope.instruments.dilemma import load_dilemmas
from valuescope.steering.decoding import TOP_K, ProbeTilted
from valuescope.steering.operators import perplexity
from valuescope.vectors.extract import LayerVector

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "reward-decoding.json"
STEERING = HERE / "results" / "steering.json"
RUNS = Path("runs/reward-decoding")
START = 1.0
LARGEST = 64.0
SMALLEST = 1 / 64
BISECTIONS = 2


def calibrate(backend: LocalBackend, reading: LayerVector, layer: int, plain_ppl: float,
              entry: dict[str, Any], results: dict[str, Any]) -> tuple[float, float]:  # fmt: skip
    """The largest weight within the fluency budget, and its cost: halving while over it, else
    doubling until over it, then geometric bisections. Every cost is kept in `entry["sweep"]`
    as it is measured, so a rerun skips it."""
    sweep: dict[str, float] = entry.setdefault("sweep", {})

    def cost(weight: float) -> float:
        key = f"{weight:.6g}"
        if key not in sweep:
            started = time.perf_counter()
            tilted = ProbeTilted(backend, reading, layer, weight, TOP_K)
            sweep[key] = perplexity(tilted) / plain_ppl - 1.0
            print(f"  w={key}: fluency cost {sweep[key]:+.1%} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
            save(results, RESULTS)
        return sweep[key]

    inside, outside = START, math.inf
    while cost(inside) > BUDGET:
        outside, inside = inside, inside / 2
        if inside < SMALLEST:
            refuse(f"even w={SMALLEST:g} costs more than the {BUDGET:.0%} budget")
    while math.isinf(outside) and inside < LARGEST:
        if cost(inside * 2) > BUDGET:
            outside = inside * 2
        else:
            inside *= 2
    for _ in range(BISECTIONS if math.isfinite(outside) else 0):
        middle = math.sqrt(inside * outside)
        if cost(middle) > BUDGET:
            outside = middle
        else:
            inside = middle
    return inside, cost(inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--values",
        default=None,
        help="comma-separated Schwartz values (default: all ten, as in "
        "docs/results/reward-decoding.md)",
    )
    args = parser.parse_args()
    instrument = load_dilemmas("schwartz-dilemmas")
    values = values_arg(args.values, instrument.taxonomy.ids)
    backend = load_backend("smollm2")
    if not isinstance(backend, LocalBackend):
        refuse("the embedded model did not load as a local white-box backend")
    results = load_results(RESULTS)
    results["machine"] = f"{os.cpu_count()}-core {platform.machine()}, torch {torch.__version__}"
    settings = {
        "top_k": TOP_K,
        "budget": BUDGET,
        "start": START,
        "bisections": BISECTIONS,
        "reading": "mean-diff direction at the value's best layer",
        "tilted": "the top-k candidates only (a proper distribution)",
    }
    if results.setdefault("settings", settings) != settings:
        refuse(f"{RESULTS} was measured with other settings ({results['settings']}); "
               f"move it and {RUNS} aside to measure again")  # fmt: skip
    command = " ".join(["python bench/reward_decoding.py", *sys.argv[1:]])
    if command not in results.setdefault("commands", []):
        results["commands"].append(command)
    vectors = mean_diff_at(backend, RUNS / "vectors.safetensors")
    stored = load_results(STEERING)
    plain_ppl = perplexity(backend)
    done = results.setdefault("values", {})
    for value in values:
        vv = vectors[value]
        entry = done.setdefault(value, {})
        entry["layer"] = vv.best_layer
        weight, entry["fluency_cost"] = calibrate(
            backend, vv.best, vv.best_layer, plain_ppl, entry, results
        )
        entry["weight"] = weight
        if "instrument" not in entry:
            started = time.perf_counter()
            plain = audit_deciding(backend, instrument, value, RUNS / f"plain-{value}")
            tilted = ProbeTilted(backend, vv.best, vv.best_layer, weight, TOP_K)
            judged = audit_deciding(tilted, instrument, value,
                                    RUNS / f"tilted-{value}-w{weight:.6g}")  # fmt: skip
            entry["instrument"] = compared(plain, judged, value, "tilted")
            entry["seconds"] = round(time.perf_counter() - started, 1)
        steered = stored.get("success", {}).get(value)
        if steered:
            entry["steering_shift"] = steered["instrument"]["shift"]
            entry["steering_cost"] = steered["fluency_cost"]
        save(results, RESULTS)
        shift = entry["instrument"]
        print(f"{value}: w={weight:.3g} cost {entry['fluency_cost']:+.1%} shift "
              f"{shift['shift']:+.3f} {np.round(shift['ci'], 3).tolist()} flipped "
              f"+{shift['flipped_toward']} / -{shift['flipped_away']} (steering "
              f"{entry.get('steering_shift', float('nan')):+.3f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
