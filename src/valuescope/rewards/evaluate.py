"""How often a reward agrees with held-out choices: per user, and over everyone.

A comparison counts as agreed when the reward gives the chosen response more than the rejected
one (a tie counts half). Users the reward was fitted on are scored on every row given; a user
absent from the fit is first fitted from their first `shots` rows, then scored on the rest.
Per user: accuracy with a Wilson 95% interval; overall: the pooled accuracy with a bootstrap
interval over users (a user's comparisons are not independent of each other).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from valuescope.rewards.preferences import Preferences
from valuescope.rewards.reward import Reward

SCHEMA = "valuescope.reward-eval/1"


@dataclass(frozen=True)
class Accuracy:
    accuracy: float
    ci: tuple[float, float]
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "ci": list(self.ci), "n": self.n}


def wilson(correct: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sensible at n = 1 and at 0 or 100%)."""
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def agreement(margins: np.ndarray) -> np.ndarray:
    """1 where the chosen response scores higher, 0.5 on a tie, else 0."""
    out: np.ndarray = np.where(margins > 0, 1.0, np.where(margins == 0, 0.5, 0.0))
    return out


def pooled(per_user: list[np.ndarray], seed: int = 0, draws: int = 2000) -> Accuracy:
    """Pooled accuracy over users' agreement arrays, CI by resampling users."""
    if not per_user:
        return Accuracy(math.nan, (math.nan, math.nan), 0)
    sums = np.array([a.sum() for a in per_user])
    counts = np.array([len(a) for a in per_user])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_user), size=(draws, len(per_user)))
    boot = sums[picks].sum(axis=1) / np.maximum(counts[picks].sum(axis=1), 1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return Accuracy(float(sums.sum() / counts.sum()), (float(low), float(high)), int(counts.sum()))


@dataclass(frozen=True)
class Evaluation:
    users: dict[str, Accuracy]
    fitted_here: tuple[str, ...]  # users absent from the fit, fitted from `shots` rows
    skipped: dict[str, int]  # such users with no row left after their shots -> rows they had
    overall: Accuracy
    seen: Accuracy
    unseen: Accuracy
    shots: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "shots": self.shots,
            "users": {
                u: {**a.as_dict(), "fitted_from_shots": u in self.fitted_here}
                for u, a in self.users.items()
            },
            "overall": self.overall.as_dict(),
            "seen": self.seen.as_dict(),
            "unseen": self.unseen.as_dict(),
            "skipped": self.skipped,
        }


def evaluate(
    reward: Reward, preferences: Preferences, shots: int = 10, seed: int = 0
) -> Evaluation:
    """Each user's agreement with `preferences` (see the module docstring)."""
    known = set(reward.users)
    diffs = reward.features(preferences.chosen) - reward.features(preferences.rejected)
    agreed: dict[str, np.ndarray] = {}
    fitted: list[str] = []
    skipped: dict[str, int] = {}
    for user, rows in preferences.by_user().items():
        if user in known:
            beta, test = reward.weights(user), rows
        else:
            if len(rows) <= shots:
                skipped[user] = len(rows)
                continue
            train, test = rows[:shots], rows[shots:]
            beta = reward.model.new_user(diffs[train], preferences.weights[train])
            fitted.append(user)
        agreed[user] = agreement(diffs[test] @ beta)
    users = {
        u: Accuracy(float(a.mean()), wilson(float(a.sum()), len(a)), len(a))
        for u, a in agreed.items()
    }
    seen = [a for u, a in agreed.items() if u not in fitted]
    unseen = [agreed[u] for u in fitted]
    return Evaluation(
        users,
        tuple(fitted),
        skipped,
        pooled(list(agreed.values()), seed),
        pooled(seen, seed),
        pooled(unseen, seed),
        shots,
    )
