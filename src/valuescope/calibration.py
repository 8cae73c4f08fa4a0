"""Calibration and composition: how strongly to steer, at which layer, for a target profile.

Calibration sweeps the coefficient of one value's vector at its best layers (by held-out probe
accuracy; for a trained file, the layer it was trained at), doubling it until the fluency cost
(relative perplexity increase on neutral text) passes the budget, then bisects (geometrically,
twice) between the last coefficient within the budget and the first past it, so the budget is
used to within a factor 2^(1/4) of the coefficient. At every step it measures the shift of the
model's preference for the upholding answers of that value's contrastive pairs (valuescope's own
data, never an audit instrument).
The chosen setting is the largest shift within the budget, and the shift per unit of
coefficient at that layer is the value's sensitivity. Coefficients start at 1/8 of the class
gap (one whole gap is often past a 10% perplexity budget) and double up to 256 (a trained
direction's class gap is small).

Composition turns a target profile (score changes per value) into coefficients: with the
matrix S of measured shifts (S[v, w] = change of v's preference per unit coefficient of w),
it solves S c = target by least squares within each value's fluency-safe range, then checks
the joint fluency cost and scales all coefficients down together if it is over budget. It
reports conflicts: value pairs whose vectors point together while the targets pull apart (or
the reverse), and targets the coefficients miss, each with why and, where the trade-off law
can say, what it would cost (`tradeoff`).

Every measurement (a preference or a fluency cost under one setting) can be kept in a
checkpoint (`memo`): `valuescope steer` keeps them in `OUT/calibration/progress.jsonl`, so a
rerun, after a kill or with another budget, measures only what it has not measured before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from .audit import AuditConfig, AuditResult, run_audit
from .backends.base import WhiteBoxBackend
from .checkpoint import Checkpoint
from .contrast import ContrastSet
from .errors import UsageError
from .instrument import DilemmaItem, load_instrument
from .profile import bootstrap_ci, value_evidence
from .scoring import ItemResult
from .steering import (
    Mode,
    Steering,
    Term,
    fluency_cost,
    neutral_texts,
    perplexity,
    preference,
)
from .taxonomy import Taxonomy
from .tradeoff import Miss, Shift, law_cost, measured_law_budget, reached
from .vectors import VectorSet, check_model

ProgressHook = Callable[[str, int, int], None]
DEFAULT_BUDGET = 0.10
START = 0.125
MAX_STEPS = 12
"""Doublings from START: up to 256 class gaps (a trained direction can have a small class gap)."""
REFINE = 2


@dataclass(frozen=True)
class SweepPoint:
    """One setting tried: its measured preference shift and fluency cost."""

    value: str
    layer: int
    coef: float
    norm: float
    shift: float
    fluency_cost: float


@dataclass
class Calibration:
    """The chosen layer and coefficient of one value, and every point of the sweep."""

    value: str
    layer: int
    coef: float
    shift: float
    fluency_cost: float
    sensitivity: float
    """Preference shift per unit coefficient at the chosen layer (slope through the origin)."""
    points: list[SweepPoint] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "points"},
                "points": [asdict(p) for p in self.points]}  # fmt: skip


class Meter:
    """Preference and fluency measurements, each remembered in `memo` (when given) under the
    setting it was measured at, so a rerun with the same memo measures nothing twice."""

    def __init__(
        self,
        backend: WhiteBoxBackend,
        memo: Checkpoint | None = None,
        plain_ppl: float | None = None,
    ) -> None:
        self.backend, self.memo, self._plain_ppl = backend, memo, plain_ppl

    def _recall(self, key: str, measure: Callable[[], float]) -> float:
        saved = self.memo.get(key) if self.memo is not None else None
        if saved is not None:
            return float(saved)
        found = measure()
        if self.memo is not None:
            self.memo.put(key, found)
        return found

    def plain_ppl(self) -> float:
        """Unsteered perplexity of the neutral texts (the fluency baseline)."""
        if self._plain_ppl is None:
            self._plain_ppl = self._recall("perplexity", lambda: perplexity(self.backend))
        return self._plain_ppl

    def preference(self, value: str, contrast: ContrastSet, steering: Steering | None) -> float:
        """`preference` on `value`'s pairs of `contrast`."""
        key = _setting("preference", value, steering)
        return self._recall(key, lambda: preference(self.backend, contrast.of(value), steering))

    def cost(self, steering: Steering) -> float:
        """`fluency_cost` against the remembered baseline."""
        key = _setting("cost", "", steering)
        return self._recall(key, lambda: fluency_cost(self.backend, steering, self.plain_ppl()))


def _setting(kind: str, value: str, steering: Steering | None) -> str:
    terms = [[t.value, t.layer, t.coef] for t in steering.terms] if steering else []
    return json.dumps([kind, value, steering.mode if steering else None, terms])


def memo_for(
    out: Path, backend: WhiteBoxBackend, vectors_sha256: str, contrast: ContrastSet
) -> Checkpoint:
    """The checkpoint `valuescope steer` keeps its calibration in: valid for one model, vector
    file, pair set and neutral text set (not for one target or budget: a measurement at a
    setting does not depend on them)."""
    neutral = hashlib.sha256(json.dumps(neutral_texts()).encode()).hexdigest()
    fingerprint = {"model": backend.spec.raw, "vectors": vectors_sha256,
                   "contrast": contrast.sha256, "neutral": neutral}  # fmt: skip
    return Checkpoint(out / "calibration", fingerprint)


def parse_target(text: str) -> dict[str, float]:
    """`benevolence=+0.2,power=-0.1` -> {'benevolence': 0.2, 'power': -0.1}."""
    target: dict[str, float] = {}
    for part in text.split(","):
        name, eq, amount = part.partition("=")
        try:
            change = float(amount)
        except ValueError:
            change = float("nan")
        if not eq or not name.strip() or not np.isfinite(change):
            raise UsageError(
                f"--target: {part!r} is not value=change, e.g. benevolence=+0.25,power=-0.1"
            )
        if not -1 < change < 1 or change == 0:
            raise UsageError(f"--target: {part!r}: a score change is between -1 and 1, not 0")
        target[name.strip()] = change
    return target


def default_layers(vectors: VectorSet, value: str, n_layers: int = 2) -> list[int]:
    """Where to sweep `value`: the layer its direction was trained at, for an optimized file
    (its other layers hold the untrained mean-diff start), else its `n_layers` best layers by
    held-out probe accuracy."""
    trained = vectors.extra.get("optimized", {}).get(value)
    if vectors.method == "optimized" and trained is not None:
        return [int(trained["layer"])]
    vv = vectors[value]
    ranked = sorted(
        vv.layers,
        key=lambda k: (-vv.layers[k].probe_accuracy, -vv.layers[k].separation, k),
    )
    return ranked[:n_layers]


def calibrate(
    backend: WhiteBoxBackend,
    vectors: VectorSet,
    contrast: ContrastSet,
    value: str,
    direction: float = 1.0,
    budget: float = DEFAULT_BUDGET,
    layers: Sequence[int] | None = None,
    n_layers: int = 2,
    mode: Mode = "add",
    baseline_ppl: float | None = None,
    progress: ProgressHook | None = None,
    refine: int = REFINE,
    memo: Checkpoint | None = None,
) -> Calibration:
    """Sweep coefficients (sign of `direction`) at the best layers; keep the best within budget.

    `refine` is the number of bisections after the doubling (0 reproduces doubling alone)."""
    vv = vectors[value]
    if not contrast.of(value):
        raise UsageError(f"no contrastive pairs for {value!r} to calibrate on")
    if layers is None:
        layers = default_layers(vectors, value, n_layers)
    meter = Meter(backend, memo, baseline_ppl)
    base = meter.preference(value, contrast, None)
    sign = 1.0 if direction >= 0 else -1.0
    points: list[SweepPoint] = []
    label = f"calibrating {value}"
    total = len(layers) * (MAX_STEPS + refine)
    if progress:
        progress(label, 0, total)

    def measure(layer: int, coef: float) -> SweepPoint:
        steering = Steering(vectors, [Term(value, layer, sign * coef)], mode)
        cost = meter.cost(steering)
        shift = meter.preference(value, contrast, steering) - base
        norm = abs(coef) * vv.layers[layer].gap
        points.append(SweepPoint(value, layer, sign * coef, norm, shift, cost))
        if progress:
            progress(label, 1, total)
        return points[-1]

    for layer in layers:
        coef, within, over = START, 0.0, 0.0
        for _ in range(MAX_STEPS):
            if measure(layer, coef).fluency_cost > budget:
                over = coef
                break
            within = coef
            coef *= 2
        if within and over:  # the budget lies between them: narrow it down
            for _ in range(refine):
                middle = (within * over) ** 0.5
                if measure(layer, middle).fluency_cost > budget:
                    over = middle
                else:
                    within = middle
        if progress:  # a layer that stopped early skips its unused steps
            progress(label, MAX_STEPS + refine - sum(p.layer == layer for p in points), total)
    feasible = [p for p in points if p.fluency_cost <= budget]
    if not feasible:
        raise UsageError(
            f"{value}: even coefficient {START} costs more than the fluency budget "
            f"({budget:.0%}); raise --fluency-budget or use --mode gated"
        )
    best = max(feasible, key=lambda p: sign * p.shift)
    at_layer = [p for p in feasible if p.layer == best.layer]
    coefs = np.array([p.coef for p in at_layer])
    shifts = np.array([p.shift for p in at_layer])
    sensitivity = float(coefs @ shifts / (coefs @ coefs))
    return Calibration(
        value, best.layer, best.coef, best.shift, best.fluency_cost, sensitivity, points
    )


@dataclass
class Composition:
    """Coefficients for a target profile, what they are expected to do, and the conflicts."""

    target: dict[str, float]
    coefs: dict[str, float]
    layers: dict[str, int]
    expected: dict[str, float]
    fluency_cost: float
    scaled: float
    conflicts: list[str]
    sensitivity: dict[str, dict[str, float]]
    out_of_reach: dict[str, Miss] = field(default_factory=dict)
    """Targets the coefficients miss by more than half, with what they would take."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compose(
    backend: WhiteBoxBackend,
    vectors: VectorSet,
    contrast: ContrastSet,
    target: Mapping[str, float],
    calibrations: Mapping[str, Calibration],
    budget: float = DEFAULT_BUDGET,
    mode: Mode = "add",
    progress: ProgressHook | None = None,
    memo: Checkpoint | None = None,
    baseline_ppl: float | None = None,
) -> Composition:
    """Solve for coefficients that move each targeted value by its requested change."""
    values = list(target)
    layers = {v: calibrations[v].layer for v in values}
    meter = Meter(backend, memo, baseline_ppl)
    baseline = {v: meter.preference(v, contrast, None) for v in values}
    matrix = np.zeros((len(values), len(values)))
    label = "measuring cross-effects"
    if progress:
        progress(label, 0, len(values) ** 2)
    for j, w in enumerate(values):
        cal = calibrations[w]
        one = Steering(vectors, [Term(w, cal.layer, cal.coef)], mode)
        for i, v in enumerate(values):
            if v == w:
                matrix[i, j] = cal.shift / cal.coef
            else:
                shifted = meter.preference(v, contrast, one) - baseline[v]
                matrix[i, j] = shifted / cal.coef
            if progress:
                progress(label, 1, len(values) ** 2)
    bounds = np.array([abs(calibrations[v].coef) for v in values])
    wanted = np.array([target[v] for v in values])
    solution = lsq_linear(matrix, wanted, bounds=(-bounds, bounds)).x
    conflicts = pair_conflicts(values, target, matrix)
    terms = [Term(v, layers[v], float(c)) for v, c in zip(values, solution, strict=True)]
    cost = meter.cost(Steering(vectors, terms, mode))
    scale = 1.0
    while cost > budget and scale > 1 / 64:
        scale /= 2**0.5
        terms = [Term(t.value, t.layer, t.coef * scale) for t in terms]
        cost = meter.cost(Steering(vectors, terms, mode))
        solution = solution / 2**0.5
    if scale < 1:
        conflicts.append(
            f"together the vectors cost more fluency than the budget; all coefficients were "
            f"scaled by {scale:.2f}"
        )
    expected = {v: float(e) for v, e in zip(values, matrix @ solution, strict=True)}
    out_of_reach = misses(target, expected, calibrations)
    conflicts.extend(miss.message(v, budget) for v, miss in out_of_reach.items())
    return Composition(
        target=dict(target),
        coefs={t.value: t.coef for t in terms},
        layers=layers,
        expected=expected,
        fluency_cost=cost,
        scaled=scale,
        conflicts=conflicts,
        sensitivity={
            v: {w: float(matrix[i, j]) for j, w in enumerate(values)} for i, v in enumerate(values)
        },
        out_of_reach=out_of_reach,
    )


def pair_conflicts(values: list[str], target: Mapping[str, float], matrix: np.ndarray) -> list[str]:
    """Pairs whose vectors move each other (by at least 30% of their own effect) against the
    target's wish."""
    found = []
    for i, v in enumerate(values):
        for j in range(i + 1, len(values)):
            w = values[j]
            cross = 0.5 * (matrix[i, j] + matrix[j, i])
            own = min(abs(matrix[i, i]), abs(matrix[j, j]))
            if abs(cross) < 0.3 * own or own == 0:
                continue
            aligned = cross > 0
            same_way = target[v] * target[w] > 0
            if aligned != same_way:
                how = "raise each other" if aligned else "lower each other"
                want = "the same way" if same_way else "in opposite directions"
                found.append(f"{v} and {w}: their vectors {how}, but the target moves them {want}")
    return found


def misses(
    target: Mapping[str, float],
    expected: Mapping[str, float],
    calibrations: Mapping[str, Calibration],
) -> dict[str, Miss]:
    """Targets the coefficients are expected to miss by more than half, with what the value's
    own calibration says about them."""
    found = {}
    for v, want in target.items():
        if abs(expected[v] - want) > 0.5 * abs(want):
            cal = calibrations[v]
            need = law_cost(cal.fluency_cost, cal.shift, want)
            found[v] = Miss(want, expected[v], cal.shift, cal.fluency_cost, need)
    return found


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


def measured_shifts(plain: AuditResult, steered: AuditResult, seed: int) -> dict[str, Shift]:
    """Score change per value, steered minus unsteered (`paired_shift` over the items that
    decide it: the same items were answered by both)."""
    taxonomy, items = plain.instrument.taxonomy, plain.instrument.items
    return result_shifts(taxonomy, items, plain.results, steered.results, seed)


def result_shifts(
    taxonomy: Taxonomy,
    items: Sequence[DilemmaItem],
    plain: Sequence[ItemResult],
    changed: Sequence[ItemResult],
    seed: int,
) -> dict[str, Shift]:
    """`measured_shifts` on item results, also those scored outside an audit."""
    if [r.item_id for r in plain] != [r.item_id for r in changed]:
        raise ValueError("the steered and unsteered runs answered different items")
    before = value_evidence(taxonomy, items, plain)
    after = value_evidence(taxonomy, items, changed)
    chose_before = value_evidence(taxonomy, items, plain, choice)
    chose_after = value_evidence(taxonomy, items, changed, choice)
    out: dict[str, Shift] = {}
    for index, value in enumerate(taxonomy.ids):
        if before[value]:
            chosen = (chose_before[value], chose_after[value])
            out[value] = paired_shift(before[value], after[value], seed * 7919 + index, chosen)
    return out


def choice(p: Sequence[float], slot: int) -> float:
    """+1 if option `slot` has the most probability, -1 if another option does, 0 on a tie
    for the most (a `value_evidence` reader: which way an item was decided)."""
    top = max(p)
    if sum(x == top for x in p) > 1:
        return 0.0
    return 1.0 if p[slot] == top else -1.0


def paired_shift(
    before: Sequence[float],
    after: Sequence[float],
    seed: int,
    chosen: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Shift:
    """Mean change of P(upholding option) with a 95% CI from resampling the items, and how
    many items' choice turned from another option to the upholding one (`flipped_toward`) or
    back (`flipped_away`): a mean shift of a few hundredths can be many small moves or a few
    changed choices. `chosen` is `choice` per item before and after; without it, two options are
    assumed (the upholding one is chosen when its P > 0.5). A tie is no choice, so moving
    into or out of one flips nothing."""
    if len(before) != len(after):
        raise ValueError(f"paired runs differ in length: {len(before)} and {len(after)} items")
    was, now = chosen or (np.sign(np.subtract(before, 0.5)), np.sign(np.subtract(after, 0.5)))
    was, now = np.asarray(was), np.asarray(now)
    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    low, high = bootstrap_ci(diff, seed)
    return {
        "shift": float(diff.mean()), "ci": [low, high], "n": len(diff),
        "flipped_toward": int(((was == -1) & (now == 1)).sum()),
        "flipped_away": int(((was == 1) & (now == -1)).sum()),
    }  # fmt: skip


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

    for value in target:
        vectors[value]  # unknown values fail before any work
    judged = load_instrument(instrument)
    if judged.taxonomy.name != vectors.taxonomy:
        raise UsageError(
            f"instrument {judged.name!r} is on taxonomy {judged.taxonomy.name!r}, the vectors on "
            f"{vectors.taxonomy!r}"
        )
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
