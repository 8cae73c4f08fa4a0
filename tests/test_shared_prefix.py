"""Batched log-likelihoods run the tokens that a batch's contexts share once: the same numbers
as the naive path (one full sequence at a time) and as running every context whole."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import valuescope.backends.local
from valuescope.audit.scoring import answer_prompt
from valuescope.backends import LoglikelihoodRequest
from valuescope.backends.base import Chat
from valuescope.instruments.dilemma import load_dilemmas

SYSTEM = "You are a thoughtful assistant who weighs every side of a decision before answering."
QUESTIONS = [
    "Should I take the job abroad?",
    "Is it fine to skip the family dinner for a concert?",
    "Why?",
    "My friend asked me to lie for her at work; her boss is strict and she may lose the job.",
]
ANSWERS = [" Yes.", " No, stay with your family and friends this time.", " Perhaps", " Ask."]


def requests() -> list[LoglikelihoodRequest]:
    return [
        LoglikelihoodRequest(Chat(q, SYSTEM), a)
        for q in QUESTIONS
        for a in ANSWERS[: 2 + len(q) % 3]
    ]


@contextmanager
def passes(backend: Any) -> Iterator[list[tuple[int, int, bool]]]:
    """Every forward pass the model makes: rows, tokens, and whether it ran a shared prefix
    (one row, no padding mask)."""
    seen: list[tuple[int, int, bool]] = []

    def record(_module: Any, _args: Any, kwargs: Any) -> None:
        rows, tokens = kwargs["input_ids"].shape
        seen.append((rows, tokens, rows == 1 and kwargs.get("attention_mask") is None))

    handle = backend.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def test_contexts_share_their_common_tokens_once(tiny_backend: Any) -> None:
    asked = requests()
    contexts = [tiny_backend.render(r.context) for r in asked]
    common = valuescope.backends.local._shared_prefix([tiny_backend._encode(c) for c in contexts])
    assert common >= valuescope.backends.local.SHARED_PREFIX  # the system prompt, at least
    with passes(tiny_backend) as seen:
        fast = tiny_backend.loglikelihood(asked)
    heads = [tokens for rows, tokens, head in seen if head]
    assert heads and all(tokens >= common for tokens in heads)
    naive = tiny_backend.loglikelihood_naive(asked)
    for a, b in zip(fast, naive, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)
        assert a.greedy == b.greedy


def test_sharing_gives_what_running_every_context_whole_gives(
    tiny_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = requests()
    shared = tiny_backend.loglikelihood(asked)
    monkeypatch.setattr(valuescope.backends.local, "SHARED_PREFIX", 10**9)
    with passes(tiny_backend) as seen:
        whole = tiny_backend.loglikelihood(asked)
    assert seen and not [p for p in seen if p[2]]  # nothing was shared
    for a, b in zip(shared, whole, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_a_context_inside_another_keeps_a_token_of_its_own(tiny_backend: Any) -> None:
    """One context is the start of another: the shared part stops one token short of it."""
    long = "Alice went to the market to buy apples, pears and bread for the whole week ahead"
    asked = [
        LoglikelihoodRequest(long[:40], " and"),
        LoglikelihoodRequest(long, "."),
        LoglikelihoodRequest(long + ", and", " cheese."),
    ]
    fast = tiny_backend.loglikelihood(asked)
    naive = tiny_backend.loglikelihood_naive(asked)
    assert [a.logprob for a in fast] == pytest.approx([b.logprob for b in naive], abs=1e-4)


def test_shared_prefix_length() -> None:
    shared = valuescope.backends.local._shared_prefix
    base = list(range(20))
    assert shared([base, [*base, 7]]) == 19  # each keeps at least one token
    assert shared([base, [*base[:5], 99, 99, 99]]) == 0  # five common tokens do not pay
    assert shared([[*base, 1], [*base, 2], [*base, 3, 4]]) == 20
    assert shared([base]) == 0


@pytest.mark.parametrize("system", [None, "You are a cautious person who values security."])
def test_the_embedded_model_agrees_with_the_naive_path(smollm2: Any, system: str | None) -> None:
    items = load_dilemmas("schwartz-dilemmas").items[:5]
    asked = [
        LoglikelihoodRequest(Chat(answer_prompt(item.text, None), system), option.text)
        for item in items
        for option in item.options
    ]
    with passes(smollm2) as seen:
        fast = smollm2.loglikelihood(asked)
    assert any(head for _, _, head in seen)  # the chat's opening ran once
    naive = smollm2.loglikelihood_naive(asked)
    for a, b in zip(fast, naive, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)
