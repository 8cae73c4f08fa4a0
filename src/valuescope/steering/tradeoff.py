"""The trade-off law, read back to the user: what a target steering missed would cost.

Published work on representation engineering finds the steered behaviour growing linearly with
the vector's size and the damage quadratically. If that held, a setting that moved a value by
`shift` at fluency cost `cost` would move it by `change` at cost x (change / shift)^2. That is
an estimate, not a promise: in the sweeps of docs/steering.md the cost grows about as the
square near the budget and faster past it, so where a goal was reached it cost more than this.
"""

from __future__ import annotations

from dataclasses import dataclass

from valuescope.audit.shifts import Shift, cost_text, outcome

MAX_BUDGET = 10.0
"""`--fluency-budget` is a share below this (11 times the plain perplexity)."""


def law_cost(cost: float, shift: float, change: float) -> float | None:
    """The fluency cost at which a setting that moved `shift` at `cost` would move `change`.

    None when the setting moved the other way or not at all, or cost nothing measurable (a
    perplexity that did not rise gives the law nothing to scale)."""
    if shift * change <= 0 or cost <= 0:
        return None
    return float(cost * (change / shift) ** 2)


def budget_hint(cost: float) -> str:
    """The flag that asks for `cost` (to three figures), or that no flag can."""
    text = f"{cost:.3g}"
    if float(text) < MAX_BUDGET:
        return f"--fluency-budget {text}"
    return f"beyond what --fluency-budget allows (below {MAX_BUDGET:g})"


@dataclass(frozen=True)
class Miss:
    """A target the composed coefficients are expected to miss by more than half, with what
    the value's own calibration (its best setting within the budget) says about it."""

    target: float
    expected: float
    """Expected shift on the calibration pairs with the composed coefficients."""
    alone: float
    """The value's calibrated shift on its own (best within the budget)."""
    alone_cost: float
    law_budget: float | None
    """`law_cost` from the calibrated setting."""

    def message(self, value: str, budget: float) -> str:
        """One line for the user that says why, and what reaching the target would take."""
        on_pairs = f"(expected {self.expected:+.2f} on the calibration pairs)"
        if self.expected * self.target > 0 and abs(self.expected) > abs(self.target):
            return (
                f"{value}: the coefficients overshoot the target {self.target:+.2f} {on_pairs}: "
                "the other targets' vectors push it past, and its own cannot pull back enough "
                "within the budget"
            )
        head = (
            f"{value}: the target {self.target:+.2f} is out of reach within the {budget:.0%} "
            f"fluency budget {on_pairs}"
        )
        if self.alone * self.target <= 0:
            return (
                f"{head}; no setting within the budget moved it that way, so a larger budget "
                "may not help: try vectors made with another --method"
            )
        if abs(self.alone) >= abs(self.target):
            return (
                f"{head}; alone, its vector gets there ({self.alone:+.2f}), so the other "
                "targets' vectors or their joint fluency cost hold it back"
            )
        reason = (
            f"alone, its vector gets {self.alone:+.2f}, over half of it, so the other targets' "
            "vectors or their joint fluency cost hold it back"
            if abs(self.alone) >= 0.5 * abs(self.target)
            else f"alone it gets only {self.alone:+.2f}"
        )
        need = self.law_budget
        if need is None:
            return f"{head}; {reason}, at no measurable fluency cost, so the law gives no estimate"
        if need <= budget:
            return (
                f"{head}; {reason}, where the trade-off law would put the whole target at "
                f"{need:+.0%}: its shift grew less than linearly, or the sweep reached its "
                "largest coefficient"
            )
        return (
            f"{head}; {reason}; by the trade-off law (shift linear in the coefficient, cost "
            f"quadratic), the whole target alone would need about {cost_text(need)} "
            f"({budget_hint(need)}); the sweeps measured so far cost more than the law past "
            "the budget"
        )


def measured_law_budget(change: float, shift: Shift, cost: float) -> float | None:
    """What scaling every coefficient up together would cost to reach `change` on the
    instrument, by the law from the audited change. None unless the change is short of the
    target with a CI clear of zero on its side (otherwise there is nothing to scale from)."""
    if outcome(change, shift) != "toward":
        return None
    return law_cost(cost, shift["shift"], change)


def reach_note(
    value: str,
    change: float,
    shift: Shift,
    cost: float,
    budget: float,
    instrument: str,
) -> str | None:
    """For a target the audit does not show, why and what it would take (None if reached)."""
    kind = outcome(change, shift)
    if kind == "reached":
        return None
    measured, (low, high) = shift["shift"], shift["ci"]
    ci = "" if kind == "no-ci" else f" [{low:+.3f}, {high:+.3f}]"
    head = f"{value}: {measured:+.3f}{ci} measured on {instrument}, {change:+.2f} asked"
    need = shift.get("law_budget")
    if need is not None:
        where = (
            "within this run's budget: calibration on valuescope's pairs chose smaller "
            "coefficients than this instrument needs"
            if need <= budget
            else "the sweeps measured so far cost more than the law past the budget"
        )
        return (
            f"{head}; scaling these coefficients together until it is met would cost about "
            f"{cost_text(need)} by the trade-off law ({cost:+.1%} x ({change:+.2f} / "
            f"{measured:+.3f})^2); {where}"
        )
    return {
        "other-way": f"{head}; steering moved it the other way",
        "toward": f"{head}; the steering cost no measurable fluency, so the law gives no estimate",
        "no-ci": f"{head}; too few items decide it for a CI",
        "zero": f"{head}; the change is not distinguishable from zero",
    }[kind]
