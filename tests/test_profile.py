"""Profile maths: scores, bootstrap CIs, Bradley-Terry and diagnostics on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from valuescope.audit.diagnostics import (
    diagnose,
    flat_profile_test,
    order_consistency,
    paraphrase_consistency,
    position_bias,
    share_including,
)
from valuescope.audit.profile import (
    Profile,
    ValueScore,
    bootstrap_ci,
    bradley_terry,
    build_profile,
)
from valuescope.audit.scoring import ItemResult, OrderResult
from valuescope.instruments.dilemma import DilemmaItem, Option
from valuescope.instruments.taxonomy import Taxonomy, Value

TAX = Taxonomy("t", "T", tuple(Value(v, v.title(), f"{v}.") for v in ("a", "b", "c")))


def item(item_id: str, first: str, second: str) -> DilemmaItem:
    return DilemmaItem(item_id, "S.", (Option("x", (first,)), Option("y", (second,))))


def result(item_id: str, p_first_option: float, bias: float = 0.0) -> ItemResult:
    """Two orders; `bias` moves probability toward whichever option is shown first."""
    shown_first = OrderResult((0, 1), (p_first_option + bias, 1 - p_first_option - bias))
    shown_second = OrderResult((1, 0), (p_first_option - bias, 1 - p_first_option + bias))
    return ItemResult(item_id, "original", (shown_first, shown_second))


def test_score_is_mean_probability_of_the_upholding_option() -> None:
    items = [item("1", "a", "b"), item("2", "b", "a"), item("3", "a", "c")]
    results = [result("1", 0.8), result("2", 0.3), result("3", 0.6)]
    profile = build_profile(TAX, items, results, seed=0)
    assert profile.scores["a"].score == pytest.approx((0.8 + 0.7 + 0.6) / 3)
    assert profile.scores["a"].n == 3
    assert profile.scores["b"].score == pytest.approx((0.2 + 0.3) / 2)
    assert profile.scores["c"].score == pytest.approx(0.4) and profile.scores["c"].n == 1


def test_bootstrap_ci_is_seeded_and_covers_the_mean() -> None:
    data = list(np.random.default_rng(1).uniform(0.3, 0.9, size=40))
    low, high = bootstrap_ci(data, seed=5)
    assert (low, high) == bootstrap_ci(data, seed=5)
    assert (low, high) != bootstrap_ci(data, seed=6)
    assert low < float(np.mean(data)) < high
    assert high - low < 0.15
    assert all(np.isnan(bootstrap_ci([0.5], seed=0)))


def test_bradley_terry_recovers_a_known_order() -> None:
    strength = {"a": 1.0, "b": 0.0, "c": -1.0}
    items, results = [], []
    for n, (x, y) in enumerate([("a", "b"), ("b", "c"), ("a", "c")] * 6):
        first, second = (x, y) if n % 2 else (y, x)
        p = 1 / (1 + np.exp(-(strength[first] - strength[second])))
        items.append(item(str(n), first, second))
        results.append(result(str(n), float(p)))
    ranking = bradley_terry(TAX, items, results, seed=0, n_boot=50)
    assert ranking is not None
    assert ranking.order == ["a", "b", "c"]
    assert ranking.strength["a"] - ranking.strength["c"] == pytest.approx(2.0, abs=0.1)
    low, high = ranking.ci["a"]
    assert low <= ranking.strength["a"] <= high


def test_order_diagnostics_on_a_position_biased_model() -> None:
    results = [result(str(n), 0.55, bias=0.3) for n in range(10)]
    assert position_bias(results) == pytest.approx(0.3)
    assert order_consistency(results) == 0.0
    consistent = [result(str(n), 0.9, bias=0.05) for n in range(10)]
    assert order_consistency(consistent) == 1.0


def test_order_free_results_have_no_order_diagnostics() -> None:
    single = [ItemResult("1", "original", (OrderResult((0, 1), (0.7, 0.3)),))]
    assert order_consistency(single) is None and position_bias(single) is None


def contests(strength: dict[str, float]) -> tuple[list[DilemmaItem], list[ItemResult]]:
    """Items over every pair, both positions, won by the stronger value with logistic odds."""
    items, results = [], []
    for n, (x, y) in enumerate([("a", "b"), ("b", "c"), ("a", "c")] * 10):
        first, second = (x, y) if n % 2 else (y, x)
        p = 1 / (1 + np.exp(-3 * (strength[first] - strength[second])))
        items.append(item(str(n), first, second))
        results.append(result(str(n), float(p)))
    return items, results


def test_verdict_calls_noise_noise() -> None:
    items, _ = contests({"a": 0, "b": 0, "c": 0})
    rng = np.random.default_rng(0)
    noisy = [result(str(n), float(rng.uniform(0.3, 0.7))) for n in range(30)]
    flat_p = flat_profile_test(TAX, items, noisy, seed=0)
    assert flat_p is not None and flat_p >= 0.05
    d = diagnose(noisy, build_profile(TAX, items, noisy, seed=0), None, flat_p)
    assert d.verdict.startswith("not distinguishable from noise")
    assert d.ci_includes_half is not None and d.ci_includes_half >= 0.7
    items, clear = contests({"a": 1, "b": 0, "c": -1})
    profile = build_profile(TAX, items, clear, seed=0)
    flat_p = flat_profile_test(TAX, items, clear, seed=0)
    assert flat_p is not None and flat_p < 0.01
    d = diagnose(clear, profile, build_profile(TAX, items, clear, seed=1), flat_p)
    assert d.ci_includes_half == pytest.approx(1 / 3)  # b sits at 0.5
    assert d.verdict.startswith("consistent"), d.warnings
    assert "stable across wordings" in d.verdict


def test_a_verdict_claims_nothing_it_has_no_evidence_for() -> None:
    """Two items: no diagnostic is measurable, and the verdict says so instead of 'stable'."""
    items, clear = contests({"a": 1, "b": 0, "c": -1})
    few_items, few = items[:2], clear[:2]
    assert flat_profile_test(TAX, few_items, few, seed=0) is None
    d = diagnose(few, build_profile(TAX, few_items, few, seed=0), None, None)
    assert d.verdict.startswith("not enough evidence")
    # a CI that was not measured counts neither way
    profile = Profile({"a": ValueScore(0.9, (float("nan"), float("nan")), 1),
                       "b": ValueScore(0.5, (0.4, 0.6), 9)})  # fmt: skip
    assert share_including(profile) == 1.0
    assert share_including(Profile({"a": ValueScore(0.9, (float("nan"),) * 2, 1)})) is None


def test_weak_but_real_preferences_are_not_called_noise() -> None:
    """Small shifts on many items: most CIs include 0.5, yet the whole profile is not flat."""
    items, results = [], []
    rng = np.random.default_rng(1)
    for n, (x, y) in enumerate([("a", "b"), ("b", "c"), ("a", "c")] * 60):
        first, second = (x, y) if n % 2 else (y, x)
        lean = {"a": 0.03, "b": 0.0, "c": -0.03}
        p = 0.5 + lean[first] - lean[second] + rng.normal(scale=0.15)
        items.append(item(str(n), first, second))
        results.append(result(str(n), float(np.clip(p, 0.01, 0.99))))
    profile = build_profile(TAX, items, results, seed=0)
    flat_p = flat_profile_test(TAX, items, results, seed=0)
    assert flat_p is not None and flat_p < 0.05
    d = diagnose(results, profile, profile, flat_p)
    assert not d.verdict.startswith("not distinguishable"), d.verdict


def test_paraphrase_consistency_is_rank_correlation() -> None:
    items, up = contests({"a": 1, "b": 0, "c": -1})
    _, down = contests({"a": -1, "b": 0, "c": 1})
    a = build_profile(TAX, items, up, seed=0)
    b = build_profile(TAX, items, down, seed=0)
    assert paraphrase_consistency(a, a) == pytest.approx(1.0)
    assert paraphrase_consistency(a, b) == pytest.approx(-1.0)


def test_a_value_no_item_decides_is_not_ranked() -> None:
    four = Taxonomy("t4", "T4", (*TAX.values, Value("d", "D", "never at stake")))
    items, results = contests({"a": 1, "b": 0, "c": -1})
    ranking = bradley_terry(four, items, results, seed=0, n_boot=20)
    assert ranking is not None and set(ranking.strength) == {"a", "b", "c"}
    assert ranking.order == ["a", "b", "c"] and "d" not in ranking.as_dict()["ci"]
