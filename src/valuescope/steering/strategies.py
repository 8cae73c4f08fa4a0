"""Decoding strategies under a value reward (`--strategy`), each a function of one shape:

- `best-of-n`: N plain samples per answer, the one of highest reward kept (its divergence from
  the model is at most log N - (N-1)/N);
- `resample`: N plain samples, one drawn with probability proportional to exp(lambda r)
  (importance resampling toward the tilted distribution p(y) exp(lambda r(y)));
- `guided`: token by token, the top-k next tokens' logits raised by w x the reward of the
  text they would make (ARGS; `valuescope.steering.guided`, local models only);
- `sentence`: sentence by sentence, a sentence kept if the reward of the answer so far does
  not fall below plain answers' level, else drawn again (at most N tries).

Each returns the plain answers it drew on too, so a run can set what it moved against them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

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


@dataclass
class Decoded:
    """A strategy's answers (n per prompt, prompt order) and the plain answers it drew on."""

    answers: list[list[str]]
    plain: list[list[str]]
    plain_seconds: float


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
) -> Decoded:
    """N plain samples per answer, one kept per answer by `choose(rewards, answer index)`."""
    wide = replace(params, n=params.n * settings.n)
    candidates, seconds = _timed_generate(backend, prompts, wide)
    flat = [t for group in candidates for t in group]
    users = [user_text(p) for p, group in zip(prompts, candidates, strict=True) for _ in group]
    parts = reward.parts(users, flat)
    scores = reward.referenced(parts).combine(parts)
    answers, plain = [], []
    for i, group in enumerate(candidates):
        chosen, first = [], []
        for k in range(params.n):
            start = (i * params.n + k) * settings.n
            pick = choose(scores[start : start + settings.n], i * params.n + k)
            chosen.append(group[k * settings.n + pick])
            first.append(group[k * settings.n])
        answers.append(chosen)
        plain.append(first)
    return Decoded(answers, plain, seconds / settings.n)


def best_of_n_strategy(
    backend: Backend,
    prompts: Sequence[Context],
    params: GenerationParams,
    reward: RewardModel,
    settings: Settings,
) -> Decoded:
    """The highest-reward of N samples (the first of equals)."""
    return _pick(backend, prompts, params, reward, settings, lambda r, _: int(np.argmax(r)))


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
    return Decoded(answers, plain, seconds)


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
    return Decoded(answers, plain, seconds)


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
