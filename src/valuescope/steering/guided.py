"""Token-level and sentence-level decoding under a value reward.

Guided decoding (ARGS): at each position the K most likely next tokens have their logits
raised by w x (r(x) - r_bar), r(x) the reward of the answer so far continued by x and r_bar the
candidates' probability-weighted mean; every other token keeps its logit. The result is a
proper distribution over the whole vocabulary, equal to the model's where w = 0 or where the
candidates read alike. The reward reads text, not the model, so the prefix's KV cache serves
every candidate: each position costs one forward pass (as plain decoding) plus K reward
readings. The same tilt is a `transformers` LogitsProcessor (`RewardLogitsProcessor`), for
`model.generate`.

The probe-tilted distribution of `valuescope.steering.decoding` is the same idea with the
reward read from the model's own residual stream (it scores texts; it does not generate).

Sentence-level rejection: the answer grows a sentence at a time; of N drawn sentences the
first whose answer so far keeps the reward at or above the plain answers' mean is kept, else
the best of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from valuescope.backends.base import Backend, Chat, Context, GenerationParams
from valuescope.backends.local import LocalBackend
from valuescope.detectors.sentences import split_sentences
from valuescope.errors import UsageError
from valuescope.steering.rewards import RewardModel
from valuescope.steering.strategies import user_text

Partial = Callable[[int, int], str]
"""(row, candidate token) -> the text of that row's answer continued by the token."""


def tilt(
    logits: torch.Tensor,
    rows: Sequence[int],
    partial: Partial,
    prompts: Sequence[str],
    reward: RewardModel,
    weight: float,
    top_k: int,
) -> torch.Tensor:
    """`logits` (rows x vocab) with each listed row's top-k raised by weight x centred reward."""
    if weight == 0 or not rows:
        return logits
    out = logits.clone()
    index = torch.tensor(list(rows), dtype=torch.long)
    top = torch.topk(logits[index].float(), top_k, dim=-1).indices
    texts: list[str] = []
    asked: list[str] = []
    for r, row in enumerate(rows):
        for token in top[r].tolist():
            texts.append(partial(row, token))
            asked.append(prompts[row])
    unique = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    scores = reward.combine(reward.parts([asked[texts.index(t)] for t in unique], list(unique)))
    r_x = torch.tensor([scores[unique[t]] for t in texts], dtype=torch.float64)
    r_x = r_x.reshape(len(rows), top_k)
    p = torch.softmax(logits[index].double(), dim=-1).gather(1, top)
    centred = r_x - (p * r_x).sum(-1, keepdim=True) / p.sum(-1, keepdim=True).clamp(min=1e-12)
    lift = torch.zeros_like(out[index], dtype=torch.float64).scatter(1, top, weight * centred)
    out[index] = (out[index].double() + lift).to(out.dtype)
    return out


def _local(backend: Backend) -> tuple[LocalBackend, contextlib.AbstractContextManager[Any]]:
    """The local model under `backend`, and its steering to run under (if it is steered)."""
    steering = getattr(backend, "steering", None)
    inner = getattr(backend, "prior", backend)
    if isinstance(backend, LocalBackend):
        return backend, contextlib.nullcontext()
    if steering is not None and isinstance(inner, LocalBackend):
        return inner, steering.apply(inner)
    raise UsageError("--strategy guided needs a local transformers model (smollm2, hf:, gguf:)")


@torch.inference_mode()
def guided_generate(
    backend: Backend,
    prompts: Sequence[Context],
    params: GenerationParams,
    reward: RewardModel,
    weight: float,
    top_k: int,
) -> list[list[str]]:
    """`params.n` answers per prompt under the reward tilt; with weight 0, token for token the
    local backend's own `generate` (same per-row generators, same cache)."""
    local, steered = _local(backend)
    with steered:
        texts = [local.render(p) for p in prompts]
        users = [user_text(p) for p in prompts]
        outputs: list[list[str]] = []
        per_call = max(1, (local.batch_size * 8) // params.n)
        if params.temperature == 0:
            per_call = local.batch_size
        for start in range(0, len(texts), per_call):
            chunk = slice(start, start + per_call)
            rows = _decode(local, texts[chunk], users[chunk], params, reward, weight, top_k)
            n = 1 if params.temperature == 0 else params.n
            groups = (rows[i * n : (i + 1) * n] for i in range(len(rows) // n))
            outputs.extend(group * (params.n // n) for group in groups)
    return outputs


def _decode(
    local: LocalBackend,
    texts: list[str],
    users: list[str],
    params: GenerationParams,
    reward: RewardModel,
    weight: float,
    top_k: int,
) -> list[str]:
    """`LocalBackend._sample` (greedy when temperature is 0) with each step's logits tilted."""
    n = 1 if params.temperature == 0 else params.n
    row_users = [users[i // n] for i in range(len(texts) * n)]

    def adjust(
        logits: torch.Tensor, new: torch.Tensor, done: torch.Tensor, step: int
    ) -> torch.Tensor:
        def partial(row: int, token: int) -> str:
            ids = [*new[row, :step].tolist(), token]
            return str(local.tokenizer.decode(ids, skip_special_tokens=True)).strip()

        active = [r for r in range(len(row_users)) if not bool(done[r])]
        return tilt(logits, active, partial, row_users, reward, weight, top_k)

    return local._sample(texts, params, adjust)


def _transformers_processor() -> type:
    from transformers import LogitsProcessor

    return LogitsProcessor  # type: ignore[no-any-return]


class RewardLogitsProcessor(_transformers_processor()):  # type: ignore[misc]
    """The guided tilt for `model.generate(..., logits_processor=[...])`.

    Args:
        prompt_width: the (padded) prompt length of `input_ids`; what follows is the answer.
        prompts: the user text per row (the reward's prompt argument).

    >>> tilt = RewardLogitsProcessor(tok, reward, ids.shape[1], ["Should I?"], 4)  # doctest: +SKIP
    >>> model.generate(ids, logits_processor=LogitsProcessorList([tilt]))  # doctest: +SKIP
    """

    def __init__(
        self,
        tokenizer: Any,
        reward: RewardModel,
        prompt_width: int,
        prompts: Sequence[str],
        weight: float,
        top_k: int = 8,
    ) -> None:
        self.tokenizer = tokenizer
        self.reward = reward
        self.prompt_width = prompt_width
        self.prompts = list(prompts)
        self.weight = weight
        self.top_k = top_k

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        new = input_ids[:, self.prompt_width :].tolist()
        per_row = max(1, len(new) // max(1, len(self.prompts)))
        users = [self.prompts[min(r // per_row, len(self.prompts) - 1)] for r in range(len(new))]

        def partial(row: int, token: int) -> str:
            text = self.tokenizer.decode(new[row] + [token], skip_special_tokens=True)
            return str(text).strip()

        rows = list(range(len(new)))
        return tilt(scores, rows, partial, users, self.reward, self.weight, self.top_k)


SENTENCE_TOKENS = 40
"""New tokens drawn per try for one sentence."""
ROUNDS = 12


def _first_sentence(text: str) -> tuple[str, bool]:
    """The first sentence of a continuation, and whether it is all there was."""
    sentences = split_sentences(text.strip())
    if not sentences:
        return "", True
    return sentences[0], len(sentences) == 1


def sentence_generate(
    backend: Backend,
    prompts: Sequence[Context],
    params: GenerationParams,
    reward: RewardModel,
    tries: int,
    threshold: float | None = None,
) -> list[list[str]]:
    """Answers grown sentence by sentence; `threshold` defaults to the reward of the
    reference's own level (every value at its plain mean)."""
    level = threshold
    if level is None:
        level = float(reward.combine(np.zeros((1, len(reward.values))) + _reference(reward))[0])
    slots = [(i, k) for i in range(len(prompts)) for k in range(params.n)]
    text = {slot: "" for slot in slots}
    open_slots = list(slots)
    for round_ in range(ROUNDS):
        if not open_slots:
            break
        contexts: list[Context] = []
        for slot in open_slots:
            base = prompts[slot[0]]
            chat = base if isinstance(base, Chat) else Chat(base)
            contexts.append(replace(chat, answer_prefix=(text[slot] + " ").lstrip()))
        temperature = params.temperature or 0.7
        asked = GenerationParams(min(SENTENCE_TOKENS, params.max_new_tokens), temperature,
                                 params.top_p, tries, params.seed + 7919 * round_)  # fmt: skip
        drawn = backend.generate(contexts, asked)
        still = []
        for (i, k), group in zip(open_slots, drawn, strict=True):
            firsts = [_first_sentence(g) for g in group]
            answers = [(text[(i, k)] + " " + s).strip() for s, _ in firsts]
            user = user_text(prompts[i])
            scores = reward.combine(reward.parts([user] * len(answers), answers))
            passing = [j for j, s in enumerate(scores) if s >= level and firsts[j][0]]
            j = passing[0] if passing else int(np.argmax(scores))
            text[(i, k)] = answers[j]
            finished = firsts[j][1] or not firsts[j][0]
            if not finished and len(text[(i, k)].split()) < params.max_new_tokens:
                still.append((i, k))
        open_slots = still
    return [[text[(i, k)] for k in range(params.n)] for i in range(len(prompts))]


def _reference(reward: RewardModel) -> np.ndarray:
    ref = getattr(reward, "reference", None)
    if not ref:
        return np.zeros(len(reward.values))
    return np.array([ref.get(v, 0.0) for v in reward.values], dtype=float)
