"""Decoding strategies under a value reward (`--strategy`), each a function of one shape:

- `best-of-n`: N plain samples per answer, the one of highest reward kept (its divergence from
  the model is at most log N - (N-1)/N); the best of each answer's first m samples, for m = 1,
  2, 4, ... N, trace its curve (`best_of_n_curve`);
- `resample`: N plain samples, one drawn with probability proportional to exp(lambda r)
  (importance resampling toward the tilted distribution p(y) exp(lambda r(y)));
- `guided`: token by token, the top-k next tokens' logits raised by w x the reward of the
  text they would make (ARGS; `valuescope.steering.guided`, local models only);
- `sentence`: sentence by sentence, a sentence kept if the reward of the answer so far does
  not fall below plain answers' level, else drawn again (at most N tries).

Each returns the plain answers it drew on too, so a run can set what it moved against them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from valuescope.audit.profile import bootstrap_ci
from valuescope.backends.base import Backend, Chat, Context, GenerationParams
from valuescope.errors import UsageError
from valuescope.steering.rewards import RewardModel

N = 8
"""Samples per answer for best-of-n and resample, tries per sentence for sentence."""
TOP_K = 8
"""Candidates rescored per position by guided decoding."""
GUIDED_WEIGHT = 4.0
"""w of guided decoding: logit units per unit of reward."""
RESAMPLE_LAMBDA = 8.0


@dataclass(frozen=True)
class Settings:
    """A strategy's knobs (one typed object; `Alignment` carries it)."""

    n: int = N
    top_k: int = TOP_K
    weight: float = GUIDED_WEIGHT
    lam: float = RESAMPLE_LAMBDA


@dataclass(frozen=True)
class Pool:
    """The samples best-of-n and resample choose among, one row per answer (prompt order, then
    the prompt's answers), samples in the order drawn."""

    texts: list[list[str]]
    parts: np.ndarray
    """(answers, samples, values) reward parts of each sample."""
    scores: np.ndarray
    """(answers, samples) combined rewards, as the choice read them."""
    chosen: np.ndarray
    """(answers,) index of the sample each answer kept."""
    best_of: bool
    """Whether the choice is the highest reward: then the best of each row's first m samples
    trace the best-of-N curve."""


@dataclass
class Decoded:
    """A strategy's answers (n per prompt, prompt order) and the plain answers it drew on."""

    answers: list[list[str]]
    plain: list[list[str]]
    plain_seconds: float
    reward: RewardModel | None = None
    """The reward as the strategy read it (its reference taken from the plain samples)."""
    pool: Pool | None = None


class Strategy(Protocol):
    """Generates `params.n` answers per prompt under `reward`."""

    def __call__(
        self,
        backend: Backend,
        prompts: Sequence[Context],
        params: GenerationParams,
        reward: RewardModel,
        settings: Settings,
    ) -> Decoded: ...


def user_text(context: Context) -> str:
    return context.user if isinstance(context, Chat) else context


def _timed_generate(
    backend: Backend, prompts: Sequence[Context], params: GenerationParams
) -> tuple[list[list[str]], float]:
    started = time.perf_counter()
    found = backend.generate(prompts, params)
    return found, time.perf_counter() - started


def _pick(
    backend: Backend,
    prompts: Sequence[Context],
    params: GenerationParams,
    reward: RewardModel,
    settings: Settings,
    choose: Callable[[np.ndarray, int], int],
    best_of: bool = False,
) -> Decoded:
    """N plain samples per answer, one kept per answer by `choose(rewards, answer index)`
    (`best_of`: the choice is the highest reward)."""
    wide = replace(params, n=params.n * settings.n)
    candidates, seconds = _timed_generate(backend, prompts, wide)
    flat = [t for group in candidates for t in group]
    users = [user_text(p) for p, group in zip(prompts, candidates, strict=True) for _ in group]
    parts = reward.parts(users, flat)
    referenced = reward.referenced(parts)
    scores = referenced.combine(parts)
    answers, plain, picks = [], [], []
    for i, group in enumerate(candidates):
        chosen, first = [], []
        for k in range(params.n):
            start = (i * params.n + k) * settings.n
            pick = choose(scores[start : start + settings.n], i * params.n + k)
            picks.append(pick)
            chosen.append(group[k * settings.n + pick])
            first.append(group[k * settings.n])
        answers.append(chosen)
        plain.append(first)
    rows = len(picks)
    pool = Pool(
        [flat[j * settings.n : (j + 1) * settings.n] for j in range(rows)],
        parts.reshape(rows, settings.n, parts.shape[1]),
        scores.reshape(rows, settings.n),
        np.array(picks, dtype=int),
        best_of,
    )
    return Decoded(answers, plain, seconds / settings.n, referenced, pool)


def best_of_n_strategy(
    backend: Backend,
    prompts: Sequence[Context],
    params: GenerationParams,
    reward: RewardModel,
    settings: Settings,
) -> Decoded:
    """The highest-reward of N samples (the first of equals)."""
    return _pick(backend, prompts, params, reward, settings, _highest, best_of=True)


def _highest(rewards: np.ndarray, index: int) -> int:
    return int(np.argmax(rewards))  # the first of equals


def curve_sizes(n: int) -> list[int]:
    """The m of the best-of-N curve: 1, 2, 4, ... up to n, and n itself."""
    sizes = [1 << k for k in range(n.bit_length())]
    return sizes if sizes[-1] == n else [*sizes, n]


def divergence_bound(m: int) -> float:
    """log m - (m-1)/m: the most best-of-m can diverge from the model (KL, nats)."""
    return math.log(m) - (m - 1) / m


@dataclass(frozen=True)
class CurvePoint:
    """Best-of-m on the first m samples of each pool: its reward and, where a measuring
    detector read the samples, its reading and control success (share of picks it reads as
    moved toward the weights) with a 95% bootstrap CI."""

    n: int
    kl_bound: float
    reward: float
    reward_reading: dict[str, float]
    measuring: dict[str, float] | None = None
    success: float | None = None
    success_ci: tuple[float | None, float | None] = (None, None)

    def as_dict(self) -> dict[str, Any]:
        success = None
        if self.success is not None:
            success = {"rate": self.success, "ci": list(self.success_ci)}
        return {"n": self.n, "kl_bound": self.kl_bound, "reward": self.reward,
                "success": success, "measuring": self.measuring,
                "reward_reading": self.reward_reading}  # fmt: skip


def best_of_n_curve(
    scores: np.ndarray,
    parts: np.ndarray,
    values: Sequence[str],
    measured: np.ndarray | None = None,
    weights: Mapping[str, float] | None = None,
    seed: int = 0,
) -> list[CurvePoint]:
    """Per m of `curve_sizes`, best-of-n's choice among each pool's first m samples (highest
    score, the first of equals): m = 1 is plain sampling, m = N the answers a run kept.

    Args:
        scores: (answers, N) combined rewards; `parts`: (answers, N, values) their parts.
        measured: (answers, N, weighted values) the measuring detector's signed readings, in
            `weights`' order; a pick is a success when sum_v w_v x reading_v > 0.
    """
    if not len(scores):
        return []
    rows = np.arange(len(scores))
    w = np.array(list((weights or {}).values()), dtype=float)
    found = []
    for m in curve_sizes(scores.shape[1]):
        picks = np.argmax(scores[:, :m], axis=1)  # the first of equals
        point = CurvePoint(
            m, divergence_bound(m), float(scores[rows, picks].mean()),
            dict(zip(values, map(float, parts[rows, picks].mean(axis=0)), strict=True)),
        )  # fmt: skip
        if measured is not None and weights:
            read = measured[rows, picks]
            toward = (read @ w > 0).astype(float)
            low, high = bootstrap_ci(toward.tolist(), seed)
            point = replace(
                point,
                measuring=dict(zip(weights, map(float, read.mean(axis=0)), strict=True)),
                success=float(toward.mean()),
                success_ci=(_finite(low), _finite(high)),
            )
        found.append(point)
    return found


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN: one answer has no CI


def resample_strategy(
    backend: Backend,
    prompts: Sequence[Context],
    params: GenerationParams,
    reward: RewardModel,
    settings: Settings,
) -> Decoded:
    """One of N samples drawn with probability exp(lambda r) / sum (seeded per answer)."""

    def draw(rewards: np.ndarray, index: int) -> int:
        logits = settings.lam * (rewards - rewards.max())
        p = np.exp(logits) / np.exp(logits).sum()
        rng = np.random.default_rng([params.seed, index])
        return int(rng.choice(len(rewards), p=p))

    return _pick(backend, prompts, params, reward, settings, draw)


def _plain_reference(
    backend: Backend, prompts: Sequence[Context], params: GenerationParams, reward: RewardModel
) -> tuple[list[list[str]], float, RewardModel]:
    """Plain answers (as many as asked), their time, and the reward referenced on them."""
    plain, seconds = _timed_generate(backend, prompts, params)
    users = [user_text(p) for p, group in zip(prompts, plain, strict=True) for _ in group]
    parts = reward.parts(users, [t for group in plain for t in group])
    return plain, seconds, reward.referenced(parts)


def guided_strategy(
    backend: Backend,
    prompts: Sequence[Context],
    params: GenerationParams,
    reward: RewardModel,
    settings: Settings,
) -> Decoded:
    """ARGS-style token-level guidance on a local model (see `valuescope.steering.guided`)."""
    from valuescope.steering.guided import guided_generate

    plain, seconds, referenced = _plain_reference(backend, prompts, params, reward)
    answers = guided_generate(backend, prompts, params, referenced, settings.weight, settings.top_k)
    return Decoded(answers, plain, seconds, referenced)


def sentence_strategy(
    backend: Backend,
    prompts: Sequence[Context],
    params: GenerationParams,
    reward: RewardModel,
    settings: Settings,
) -> Decoded:
    """Sentence-level rejection (see `valuescope.steering.guided.sentence_generate`)."""
    from valuescope.steering.guided import sentence_generate

    plain, seconds, referenced = _plain_reference(backend, prompts, params, reward)
    answers = sentence_generate(backend, prompts, params, referenced, settings.n)
    return Decoded(answers, plain, seconds, referenced)


STRATEGY: dict[str, Strategy] = {
    "best-of-n": best_of_n_strategy,
    "resample": resample_strategy,
    "guided": guided_strategy,
    "sentence": sentence_strategy,
}
"""Decoding strategies under a reward, by `--strategy` name."""


def check_strategy(name: str) -> str:
    if name not in STRATEGY:
        raise UsageError(f"--strategy {name!r}: choose {', '.join(STRATEGY)}")
    return name


def best_of_n(
    backend: Backend,
    prompts: Sequence[Context],
    reward: RewardModel,
    n: int = N,
    params: GenerationParams | None = None,
) -> list[str]:
    """Per prompt, the highest-reward of `n` sampled answers (temperature 0.7 unless `params`).

    >>> reward = ValueReward(get_detector("lexicon"), {"benevolence": 1})  # doctest: +SKIP
    >>> best_of_n(load_backend("smollm2"), ["Should I lend my car?"], reward, n=8)  # doctest: +SKIP
    """
    params = params or GenerationParams(max_new_tokens=96, temperature=0.7)
    if n < 1:
        raise UsageError(f"n={n}: best-of-n needs at least one sample")
    found = best_of_n_strategy(backend, prompts, replace(params, n=1), reward, Settings(n=n))
    return [group[0] for group in found.answers]
