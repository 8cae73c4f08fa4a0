"""Paired comparison of two runs: what did this change (a fine-tune, a prompt, a steering)
do to the model's values?

Two runs of the same instrument version and method scored the same items. Per value, the
difference of each item's score (run B minus run A) cancels the item's own difficulty, so the
mean paired difference has a far narrower CI than two unpaired profile CIs. Per value: the mean
difference over the items both runs scored, a paired bootstrap 95% CI over those items, a paired
t-test p-value with Holm's correction across the taxonomy's values, and the share of items whose
score moved by at least `ITEM_MOVED`. A value *moved* when its Holm-corrected p-value is below
0.05 (its CI, corrected for the number of values, excludes zero).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import ttest_1samp

from valuescope.audit.kinds import get_kind
from valuescope.errors import UsageError, ValuescopeError

SCHEMA = "valuescope.comparison/1"
ALPHA = 0.05
ITEM_MOVED = 0.05
"""An item moved when its score (on the kind's [0, 1] item scale) changed by this much."""
N_BOOTSTRAP = 2000


class ValuesMoved(ValuescopeError):
    """`--fail-on`: a value moved by at least the threshold, beyond noise (exit code 4)."""

    exit_code = 4


@dataclass(frozen=True)
class ValueChange:
    """One value's paired difference, B minus A."""

    diff: float
    ci: tuple[float, float]
    p: float
    p_holm: float
    n: int
    items_moved: float

    @property
    def moved(self) -> bool:
        return self.n >= 2 and self.p_holm < ALPHA

    def as_dict(self) -> dict[str, Any]:
        return {"diff": self.diff, "ci": list(self.ci), "p": self.p, "p_holm": self.p_holm,
                "n": self.n, "items_moved": self.items_moved, "moved": self.moved}  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """Run B against run A on the same items, per value."""

    a: dict[str, Any]
    b: dict[str, Any]
    labels: dict[str, str]
    values: dict[str, ValueChange]

    def as_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "a": self.a, "b": self.b,
                "values": {v: c.as_dict() for v, c in self.values.items()}}  # fmt: skip

    def summary(self) -> str:
        """The finding in plain words."""
        moved = sorted((v for v, c in self.values.items() if c.moved),
                       key=lambda v: -abs(self.values[v].diff))  # fmt: skip
        if not moved:
            return "no value moved beyond noise (paired, Holm-corrected across values)"
        parts = []
        for v in moved:
            c = self.values[v]
            parts.append(
                f"B upholds {self.labels.get(v, v)} {'more' if c.diff > 0 else 'less'}: "
                f"{c.diff:+.3f} [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]"
            )
        rest = len(self.values) - len(moved)
        tail = f"; no other value moved beyond noise ({rest} values)" if rest else ""
        return "; ".join(parts) + tail

    def failing(self, threshold: float) -> list[str]:
        """Values that moved by at least `threshold`, beyond noise."""
        return [v for v, c in self.values.items() if c.moved and abs(c.diff) >= threshold]


def why_not_paired(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """Why two results documents cannot be compared item by item (None when they can)."""
    ia, ib = a["instrument"], b["instrument"]
    if ia.get("kind") != ib.get("kind"):
        return f"they are of other kinds of instrument ({ia.get('kind')} and {ib.get('kind')})"
    if ia.get("sha256") != ib.get("sha256"):
        return (
            f"they ran other instrument versions ({ia.get('name')} {str(ia.get('sha256'))[:12]} "
            f"and {ib.get('name')} {str(ib.get('sha256'))[:12]})"
        )
    if a.get("method") != b.get("method"):
        return f"they used other methods ({a.get('method')} and {b.get('method')}): pin --method"
    shared = set(_item_ids(a)) & set(_item_ids(b))
    if not shared:
        return "they scored no item in common"
    return None


def _item_ids(doc: Mapping[str, Any]) -> list[str]:
    return [str(item["id"]) for item in doc.get("items", []) if "id" in item]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1). Written here: scipy has
    Benjamini-Hochberg (`false_discovery_control`) but not Holm's family-wise correction."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare_runs(a: dict[str, Any], b: dict[str, Any], seed: int = 0) -> Comparison:
    """The paired comparison of run B against run A (results.json documents)."""
    reason = why_not_paired(a, b)
    if reason is not None:
        raise UsageError(f"the runs do not pair: {reason}")
    kind = get_kind(str(a["instrument"]["kind"]))
    ea, eb = kind.evidence(a), kind.evidence(b)
    rng = np.random.default_rng(seed)
    raw: dict[str, tuple[float, tuple[float, float], float, int, float]] = {}
    for value in a.get("values") or ea:
        common = sorted(set(ea.get(value, {})) & set(eb.get(value, {})))
        diffs = np.array([eb[value][i] - ea[value][i] for i in common], dtype=float)
        if len(diffs) == 0:
            continue
        mean = float(diffs.mean())
        moved = float(np.mean(np.abs(diffs) >= ITEM_MOVED))
        if len(diffs) < 2:  # no CI and no test from one item
            raw[value] = (mean, (math.nan, math.nan), 1.0, len(diffs), moved)
            continue
        draws = diffs[rng.integers(0, len(diffs), size=(N_BOOTSTRAP, len(diffs)))].mean(axis=1)
        low, high = np.percentile(draws, [2.5, 97.5])
        if np.ptp(diffs) <= 1e-9:  # every item moved alike: no spread for a t-test
            p = 1.0 if abs(mean) <= 1e-9 else 0.0
        else:
            p = float(ttest_1samp(diffs, 0.0).pvalue)
            p = 1.0 if math.isnan(p) else p
        raw[value] = (mean, (float(low), float(high)), p, len(diffs), moved)
    adjusted = holm([r[2] for r in raw.values()])
    values = {
        v: ValueChange(r[0], r[1], r[2], p_holm, r[3], r[4])
        for (v, r), p_holm in zip(raw.items(), adjusted, strict=True)
    }
    labels = {v: info.get("label", v) for v, info in (a.get("values") or {}).items()}
    return Comparison(_describe(a), _describe(b), labels, values)


def _describe(doc: Mapping[str, Any]) -> dict[str, Any]:
    """How comparison.json names a run: model, instrument, method, system prompt, steering."""
    return {
        "model": doc["model"]["spec"],
        "name": doc["model"]["name"],
        "instrument": doc["instrument"]["name"],
        "sha256": doc["instrument"].get("sha256"),
        "method": doc.get("method"),
        "system": doc.get("system"),
        "steering": bool(doc.get("steering")),
        **({"folder": doc["folder"]} if doc.get("folder") else {}),
    }
