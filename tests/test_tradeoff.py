"""What a missed steering target would take: the trade-off law and the reasons given."""

from __future__ import annotations

from typing import Any

import pytest

from valuescope.audit.shifts import cost_text, outcome, reach_verdict, reached
from valuescope.steering.tradeoff import (
    MAX_BUDGET,
    Miss,
    budget_hint,
    law_cost,
    measured_law_budget,
    reach_note,
)


def test_the_law_scales_the_cost_with_the_square_of_the_shift() -> None:
    assert law_cost(0.08, 0.05, 0.25) == pytest.approx(2.0)  # 0.08 x (0.25 / 0.05)^2
    assert law_cost(0.1, -0.12, -0.24) == pytest.approx(0.4)  # signs agree: fine
    assert law_cost(0.1, -0.12, 0.24) is None  # moved the other way: no scaling gets there
    assert law_cost(0.1, 0.0, 0.24) is None
    assert law_cost(0.0, 0.1, 0.2) is None  # no measurable cost to scale from
    assert law_cost(-0.01, 0.1, 0.2) is None  # perplexity fell a little
    assert cost_text(2.0) == "+200% perplexity"
    assert cost_text(49.0) == "50 times the plain perplexity"
    assert budget_hint(2.678) == "--fluency-budget 2.68"
    assert budget_hint(0.0042) == "--fluency-budget 0.0042"  # never rounded to 0, which is refused
    assert budget_hint(9.996) == "beyond what --fluency-budget allows (below 10)"  # "10" is refused
    assert budget_hint(MAX_BUDGET * 5) == "beyond what --fluency-budget allows (below 10)"


def _miss(alone: float, cost: float, target: float = 0.25, expected: float = 0.05) -> Miss:
    return Miss(target, expected, alone, cost, law_cost(cost, alone, target))


def test_a_missed_target_says_why_and_what_it_would_take() -> None:
    def says(miss: Miss) -> str:
        text = miss.message("power", 0.1)
        head = "power: the target +0.25 is out of reach within the 10% fluency budget"
        assert text.startswith(f"{head} (expected +0.05 on the calibration pairs); ")
        return text.split("; ", 1)[1]

    assert says(_miss(0.05, 0.08)) == (  # the law from the calibrated setting
        "alone it gets only +0.05; by the trade-off law (shift linear in the coefficient, cost "
        "quadratic), the whole target alone would need about +200% perplexity (--fluency-budget "
        "2); the sweeps measured so far cost more than the law past the budget"
    )
    assert "about 51 times the plain perplexity (beyond what --fluency-budget allows" in says(
        _miss(0.01, 0.08)  # 0.08 x 625 = 50
    )
    held = "so the other targets' vectors or their joint fluency cost hold it back"
    assert says(_miss(0.25, 0.09)) == f"alone, its vector gets there (+0.25), {held}"
    assert says(_miss(0.6, 0.09)) == f"alone, its vector gets there (+0.60), {held}"
    assert says(_miss(0.13, 0.072)) == (  # over half of it, not all: what all would take
        f"alone, its vector gets +0.13, over half of it, {held}; by the trade-off law (shift "
        "linear in the coefficient, cost quadratic), the whole target alone would need about "
        "+27% perplexity (--fluency-budget 0.266); the sweeps measured so far cost more than the "
        "law past the budget"
    )
    assert "try vectors made with another --method" in says(_miss(-0.02, 0.09))
    assert "try vectors made with another --method" in says(_miss(0.0, 0.09))
    assert says(_miss(0.1, 0.0)) == (
        "alone it gets only +0.10, at no measurable fluency cost, so the law gives no estimate"
    )
    # the law puts 0.25 inside the budget (0.01 x 6.25), yet calibration got only 0.1 in it
    assert says(_miss(0.1, 0.01)) == (
        "alone it gets only +0.10, where the trade-off law would put the whole target at +6%: "
        "its shift grew less than linearly, or the sweep reached its largest coefficient"
    )
    over = _miss(0.3, 0.09, expected=0.4).message("power", 0.1)  # the others push it past
    assert over.startswith("power: the coefficients overshoot the target +0.25 (expected +0.40")


def test_the_audit_outcome_reads_the_ci_before_the_point() -> None:
    short = {"shift": 0.05, "ci": [0.02, 0.08]}
    assert outcome(0.25, short) == "toward" and outcome(0.04, short) == "reached"
    assert outcome(-0.04, short) == "other-way"
    assert outcome(0.04, {"shift": 0.05, "ci": [-0.01, 0.11]}) == "zero"
    assert outcome(0.04, {"shift": 0.5, "ci": [None, None]}) == "no-ci"  # one item decides it
    assert outcome(0.04, {"shift": 0.5, "ci": [float("nan")] * 2}) == "no-ci"  # before cleaning
    down = {"shift": -0.12, "ci": [-0.2, -0.05]}
    assert reached(-0.1, down) and not reached(-0.2, down) and not reached(0.1, down)
    assert not reached(0.25, short) and reached(0.04, short)


def test_a_target_the_audit_does_not_show_says_why_and_what_scaling_up_would_cost() -> None:
    short = {"shift": 0.05, "ci": [0.02, 0.08]}
    assert measured_law_budget(0.25, short, 0.08) == pytest.approx(0.08 * 25)
    assert measured_law_budget(0.04, short, 0.08) is None  # reached: nothing to say
    assert measured_law_budget(-0.25, short, 0.08) is None  # moved the other way
    assert measured_law_budget(0.25, {"shift": 0.05, "ci": [-0.01, 0.11]}, 0.08) is None
    down = {"shift": -0.12, "ci": [-0.2, -0.05]}
    assert measured_law_budget(-0.24, down, 0.1) == pytest.approx(0.4)

    def note(change: float, shift: dict[str, Any], cost: float = 0.1) -> str | None:
        law = measured_law_budget(change, shift, cost)
        return reach_note("power", change, {**shift, "law_budget": law}, cost, 0.1, "dilemmas")

    assert note(-0.24, down) == (
        "power: -0.120 [-0.200, -0.050] measured on dilemmas, -0.24 asked; scaling these "
        "coefficients together until it is met would cost about +40% perplexity by the "
        "trade-off law (+10.0% x (-0.24 / -0.120)^2); the sweeps measured so far cost more "
        "than the law past the budget"
    )
    cheap = note(-0.15, down, 0.02)  # 0.02 x (0.15 / 0.12)^2 = 0.031, inside the 10% budget
    assert str(cheap).endswith("(+2.0% x (-0.15 / -0.120)^2); within this run's budget: "
                               "calibration on valuescope's pairs chose smaller coefficients "
                               "than this instrument needs")  # fmt: skip
    assert note(-0.1, down) is None  # reached
    assert str(note(0.24, down)).endswith("; steering moved it the other way")
    assert str(note(-0.24, down, 0.0)).endswith("so the law gives no estimate")
    vague = note(0.25, {"shift": 0.05, "ci": [-0.01, 0.11]})
    assert str(vague).endswith("; the change is not distinguishable from zero")
    one = note(0.25, {"shift": 0.5, "ci": [None, None]})
    assert (
        one == "power: +0.500 measured on dilemmas, +0.25 asked; too few items decide it for a CI"
    )


def test_the_card_gets_a_few_words_per_target() -> None:
    def words(change: float, shift: dict[str, Any], cost: float = 0.1) -> str:
        law = measured_law_budget(change, shift, cost)
        return reach_verdict(change, {**shift, "law_budget": law})

    short = {"shift": 0.05, "ci": [0.02, 0.08]}
    assert words(0.04, short) == "yes"
    assert words(0.25, short, 0.065) == "no: about +162% perplexity by the trade-off law"
    assert words(0.25, short, 0.0) == "no: no measurable fluency cost to scale from"
    assert words(-0.1, short) == "no: moved the other way"
    assert words(0.1, {"shift": 0.05, "ci": [-0.01, 0.11]}) == "no: not distinguishable from zero"
    assert words(0.1, {"shift": 0.5, "ci": [None, None]}) == "no: too few items for a CI"
