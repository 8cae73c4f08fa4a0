"""What a missed steering target would take: the trade-off law and the reasons given."""

from __future__ import annotations

import pytest

from valuescope.tradeoff import (
    MAX_BUDGET,
    Miss,
    budget_hint,
    cost_text,
    law_cost,
    measured_law_budget,
    reach_note,
    reached,
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
    assert budget_hint(2.0) == "--fluency-budget 2.00"
    assert budget_hint(MAX_BUDGET) == "beyond what --fluency-budget allows (below 10)"


def _miss(alone: float, cost: float, target: float = 0.25) -> Miss:
    return Miss(target, 0.05, alone, cost, law_cost(cost, alone, target))


def test_a_missed_target_says_why_and_what_it_would_take() -> None:
    def says(miss: Miss) -> str:
        text = miss.message("power", 0.1)
        head = "power: the target +0.25 is out of reach within the 10% fluency budget"
        assert text.startswith(f"{head} (expected +0.05 on the calibration pairs); ")
        return text.split("; ", 1)[1]

    assert says(_miss(0.05, 0.08)) == (  # the law from the calibrated setting
        "alone, by the trade-off law (shift linear in the coefficient, cost quadratic), it would "
        "need about +200% perplexity (--fluency-budget 2.00); the sweeps measured so far cost "
        "more than the law past the budget"
    )
    assert "about 51 times the plain perplexity (beyond what --fluency-budget allows" in says(
        _miss(0.01, 0.08)  # 0.08 x 625 = 50
    )
    assert says(_miss(0.2, 0.09)) == (  # 0.2 is within half of 0.25: the others stop it
        "alone, its vector gets there (+0.20), so the other targets' vectors or their joint "
        "fluency cost hold it back"
    )
    assert "try vectors made with another --method" in says(_miss(-0.02, 0.09))
    assert "no measurable fluency cost" in says(_miss(0.1, 0.0))
    # the law says 0.25 fits in the budget, yet calibration got only 0.1 within it
    assert says(_miss(0.1, 0.01)) == (
        "alone it moves only +0.10: its shift stops growing within the budget, sooner than the "
        "trade-off law says (+6%)"
    )


def test_reached_means_the_target_with_a_ci_clear_of_zero() -> None:
    short = {"shift": 0.05, "ci": [0.02, 0.08]}
    assert not reached(0.25, short) and reached(0.04, short)
    assert not reached(0.04, {"shift": 0.05, "ci": [-0.01, 0.11]})  # CI includes zero
    assert not reached(0.04, {"shift": 0.05, "ci": [None, None]})  # one item: no CI
    down = {"shift": -0.12, "ci": [-0.2, -0.05]}
    assert reached(-0.1, down) and not reached(-0.2, down) and not reached(0.1, down)


def test_a_target_the_audit_does_not_show_says_what_scaling_up_would_cost() -> None:
    short = {"shift": 0.05, "ci": [0.02, 0.08]}
    assert measured_law_budget(0.25, short, 0.08) == pytest.approx(0.08 * 25)
    assert measured_law_budget(0.04, short, 0.08) is None  # reached: nothing to say
    assert measured_law_budget(-0.25, short, 0.08) is None  # moved the other way
    assert measured_law_budget(0.25, {"shift": 0.05, "ci": [-0.01, 0.11]}, 0.08) is None
    down = {"shift": -0.12, "ci": [-0.2, -0.05]}
    assert measured_law_budget(-0.24, down, 0.1) == pytest.approx(0.4)

    def note(change: float, shift: dict[str, object], cost: float = 0.1) -> str | None:
        law = measured_law_budget(change, shift, cost)
        return reach_note("power", change, {**shift, "law_budget": law}, cost, "dilemmas")

    assert note(-0.24, down) == (
        "power: -0.120 [-0.200, -0.050] measured on dilemmas, -0.24 asked; scaling these "
        "coefficients together until it is met would cost about +40% perplexity by the "
        "trade-off law (+10.0% x (-0.24 / -0.120)^2; --fluency-budget 0.40); the sweeps "
        "measured so far cost more than the law past the budget"
    )
    assert note(-0.1, down) is None  # reached
    assert str(note(0.24, down)).endswith("; steering moved it the other way")
    assert str(note(-0.24, down, 0.0)).endswith("so the law gives no estimate")
    vague = note(0.25, {"shift": 0.05, "ci": [-0.01, 0.11]})
    assert str(vague).endswith("the change is not distinguishable from zero, so a larger budget "
                               "may not help")  # fmt: skip
    one = note(0.25, {"shift": 0.05, "ci": [None, None]})
    assert str(one).startswith("power: +0.050 measured on dilemmas, +0.25 asked; the change is")
