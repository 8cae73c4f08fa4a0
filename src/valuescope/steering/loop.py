"""The loop `valuescope steer` closes: calibrate each targeted value on valuescope's own
pairs, compose the target, audit the unsteered and the steered model on the judged instrument
(never seen by calibration), and measure the shift."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from valuescope.audit.dilemma import DilemmaResult, audit_dilemmas
from valuescope.audit.kinds import RunSpec, check_spec
from valuescope.audit.shifts import Shift, measured_shifts, reached
from valuescope.backends.base import WhiteBoxBackend
from valuescope.errors import UsageError
from valuescope.instruments.dilemma import load_dilemmas
from valuescope.progress import ProgressHook
from valuescope.steering.calibration import DEFAULT_BUDGET, Calibration, Meter, calibrate, memo_for
from valuescope.steering.composition import Composition, compose
from valuescope.steering.operators import Mode, Steering, Term
from valuescope.steering.tradeoff import measured_law_budget
from valuescope.vectors.contrast import ContrastSet
from valuescope.vectors.extract import VectorSet, check_model


@dataclass
class SteerRun:
    """The loop closed: calibration, composition, and both audits on the judged instrument."""

    steering: Steering
    calibrations: dict[str, Calibration]
    composition: Composition
    plain: DilemmaResult
    steered: DilemmaResult
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
    judged = load_dilemmas(instrument)  # a dilemma instrument, or a clear error
    check_spec(judged, RunSpec(method=method, paraphrase=False, limit=limit))
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
    from valuescope.cache import file_sha256

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
    judged = load_dilemmas(instrument)
    spec = RunSpec(model=backend.spec.raw, method=method, seed=seed, paraphrase=False, limit=limit)
    plain = audit_dilemmas(judged, spec, backend, out / "unsteered", progress)
    spec = spec.replace(method=plain.method, interventions=(steering,))
    steered = audit_dilemmas(judged, spec, backend, out, progress)
    shifts = measured_shifts(plain, steered, seed)
    for value, change in target.items():
        if value in shifts:
            shifts[value]["reached"] = reached(change, shifts[value])
            shifts[value]["law_budget"] = measured_law_budget(
                change, shifts[value], composition.fluency_cost
            )
    steering.extra["measured_shift"] = shifts
    return SteerRun(steering, calibrations, composition, plain, steered, shifts)
