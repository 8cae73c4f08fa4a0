"""What the steering bench's parts share: its settings and results file, the one audit it
judges by, and the success measurement (calibrate on valuescope's pairs, then audit the
unseen instrument) that the other parts repeat with other directions."""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from valuescope.audit.dilemma import DilemmaResult, audit_dilemmas
from valuescope.audit.kinds import RunSpec
from valuescope.audit.shifts import measured_shifts
from valuescope.backends.spec import parse_spec
from valuescope.cache import file_sha256
from valuescope.errors import ValuescopeError
from valuescope.instruments.dilemma import Dilemmas, load_dilemmas
from valuescope.progress import progress_bar
from valuescope.steering.calibration import REFINE, calibrate
from valuescope.steering.operators import Mode, Steering, Term, perplexity
from valuescope.vectors.contrast import ContrastSet, load_contrast
from valuescope.vectors.extract import VectorSet, extract_vectors
from valuescope.vectors.optimize import Training

HERE = Path(__file__).parent
METHOD = "likelihood-first-person"
BUDGET = 0.10
REPRODUCE = 1e-6  # the audits are deterministic: a shift measured again matches to this


@dataclass
class Settings:
    """What the command line sets for every part: the results file (another model's figures go
    to their own file) and the bisections after the doubling in calibration (`--refine 0`
    reproduces the first figures, doubling alone, kept under "success_doubling")."""

    results: Path = HERE / "results" / "steering.json"
    refine: int = REFINE

    @property
    def calibration(self) -> str:
        return "doubling+bisection" if self.refine else "doubling"


SETTINGS = Settings()


def refuse(message: str, code: int = 2) -> NoReturn:
    """Stop with one line on stderr: exit code 2 for a usage error (the bench's own refusals),
    or the code of a valuescope error, as the valuescope command exits."""
    print(message, file=sys.stderr)
    raise SystemExit(code)


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
        refuse(f"{SETTINGS.results} {where}: {how} {got}, not the stored {old:+.6f}; {remedy}")


def mean_diff_file(runs: Path) -> Path:
    """The mean-diff vector file `vectors` extracts and `success` calibrates."""
    return runs / "vectors.safetensors"


def success_key() -> str:
    return "success" if SETTINGS.refine else "success_doubling"


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


def load_results(path: Path | None = None) -> dict[str, Any]:
    """A results file's figures, or none yet (default: this bench's SETTINGS.results)."""
    path = path or SETTINGS.results
    return json.loads(path.read_text()) if path.exists() else {}


def save(results: dict[str, Any], path: Path | None = None) -> None:
    """Write a results file whole or not at all (default: this bench's SETTINGS.results)."""
    path = path or SETTINGS.results
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)


def audit_deciding(
    backend: Any,
    instrument: Dilemmas,
    value: str,
    out: Path,
    steering: Steering | None = None,
    system: str | None = None,
) -> DilemmaResult:
    """The bench's one audit: the items deciding `value`, one wording, METHOD (resumes)."""
    config = RunSpec(model=backend.spec.raw, method=METHOD, system=system, paraphrase=False,
                     interventions=(steering,) if steering else ())  # fmt: skip
    return audit_dilemmas(instrument.deciding(value), config, backend, out)


def compared(plain: DilemmaResult, changed: DilemmaResult, value: str,
             label: str = "steered") -> dict[str, Any]:  # fmt: skip
    """Score change of `value`, changed minus plain (paired CI, flipped counts); the changed
    run's score is kept under `label`."""
    shift = measured_shifts(plain, changed, 0)[value]
    return {**shift, "plain": plain.profile.scores[value].score,
            label: changed.profile.scores[value].score}  # fmt: skip


def instrument_shift(
    backend: Any,
    instrument: Dilemmas,
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


def part_success(backend: Any, vectors: VectorSet, values: list[str], results: dict[str, Any],
                 key: str, runs: Path, mode: Mode = "add", best_only: bool = False,
                 vec_path: Path | None = None) -> None:  # fmt: skip
    """Calibrate each value on valuescope's own pairs, then measure the shift on the unseen
    instrument. With `vec_path` (the file `vectors` came from), an entry keeps the file's
    SHA-256 and its steered audit's fingerprint carries it; a kept entry with another hash
    is refused."""
    contrast = load_contrast("schwartz")
    instrument = load_dilemmas("schwartz-dilemmas")
    plain_ppl = None
    sha = file_sha256(vec_path) if vec_path else None
    done = results.setdefault(key, {})
    for value in values:
        if value in done:
            kept = done[value].get("vectors_sha256")
            if sha and kept and kept != sha:
                refuse(f"{SETTINGS.results} [{key}][{value}] was measured with another vector "
                       f"file than {vec_path}; remove the entry and its folders in {runs} to "
                       f"measure it again")  # fmt: skip
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
                        baseline_ppl=plain_ppl, refine=SETTINGS.refine)  # fmt: skip
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


def add_flips(backend: Any, vectors: VectorSet, instrument: Dilemmas, value: str,
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


def confirm_file(backend: Any, vectors: VectorSet, instrument: Dilemmas, value: str,
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


def trained_file(results: dict[str, Any], runs: Path, value: str) -> Path:
    """The trained-direction file `optimized` measured `value` with (see part_optimized)."""
    whole = runs / "vectors-optimized.safetensors"
    if "vectors_optimized" in results and whole.exists():
        return whole
    alone = runs / "vectors-optimized" / f"{value}.safetensors"
    if not alone.exists():
        refuse(f"no trained direction for {value} in {runs}; run --part optimized first")
    return alone
