"""Value vectors and steering on the embedded model (or another local model), measured.

The figures of docs/results/steering.md, reach.md, asking.md and larger-models.md come from
here (bench/README.md lists each script's runtime):

    .venv/bin/python bench/steering_bench.py            # every default part; resumes
    .venv/bin/python bench/steering_bench.py --part success --values benevolence,power
    .venv/bin/python bench/steering_bench.py --model gguf:/models/qwen.gguf --part success

Larger instruct models for it: `bench/larger_model.py` (Qwen2.5-Coder-0.5B and -1.5B-Instruct,
from PyPI); a GGUF's SHA-256 is kept in its results file (`model_file`).
Another model's figures go to bench/results/steering-<model>.json and runs/steering-bench/<model>
(never mixed with the embedded model's: a results file refuses a run of another model).

Parts (each saved to bench/results/steering.json as soon as it is measured, so a rerun skips
what is done):
- vectors: `extract_vectors` on the built-in Schwartz pairs (time, best layer, probe accuracy);
- success: per value, calibration on valuescope's own pairs (fluency budget 10%), then the
  change of that value's score on schwartz-dilemmas (which no vector saw), steered minus
  unsteered, with a paired bootstrap CI over the items that decide the value, and how many
  of those items changed their preferred option (a value measured before these counts existed
  gets them when the part runs again: from its kept runs, else audited again and checked);
  each entry keeps its vector file's SHA-256 (one measured before that gets it by an audit
  afresh with the file, in `confirmed/`, which must reproduce its shift);
- repeng: the same with repeng's `ControlVector.train` (PCA of differences, last token) on the
  same pairs, in repeng's own environment (bench/.venv-repeng), exported with repeng's
  `export_gguf` and imported through valuescope's importer; same layer and budget; our shift
  divided by repeng's;
- gated: gated against additive steering, calibrated the same way, for a few values (under
  `--refine 0` kept as gated_doubling);
- speed: generation tokens/s, plain against steered (add and gated);
- tradeoff: a coefficient sweep at the best layer: score shift on the instrument against the
  vector's norm (linear fit) and perplexity increase against the norm (quadratic fit), R^2;
- optimized: directions trained to move the preference (`vectors --method optimized`),
  calibrated at the trained layer, against mean-diff's shift (the embedded model trains all
  ten values into one file first; another model, or `--values`, trains and measures one
  value at a time, so an interrupted run keeps what it finished);
- gated-optimized: the trained directions again, with gated steering (gated_optimized);
- layers: whether another layer, or several layers at once, buy more shift per fluency cost
  (a screen of every layer, and the best layer alone against a band of five and all layers);
- radius: trained directions again, trained at other strengths (`Training.radius`, class gaps;
  the default is 1), each calibrated and measured like `optimized` (default: achievement);
- persona: against simply asking: the value's built-in persona prompt as the system prompt,
  measured like `success` against the same plain run (no steering, so no fluency cost);
- summed: a diagnostic of the score: the trained directions and the personas again, read with
  summed PMI (sequence-level log-odds) instead of the audit's per-token PMI;
- choice: the same diagnostic with the options listed and labelled and the model's letter
  read (the `choice` method): personas for every value, the trained direction where
  `optimized` has measured it;
- reach: the price of +0.25: the trained and mean-diff directions' coefficients raised
  from the calibrated ones until the shift on schwartz-dilemmas reaches +0.25 (or perplexity
  is 100 times the plain one), the fluency cost and a sample answer at every step
  (`bench/reach_law.py` reads the stored sweeps against the trade-off law).

This script reads the command line; the parts live beside it: steering_common.py (what
they share: the results file, the one audit, and the success measurement that `success`,
`gated`, `optimized` and `radius` make), steering_figures.py (vectors, repeng, speed,
tradeoff), steering_trained.py (optimized, radius), steering_diagnostics.py (layers,
persona, summed, choice) and steering_reach.py (reach).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
from pathlib import Path

import torch
from steering_common import (
    HERE,
    SETTINGS,
    load_results,
    mean_diff_file,
    model_file,
    model_slug,
    part_success,
    refuse,
    success_key,
    values_arg,
)
from steering_diagnostics import READINGS, part_layers, part_persona, part_reread
from steering_figures import part_repeng, part_speed, part_tradeoff, part_vectors
from steering_reach import part_reach
from steering_trained import part_optimized, part_radius

from valuescope import load_backend
from valuescope.errors import ValuescopeError
from valuescope.instruments.dilemma import load_dilemmas
from valuescope.steering.calibration import REFINE
from valuescope.vectors.extract import VectorSet


def main() -> None:
    try:
        bench()
    except ValuescopeError as error:  # bad input deep in a part: one line, not a traceback
        refuse(str(error), error.exit_code)


def bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parts = ["vectors", "success", "repeng", "gated", "speed", "tradeoff", "layers", "optimized",
             "gated-optimized", "radius", "persona", "summed", "choice", "reach"]  # fmt: skip
    parser.add_argument("--part", action="append", choices=parts)
    parser.add_argument("--values", help="comma-separated values (default: all ten)")
    parser.add_argument("--runs", help="working folder (default: runs/steering-bench[/<model>])")
    parser.add_argument("--refine", type=int, default=REFINE,
                        help="bisections after the doubling (0: doubling alone)")  # fmt: skip
    args = parser.parse_args()
    SETTINGS.refine = args.refine
    parts = args.part or ["vectors", "success", "speed", "gated", "tradeoff", "repeng"]
    ids = load_dilemmas("schwartz-dilemmas").taxonomy.ids
    values = values_arg(args.values, ids)
    default_model = args.model == "smollm2"
    slug = model_slug(args.model)
    if not default_model:
        SETTINGS.results = HERE / "results" / f"steering-{slug}.json"
    results = load_results()
    found = results.get("model")
    if found and found != args.model:
        refuse(f"{SETTINGS.results} holds figures of {found!r}, not {args.model!r}")
    runs = Path(args.runs or ("runs/steering-bench" + ("" if default_model else f"/{slug}")))
    runs.mkdir(parents=True, exist_ok=True)
    identity = model_file(args.model)
    if identity and results.get("model_file", identity) != identity:
        refuse(
            f"{SETTINGS.results} holds figures of another file at {args.model!r}: "
            f"SHA-256 {results['model_file']['sha256']}, not {identity['sha256']}"
        )
    results["model"] = args.model
    if identity:
        results["model_file"] = identity
    results["machine"] = (
        f"{os.cpu_count()}-core {platform.machine()}, torch {torch.__version__}"
        + (", CUDA" if torch.cuda.is_available() else ", no GPU")
    )
    command = "python bench/steering_bench.py " + " ".join(sys.argv[1:])
    commands = results.setdefault("commands", [])
    if command not in commands:
        commands.append(command)
    try:
        backend = load_backend(args.model)
    except ValuescopeError as error:
        refuse(f"--model: {error}")

    @functools.cache
    def vectors() -> VectorSet:  # extracted (minutes on a large model) only if a part needs it
        return part_vectors(backend, results, mean_diff_file(runs))

    if "vectors" in parts:
        vectors()
    if "success" in parts:
        part_success(backend, vectors(), values, results, success_key(), runs / "success",
                     vec_path=mean_diff_file(runs))  # fmt: skip
    if "speed" in parts:
        part_speed(backend, vectors(), results)
    if "gated" in parts:
        key = "gated" if SETTINGS.refine else "gated_doubling"
        part_success(backend, vectors(), values[:3] if not args.values else values, results,
                     key, runs / "gated", mode="gated", vec_path=mean_diff_file(runs))  # fmt: skip
    if "tradeoff" in parts:
        part_tradeoff(backend, vectors(), values[:3] if not args.values else values, results,
                      runs)  # fmt: skip
    if "repeng" in parts:
        part_repeng(backend, vectors(), values, results, runs)
    if "optimized" in parts or "gated-optimized" in parts:
        # Another model trains value by value, so an interrupted run keeps the values trained
        # so far; the embedded model keeps its all-values file (the documented figures).
        part_optimized(backend, values, results, runs, gated="gated-optimized" in parts,
                       subset=bool(args.values) or not default_model)  # fmt: skip
    if "layers" in parts:
        part_layers(backend, vectors(), values[:2] if not args.values else values, results)
    if "radius" in parts:
        part_radius(backend, values if args.values else ["achievement"], results, runs)
    if "persona" in parts:
        part_persona(backend, values, results, runs)
    for key in READINGS:
        if key in parts:
            part_reread(backend, values, results, runs, key)
    if "reach" in parts:
        part_reach(backend, values, results, runs)


if __name__ == "__main__":
    main()
