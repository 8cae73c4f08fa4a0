"""Steering success as the instrument measures it: per value, the paired score change of the
items both runs answered, with a bootstrap CI and the choices turned toward and away."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .audit import AuditResult
from .instrument import DilemmaItem
from .profile import bootstrap_ci, value_evidence
from .scoring import ItemResult
from .taxonomy import Taxonomy
from .tradeoff import Shift


def measured_shifts(plain: AuditResult, steered: AuditResult, seed: int) -> dict[str, Shift]:
    """Score change per value, steered minus unsteered (`paired_shift` over the items that
    decide it: the same items were answered by both)."""
    taxonomy, items = plain.instrument.taxonomy, plain.instrument.items
    return result_shifts(taxonomy, items, plain.results, steered.results, seed)


def result_shifts(
    taxonomy: Taxonomy,
    items: Sequence[DilemmaItem],
    plain: Sequence[ItemResult],
    changed: Sequence[ItemResult],
    seed: int,
) -> dict[str, Shift]:
    """`measured_shifts` on item results, also those scored outside an audit."""
    if [r.item_id for r in plain] != [r.item_id for r in changed]:
        raise ValueError("the steered and unsteered runs answered different items")
    before = value_evidence(taxonomy, items, plain)
    after = value_evidence(taxonomy, items, changed)
    chose_before = value_evidence(taxonomy, items, plain, choice)
    chose_after = value_evidence(taxonomy, items, changed, choice)
    out: dict[str, Shift] = {}
    for index, value in enumerate(taxonomy.ids):
        if before[value]:
            chosen = (chose_before[value], chose_after[value])
            out[value] = paired_shift(before[value], after[value], seed * 7919 + index, chosen)
    return out


def choice(p: Sequence[float], slot: int) -> float:
    """+1 if option `slot` has the most probability, -1 if another option does, 0 on a tie
    for the most (a `value_evidence` reader: which way an item was decided)."""
    top = max(p)
    if sum(x == top for x in p) > 1:
        return 0.0
    return 1.0 if p[slot] == top else -1.0


def paired_shift(
    before: Sequence[float],
    after: Sequence[float],
    seed: int,
    chosen: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Shift:
    """Mean change of P(upholding option) with a 95% CI from resampling the items, and how
    many items' choice turned from another option to the upholding one (`flipped_toward`) or
    back (`flipped_away`): a mean shift of a few hundredths can be many small moves or a few
    changed choices. `chosen` is `choice` per item before and after; without it, two options are
    assumed (the upholding one is chosen when its P > 0.5). A tie is no choice, so moving
    into or out of one flips nothing."""
    if len(before) != len(after):
        raise ValueError(f"paired runs differ in length: {len(before)} and {len(after)} items")
    was, now = chosen or (np.sign(np.subtract(before, 0.5)), np.sign(np.subtract(after, 0.5)))
    was, now = np.asarray(was), np.asarray(now)
    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    low, high = bootstrap_ci(diff, seed)
    return {
        "shift": float(diff.mean()), "ci": [low, high], "n": len(diff),
        "flipped_toward": int(((was == -1) & (now == 1)).sum()),
        "flipped_away": int(((was == 1) & (now == -1)).sum()),
    }  # fmt: skip
