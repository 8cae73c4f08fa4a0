"""Convergent validity: do different instruments of one taxonomy rank the values alike?

One instrument can be fooled by its format; when dilemmas, self-ratings and outcome
preferences order a model's values the same way, the measurement is more believable. For each
pair of runs: Spearman's rank correlation of their profiles over the values both score, with a
95% bootstrap CI from resampling those values (seeded).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import spearmanr

N_BOOTSTRAP = 2000


def rank_correlation(
    first: Mapping[str, float], second: Mapping[str, float], seed: int = 0
) -> dict[str, Any]:
    """Spearman's rho of two profiles with a bootstrap CI over the shared values."""
    values = sorted(set(first) & set(second))
    a = np.array([first[v] for v in values])
    b = np.array([second[v] for v in values])
    if len(values) < 3:
        return {"rho": None, "ci": [None, None], "n_values": len(values)}
    rho = float(spearmanr(a, b).statistic)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(N_BOOTSTRAP):
        pick = rng.integers(0, len(values), len(values))
        if np.ptp(a[pick]) == 0 or np.ptp(b[pick]) == 0:
            continue  # a resample with a constant profile has no rank correlation
        draws.append(float(spearmanr(a[pick], b[pick]).statistic))
    ci = (
        [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
        if draws
        else [
            None,
            None,
        ]
    )
    return {"rho": rho, "ci": ci, "n_values": len(values)}


def agreement(docs: Mapping[str, dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Pairwise rank correlations between runs (results.json documents) keyed by name."""
    taxonomies = {doc["taxonomy"] for doc in docs.values()}
    if len(taxonomies) > 1:
        from valuescope.errors import UsageError

        raise UsageError(
            f"instruments use different taxonomies ({', '.join(sorted(taxonomies))}); "
            "convergent validity compares instruments of one taxonomy"
        )
    profiles = {
        name: {v: float(s["score"]) for v, s in doc["profile"].items()}
        for name, doc in docs.items()
    }
    pairs = []
    for x, y in itertools.combinations(profiles, 2):
        pairs.append({"a": x, "b": y, **rank_correlation(profiles[x], profiles[y], seed)})
    return {"schema": "valuescope.agreement/1", "taxonomy": taxonomies.pop(), "pairs": pairs}
