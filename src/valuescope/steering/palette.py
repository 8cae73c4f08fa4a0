"""A palette of values: the weights that bring several values to target levels (MAP).

Given N base samples per prompt with reward parts R (prompts x samples x values) and targets c
(one level per value, "at least c_v"; a value asked down is flipped, "at most c_v"), MAP finds
lambda >= 0 maximising

    f(lambda) = -mean_x log mean_j exp(lambda . R_xj) + lambda . c,

whose optimum tilts each prompt's samples, p(j | x) ~ exp(lambda . R_xj), so that their
expected parts meet every target, with the least divergence from the model. A lambda that runs
off to the bound means no reweighting of these samples meets the targets together: infeasible,
and the report says what was reached at the bound and how far each value alone can go (the
best of its samples), the edge of what is reachable.

>>> targets = {"benevolence": 0.3, "universalism": 0.2, "power": -0.1}
>>> found = solve_palette(parts, targets)  # doctest: +SKIP
>>> found.feasible, found.weights  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from valuescope.errors import UsageError

BOUND = 200.0
"""Largest lambda per value (on parts spanning about [-1, 1]): beyond it, the target is taken
as unreachable."""
TOLERANCE = 1e-3


@dataclass(frozen=True)
class Palette:
    """The solved weights, what they reach, and whether every target is met."""

    values: tuple[str, ...]
    targets: dict[str, float]
    weights: dict[str, float]
    """lambda per value, signed: negative for a value asked down."""
    reached: dict[str, float]
    """Expected part per value under the tilted samples."""
    feasible: bool
    infeasible: tuple[str, ...]
    reachable: dict[str, float]
    """Per value, the furthest its samples go in its direction (mean over prompts of the best)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "targets": self.targets,
            "weights": self.weights,
            "reached": self.reached,
            "feasible": self.feasible,
            "infeasible": list(self.infeasible),
            "reachable": self.reachable,
        }


def tilted_mean(parts: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Mean over prompts of each prompt's exp(lambda . R)-weighted mean of its parts."""
    logits = parts @ lam
    logits -= logits.max(axis=1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(axis=1, keepdims=True)
    return np.asarray((w[..., None] * parts).sum(axis=1).mean(axis=0), dtype=float)


def solve_palette(
    parts: np.ndarray,
    targets: Mapping[str, float],
    values: tuple[str, ...] | None = None,
    directions: Mapping[str, int] | None = None,
) -> Palette:
    """lambda for `targets` over base samples' `parts` ((prompts,) samples, values).

    `values` names the parts' columns (default: the targets' order). A value's direction is
    +1 (at least its target) unless `directions` says -1 (at most), the default for a target
    below the samples' mean.
    """
    from scipy.optimize import minimize

    values = values or tuple(targets)
    r = np.asarray(parts, dtype=float)
    r = r[None] if r.ndim == 2 else r
    if r.ndim != 3 or r.shape[2] != len(values):
        raise UsageError(f"parts of shape {np.shape(parts)} for {len(values)} values")
    unknown = [v for v in targets if v not in values]
    if unknown:
        raise UsageError(f"palette targets for values without parts: {', '.join(unknown)}")
    cols = [values.index(v) for v in targets]
    names = tuple(targets)
    mean = r.reshape(-1, r.shape[2]).mean(axis=0)
    sign = np.array(
        [
            (directions or {}).get(v, 1 if targets[v] >= mean[c] else -1)
            for v, c in zip(names, cols, strict=True)
        ],
        dtype=float,
    )
    x = r[:, :, cols] * sign
    c = np.array([targets[v] for v in names], dtype=float) * sign

    def objective(lam: np.ndarray) -> tuple[float, np.ndarray]:
        logits = x @ lam
        top = logits.max(axis=1, keepdims=True)
        log_mean = np.log(np.exp(logits - top).mean(axis=1)) + top[:, 0]
        value = float(log_mean.mean() - lam @ c)
        return value, tilted_mean(x, lam) - c

    found = minimize(objective, np.zeros(len(names)), jac=True, method="L-BFGS-B",
                     bounds=[(0.0, BOUND)] * len(names))  # fmt: skip
    lam = np.asarray(found.x, dtype=float)
    reached = tilted_mean(x, lam)
    short = reached < c - TOLERANCE
    stuck = short & (lam >= BOUND * 0.999)
    infeasible = tuple(v for v, bad in zip(names, short, strict=True) if bad)
    best = x.max(axis=1).mean(axis=0)
    return Palette(
        values=names,
        targets={v: float(targets[v]) for v in names},
        weights={v: float(s * w) for v, s, w in zip(names, sign, lam, strict=True)},
        reached={v: float(s * m) for v, s, m in zip(names, sign, reached, strict=True)},
        feasible=not short.any() and not stuck.any(),
        infeasible=infeasible,
        reachable={v: float(s * b) for v, s, b in zip(names, sign, best, strict=True)},
    )
