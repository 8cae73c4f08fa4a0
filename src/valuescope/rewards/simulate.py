"""A simulated population of users with known value weights, for checking the fits against a
known truth. Everything here is a simulation and is named so wherever its output goes.

Users' weights over a taxonomy's values are drawn from a mixture of Dirichlet distributions
(each component favours a few values); a user's utility of a response is their weights times
the response's z-scored readings by a detector of the caller's choosing (it should not be the
detector the reward heads come from, or recovery is circular); choices follow Bradley-Terry:
P(a over b) = sigmoid(scale * (U(a) - U(b))).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Population:
    """Simulated users: true weights (users x values) and the component each came from."""

    values: tuple[str, ...]
    weights: np.ndarray
    component: np.ndarray
    favoured: tuple[tuple[str, ...], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"sim{u:03d}" for u in range(len(self.weights)))


def simulate_users(
    n: int,
    values: Sequence[str],
    favoured: Sequence[Sequence[str]],
    strong: float = 4.0,
    weak: float = 0.3,
    seed: int = 0,
) -> Population:
    """`n` users, each from a component (chosen uniformly) whose Dirichlet concentration is
    `strong` on its favoured values and `weak` on the others."""
    rng = np.random.default_rng(seed)
    names = tuple(values)
    alphas = np.full((len(favoured), len(names)), weak)
    for c, group in enumerate(favoured):
        for value in group:
            alphas[c, names.index(value)] = strong
    component = rng.integers(0, len(favoured), size=n)
    weights = np.stack([rng.dirichlet(alphas[c]) for c in component])
    return Population(names, weights, component, tuple(tuple(g) for g in favoured))


@dataclass(frozen=True)
class Choices:
    """Simulated comparisons: user, prompt, the two answers' indices, and which was chosen."""

    user: np.ndarray
    prompt: np.ndarray
    chosen: np.ndarray
    rejected: np.ndarray
    p_chosen: np.ndarray  # P(the chosen answer wins) under the truth: above 0.5, the oracle agrees


def simulate_choices(
    weights: np.ndarray,
    readings: np.ndarray,
    answers_of: Sequence[Sequence[int]],
    prompts: Sequence[int],
    per_user: int,
    scale: float,
    seed: int = 0,
) -> Choices:
    """`per_user` comparisons per user: a prompt from `prompts`, two of its answers at random,
    the choice drawn from Bradley-Terry on the user's utility. `readings` (answers x values)
    are the truth detector's signed scores, z-scored here over all answers."""
    rng = np.random.default_rng(seed)
    z = (readings - readings.mean(axis=0)) / np.maximum(readings.std(axis=0), 1e-9)
    users, ps, chosen, rejected, p_chosen = [], [], [], [], []
    for u in range(len(weights)):
        for _ in range(per_user):
            p = int(rng.choice(prompts))
            a, b = rng.choice(answers_of[p], size=2, replace=False)
            p_a = 1.0 / (1.0 + np.exp(-scale * float((z[a] - z[b]) @ weights[u])))
            first = rng.random() < p_a
            users.append(u)
            ps.append(p)
            chosen.append(a if first else b)
            rejected.append(b if first else a)
            p_chosen.append(p_a if first else 1.0 - p_a)
    return Choices(
        np.array(users), np.array(ps), np.array(chosen), np.array(rejected), np.array(p_chosen)
    )
