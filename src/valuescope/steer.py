"""The loop `valuescope steer` closes: calibrate each targeted value on valuescope's own
pairs, compose the target, audit the unsteered and the steered model on the judged instrument
(never seen by calibration), and measure the shift."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .audit import AuditConfig, AuditResult, run_audit
from .backends.base import WhiteBoxBackend
from .calibration import DEFAULT_BUDGET, Calibration, Meter, ProgressHook, calibrate, memo_for
from .composition import Composition, compose
from .contrast import ContrastSet
from .errors import UsageError
from .instrument import load_instrument
from .shifts import measured_shifts
from .steering import Mode, Steering, Term
from .tradeoff import Shift, measured_law_budget, reached
from .vectors import VectorSet, check_model


@dataclass
class SteerRun:
    """The loop closed: calibration, composition, and both audits on the judged instrument."""

    steering: Steering
    calibrations: dict[str, Calibration]
    composition: Composition
    plain: AuditResult
    steered: AuditResult
    shifts: dict[str, Shift]
    """Per value: measured score change on the instrument with a paired bootstrap CI, and the
    items whose choice steering turned toward or away from the value (`paired_shift`)."""


def check_request(
    vectors: VectorSet,
    target: Mapping[str, float],
    instrument: str,
    method: str = "auto",
    limit: int | None = None,
) -> None:
    """Check everything a steer run is asked for that needs no model (values, method, limit,
    the judged instrument and its taxonomy), so a typo fails before a model loads or any
    calibration runs."""
    for value in target:
        vectors[value]
    AuditConfig(instrument=instrument, method=method, paraphrase=False, limit=limit)
    judged = load_instrument(instrument)  # a dilemma instrument, or a clear error
    if judged.taxonomy.name != vectors.taxonomy:
        raise UsageError(
            f"instrument {judged.name!r} is on taxonomy {judged.taxonomy.name!r}, the vectors on "
            f"{vectors.taxonomy!r}"
        )


def steer_to_target(
    backend: WhiteBoxBackend,
    vectors: VectorSet,
    contrast: ContrastSet,
    target: Mapping[str, float],
    instrument: str,
    out: Path,
    vectors_path: str,
    method: str = "auto",
    mode: Mode = "add",
    budget: float = DEFAULT_BUDGET,
    seed: int = 0,
    limit: int | None = None,
    progress: ProgressHook | None = None,
) -> SteerRun:
    """Calibrate on the contrastive pairs, compose the target, audit unsteered and steered."""
    from .cache import file_sha256

    check_request(vectors, target, instrument, method, limit)
    check_model(vectors, backend)
    sha = file_sha256(Path(vectors_path).expanduser())
    memo = memo_for(out, backend, sha, contrast)
    plain_ppl = Meter(backend, memo).plain_ppl()
    calibrations = {
        value: calibrate(
            backend,
            vectors,
            contrast,
            value,
            change,
            budget,
            mode=mode,
            baseline_ppl=plain_ppl,
            progress=progress,
            memo=memo,
        )
        for value, change in target.items()
    }
    composition = compose(backend, vectors, contrast, target, calibrations, budget, mode,
                          progress, memo, plain_ppl)  # fmt: skip
    terms = [Term(v, composition.layers[v], c) for v, c in composition.coefs.items()]
    steering = Steering(
        vectors,
        terms,
        mode,
        vectors_path,
        sha,
        fluency_cost=composition.fluency_cost,
        extra={
            "target": dict(target),
            "fluency_budget": budget,
            "calibration_data": {"name": contrast.name, "sha256": contrast.sha256},
            "calibration": {v: c.as_dict() for v, c in calibrations.items()},
            "composition": composition.as_dict(),
        },
    )
    config = AuditConfig(model=backend.spec.raw, instrument=instrument, method=method,
                         seed=seed, paraphrase=False, limit=limit)  # fmt: skip
    plain = run_audit(config, backend=backend, out=out / "unsteered", progress=progress)
    config = AuditConfig(model=backend.spec.raw, instrument=instrument, method=plain.method,
                         seed=seed, paraphrase=False, limit=limit)  # fmt: skip
    steered = run_audit(config, backend=backend, out=out, progress=progress, steering=steering)
    shifts = measured_shifts(plain, steered, seed)
    for value, change in target.items():
        if value in shifts:
            shifts[value]["reached"] = reached(change, shifts[value])
            shifts[value]["law_budget"] = measured_law_budget(
                change, shifts[value], composition.fluency_cost
            )
    steering.extra["measured_shift"] = shifts
    steered.steering = steering.as_dict()
    return SteerRun(steering, calibrations, composition, plain, steered, shifts)
