"""Composition: coefficients for a target profile, from the values' calibrations.

Composition turns a target profile (score changes per value) into coefficients: with the
matrix S of measured shifts (S[v, w] = change of v's preference per unit coefficient of w),
it solves S c = target by least squares within each value's fluency-safe range, then checks
the joint fluency cost and scales all coefficients down together if it is over budget. It
reports conflicts: value pairs whose vectors point together while the targets pull apart (or
the reverse), and targets the coefficients miss, each with why and, where the trade-off law
can say, what it would cost (`tradeoff`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from valuescope.backends.base import WhiteBoxBackend
from valuescope.checkpoint import Checkpoint
from valuescope.progress import ProgressHook
from valuescope.steering.calibration import DEFAULT_BUDGET, Calibration, Meter
from valuescope.steering.operators import Mode, Steering, Term
from valuescope.steering.tradeoff import Miss, law_cost
from valuescope.vectors.contrast import ContrastSet
from valuescope.vectors.extract import VectorSet


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
