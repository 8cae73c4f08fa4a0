"""Calibration: how strongly to steer one value, and at which layer.

Calibration sweeps the coefficient of one value's vector at its best layers (by held-out probe
accuracy; for a trained file, the layer it was trained at), doubling it until the fluency cost
(relative perplexity increase on neutral text) passes the budget, then bisects (geometrically,
twice) between the last coefficient within the budget and the first past it, so the budget is
used to within a factor 2^(1/4) of the coefficient. At every step it measures the shift of the
model's preference for the upholding answers of that value's contrastive pairs (valuescope's own
data, never an audit instrument).
The chosen setting is the largest shift within the budget, and the shift per unit of
coefficient at that layer is the value's sensitivity. Coefficients start at 1/8 of the class
gap (one whole gap is often past a 10% perplexity budget) and double up to 256 (a trained
direction's class gap is small).

Every measurement (a preference or a fluency cost under one setting) can be kept in a
checkpoint (`memo`): `valuescope steer` keeps them in `OUT/calibration/progress.jsonl`, so a
rerun, after a kill or with another budget, measures only what it has not measured before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from valuescope.backends.base import Backend, Context, GenerationParams, WhiteBoxBackend
from valuescope.checkpoint import Checkpoint, memo
from valuescope.errors import UsageError
from valuescope.progress import ProgressHook
from valuescope.steering.operators import (
    Mode,
    Steering,
    Term,
    fluency_cost,
    neutral_texts,
    perplexity,
    preference,
)
from valuescope.steering.strategies import Settings
from valuescope.vectors.contrast import ContrastSet
from valuescope.vectors.extract import VectorSet

DEFAULT_BUDGET = 0.10
START = 0.125
MAX_STEPS = 12
"""Doublings from START: up to 256 class gaps (a trained direction can have a small class gap)."""
REFINE = 2


@dataclass(frozen=True)
class SweepPoint:
    """One setting tried: its measured preference shift and fluency cost."""

    value: str
    layer: int
    coef: float
    norm: float
    shift: float
    fluency_cost: float


@dataclass
class Calibration:
    """The chosen layer and coefficient of one value, and every point of the sweep."""

    value: str
    layer: int
    coef: float
    shift: float
    fluency_cost: float
    sensitivity: float
    """Preference shift per unit coefficient at the chosen layer (slope through the origin)."""
    points: list[SweepPoint] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "points"},
                "points": [asdict(p) for p in self.points]}  # fmt: skip


class Meter:
    """Preference and fluency measurements, each remembered in `memo` (when given) under the
    setting it was measured at, so a rerun with the same memo measures nothing twice."""

    def __init__(
        self,
        backend: WhiteBoxBackend,
        memo: Checkpoint | None = None,
        plain_ppl: float | None = None,
    ) -> None:
        self.backend, self.memo, self._plain_ppl = backend, memo, plain_ppl

    def _recall(self, key: str, measure: Callable[[], float]) -> float:
        return float(memo(self.memo, key, measure))

    def plain_ppl(self) -> float:
        """Unsteered perplexity of the neutral texts (the fluency baseline)."""
        if self._plain_ppl is None:
            self._plain_ppl = self._recall("perplexity", lambda: perplexity(self.backend))
        return self._plain_ppl

    def preference(self, value: str, contrast: ContrastSet, steering: Steering | None) -> float:
        """`preference` on `value`'s pairs of `contrast`."""
        key = _setting("preference", value, steering)
        return self._recall(key, lambda: preference(self.backend, contrast.of(value), steering))

    def cost(self, steering: Steering) -> float:
        """`fluency_cost` against the remembered baseline."""
        key = _setting("cost", "", steering)
        return self._recall(key, lambda: fluency_cost(self.backend, steering, self.plain_ppl()))


def _setting(kind: str, value: str, steering: Steering | None) -> str:
    terms = [[t.value, t.layer, t.coef] for t in steering.terms] if steering else []
    return json.dumps([kind, value, steering.mode if steering else None, terms])


def memo_for(
    out: Path, backend: WhiteBoxBackend, vectors_sha256: str, contrast: ContrastSet
) -> Checkpoint:
    """The checkpoint `valuescope steer` keeps its calibration in: valid for one model, vector
    file, pair set and neutral text set (not for one target or budget: a measurement at a
    setting does not depend on them)."""
    neutral = hashlib.sha256(json.dumps(neutral_texts()).encode()).hexdigest()
    fingerprint = {"model": backend.spec.raw, "vectors": vectors_sha256,
                   "contrast": contrast.sha256, "neutral": neutral}  # fmt: skip
    return Checkpoint(out / "calibration", fingerprint)


def parse_target(text: str) -> dict[str, float]:
    """`benevolence=+0.2,power=-0.1` -> {'benevolence': 0.2, 'power': -0.1}."""
    target: dict[str, float] = {}
    for part in text.split(","):
        name, eq, amount = part.partition("=")
        try:
            change = float(amount)
        except ValueError:
            change = float("nan")
        if not eq or not name.strip() or not np.isfinite(change):
            raise UsageError(
                f"--target: {part!r} is not value=change, e.g. benevolence=+0.25,power=-0.1"
            )
        if not -1 < change < 1 or change == 0:
            raise UsageError(f"--target: {part!r}: a score change is between -1 and 1, not 0")
        if name.strip() in target:
            raise UsageError(f"--target: {name.strip()} is given twice; give each value once")
        target[name.strip()] = change
    return target


def default_layers(vectors: VectorSet, value: str, n_layers: int = 2) -> list[int]:
    """Where to sweep `value`: the layer its direction was trained at, for an optimized file
    (its other layers hold the untrained mean-diff start), else its `n_layers` best layers by
    held-out probe accuracy."""
    trained = vectors.extra.get("optimized", {}).get(value)
    if vectors.method == "optimized" and trained is not None:
        return [int(trained["layer"])]
    vv = vectors[value]
    ranked = sorted(
        vv.layers,
        key=lambda k: (-vv.layers[k].probe_accuracy, -vv.layers[k].separation, k),
    )
    return ranked[:n_layers]


def _sweep(
    measure: Callable[[int, float], SweepPoint], layer: int, budget: float, refine: int
) -> None:
    """Double the coefficient until past the budget, then bisect `refine` times."""
    coef, within, over = START, 0.0, 0.0
    for _ in range(MAX_STEPS):
        if measure(layer, coef).fluency_cost > budget:
            over = coef
            break
        within = coef
        coef *= 2
    if within and over:  # the budget lies between them: narrow it down
        for _ in range(refine):
            middle = (within * over) ** 0.5
            if measure(layer, middle).fluency_cost > budget:
                over = middle
            else:
                within = middle


def calibrate(
    backend: WhiteBoxBackend,
    vectors: VectorSet,
    contrast: ContrastSet,
    value: str,
    direction: float = 1.0,
    budget: float = DEFAULT_BUDGET,
    layers: Sequence[int] | None = None,
    n_layers: int = 2,
    mode: Mode = "add",
    baseline_ppl: float | None = None,
    progress: ProgressHook | None = None,
    refine: int = REFINE,
    memo: Checkpoint | None = None,
    replay: bool = True,
) -> Calibration:
    """Sweep coefficients (sign of `direction`) at the best layers; keep the best within budget.

    `refine` is the number of bisections after the doubling (0 reproduces doubling alone).
    `replay` skips the blocks below the swept layer once they have run on a text (the same
    numbers, checked on the model's first replay; see replay.py)."""
    vv = vectors[value]
    if not contrast.of(value):
        raise UsageError(f"no contrastive pairs for {value!r} to calibrate on")
    if layers is None:
        layers = default_layers(vectors, value, n_layers)
    meter = Meter(backend, memo, baseline_ppl)
    base = meter.preference(value, contrast, None)
    sign = 1.0 if direction >= 0 else -1.0
    points: list[SweepPoint] = []
    label = f"calibrating {value}"
    total = len(layers) * (MAX_STEPS + refine)
    if progress:
        progress(label, 0, total)

    def measure(layer: int, coef: float) -> SweepPoint:
        steering = Steering(vectors, [Term(value, layer, sign * coef)], mode)
        cost = meter.cost(steering)
        shift = meter.preference(value, contrast, steering) - base
        norm = abs(coef) * vv.layers[layer].gap
        points.append(SweepPoint(value, layer, sign * coef, norm, shift, cost))
        if progress:
            progress(label, 1, total)
        return points[-1]

    for layer in layers:
        with backend.residual.replay.below(layer) if replay else nullcontext():
            _sweep(measure, layer, budget, refine)
        if progress:  # a layer that stopped early skips its unused steps
            progress(label, MAX_STEPS + refine - sum(p.layer == layer for p in points), total)
    feasible = [p for p in points if p.fluency_cost <= budget]
    if not feasible:
        raise UsageError(
            f"{value}: even coefficient {START} costs more than the fluency budget "
            f"({budget:.0%}); raise --fluency-budget or use --mode gated"
        )
    best = max(feasible, key=lambda p: sign * p.shift)
    at_layer = [p for p in feasible if p.layer == best.layer]
    coefs = np.array([p.coef for p in at_layer])
    shifts = np.array([p.shift for p in at_layer])
    sensitivity = float(coefs @ shifts / (coefs @ coefs))
    return Calibration(
        value, best.layer, best.coef, best.shift, best.fluency_cost, sensitivity, points
    )


# -- decoding strength (`valuescope steer --via decoding`) ----------------------------------


@dataclass(frozen=True)
class Knob:
    """The strength of one decoding strategy: the `Settings` field, where its sweep starts,
    and where it stops."""

    setting: str
    start: float
    maximum: float

    def settings(self, strength: float) -> Settings:
        if self.setting == "n":
            return replace(Settings(), n=int(strength))
        if self.setting == "weight":
            return replace(Settings(), weight=float(strength))
        return replace(Settings(), lam=float(strength))


KNOBS: dict[str, Knob] = {
    "best-of-n": Knob("n", 2, 16),
    "sentence": Knob("n", 2, 16),
    "guided": Knob("weight", 0.5, 16.0),
    "resample": Knob("lam", 1.0, 64.0),
}
"""Doubling from `start`: N for best-of-n and sentence, w for guided, lambda for resample."""
CALIBRATION_PROMPTS = 4
"""Prompts of the open instrument past the judged ones that decoding is calibrated on."""


@dataclass(frozen=True)
class DecodingPoint:
    """One strength tried: the fluency cost of its answers and what the reward read."""

    strength: float
    fluency_cost: float | None
    reward_gain: float | None
    tokens_per_second: float | None


@dataclass
class DecodingCalibration:
    """The strongest decoding setting within the budget, and every point of the sweep."""

    strategy: str
    setting: str
    strength: float
    fluency_cost: float
    budget: float
    reached_maximum: bool
    """True when the sweep stopped at the maximum strength, not at the budget."""
    points: list[DecodingPoint] = field(default_factory=list)

    def settings(self) -> Settings:
        return KNOBS[self.strategy].settings(self.strength)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "points"},
                "points": [asdict(p) for p in self.points]}  # fmt: skip


def calibrate_decoding(
    backend: Backend,
    weights: Mapping[str, float],
    strategy: str,
    reward: str,
    prompts: Sequence[Context],
    budget: float = DEFAULT_BUDGET,
    taxonomy: str = "schwartz",
    seed: int = 0,
    maximum: float | None = None,
    progress: ProgressHook | None = None,
) -> DecodingCalibration:
    """Double the strategy's strength until the fluency cost of its answers to `prompts`
    (perplexity under the unsteered model, relative to the plain answers it drew on: the
    alignment ledger's `fluency.cost`) passes `budget` or `maximum` is reached; keep the
    strongest within the budget."""
    from valuescope.audit.answers import MAX_NEW_TOKENS, TEMPERATURE
    from valuescope.steering.alignment import Alignment

    knob = KNOBS[strategy]
    top = knob.maximum if maximum is None else maximum
    if top < knob.start:
        raise UsageError(f"--max-strength {top:g}: {strategy} starts at {knob.start:g}")
    params = GenerationParams(MAX_NEW_TOKENS, TEMPERATURE, n=1, seed=seed)
    points: list[DecodingPoint] = []
    strength, label = knob.start, f"calibrating {strategy}"
    steps = int(np.log2(top / knob.start)) + 1
    while True:
        if progress:
            progress(label, len(points), steps)
        aligned = Alignment(weights, strategy, reward, knob.settings(strength), taxonomy)
        aligned.wrap(backend).generate(list(prompts), params)
        record = aligned.as_dict()
        plain, chosen = record["combined_reward"]["plain"], record["combined_reward"]["aligned"]
        gain = chosen - plain if plain is not None and chosen is not None else None
        cost = record["fluency"]["cost"]
        points.append(DecodingPoint(strength, cost, gain, record["speed"]["tokens_per_second"]))
        if cost is None or cost > budget or strength * 2 > top:
            break
        strength *= 2
    if progress:
        progress(label, steps, steps)
    feasible = [p for p in points if p.fluency_cost is not None and p.fluency_cost <= budget]
    if not feasible:
        raise UsageError(
            f"--via decoding: {strategy} at {knob.setting} = {knob.start:g} already costs more "
            f"than the fluency budget ({budget:.0%}); raise --fluency-budget"
        )
    best = feasible[-1]  # strengths rise along the sweep
    assert best.fluency_cost is not None
    return DecodingCalibration(strategy, knob.setting, best.strength, best.fluency_cost, budget,
                               best is points[-1], points)  # fmt: skip
