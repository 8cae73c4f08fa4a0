"""Value rewards for decoding: a detector's readings, or a user's reward, as one number per text.

Several values combine after the log-sigmoid transform (as in MAP and "Transforming and
combining rewards"): a value v with weight w_v contributes

    |w_v| log sigma(sign(w_v) (r_v - r_ref_v))

where r_v is the detector's signed score of the text for v (in [-1, 1]) and r_ref_v the value's
mean score on plain generations of the same prompts (0 when none were made). Each term is at
most 0 and close to it only when the text is clearly better than plain on that value, so a sum
means "good on every value": one value read very well cannot pay for another read badly, as it
would in a plain weighted sum. A negative weight asks for less of the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from valuescope.detectors.base import Detector
from valuescope.errors import UsageError


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(1 / (1 + exp(-x))), stable for large |x|."""
    return np.asarray(-np.logaddexp(0.0, -x), dtype=float)


@runtime_checkable
class RewardModel(Protocol):
    """Scores responses to prompts: per value parts, and their combination."""

    @property
    def name(self) -> str:
        """How results.json names the reward (`lexicon`, `user:M.json:u17`)."""
        ...

    @property
    def values(self) -> tuple[str, ...]:
        """The names of the parts' columns."""
        ...

    def parts(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """(n, values) readings of each response to the prompt at its position."""
        ...

    def combine(self, parts: np.ndarray) -> np.ndarray:
        """(n,) rewards from (n, values) parts."""
        ...

    def referenced(self, parts: np.ndarray) -> RewardModel:
        """This reward with its reference taken from plain answers' parts (rows)."""
        ...


@dataclass(frozen=True)
class ValueReward:
    """The weighted log-sigmoid combination of a detector's signed scores.

    >>> reward = ValueReward(get_detector("lexicon"), {"benevolence": 1.0})  # doctest: +SKIP
    >>> reward(["Should I help?"], ["Yes, help them: kindness matters."])  # doctest: +SKIP
    """

    detector: Detector
    weights: Mapping[str, float]
    reference: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = set(self.detector.taxonomy.ids)
        for value, weight in self.weights.items():
            if value not in known:
                raise UsageError(
                    f"--align: {value!r} is not a value of {self.detector.taxonomy.name} "
                    f"({', '.join(self.detector.taxonomy.ids)})"
                )
            if not math.isfinite(weight) or weight == 0:
                raise UsageError(f"--align: {value}={weight}: give a finite weight other than 0")
        if not self.weights:
            raise UsageError("--align: give at least one value=weight")

    @property
    def name(self) -> str:
        return self.detector.name

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def parts(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Signed scores of the weighted values (the detector reads the response alone)."""
        if not responses:
            return np.zeros((0, len(self.weights)))
        read = self.detector.read(list(responses))
        columns = [read.values.index(v) for v in self.weights]
        return np.asarray(read.score[:, columns], dtype=float)

    def combine(self, parts: np.ndarray) -> np.ndarray:
        w = np.array([self.weights[v] for v in self.weights], dtype=float)
        ref = np.array([self.reference.get(v, 0.0) for v in self.weights], dtype=float)
        terms = np.abs(w) * log_sigmoid(np.sign(w) * (parts - ref))
        return np.asarray(terms.sum(axis=1), dtype=float)

    def referenced(self, parts: np.ndarray) -> ValueReward:
        mean = parts.mean(axis=0) if len(parts) else np.zeros(len(self.weights))
        return replace(self, reference=dict(zip(self.weights, map(float, mean), strict=True)))

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self.combine(self.parts(prompts, responses))


@dataclass(frozen=True)
class UserReward:
    """A personalized reward (`valuescope rewards fit`) for one user: its parts are its heads."""

    reward: Any
    user: str | None
    label: str

    @property
    def name(self) -> str:
        return self.label

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.reward.heads.names)

    def parts(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        if not responses:
            return np.zeros((0, len(self.values)))
        return np.asarray(self.reward.score(list(prompts), list(responses), self.user).parts)

    def combine(self, parts: np.ndarray) -> np.ndarray:
        return np.asarray(parts.sum(axis=1), dtype=float)

    def referenced(self, parts: np.ndarray) -> UserReward:
        return self  # a fitted reward is already on its users' scale

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self.combine(self.parts(prompts, responses))


def parse_weights(text: str, flag: str = "--align") -> dict[str, float]:
    """`value=weight[,value=weight...]` -> weights (a bare `value` means weight 1)."""
    found: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        value, eq, number = part.partition("=")
        value = value.strip()
        try:
            weight = float(number) if eq else 1.0
        except ValueError:
            raise UsageError(f"{flag}: {part.strip()!r}: the weight is not a number") from None
        if value in found:
            raise UsageError(f"{flag}: {value} is given twice; give each value once")
        found[value] = weight
    if not found:
        raise UsageError(f"{flag} {text!r}: expected value=weight[,value=weight], e.g. power=1")
    return found


def load_user_reward(spec: str) -> UserReward:
    """`user:M.json:U` -> the reward model file's reward for user U."""
    _, _, rest = spec.partition(":")
    path, sep, user = rest.rpartition(":")
    if not sep or not path or not user:
        raise UsageError(f"--align {spec!r}: expected user:MODEL.json:USER")
    from valuescope.rewards.reward import Reward

    reward = Reward.load(path)
    if user not in reward.users:
        shown = ", ".join(list(reward.users)[:8])
        raise UsageError(f"--align {spec!r}: {path} knows no user {user!r} (it has {shown}...)")
    return UserReward(reward, user, spec)
