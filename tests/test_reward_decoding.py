"""Reward-guided decoding (`valuescope.steering.decoding`), whose figures
docs/results/reward-decoding.md quotes, checked on the tiny model: it is a distribution, it
tilts the way the probe reads, and the tree attention mask reads each candidate as a forward
pass of its own text would."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from valuescope.backends.base import GenerationParams, LoglikelihoodRequest
from valuescope.errors import UsageError
from valuescope.steering.decoding import DECODERS, ProbeTilted
from valuescope.steering.operators import perplexity
from valuescope.vectors.extract import LayerVector

LAYER = 2


def _reading(backend: Any, seed: int = 1) -> LayerVector:
    vector = np.random.default_rng(seed).normal(size=backend.hidden_size) * 0.05
    return LayerVector(vector.astype(np.float32), {}, 0.0, (1.0, 0.0))


def _context(backend: Any) -> list[int]:
    rendered = backend.render("Here is a short passage.\n\n")
    return list(backend.encode_pair(rendered, "The river").context)


def test_the_tilted_distribution_sums_to_one_over_the_vocabulary(tiny_backend: Any) -> None:
    tilted = ProbeTilted(tiny_backend, _reading(tiny_backend), LAYER, 4.0, top_k=8)
    ids = _context(tiny_backend)
    vocab = tiny_backend.model.config.vocab_size
    probs = [math.exp(tilted.token_logprobs([*ids, x], len(ids))[0]) for x in range(vocab)]
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)
    with torch.inference_mode():
        plain = torch.softmax(tiny_backend.model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
    # The tilt moved mass (it is not the plain distribution), and only among the top 8.
    top = set(torch.topk(plain, 8).indices.tolist())
    ratios = [probs[x] / float(plain[x]) for x in range(vocab)]
    outside = {round(r, 6) for x, r in enumerate(ratios) if x not in top}
    assert len(outside) == 1  # every other token is scaled by the same 1/Z
    assert max(abs(ratios[x] - next(iter(outside))) for x in top) > 0.05


def test_it_favours_the_candidates_the_probe_reads_higher(tiny_backend: Any) -> None:
    reading = _reading(tiny_backend)
    tilted = ProbeTilted(tiny_backend, reading, LAYER, 2.0, top_k=8)
    ids = _context(tiny_backend)
    with torch.inference_mode():
        logits = tiny_backend.model(input_ids=torch.tensor([ids])).logits[0, -1]
        top = torch.topk(logits, 8).indices.tolist()
        scores = tilted._readings(ids, top, [len(ids)] * len(top))
        plain = torch.log_softmax(logits.double(), -1)
        lifts = [tilted.token_logprobs([*ids, x], len(ids))[0] - float(plain[x]) for x in top]
    # log p'(x) - log p(x) = w (s(x) - s_bar) - log Z: the lift is linear in the reading.
    slope, _ = np.polyfit(scores.numpy(), np.array(lifts), 1)
    assert slope == pytest.approx(2.0, rel=1e-4)


def test_each_candidate_is_read_as_its_own_text_would_be(tiny_backend: Any) -> None:
    reading = _reading(tiny_backend)
    tilted = ProbeTilted(tiny_backend, reading, LAYER, 1.0, top_k=4)
    ids = [*_context(tiny_backend), 40, 41, 42]
    candidates, at = [7, 8, 9, 10], [len(ids) - 3, len(ids) - 3, len(ids) - 1, len(ids)]
    with torch.inference_mode():
        batched = tilted._readings(ids, candidates, at)
        alone = []
        unit = torch.tensor(reading.unit)
        for x, i in zip(candidates, at, strict=True):
            with tiny_backend.residual.record([LAYER]) as seen:
                tiny_backend.model(input_ids=torch.tensor([[*ids[:i], x]]))
            alone.append(float(seen[LAYER][0][0, -1] @ unit) / reading.gap)
    assert batched.tolist() == pytest.approx(alone, abs=1e-4)


def test_weight_zero_scores_as_the_plain_model(tiny_backend: Any) -> None:
    tilted = ProbeTilted(tiny_backend, _reading(tiny_backend), LAYER, 0.0, top_k=8)
    requests = [LoglikelihoodRequest("Here is a short passage.\n\n", "The river bends twice.")]
    got = tilted.loglikelihood(requests)[0]
    want = tiny_backend.loglikelihood(requests)[0]
    assert got.token_logprobs == pytest.approx(want.token_logprobs, abs=1e-4)


def test_it_is_the_registered_decoder_and_refuses_what_it_does_not_tilt(tiny_backend: Any) -> None:
    assert DECODERS["probe-tilted"] is ProbeTilted
    tilted = DECODERS["probe-tilted"](tiny_backend, _reading(tiny_backend), LAYER, 1.0)
    assert tilted.spec == tiny_backend.spec and tilted.name == tiny_backend.name
    assert perplexity(ProbeTilted(tiny_backend, _reading(tiny_backend), LAYER, 0.0)) == (
        pytest.approx(perplexity(tiny_backend), rel=1e-4)
    )
    with pytest.raises(UsageError, match="generating under it is not implemented"):
        tilted.generate(["Hello"], GenerationParams())
    with pytest.raises(UsageError, match="top_k 0"):
        ProbeTilted(tiny_backend, _reading(tiny_backend), LAYER, 1.0, top_k=0)
