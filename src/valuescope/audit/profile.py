"""Profiles: per-value scores with seeded bootstrap CIs, and a Bradley-Terry ranking."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from valuescope.audit.scoring import ItemResult
from valuescope.instruments.dilemma import DilemmaItem
from valuescope.instruments.taxonomy import Taxonomy

N_BOOTSTRAP = 1000


@dataclass(frozen=True)
class ValueScore:
    """score(v): mean probability of choosing the option that upholds v; 0.5 is indifferent."""

    score: float
    ci: tuple[float, float]
    n: int


@dataclass(frozen=True)
class Profile:
    """Per-value scores of one run (values with no deciding item are absent)."""

    scores: Mapping[str, ValueScore]

    def as_dict(self) -> dict[str, dict[str, object]]:
        return {
            v: {"score": s.score, "ci": [s.ci[0], s.ci[1]], "n": s.n}
            for v, s in self.scores.items()
        }


def value_evidence(
    taxonomy: Taxonomy,
    items: Sequence[DilemmaItem],
    results: Sequence[ItemResult],
    read: Callable[[tuple[float, ...], int], float] = lambda p, slot: p[slot],
) -> dict[str, list[float]]:
    """For each value, over the items that decide it, `read(P over the options, slot of the
    one option upholding it)`: by default P(choose that option)."""
    by_id = {item.id: item for item in items}
    evidence: dict[str, list[float]] = {v: [] for v in taxonomy.ids}
    for result in results:
        item = by_id[result.item_id]
        p = result.p
        for value in taxonomy.ids:
            slot = item.upholding(value)
            if slot is not None:
                evidence[value].append(read(p, slot))
    return evidence


def bootstrap_ci(
    samples: Sequence[float], seed: int, n_boot: int = N_BOOTSTRAP
) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean, reproducible from `seed`."""
    data = np.asarray(samples, dtype=float)
    if len(data) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(n_boot, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def build_profile(
    taxonomy: Taxonomy, items: Sequence[DilemmaItem], results: Sequence[ItemResult], seed: int
) -> Profile:
    """The profile of DESIGN.md: score, 95% bootstrap CI over items, and n, per value."""
    evidence = value_evidence(taxonomy, items, results)
    scores = {}
    for index, value in enumerate(taxonomy.ids):
        data = evidence[value]
        if data:
            scores[value] = ValueScore(
                float(np.mean(data)), bootstrap_ci(data, seed * 7919 + index), len(data)
            )
    return Profile(scores)


@dataclass(frozen=True)
class Ranking:
    """Bradley-Terry strengths (log-odds scale, mean zero) with bootstrap CIs, strongest first."""

    strength: Mapping[str, float]
    ci: Mapping[str, tuple[float, float]]

    @property
    def order(self) -> list[str]:
        return sorted(self.strength, key=lambda v: -self.strength[v])

    def as_dict(self) -> dict[str, object]:
        return {
            "order": self.order,
            "strength": dict(self.strength),
            "ci": {v: [lo, hi] for v, (lo, hi) in self.ci.items()},
        }


def _contests(
    taxonomy: Taxonomy, items: Sequence[DilemmaItem], results: Sequence[ItemResult]
) -> list[tuple[int, int, float]]:
    """(winner-candidate a, opponent b, P(a's option chosen)) for two-value contests."""
    by_id = {item.id: item for item in items}
    index = {v: i for i, v in enumerate(taxonomy.ids)}
    contests = []
    for result in results:
        item = by_id[result.item_id]
        if len(item.options) != 2:
            continue
        first, second = item.options
        if len(first.values) == 1 and len(second.values) == 1:
            a, b = first.values[0], second.values[0]
            if a != b:
                contests.append((index[a], index[b], result.p[0]))
    return contests


def _fit_bt(contests: Sequence[tuple[int, int, float]], n_values: int) -> np.ndarray:
    """Maximum likelihood Bradley-Terry with soft outcomes and a weak ridge for identifiability."""
    a = np.array([c[0] for c in contests])
    b = np.array([c[1] for c in contests])
    p = np.array([c[2] for c in contests])

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        diff = beta[a] - beta[b]
        log_win = -np.logaddexp(0.0, -diff)
        log_lose = -np.logaddexp(0.0, diff)
        value = -(p * log_win + (1 - p) * log_lose).sum() + 0.01 * (beta**2).sum()
        resid = p - 1.0 / (1.0 + np.exp(-diff))
        grad = -np.bincount(a, resid, n_values) + np.bincount(b, resid, n_values) + 0.02 * beta
        return float(value), grad

    fit = minimize(loss, np.zeros(n_values), jac=True, method="L-BFGS-B")
    beta: np.ndarray = fit.x - fit.x.mean()
    return beta


def bradley_terry(
    taxonomy: Taxonomy,
    items: Sequence[DilemmaItem],
    results: Sequence[ItemResult],
    seed: int,
    n_boot: int = 200,
) -> Ranking | None:
    """Rank values by Bradley-Terry strength over all value-pair contests; None if too few.

    Only values that take part in a contest are ranked: a value no item pits against another
    has no strength to estimate (it is absent, not ranked last or in the middle).
    """
    contests = _contests(taxonomy, items, results)
    if len(contests) < len(taxonomy.ids):
        return None
    present = sorted({c[0] for c in contests} | {c[1] for c in contests})
    if len(present) < 2:
        return None
    slot = {v: k for k, v in enumerate(present)}
    contests = [(slot[a], slot[b], p) for a, b, p in contests]
    n_values = len(present)
    beta = _fit_bt(contests, n_values)
    rng = np.random.default_rng(seed)
    draws = np.array(
        [
            _fit_bt([contests[i] for i in rng.integers(0, len(contests), len(contests))], n_values)
            for _ in range(n_boot)
        ]
    )
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    ids = [taxonomy.ids[i] for i in present]
    return Ranking(
        {v: float(beta[k]) for k, v in enumerate(ids)},
        {v: (float(low[k]), float(high[k])) for k, v in enumerate(ids)},
    )
