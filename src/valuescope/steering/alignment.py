"""Decoding-time value alignment as an intervention: `--align value=weight --strategy S`.

`Alignment` is an intervention like activation steering (`--steer`): an audit wraps its backend
with it, and every answer the instrument asks for is generated under a strategy
(`valuescope.steering.strategies`) and a reward (`valuescope.steering.rewards`). The two
combine: `--steer` first, then `--align`, samples the steered model and chooses among its
answers.

Only generation changes: log-likelihoods pass through unchanged, so forced-choice instruments
(dilemmas, Likert, pairwise under their choice and likelihood methods) measure the plain model
under `--align`. Black-box servers take every strategy but `guided`: they only need `generate`.

The detector that measures a run is never its reward (`open` instruments refuse it before a
model loads). Every run records what the alignment cost beside what it moved, in results.json's
`alignment`: the reward's reading of the plain answers the strategy drew on and of the answers
it returned (the measuring detector's reading is the run's own profile: a gap between the two
is reward hacking), their perplexity under the unsteered model, their degenerate-answer rate,
and tokens per second of each. Best-of-n also records its curve: the best of each answer's
first 1, 2, 4, ... N samples, with the reward of the picks and, when the alignment knows the
run's measuring detector, that detector's reading of them and its control success.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from valuescope.backends.base import (
    Backend,
    Context,
    GenerationParams,
    LoglikelihoodRequest,
    Progress,
    WhiteBoxBackend,
)
from valuescope.detectors.base import Detector
from valuescope.errors import UsageError
from valuescope.steering.rewards import (
    RewardModel,
    ValueReward,
    load_user_reward,
    parse_weights,
)
from valuescope.steering.strategies import (
    STRATEGY,
    CurvePoint,
    Decoded,
    Pool,
    Settings,
    best_of_n_curve,
    check_strategy,
    user_text,
)

DEFAULT_REWARD = "lexicon"
"""The reward detector when none is named and the run measures with another (embed)."""


def reward_detector_for(measuring: str | None) -> str:
    """The default reward detector: the lexicon, or embed when the lexicon measures."""
    return "embed" if measuring == DEFAULT_REWARD else DEFAULT_REWARD


@dataclass
class Ledger:
    """What an aligned run generated, for its record: readings, fluency, time."""

    plain_parts: list[list[float]] = field(default_factory=list)
    aligned_parts: list[list[float]] = field(default_factory=list)
    plain_reward: list[float] = field(default_factory=list)
    aligned_reward: list[float] = field(default_factory=list)
    plain_nll: float = 0.0
    aligned_nll: float = 0.0
    plain_tokens: int = 0
    aligned_tokens: int = 0
    plain_status: list[str] = field(default_factory=list)
    aligned_status: list[str] = field(default_factory=list)
    plain_seconds: float = 0.0
    aligned_seconds: float = 0.0
    perplexity: bool = True
    """False where the unsteered model gives no log-likelihoods (some servers)."""
    pool_scores: list[np.ndarray] = field(default_factory=list)
    """Best-of-n's samples per answer: combined rewards, reward parts, measured readings."""
    pool_parts: list[np.ndarray] = field(default_factory=list)
    pool_measured: list[np.ndarray] = field(default_factory=list)
    seed: int = 0

    def add_pool(self, pool: Pool, measured: np.ndarray | None) -> None:
        self.pool_scores.append(pool.scores)
        self.pool_parts.append(pool.parts)
        if measured is not None:
            self.pool_measured.append(measured)

    def curve(self, values: Sequence[str], weights: Mapping[str, float]) -> list[CurvePoint] | None:
        """Best-of-n's curve over every answer recorded (None for other strategies)."""
        if not self.pool_scores:
            return None
        measured = np.concatenate(self.pool_measured) if self.pool_measured else None
        return best_of_n_curve(np.concatenate(self.pool_scores), np.concatenate(self.pool_parts),
                               values, measured, weights, self.seed)  # fmt: skip

    def as_dict(
        self, values: Sequence[str], weights: Mapping[str, float] | None = None
    ) -> dict[str, Any]:
        def mean(rows: list[list[float]]) -> dict[str, float | None]:
            if not rows:
                return {v: None for v in values}
            return dict(zip(values, map(float, np.mean(rows, axis=0)), strict=True))

        def ppl(nll: float, tokens: int) -> float | None:
            return math.exp(nll / tokens) if self.perplexity and tokens else None

        def degenerate(status: list[str]) -> float | None:
            return sum(s not in ("ok", "cut off") for s in status) / len(status) if status else None

        def average(xs: list[float]) -> float | None:
            return float(np.mean(xs)) if xs else None

        plain_ppl = ppl(self.plain_nll, self.plain_tokens)
        aligned_ppl = ppl(self.aligned_nll, self.aligned_tokens)
        plain_tps = self.plain_tokens / self.plain_seconds if self.plain_seconds else None
        aligned_tps = self.aligned_tokens / self.aligned_seconds if self.aligned_seconds else None
        curve = self.curve(values, weights or {})
        return {
            "answers": len(self.aligned_reward),
            "reward_reading": {
                "plain": mean(self.plain_parts),
                "aligned": mean(self.aligned_parts),
            },
            "combined_reward": {
                "plain": average(self.plain_reward),
                "aligned": average(self.aligned_reward),
            },
            "fluency": {
                "perplexity_plain": plain_ppl,
                "perplexity_aligned": aligned_ppl,
                "cost": aligned_ppl / plain_ppl - 1 if plain_ppl and aligned_ppl else None,
                "degenerate_plain": degenerate(self.plain_status),
                "degenerate_aligned": degenerate(self.aligned_status),
            },
            "speed": {
                "tokens_per_second_plain": plain_tps,
                "tokens_per_second": aligned_tps,
                "slowdown": plain_tps / aligned_tps if plain_tps and aligned_tps else None,
            },
            "best_of_n_curve": None if curve is None else [p.as_dict() for p in curve],
        }


def unsteered(backend: Backend) -> Backend:
    """The model under every wrapper (steering, alignment): what fluency is measured on."""
    while hasattr(backend, "prior") and backend.prior is not backend:
        backend = backend.prior
    return backend


@dataclass
class Alignment:
    """Decode under a value reward: `strategy` with `settings`, `reward` a detector name (with
    `weights` per value) or `user:M.json:U` (a fitted user's reward). `measuring`, the run's
    measuring detector, also reads every sample best-of-n draws, for its curve's control
    success (without it the curve has the reward only).

    >>> aligned = Alignment({"power": 1}, reward="lexicon", measuring="embed")  # doctest: +SKIP
    >>> spec = RunSpec(interventions=(aligned,), detector="embed")  # doctest: +SKIP
    >>> run_audit("schwartz-open", spec)  # doctest: +SKIP
    """

    weights: Mapping[str, float]
    strategy: str = "best-of-n"
    reward: str = DEFAULT_REWARD
    settings: Settings = field(default_factory=Settings)
    taxonomy: str = "schwartz"
    measuring: str | None = None
    model: RewardModel | None = None
    """A ready reward (Python API); else built from `reward` when the run starts."""
    ledger: Ledger = field(default_factory=Ledger)
    measurer: Detector | None = field(default=None, repr=False)
    """A ready measuring detector (Python API); else built from `measuring` when needed."""

    def __post_init__(self) -> None:
        check_strategy(self.strategy)
        if self.settings.n < 1 or self.settings.top_k < 1:
            raise UsageError("-n and the candidates per token must be at least 1")
        check_reward_not_measuring(self.reward_detector, self.measuring)

    # The Intervention protocol: an audit runs under it and records it as `alignment`.
    name = "alignment"
    flag = "--align"

    @property
    def white_box(self) -> bool:
        return self.strategy == "guided"

    @property
    def reward_detector(self) -> str | None:
        """The detector the reward reads with (None for a user's fitted reward)."""
        return None if self.reward.startswith("user:") else self.reward

    def reward_model(self) -> RewardModel:
        if self.model is None:
            if self.reward.startswith("user:"):
                self.model = load_user_reward(self.reward)
            else:
                from valuescope.detectors.registry import get_detector

                detector = get_detector(self.reward, self.taxonomy)
                self.model = ValueReward(detector, dict(self.weights))
        return self.model

    def measured(self, pool: Pool) -> np.ndarray | None:
        """(answers, samples, weighted values) signed readings of a pool by the measuring
        detector, read as open instruments read answers (None without one)."""
        if self.measurer is None and self.measuring is not None and self.weights:
            from valuescope.detectors.registry import get_detector

            self.measurer = get_detector(self.measuring, self.taxonomy)
        if self.measurer is None or not self.weights:
            return None
        flat = [t for texts in pool.texts for t in texts]
        read = signed_readings(self.measurer, flat, list(self.weights))
        return read.reshape(*pool.scores.shape, len(self.weights))

    def wrap(self, backend: Backend) -> Backend:
        if self.strategy == "guided" and not isinstance(unsteered(backend), WhiteBoxBackend):
            raise UsageError(
                f"--strategy guided needs a local model (next-token logits); "
                f"{backend.spec.raw!r} is black-box: use best-of-n or resample"
            )
        self.reward_model()
        return AlignedBackend(backend, self)

    def fingerprint(self) -> dict[str, Any]:
        s = self.settings
        return {"strategy": self.strategy, "reward": self.reward, "weights": dict(self.weights),
                "settings": [s.n, s.top_k, s.weight, s.lam]}  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """The `alignment` field of results.json."""
        s = self.settings
        values = self.model.values if self.model is not None else tuple(self.weights)
        return {
            "strategy": self.strategy,
            "reward": self.reward,
            "weights": dict(self.weights),
            "n": s.n,
            "top_k": s.top_k if self.strategy == "guided" else None,
            "weight": s.weight if self.strategy == "guided" else None,
            "lambda": s.lam if self.strategy == "resample" else None,
            "values": list(values),
            **self.ledger.as_dict(values, self.weights),
        }


class AlignedBackend:
    """A backend whose `generate` runs an alignment strategy; everything else is `prior`'s."""

    def __init__(self, backend: Backend, alignment: Alignment) -> None:
        self.prior = backend
        self.alignment = alignment

    def __getattr__(self, name: str) -> Any:
        return getattr(self.prior, name)

    @property
    def name(self) -> str:
        return self.prior.name

    def loglikelihood(self, requests: Any, progress: Progress | None = None) -> Any:
        return self.prior.loglikelihood(requests, progress)

    def generate(
        self, prompts: Sequence[Context], params: GenerationParams, progress: Progress | None = None
    ) -> list[list[str]]:
        a = self.alignment
        reward = a.reward_model()
        started = time.perf_counter()
        found = STRATEGY[a.strategy](self.prior, prompts, params, reward, a.settings)
        a.ledger.aligned_seconds += time.perf_counter() - started
        a.ledger.plain_seconds += found.plain_seconds
        a.ledger.seed = params.seed
        self._record(prompts, found, reward)
        if found.pool is not None and found.pool.best_of:
            a.ledger.add_pool(found.pool, a.measured(found.pool))
        if progress is not None:
            progress(len(prompts))
        return found.answers

    def _record(self, prompts: Sequence[Context], found: Decoded, reward: RewardModel) -> None:
        from valuescope.audit.answers import answer_status

        ledger = self.alignment.ledger
        rows = [(p, t) for p, group in zip(prompts, found.plain, strict=True) for t in group]
        mine = [(p, t) for p, group in zip(prompts, found.answers, strict=True) for t in group]
        pool = found.pool
        if pool is not None:  # every sample read already: the plain are each pool's first
            plain_parts = pool.parts[:, 0]
            parts = pool.parts[np.arange(len(pool.chosen)), pool.chosen]
        else:
            plain_parts = reward.parts([user_text(p) for p, _ in rows], [t for _, t in rows])
            parts = reward.parts([user_text(p) for p, _ in mine], [t for _, t in mine])
        # the reward as the strategy read it, so the recorded gain is the one it sought
        referenced = found.reward if found.reward is not None else reward.referenced(plain_parts)
        ledger.plain_parts += plain_parts.tolist()
        ledger.aligned_parts += parts.tolist()
        ledger.plain_reward += referenced.combine(plain_parts).tolist()
        ledger.aligned_reward += referenced.combine(parts).tolist()
        ledger.plain_status += [answer_status(t)[0] for _, t in rows]
        ledger.aligned_status += [answer_status(t)[0] for _, t in mine]
        base = unsteered(self.prior)
        for pairs, kind in ((rows, "plain"), (mine, "aligned")):
            asked = [LoglikelihoodRequest(p, t) for p, t in pairs if t.strip()]
            nll, tokens = 0.0, 0
            if asked and ledger.perplexity:
                try:
                    scored = base.loglikelihood(asked)
                except Exception:  # a server without log-probabilities: fluency not measured
                    ledger.perplexity = False
                    scored = []
                nll = -sum(r.logprob for r in scored)
                tokens = sum(r.n_tokens for r in scored)
            if kind == "plain":
                ledger.plain_nll += nll
                ledger.plain_tokens += tokens
            else:
                ledger.aligned_nll += nll
                ledger.aligned_tokens += tokens


def signed_readings(detector: Detector, texts: Sequence[str], values: Sequence[str]) -> np.ndarray:
    """(texts, values) signed scores of answers read as open instruments read them: sentence
    by sentence, a cut-off answer on its whole sentences; a degenerate answer (empty, repeated,
    refusal) expresses nothing and reads 0."""
    from valuescope.audit.answers import answer_status
    from valuescope.detectors.sentences import read_by_sentence

    scored = [answer_status(t)[1] for t in texts]
    usable = [k for k, text in enumerate(scored) if text]
    found = np.zeros((len(texts), len(values)))
    if usable:
        read = read_by_sentence(detector, [scored[k] for k in usable]).answers
        columns = [read.values.index(v) for v in values]
        found[usable] = read.score[:, columns]
    return found


def parse_align(
    align: str,
    strategy: str = "best-of-n",
    n: int | None = None,
    reward: str | None = None,
    measuring: str | None = None,
    taxonomy: str = "schwartz",
) -> Alignment:
    """The command line's `--align ... --strategy ... -n ... --reward ...` as an Alignment.

    `align` is `value=weight[,value=weight]` or `user:M.json:U`; `measuring` is the run's
    measuring detector, which the reward may not be (refused here, before any model loads).
    """
    check_strategy(strategy)
    settings = Settings() if n is None else Settings(n=n)
    if n is not None and n < 1:
        raise UsageError(f"-n {n}: give at least one sample per answer")
    if align.startswith("user:"):
        if reward is not None:
            raise UsageError("--reward does not apply to --align user:M.json:U (its heads read)")
        return Alignment({}, strategy, align, settings, taxonomy)
    chosen = reward or reward_detector_for(measuring)
    from valuescope.detectors.registry import check_detector_name

    check_detector_name(chosen)
    check_reward_not_measuring(chosen, measuring)
    return Alignment(parse_weights(align), strategy, chosen, settings, taxonomy, measuring)


def check_reward_not_measuring(reward: str | None, measuring: str | None) -> None:
    """One line, before any model loads, when a run would be judged by its own reward."""
    if reward is not None and measuring is not None and reward.strip() == measuring.strip():
        raise UsageError(
            f"--reward {reward}: the detector that measures a run is never its reward; pick "
            "another --reward or --detector (e.g. --reward lexicon --detector embed)"
        )
