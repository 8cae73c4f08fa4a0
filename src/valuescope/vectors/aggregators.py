"""Aggregators: how one layer's contrastive activations become a unit direction.

Each takes the paired training activations of one value at one layer (upholding answers `pos`,
opposing answers `neg`, row k of each from pair k) and returns a unit direction. Orientation is
not their concern: `measure_direction` turns every direction toward the upholding answers.
`AGGREGATORS` is the registry extraction fits and scores at every layer.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy.optimize import minimize


class Aggregator(Protocol):
    """A unit direction from paired training activations, `pos` and `neg` of shape (n, d)."""

    def __call__(self, pos: np.ndarray, neg: np.ndarray) -> np.ndarray: ...


def unit_of(v: np.ndarray) -> np.ndarray:
    """`v` scaled to length 1 (a zero vector stays zero)."""
    return v / max(float(np.linalg.norm(v)), 1e-12)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


def mean_diff(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mean activation of upholding answers minus that of opposing ones."""
    return unit_of((pos - neg).mean(0))


def pca(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """First principal direction of the paired differences, uncentred so the common shift
    counts (repeng's `pca_diff` centres them, removing the difference it looks for), signed
    like the mean difference."""
    diff = pos - neg
    _, _, vt = np.linalg.svd(diff, full_matrices=False)
    return unit_of(vt[0] if vt[0] @ diff.mean(0) >= 0 else -vt[0])


def logistic(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """An L2 logistic probe telling upholding answers (1) from opposing ones (0)."""
    x = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    return logistic_direction(x, y)


def logistic_direction(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """Unit weight vector of an L2-regularised logistic regression (scipy L-BFGS).

    Features are centred and divided by one overall scale, so `l2` means the same at every
    layer. Written here rather than adding scikit-learn for one small convex fit.
    """
    centre = x.mean(0)
    scale = float(np.sqrt(((x - centre) ** 2).sum(1).mean())) or 1.0
    z = (x - centre) / scale
    n, d = z.shape
    sign = 2.0 * y - 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        margin = sign * (z @ w + b)
        value = float(np.logaddexp(0.0, -margin).mean() + 0.5 * l2 * (w @ w) / n)
        weight = -sign * sigmoid(-margin) / n
        grad = np.concatenate([z.T @ weight + l2 * w / n, [weight.sum()]])
        return value, grad

    fit = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B")
    return unit_of(fit.x[:d])


AGGREGATORS: dict[str, Aggregator] = {"mean-diff": mean_diff, "pca": pca, "logistic": logistic}
"""Every aggregator extraction fits at each layer, by the name `--method` and the file use."""


def directions(pos: np.ndarray, neg: np.ndarray) -> dict[str, np.ndarray]:
    """Each registered aggregator's unit direction from the same training activations."""
    return {name: aggregate(pos, neg) for name, aggregate in AGGREGATORS.items()}
