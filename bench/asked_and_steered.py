"""Asked and steered at once: does a persona prompt add to an added value vector (embedded model)?

docs/results/ measures two ways of moving a value on `schwartz-dilemmas` apart: steering
(the mean-diff vector at the layer and coefficient `steering_bench.py --part success`
calibrated within the 10% fluency budget) and asking (the value's built-in persona as the
system prompt, `--part persona`). A user can do both (`valuescope audit --system ... --steer
...`). This measures, per value, on the items that decide it and against one plain run: asked
alone, steered alone, and both, each with the paired CI and flipped counts of the other
tables, and the interaction (both minus the sum of the two alone). The persona changes no
activation on the neutral texts, so both together cost the steering's fluency alone.

The steered-alone shift is measured again here with a freshly extracted vector file and set
beside the stored one (`steering_shift_stored`): extraction and audits are deterministic, so
the two should agree; if they do not, the figures of this script still compare like with like.

    .venv/bin/python bench/asked_and_steered.py                      # all ten values; resumes
    .venv/bin/python bench/asked_and_steered.py --values achievement,tradition

Figures go to bench/results/asked-and-steered.json (docs/results/asking.md reads them), runs
to runs/asked-and-steered/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from steering_common import (
    audit_deciding,
    compared,
    entry_steering,
    load_results,
    mean_diff_at,
    refuse,
    save,
    values_arg,
)

from valuescope import load_backend
from valuescope.instruments.dilemma import load_dilemmas
from valuescope.instruments.personas import load_personas

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "asked-and-steered.json"
STEERING = HERE / "results" / "steering.json"
RUNS = Path("runs/asked-and-steered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", help="comma-separated Schwartz values (default: all ten)")
    args = parser.parse_args()
    instrument = load_dilemmas("schwartz-dilemmas")
    values = values_arg(args.values, instrument.taxonomy.ids)
    if not STEERING.exists():
        refuse(f"{STEERING} is missing: run bench/steering_bench.py --part success first")
    calibrated = json.loads(STEERING.read_text()).get("success", {})
    missing = [v for v in values if "layer" not in calibrated.get(v, {})]
    if missing:
        refuse(f"{STEERING} has no calibrated steering for {', '.join(missing)}; run "
               f"bench/steering_bench.py --part success --values {','.join(missing)}")  # fmt: skip
    results = load_results(RESULTS)
    results["machine"] = f"{os.cpu_count()}-core {platform.machine()}, torch {torch.__version__}"
    command = " ".join(["python bench/asked_and_steered.py", *sys.argv[1:]])
    if command not in results.setdefault("commands", []):
        results["commands"].append(command)
    backend = load_backend("smollm2")
    personas = load_personas(instrument.taxonomy)
    vectors = mean_diff_at(backend, RUNS / "vectors.safetensors")
    done = results.setdefault("values", {})
    for value in values:
        entry = calibrated[value]
        setting = {
            "layer": entry["layer"],
            "coef": entry["coef"],
            "persona_sha256": hashlib.sha256(personas[value].encode()).hexdigest(),
        }
        kept = done.get(value)
        if kept and {k: kept.get(k) for k in setting} != setting:
            refuse(f"{RESULTS} [{value}] was measured with another calibrated steering or persona "
                   f"prompt than {STEERING} and data/personas.yaml hold now; remove the entry and "
                   f"{RUNS}/*-{value} to measure it again")  # fmt: skip
        if kept is None:
            started = time.perf_counter()
            steering = entry_steering(vectors, value, entry, "add")
            system = personas[value]
            plain = audit_deciding(backend, instrument, value, RUNS / f"plain-{value}")
            hows: dict[str, dict[str, Any]] = {
                "asked": {"system": system},
                "steered": {"steering": steering},
                "both": {"steering": steering, "system": system},
            }
            runs = {
                name: audit_deciding(backend, instrument, value, RUNS / f"{name}-{value}", **how)
                for name, how in hows.items()
            }
            shifts = {name: compared(plain, run, value, name) for name, run in runs.items()}
            done[value] = {
                **setting,
                "fluency_cost": entry["fluency_cost"],
                **shifts,
                "interaction": shifts["both"]["shift"]
                - shifts["asked"]["shift"]
                - shifts["steered"]["shift"],
                "steering_shift_stored": entry["instrument"]["shift"],
                "seconds": round(time.perf_counter() - started, 1),
            }
            save(results, RESULTS)
        row = done[value]
        print(f"{value}: asked {row['asked']['shift']:+.3f}, steered {row['steered']['shift']:+.3f}"
              f" (stored {row['steering_shift_stored']:+.3f}), both {row['both']['shift']:+.3f} "
              f"{np.round(row['both']['ci'], 3).tolist()} flipped +{row['both']['flipped_toward']}"
              f" / -{row['both']['flipped_away']}; interaction {row['interaction']:+.3f}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
