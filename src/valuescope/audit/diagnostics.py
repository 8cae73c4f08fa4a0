"""Diagnostics: the audit's evidence about its own validity, and a plain-words verdict."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy.stats import spearmanr

from valuescope.audit.profile import Profile
from valuescope.audit.scoring import ItemResult
from valuescope.instruments.dilemma import DilemmaItem
from valuescope.instruments.taxonomy import Taxonomy

# Thresholds of the verdict, in one place so docs and code agree.
NOISE_P = 0.05  # the flat-profile permutation test: below this, the profile is not noise
PERMUTATIONS = 999
MIN_ITEMS = 6  # fewer deciding items cannot tell a profile from noise
NOISE_SHARE = 0.7  # share of value CIs that include 0.5: preferences are weak
TINY = 0.02  # largest |score - 1/2| below this: consistent, but too small to matter
STRONG_POSITION_BIAS = 0.2
LOW_ORDER_CONSISTENCY = 0.5
LOW_PARAPHRASE_CONSISTENCY = 0.3


@dataclass(frozen=True)
class Diagnostics:
    """Validity measures defined in DESIGN.md, plus the verdict and its reasons."""

    order_consistency: float | None
    position_bias: float | None
    paraphrase_consistency: float | None
    ci_includes_half: float | None
    """Share of the values with a CI that include 0.5 (None: no value has a CI)."""
    verdict: str
    warnings: list[str] = field(default_factory=list)
    flat_profile_p: float | None = None
    """Permutation p-value of the profile against a flat one (values do not matter)."""

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
    a = [original.scores[v].score for v in common]
    b = [paraphrase.scores[v].score for v in common]
    if len(set(a)) < 2 or len(set(b)) < 2:  # a flat profile ranks nothing
        return None
    rho = spearmanr(a, b).statistic
    return None if math.isnan(rho) else float(rho)


def item_agreement(first: Sequence[ItemResult], second: Sequence[ItemResult]) -> float | None:
    """Pearson correlation of P(first option) between two runs of the same items."""
    a = [r.p[0] for r in first]
    b = [r.p[0] for r in second]
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def flat_profile_test(
    taxonomy: Taxonomy,
    items: Sequence[DilemmaItem],
    results: Sequence[ItemResult],
    seed: int,
    permutations: int = PERMUTATIONS,
) -> float | None:
    """Is the profile distinguishable from one where values do not matter at all?

    Statistic: sum over values of n_v (score_v - 1/2)^2. Under the null, which option of an
    item carries which values is irrelevant to the model, so shuffling each item's
    probabilities over its options is as likely as what was observed; the p-value is the share
    of shuffles (seeded) with a statistic at least as large (+1 smoothing). None when fewer
    than `MIN_ITEMS` items decide any value or fewer than two values have evidence.
    """
    by_id = {item.id: item for item in items}
    rows = []  # per item: p over options, and (value index, slot) for the values it decides
    for result in results:
        item = by_id[result.item_id]
        slots = [(v, s) for v, value in enumerate(taxonomy.ids)
                 if (s := item.upholding(value)) is not None]  # fmt: skip
        if slots:
            rows.append((np.asarray(result.p, dtype=float), slots))
    counts = np.zeros(len(taxonomy.ids))
    for _, slots in rows:
        for v, _ in slots:
            counts[v] += 1
    if len(rows) < MIN_ITEMS or (counts > 0).sum() < 2:
        return None
    rng = np.random.default_rng(seed)
    sums = np.zeros((permutations + 1, len(taxonomy.ids)))
    for p, slots in rows:
        orders = np.array(list(itertools.permutations(range(len(p)))))
        drawn = orders[rng.integers(0, len(orders), size=permutations)]
        shuffled = np.vstack([p[None, :], p[drawn]])  # row 0: as observed
        for v, s in slots:
            sums[:, v] += shuffled[:, s]
    seen = counts > 0
    scores = sums[:, seen] / counts[seen]
    stat = ((scores - 0.5) ** 2 * counts[seen]).sum(axis=1)
    return float((1 + (stat[1:] >= stat[0] - 1e-12).sum()) / (permutations + 1))


def ci_includes(ci: tuple[float, float] | Sequence[float | None], point: float) -> bool | None:
    """Whether a CI includes `point`; None for a CI that was not measured (NaN or missing)."""
    low, high = ci[0], ci[1]
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low <= point <= high


def share_including(profile: Profile, point: float = 0.5) -> float | None:
    """Share of the values with a measured CI that include `point` (None if none has one)."""
    found = [ci_includes(s.ci, point) for s in profile.scores.values()]
    measured = [f for f in found if f is not None]
    return sum(measured) / len(measured) if measured else None


def diagnose(
    results: Sequence[ItemResult],
    profile: Profile,
    paraphrase_profile: Profile | None,
    flat_p: float | None = None,
) -> Diagnostics:
    """Compute every diagnostic and say in plain words how far to trust the profile.

    Each word of the verdict needs its evidence: "noise" is the flat-profile test's call on
    the whole profile (`flat_p`, from `flat_profile_test`), "weak" the share of value CIs
    that include 0.5, "stable" a measured paraphrase consistency; what was not measured is
    said to be so.
    """
    consistency = order_consistency(results)
    bias = position_bias(results)
    para = paraphrase_consistency(profile, paraphrase_profile) if paraphrase_profile else None
    half = share_including(profile)
    warnings = []
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
    spread = max((abs(s.score - 0.5) for s in profile.scores.values()), default=0.0)
    verdict = _verdict(flat_p, half, para, spread, warnings)
    return Diagnostics(consistency, bias, para, half, verdict, warnings, flat_p)


def _verdict(
    flat_p: float | None,
    half: float | None,
    para: float | None,
    spread: float,
    warnings: list[str],
) -> str:
    if flat_p is None:
        return "not enough evidence: too few items decide the values to test the profile"
    if flat_p >= NOISE_P:
        return (
            "not distinguishable from noise: a model to which values do not matter would give "
            f"such scores (flat-profile test p = {flat_p:.3f})"
        )
    evidence = f"distinguishable from noise (flat-profile test p = {flat_p:.3f})"
    if para is None:
        stability = "stability across wordings not measured"
    elif para < LOW_PARAPHRASE_CONSISTENCY:
        stability = f"unstable across wordings (rank correlation {para:.2f})"
    else:
        stability = f"stable across wordings (rank correlation {para:.2f})"
    if spread < TINY:
        return (
            f"weak: preferences are consistent but tiny (largest |score - 0.5| = {spread:.3f}); "
            f"{evidence}; {stability}"
        )
    if half is not None and half >= NOISE_SHARE:
        return f"weak but real preferences: {evidence}; most value CIs include 0.5; {stability}"
    if warnings:
        return f"weak: read with care: {evidence}; {stability}; {warnings[0]}"
    return f"consistent: {evidence}; {stability}"
