"""The white-box backend on a tiny random Llama: exact maths, padding, determinism."""

from __future__ import annotations

import random
import warnings
from typing import Any

import pytest

from valuescope import Chat, GenerationParams
from valuescope.backends import LoglikelihoodRequest, WhiteBoxBackend

QUESTIONS = [
    "You find a wallet on the street.",
    "Your neighbour asks you to water the plants while she travels for two weeks and more.",
    "Answer A or B.",
]
ANSWERS = ["A", "B", "Return it to the owner.", "Keep the money for a weekend trip with friends."]


def _requests() -> list[LoglikelihoodRequest]:
    reqs = [LoglikelihoodRequest(Chat(q), a) for q in QUESTIONS for a in ANSWERS]
    reqs += [
        LoglikelihoodRequest(Chat(q, system="Be brief."), a) for q in QUESTIONS[:1] for a in ANSWERS
    ]
    reqs += [LoglikelihoodRequest("The bus leaves at seven", " and rain is expected later.")]
    return reqs


def test_tiny_backend_is_white_box(tiny_backend: Any) -> None:
    assert isinstance(tiny_backend, WhiteBoxBackend)
    assert tiny_backend.num_layers == 4


def test_batched_loglikelihood_equals_naive(tiny_backend: Any) -> None:
    reqs = _requests()
    fast = tiny_backend.loglikelihood(reqs)
    slow = tiny_backend.loglikelihood_naive(reqs)
    assert len({r.n_tokens for r in fast}) > 2  # continuations of different lengths
    for f, s in zip(fast, slow, strict=True):
        assert f.n_tokens == s.n_tokens
        assert f.logprob == pytest.approx(s.logprob, abs=1e-4)
        assert f.token_logprobs == pytest.approx(s.token_logprobs, abs=1e-4)
        assert f.greedy == s.greedy


def test_loglikelihood_does_not_depend_on_request_order_or_batch(tiny_backend: Any) -> None:
    reqs = _requests()
    base = tiny_backend.loglikelihood(reqs)
    shuffled = list(range(len(reqs)))
    random.Random(3).shuffle(shuffled)
    again = tiny_backend.loglikelihood([reqs[i] for i in shuffled])
    for position, index in enumerate(shuffled):
        assert again[position].logprob == pytest.approx(base[index].logprob, abs=1e-5)
    assert [r.logprob for r in tiny_backend.loglikelihood(reqs)] == [r.logprob for r in base]


def test_progress_counts_every_request(tiny_backend: Any) -> None:
    seen: list[int] = []
    reqs = _requests()
    tiny_backend.loglikelihood(reqs, progress=seen.append)
    assert sum(seen) == len(reqs) and len(seen) > 1


def test_render_uses_chat_template_and_system_prompt(tiny_backend: Any) -> None:
    default = tiny_backend.render(Chat("Hello"))
    assert default.startswith("<|im_start|>system\nYou are a tiny test model.")
    assert default.endswith("<|im_start|>assistant\n")
    custom = tiny_backend.render(Chat("Hello", system="You value tradition."))
    assert "You value tradition." in custom and "tiny test model" not in custom
    assert tiny_backend.render("raw text") == "raw text"


def test_system_prompt_changes_loglikelihood(tiny_backend: Any) -> None:
    plain, steered = tiny_backend.loglikelihood(
        [
            LoglikelihoodRequest(Chat("Hi"), "Return it."),
            LoglikelihoodRequest(Chat("Hi", "Be brief."), "Return it."),
        ]
    )
    assert plain.logprob != pytest.approx(steered.logprob, abs=1e-6)


def test_greedy_generation_is_deterministic_and_batch_independent(tiny_backend: Any) -> None:
    params = GenerationParams(max_new_tokens=8)
    prompts = [Chat(q) for q in QUESTIONS]
    together = tiny_backend.generate(prompts, params)
    alone = [tiny_backend.generate([p], params)[0] for p in prompts]
    assert together == alone
    assert all(len(out) == 1 for out in together)


def test_sampling_is_reproducible_from_seed(tiny_backend: Any) -> None:
    prompts = [Chat(QUESTIONS[0]), Chat(QUESTIONS[1])]
    params = GenerationParams(max_new_tokens=12, temperature=1.0, n=3, seed=7)
    first = tiny_backend.generate(prompts, params)
    assert first == tiny_backend.generate(prompts, params)
    # A prompt's samples do not depend on the other prompts in the call.
    assert tiny_backend.generate(prompts[1:], params)[0] == first[1]
    other = tiny_backend.generate(
        prompts, GenerationParams(max_new_tokens=12, temperature=1.0, n=3, seed=8)
    )
    assert other != first
    assert all(len(samples) == 3 for samples in first)


def test_sampling_with_a_tiny_nucleus_is_greedy(tiny_backend: Any) -> None:
    # top_p near 0 keeps only the most likely token, so every sample equals greedy decoding.
    prompts = [Chat(q) for q in QUESTIONS]
    greedy = tiny_backend.generate(prompts, GenerationParams(max_new_tokens=8))
    sampled = tiny_backend.generate(
        prompts, GenerationParams(max_new_tokens=8, temperature=1.0, top_p=1e-6, n=2, seed=3)
    )
    assert sampled == [[g[0], g[0]] for g in greedy]


def test_sampled_rows_differ_within_a_prompt(tiny_backend: Any) -> None:
    # Each of a prompt's n rows has its own generator: the samples are not copies.
    out = tiny_backend.generate(
        [Chat(QUESTIONS[0])], GenerationParams(max_new_tokens=12, temperature=1.5, n=4, seed=1)
    )
    assert len(set(out[0])) > 1


def test_kv_cache_is_passed_under_the_current_name(tiny_backend: Any) -> None:
    # transformers 5 renamed `past_key_values` to `cache` and drops the old name in 5.40: the
    # cached scoring and sampling paths must not lean on it (no deprecation warning).
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        scored = tiny_backend.loglikelihood(_requests())
        tiny_backend.generate(
            [Chat(QUESTIONS[0])], GenerationParams(max_new_tokens=4, temperature=1.0, n=2)
        )
    assert any(r.n_tokens > 1 for r in scored)  # the path that feeds the cache was taken


def test_invalid_generation_params_are_rejected() -> None:
    with pytest.raises(ValueError):
        GenerationParams(n=0)
