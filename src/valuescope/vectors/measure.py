"""Measuring a direction: from a unit direction to a calibrated vector in class-gap units.

Every way valuescope gets a direction (an aggregator at each layer, a trained direction, a
direction imported from another tool) ends here, so all of them are oriented, scaled and
calibrated for reading by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from valuescope.vectors.aggregators import sigmoid


def fit_calibration(scores: np.ndarray, y: np.ndarray, prior: float = 0.1) -> tuple[float, float]:
    """Platt scaling: P(y=1) = sigmoid(a * score + b), with a weak Gaussian prior on (a, b)."""

    def loss(theta: np.ndarray) -> float:
        margin = (2.0 * y - 1.0) * (theta[0] * scores + theta[1])
        return float(np.logaddexp(0.0, -margin).sum() + prior * (theta @ theta))

    fit = minimize(loss, np.array([1.0, 0.0]), method="L-BFGS-B")
    return float(fit.x[0]), float(fit.x[1])


def separation_of(pos: np.ndarray, neg: np.ndarray) -> float:
    """(mean of pos - mean of neg) / pooled standard deviation of the two groups."""
    pooled = float(np.sqrt(0.5 * (pos.var(ddof=1) + neg.var(ddof=1)))) if len(pos) > 1 else 0.0
    return float((pos.mean() - neg.mean()) / pooled) if pooled > 0 else 0.0


def held_out_accuracy(
    unit: np.ndarray, pos: np.ndarray, neg: np.ndarray, test_pos: np.ndarray, test_neg: np.ndarray
) -> tuple[float, float]:
    """Accuracy on held-out answers, each classified alone against the training midpoint."""
    midpoint = 0.5 * (float((pos @ unit).mean()) + float((neg @ unit).mean()))
    right = np.concatenate([test_pos @ unit > midpoint, test_neg @ unit <= midpoint])
    return float(right.mean()), midpoint


def oriented(unit: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """`unit`, or its negative if upholding answers (`pos`) project lower on it on average than
    opposing ones (`neg`): the orientation rule of `measure_direction`."""
    if float((pos @ unit).mean() - (neg @ unit).mean()) < 0:
        return -unit
    return unit


@dataclass(frozen=True)
class Measurement:
    """A direction measured on contrastive activations, oriented toward upholding."""

    unit: np.ndarray
    """The unit direction, oriented: upholding answers project higher on it."""
    gap: float
    """Mean projection of the training upholding answers minus the opposing ones' (>= 0)."""
    midpoint: float
    """Projection halfway between the two stances' training means."""
    calibration: tuple[float, float]
    """P(upholds) = sigmoid(a * (projection - midpoint) + b), fitted on the held-out answers."""
    accuracy: float
    """Held-out accuracy, each answer classified alone against `midpoint`."""
    separation: float
    """Held-out gap between the stances' mean projections over their pooled deviation."""
    flipped: bool
    """Whether the direction was given pointing toward the opposing answers."""

    @property
    def vector(self) -> np.ndarray:
        """The direction in class-gap units: coefficient 1 moves an activation by `gap`."""
        return self.unit * self.gap


def measure_direction(
    unit: np.ndarray,
    pos: np.ndarray,
    neg: np.ndarray,
    test_pos: np.ndarray | None = None,
    test_neg: np.ndarray | None = None,
) -> Measurement:
    """Orient, scale and calibrate one unit direction on a value's activations at one layer.

    The orientation rule, the same for every path: the direction is turned so that the
    training upholding answers (`pos`) project higher on average than the opposing ones
    (`neg`), and flipped when they project lower. The gap, the midpoint and the reading
    calibration are then fitted on that oriented direction, so a positive coefficient steers
    toward upholding and a higher reading means more likely upholding, whichever sign the
    direction came with. Accuracy, separation and calibration use the held-out answers
    (`test_pos`, `test_neg`; default the training ones, for a direction made elsewhere).

    Args:
        unit: the direction, of length 1 (normalise it first: it is used as given).
        pos, neg: activations (n, d) of the upholding and opposing training answers.

    >>> m = measure_direction(-np.eye(2)[0], np.array([[2.0, 0], [3, 1]]), np.zeros((2, 2)))
    >>> m.unit.tolist(), m.gap, m.flipped
    ([1.0, 0.0], 2.5, True)
    """
    test_pos = pos if test_pos is None else test_pos
    test_neg = neg if test_neg is None else test_neg
    given = np.asarray(unit, dtype=np.float64)
    unit = oriented(given, pos, neg)
    accuracy, midpoint = held_out_accuracy(unit, pos, neg, test_pos, test_neg)
    gap = float((pos @ unit).mean() - (neg @ unit).mean())
    scale = max(gap, 1e-12)
    scores = np.concatenate([test_pos @ unit, test_neg @ unit]) - midpoint
    y = np.concatenate([np.ones(len(test_pos)), np.zeros(len(test_neg))])
    # Fitted on the projection in class gaps (a well-scaled problem), stored per raw unit.
    a, b = fit_calibration(scores / scale, y)
    return Measurement(
        unit=unit,
        gap=gap,
        midpoint=midpoint,
        calibration=(a / scale, b),
        accuracy=accuracy,
        separation=separation_of(test_pos @ unit, test_neg @ unit),
        flipped=unit is not given,
    )


def read_probability(
    projection: np.ndarray, midpoint: float, calibration: tuple[float, float]
) -> np.ndarray:
    """P(upholds) of projections on a measured direction (`Measurement.calibration`)."""
    a, b = calibration
    return sigmoid(a * (projection - midpoint) + b)
