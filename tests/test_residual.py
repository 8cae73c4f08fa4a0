"""Residual-stream hooks: exact additions, untouched layers, hooks removed."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from valuescope import Chat
from valuescope.backends import LoglikelihoodRequest
from valuescope.backends.residual import find_layers
from valuescope.errors import BackendCapabilityError

REQ = [LoglikelihoodRequest(Chat("You find a wallet."), "Return it to the owner.")]


def _record_all(backend: Any) -> dict[int, torch.Tensor]:
    with backend.residual.record(range(backend.num_layers)) as seen:
        backend.loglikelihood_naive(REQ)
    return {layer: torch.cat(tensors, dim=1) for layer, tensors in seen.items()}


def test_record_matches_hidden_states(tiny_backend: Any) -> None:
    text = tiny_backend.render(REQ[0].context)
    ids = torch.tensor([tiny_backend._encode(text)])
    with tiny_backend.residual.record([1]) as seen:
        out = tiny_backend.model(input_ids=ids, output_hidden_states=True)
    assert torch.allclose(seen[1][0], out.hidden_states[2], atol=1e-6)


def test_add_changes_only_the_chosen_layer_by_the_vector(tiny_backend: Any) -> None:
    before = _record_all(tiny_backend)
    vector = torch.randn(tiny_backend.hidden_size, generator=torch.Generator().manual_seed(1))
    with tiny_backend.residual.add({2: vector}, scale=0.5):
        after = _record_all(tiny_backend)
    for layer in (0, 1):
        assert torch.equal(before[layer], after[layer])
    # Recording hooks were registered after the adding hook, so they see the edited output.
    assert torch.allclose(after[2], before[2] + 0.5 * vector, atol=1e-5)
    assert not torch.allclose(after[3], before[3], atol=1e-3)


def test_hooks_are_removed_after_the_block(tiny_backend: Any) -> None:
    base = tiny_backend.loglikelihood(REQ)[0].logprob
    vector = torch.ones(tiny_backend.hidden_size)
    with tiny_backend.residual.add({0: vector}, scale=3.0):
        steered = tiny_backend.loglikelihood(REQ)[0].logprob
    assert steered != pytest.approx(base, abs=1e-6)
    assert tiny_backend.loglikelihood(REQ)[0].logprob == base
    handle = tiny_backend.residual.add({0: vector}, scale=3.0)
    handle.remove()
    assert tiny_backend.loglikelihood(REQ)[0].logprob == base


def test_steering_applies_to_generated_tokens(tiny_backend: Any) -> None:
    from valuescope import GenerationParams

    params = GenerationParams(max_new_tokens=6)
    plain = tiny_backend.generate([Chat("Hello")], params)
    with tiny_backend.residual.add({3: torch.ones(tiny_backend.hidden_size)}, scale=20.0):
        steered = tiny_backend.generate([Chat("Hello")], params)
    assert steered != plain


def test_out_of_range_layer_is_a_clear_error(tiny_backend: Any) -> None:
    with pytest.raises(BackendCapabilityError, match=r"layers 0\.\.3"):
        tiny_backend.residual.add({9: torch.zeros(tiny_backend.hidden_size)})


def test_layer_path_override_and_failure(tiny_backend: Any) -> None:
    assert len(find_layers(tiny_backend.model, "model.layers.{num}")) == 4
    with pytest.raises(BackendCapabilityError, match="pass the layer path"):
        find_layers(torch.nn.Linear(2, 2))
