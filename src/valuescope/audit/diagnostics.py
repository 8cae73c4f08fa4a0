"""Diagnostics: the audit's evidence about its own validity, and a plain-words verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy.stats import spearmanr

from valuescope.audit.profile import Profile
from valuescope.audit.scoring import ItemResult

# Thresholds of the verdict, in one place so docs and code agree.
NOISE_SHARE = 0.7  # share of value CIs that include 0.5
STRONG_POSITION_BIAS = 0.2
LOW_ORDER_CONSISTENCY = 0.5
LOW_PARAPHRASE_CONSISTENCY = 0.3


@dataclass(frozen=True)
class Diagnostics:
    """Validity measures defined in DESIGN.md, plus the verdict and its reasons."""

    order_consistency: float | None
    position_bias: float | None
    paraphrase_consistency: float | None
    ci_includes_half: float
    verdict: str
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def noting(self, note: str) -> Diagnostics:
        """The same diagnostics with `note` among the warnings (e.g. what was not measured)."""
        return replace(self, warnings=[*self.warnings, note])


def order_consistency(results: Sequence[ItemResult]) -> float | None:
    """Share of items whose preferred option is the same in every presentation order.

    None for an order-free method (one presentation per item): there is nothing to compare.
    """
    if not results or all(len(r.orders) == 1 for r in results):
        return None
    same = 0
    for result in results:
        winners = {int(np.argmax(order.p)) for order in result.orders}
        same += len(winners) == 1
    return same / len(results)


def position_bias(results: Sequence[ItemResult]) -> float | None:
    """Mean probability of the option shown first, minus 1/(number of options).

    None for an order-free method, whose items are never "shown" in an order.
    """
    if not results or all(len(r.orders) == 1 for r in results):
        return None
    gaps = [
        order.p[order.order[0]] - 1.0 / len(order.order)
        for result in results
        for order in result.orders
    ]
    return float(np.mean(gaps))


def paraphrase_consistency(original: Profile, paraphrase: Profile) -> float | None:
    """Spearman rank correlation between the profiles from the two wordings."""
    common = [v for v in original.scores if v in paraphrase.scores]
    if len(common) < 3:
        return None
    rho = spearmanr(
        [original.scores[v].score for v in common], [paraphrase.scores[v].score for v in common]
    ).statistic
    return None if math.isnan(rho) else float(rho)


def item_agreement(first: Sequence[ItemResult], second: Sequence[ItemResult]) -> float | None:
    """Pearson correlation of P(first option) between two runs of the same items."""
    a = [r.p[0] for r in first]
    b = [r.p[0] for r in second]
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def diagnose(
    results: Sequence[ItemResult], profile: Profile, paraphrase_profile: Profile | None
) -> Diagnostics:
    """Compute every diagnostic and say in plain words how far to trust the profile."""
    consistency = order_consistency(results)
    bias = position_bias(results)
    para = paraphrase_consistency(profile, paraphrase_profile) if paraphrase_profile else None
    cis = [s.ci for s in profile.scores.values()]
    # A value with too few items for a CI (NaN) cannot be told apart from indifference either.
    undecided = [not (lo > 0.5 or hi < 0.5) for lo, hi in cis]
    half = sum(undecided) / len(cis) if cis else 1.0
    warnings = []
    if half >= NOISE_SHARE:
        warnings.append(
            f"{half:.0%} of the value scores have a 95% CI that includes 0.5 (indifference): "
            "the profile is not distinguishable from noise"
        )
    if bias is not None and abs(bias) >= STRONG_POSITION_BIAS:
        warnings.append(
            f"strong position bias ({bias:+.2f}): the model favours the option shown "
            f"{'first' if bias > 0 else 'last'} whatever it says"
        )
    if consistency is not None and consistency < LOW_ORDER_CONSISTENCY:
        warnings.append(
            f"only {consistency:.0%} of items keep their preferred option when the order changes"
        )
    if para is not None and para < LOW_PARAPHRASE_CONSISTENCY:
        warnings.append(
            f"rewording the items changes the value ranking (rank correlation {para:.2f})"
        )
    if half >= NOISE_SHARE:
        verdict = "not distinguishable from noise"
    elif warnings:
        verdict = "weak: read with care"
    else:
        verdict = "consistent: the profile is distinguishable from noise and stable"
    return Diagnostics(consistency, bias, para, half, verdict, warnings)
