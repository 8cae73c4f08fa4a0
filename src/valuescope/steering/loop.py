"""The loop `valuescope steer` closes: calibrate each targeted value on valuescope's own
pairs, compose the target, audit the unsteered and the steered model on the judged instrument
(never seen by calibration), and measure the shift. `--via decoding|both` calibrates a decoding
strategy's strength on held-out prompts instead (or on top) and measures on an open
instrument."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from valuescope.audit.dilemma import DilemmaResult, audit_dilemmas
from valuescope.audit.kinds import RunSpec, check_spec, load_instrument
from valuescope.audit.open import OpenResult, detector_names
from valuescope.audit.run import run_audit
from valuescope.audit.shifts import Shift, measured_shifts, paired_shift, reached
from valuescope.backends.base import Backend, Chat, WhiteBoxBackend
from valuescope.detectors.registry import DEFAULT_DETECTOR
from valuescope.errors import UsageError
from valuescope.instruments.dilemma import load_dilemmas
from valuescope.instruments.open import OpenPrompts
from valuescope.progress import ProgressHook
from valuescope.steering.alignment import (
    Alignment,
    check_reward_not_measuring,
    reward_detector_for,
)
from valuescope.steering.calibration import (
    CALIBRATION_PROMPTS,
    DEFAULT_BUDGET,
    Calibration,
    DecodingCalibration,
    Meter,
    calibrate,
    calibrate_decoding,
    memo_for,
)
from valuescope.steering.composition import Composition, compose
from valuescope.steering.operators import Mode, Steering, Term
from valuescope.steering.strategies import check_strategy
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


class Calibrated(NamedTuple):
    """Activation steering calibrated toward a target: per value, the composition, the spec."""

    calibrations: dict[str, Calibration]
    composition: Composition
    steering: Steering


def calibrated_steering(
    backend: WhiteBoxBackend,
    vectors: VectorSet,
    contrast: ContrastSet,
    target: Mapping[str, float],
    out: Path,
    vectors_path: str,
    mode: Mode = "add",
    budget: float = DEFAULT_BUDGET,
    progress: ProgressHook | None = None,
) -> Calibrated:
    """Calibrate each targeted value on the contrastive pairs and compose the target."""
    from valuescope.cache import file_sha256

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
    return Calibrated(calibrations, composition, steering)


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
    check_request(vectors, target, instrument, method, limit)
    calibrations, composition, steering = calibrated_steering(
        backend, vectors, contrast, target, out, vectors_path, mode, budget, progress
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


# -- `valuescope steer --via decoding|both` -------------------------------------------------

VIA = ("activations", "decoding", "both")
OPEN_INSTRUMENT = "schwartz-open"
OPEN_LIMIT = 20
"""Prompts judged by default with --via decoding|both (free text is slow on a CPU)."""
OPEN_SAMPLES = 1


@dataclass
class DecodingSteerRun:
    """`steer --via decoding|both`: the calibrated interventions and both open audits."""

    via: str
    alignment: Alignment
    decoding: DecodingCalibration
    activations: Calibrated | None
    plain: OpenResult
    steered: OpenResult
    shifts: dict[str, Shift]
    budget: float

    def as_dict(self) -> dict[str, Any]:
        """steering.json: what was calibrated, what it cost, what the instrument measured."""
        return {
            "via": self.via,
            "target": dict(self.alignment.weights),
            "fluency_budget": self.budget,
            "activations": self.activations.steering.as_dict() if self.activations else None,
            "decoding": self.decoding.as_dict(),
            "alignment": self.alignment.as_dict(),
            "measured_by": self.steered.detector,
            "measured_shift": self.shifts,
        }


def check_decoding_request(
    target: Mapping[str, float],
    instrument: str,
    strategy: str = "best-of-n",
    reward: str | None = None,
    detector: str | None = None,
    limit: int = OPEN_LIMIT,
) -> str:
    """Everything `--via decoding|both` is asked for that needs no model; returns the reward
    detector (never the measuring one: the alignment's own refusal)."""
    from valuescope.detectors.registry import check_detector_name

    check_strategy(strategy)
    judged = load_instrument(instrument)
    if not isinstance(judged, OpenPrompts):
        raise UsageError(
            f"--via decoding re-measures on an open instrument; {judged.name!r} is "
            f"{judged.kind}: use e.g. -i {OPEN_INSTRUMENT}"
        )
    for value in target:
        if value not in judged.taxonomy.ids:
            raise UsageError(f"--target: {value!r} is not a value of {judged.taxonomy.name}")
    measuring = detector_names(judged, RunSpec(detector=detector))[0]
    chosen = reward or reward_detector_for(measuring)
    check_detector_name(chosen)
    check_reward_not_measuring(chosen, measuring)
    aligned = Alignment(dict(target), strategy, chosen, taxonomy=judged.taxonomy.name)
    check_spec(judged, RunSpec(detector=detector, limit=limit, paraphrase=False,
                               samples=OPEN_SAMPLES, interventions=(aligned,)))  # fmt: skip
    if len(judged.items) <= limit:
        raise UsageError(
            f"--limit {limit}: {judged.name} has {len(judged.items)} prompts and decoding is "
            "calibrated on prompts past the judged ones; lower --limit"
        )
    return chosen


def split_budget(budget: float) -> float:
    """The activations' share of a `both` budget: half of it in log-perplexity, so the
    two costs multiplied stay within `budget`."""
    return math.sqrt(1 + budget) - 1


def left_after(budget: float, cost: float) -> float:
    """What a relative perplexity `budget` leaves once `cost` is spent."""
    return (1 + budget) / (1 + cost) - 1 if math.isfinite(cost) else budget


def steer_by_decoding(
    backend: WhiteBoxBackend,
    target: Mapping[str, float],
    instrument: str = OPEN_INSTRUMENT,
    out: Path = Path("runs/steer"),
    strategy: str = "best-of-n",
    reward: str | None = None,
    detector: str | None = None,
    budget: float = DEFAULT_BUDGET,
    seed: int = 0,
    limit: int = OPEN_LIMIT,
    max_strength: float | None = None,
    activations: Calibrated | None = None,
    progress: ProgressHook | None = None,
) -> DecodingSteerRun:
    """Calibrate the decoding strength against the fluency budget on prompts past `limit`,
    then answer the first `limit` prompts plain and under the interventions (`activations`
    first when given, calibrated on its share of the budget) and measure the shift."""
    chosen = check_decoding_request(target, instrument, strategy, reward, detector, limit)
    judged = load_instrument(instrument)
    assert isinstance(judged, OpenPrompts)
    base: Backend = backend
    left, before = budget, tuple[Steering, ...]()
    if activations is not None:
        base = activations.steering.wrap(backend)
        left = left_after(budget, activations.composition.fluency_cost)
        before = (activations.steering,)
    held = [Chat(item.text, None) for item in judged.items[limit : limit + CALIBRATION_PROMPTS]]
    tax = judged.taxonomy.name
    decoding = calibrate_decoding(base, target, strategy, chosen, held, left, tax, seed,
                                  max_strength, progress)  # fmt: skip
    aligned = Alignment(dict(target), strategy, chosen, decoding.settings(), tax,
                        measuring=detector or DEFAULT_DETECTOR)  # fmt: skip
    spec = RunSpec(model=backend.spec.raw, seed=seed, paraphrase=False, limit=limit,
                   samples=OPEN_SAMPLES, detector=detector)  # fmt: skip
    plain = run_audit(judged, spec, backend=backend, out=out / "unsteered", progress=progress)
    spec = spec.replace(interventions=(*before, aligned))
    steered = run_audit(judged, spec, backend=backend, out=out, progress=progress)
    assert isinstance(plain, OpenResult) and isinstance(steered, OpenResult)
    shifts = open_shifts(plain, steered, seed)
    for value, change in target.items():
        if value in shifts:
            shifts[value]["reached"] = reached(change, shifts[value])
    via = "decoding" if activations is None else "both"
    return DecodingSteerRun(via, aligned, decoding, activations, plain, steered, shifts, budget)


def open_shifts(plain: OpenResult, steered: OpenResult, seed: int) -> dict[str, Shift]:
    """Per value, the paired change of its score (on the profile's 0-1 scale) over the prompts
    both runs scored it on; a flip is an answer's reading turning from opposing to upholding."""
    found: dict[str, Shift] = {}
    for index, value in enumerate(plain.instrument.taxonomy.ids):
        ids = [i for i, s in plain.item_scores.items()
               if value in s and value in steered.item_scores.get(i, {})]  # fmt: skip
        if ids:
            before = [(1 + plain.item_scores[i][value]) / 2 for i in ids]
            after = [(1 + steered.item_scores[i][value]) / 2 for i in ids]
            shift = paired_shift(before, after, seed * 7919 + index)
            shift["ci"] = [x if x is not None and math.isfinite(x) else None for x in shift["ci"]]
            found[value] = shift  # JSON has no NaN: an undefined bound (one prompt) is None
    return found
