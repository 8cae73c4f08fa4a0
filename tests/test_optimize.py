"""Optimised value vectors: the differentiable scores agree with the scorer, training moves the
preference it is trained on, and `--method optimized` writes a file the rest of valuescope reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support.cli import run_cli
from support.contrast import small_contrast

from valuescope.backends.base import Chat, LoglikelihoodRequest
from valuescope.errors import UsageError
from valuescope.steering.calibration import calibrate, default_layers
from valuescope.steering.operators import preference
from valuescope.vectors import optimize
from valuescope.vectors.contrast import load_contrast
from valuescope.vectors.extract import VectorSet, extract_vectors
from valuescope.vectors.optimize import Training, _plain_pass, _requests, train_direction


def test_forward_scores_agree_with_the_log_likelihood_scorer(tiny_backend: Any) -> None:
    requests = [
        LoglikelihoodRequest(Chat("What did you do?", answer_prefix="I was at the park."), " Ran."),
        LoglikelihoodRequest(Chat("What did you do?"), " I helped my neighbour carry boxes."),
        LoglikelihoodRequest(Chat("Why?"), " Because."),
    ]
    with torch.no_grad():
        means, contexts = tiny_backend.forward_scores(requests)
    expected = [r.logprob / r.n_tokens for r in tiny_backend.loglikelihood(requests)]
    assert means.tolist() == pytest.approx(expected, abs=1e-4)  # right padding changes nothing
    for request, dists in zip(requests, contexts, strict=True):
        n_ctx = len(tiny_backend._encode(tiny_backend.render(request.context).rstrip(" ")))
        assert dists.shape == (n_ctx - 1, tiny_backend.model.config.vocab_size)
        assert torch.allclose(dists.exp().sum(-1), torch.ones(n_ctx - 1), atol=1e-4)


def test_the_plain_pass_keeps_only_the_shared_contexts(tiny_backend: Any, tmp_path: Path) -> None:
    """Kept for the whole training, the plain distributions must not pin the batch's."""
    pairs = load_contrast(small_contrast(tmp_path)).of("power")[:3]
    requests = _requests(pairs)
    margins, contexts = _plain_pass(tiny_backend, requests)
    with torch.no_grad():
        means, full = tiny_backend.forward_scores(requests)
    assert torch.equal(margins, means[0::2] - means[1::2])
    assert len(contexts) == len(pairs)
    for kept, whole in zip(contexts, full[0::2], strict=True):
        assert torch.equal(kept, whole)
        assert kept.untyped_storage().nbytes() == kept.numel() * kept.element_size()
        assert whole.untyped_storage().nbytes() > whole.numel() * whole.element_size()


def _preference_with(backend: Any, pairs: list[Any], layer: int, vector: np.ndarray) -> float:
    with backend.residual.add({layer: torch.tensor(vector, dtype=torch.float32)}):
        return preference(backend, pairs)


def test_training_raises_the_preference_it_is_trained_on(tiny_backend: Any, tmp_path: Path) -> None:
    contrast = load_contrast(small_contrast(tmp_path))
    found = extract_vectors(tiny_backend, contrast, held_out=0.25, seed=0)
    pairs, _ = contrast.split("power", 0.25, seed=0)
    layer, start = 1, found["power"].layers[1]
    radius = 2 * start.gap
    trained = train_direction(tiny_backend, pairs, layer, start.unit, radius,
                              Training(steps=6, kl_weight=0.0, lr=0.1))  # fmt: skip
    assert np.linalg.norm(trained.unit) == pytest.approx(1.0)
    assert trained.cosine_to_start < 0.999  # the gradient reached the direction
    assert trained.preference_loss[-1] < trained.preference_loss[0]
    before = _preference_with(tiny_backend, pairs, layer, radius * start.unit)
    after = _preference_with(tiny_backend, pairs, layer, radius * trained.unit)
    assert after > before
    # the negative direction pushes the other way (the loss is bidirectional)
    assert _preference_with(tiny_backend, pairs, layer, -radius * trained.unit) < after


def test_kl_weight_keeps_the_shared_context_closer_to_the_plain_model(
    tiny_backend: Any, tmp_path: Path
) -> None:
    contrast = load_contrast(small_contrast(tmp_path))
    pairs = contrast.of("benevolence")
    start = np.ones(tiny_backend.hidden_size)
    free = train_direction(tiny_backend, pairs, 0, start, 8.0, Training(steps=4, kl_weight=0.0))
    held = train_direction(tiny_backend, pairs, 0, start, 8.0, Training(steps=4, kl_weight=50.0))
    assert held.kl[-1] < free.kl[-1]


def test_plain_passes_past_the_memory_cap_are_recomputed_to_the_same_direction(
    tiny_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cap trades memory for forward passes, never the trained direction."""
    pairs = load_contrast(small_contrast(tmp_path)).of("benevolence")
    start = np.ones(tiny_backend.hidden_size)
    training = Training(steps=3, kl_weight=5.0, batch_pairs=2)
    n_batches = -(-len(pairs) // training.batch_pairs)
    assert n_batches >= 2
    calls: list[int] = []
    real = optimize._plain_pass

    def counted(backend: Any, requests: Any, *rest: Any) -> Any:
        calls.append(len(requests))
        return real(backend, requests, *rest)

    monkeypatch.setattr(optimize, "_plain_pass", counted)
    kept = train_direction(tiny_backend, pairs, 1, start, 6.0, training)
    assert len(calls) == n_batches  # everything fits under the default cap: one pass each
    calls.clear()
    one = sum(c.numel() * c.element_size() for c in real(tiny_backend, _requests(pairs[:2]))[1])
    some = train_direction(tiny_backend, pairs, 1, start, 6.0, training, keep_bytes=one)
    assert len(calls) == 1 + (n_batches - 1) * training.steps  # the first batch fits the cap
    calls.clear()
    none = train_direction(tiny_backend, pairs, 1, start, 6.0, training, keep_bytes=0)
    assert len(calls) == n_batches * training.steps
    assert kept.kl[-1] > 0  # the guard is live, so a plain pass taken while steered would show
    for other in (some, none):
        assert np.allclose(other.unit, kept.unit, atol=1e-6)
        assert other.kl == pytest.approx(kept.kl, rel=1e-5)
        assert other.preference_loss == pytest.approx(kept.preference_loss, rel=1e-5)


def test_splitting_a_batch_into_passes_gives_the_same_direction(
    tiny_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passes of unequal size (2 + 1 pairs) must each weigh in by their share of the batch."""
    pairs = load_contrast(small_contrast(tmp_path)).of("benevolence")
    start = np.ones(tiny_backend.hidden_size)
    training = Training(steps=3, kl_weight=5.0, batch_pairs=3)
    assert len(pairs) >= training.batch_pairs  # a full batch is split 2 + 1
    sizes: list[int] = []
    real = tiny_backend.forward_scores

    def counted(requests: Any) -> Any:
        sizes.append(len(requests))
        return real(requests)

    monkeypatch.setattr(tiny_backend, "forward_scores", counted)
    whole = train_direction(tiny_backend, pairs, 1, start, 6.0, training, pass_pairs=3)
    assert max(sizes) == 6
    sizes.clear()
    split = train_direction(tiny_backend, pairs, 1, start, 6.0, training, pass_pairs=2)
    assert max(sizes) == 4 and 2 in sizes  # both the plain and the steered passes are split
    assert whole.kl[-1] > 0
    assert np.allclose(split.unit, whole.unit, atol=1e-6)
    assert split.kl == pytest.approx(whole.kl, rel=1e-5)
    assert split.preference_loss == pytest.approx(whole.preference_loss, rel=1e-5)
    with pytest.raises(UsageError, match="pass_pairs 0"):
        train_direction(tiny_backend, pairs, 1, start, 6.0, training, pass_pairs=0)


def test_optimized_vectors_train_the_best_layer_and_keep_mean_diff_elsewhere(
    tiny_backend: Any, tmp_path: Path
) -> None:
    contrast = load_contrast(small_contrast(tmp_path))
    plain = extract_vectors(tiny_backend, contrast, "mean-diff", seed=2)
    found = extract_vectors(tiny_backend, contrast, "optimized", seed=2,
                            training=Training(steps=2))  # fmt: skip
    back = VectorSet.load(found.save(tmp_path / "o.safetensors"))
    assert back.method == "optimized"
    assert back.extra["training"]["steps"] == 2
    for value in ("benevolence", "power"):
        best = back[value].best_layer
        assert best == plain[value].best_layer
        record = back.extra["optimized"][value]
        assert record["layer"] == best and len(record["preference_loss"]) == 2
        trained = back[value].layers[best]
        assert 0.0 <= trained.accuracy["optimized"] <= 1.0
        assert not np.allclose(trained.vector, plain[value].layers[best].vector, atol=1e-4)
        for layer, lv in back[value].layers.items():
            if layer != best:
                assert np.allclose(lv.vector, plain[value].layers[layer].vector, atol=1e-5)
        # steering sweeps the trained layer only; a plain file sweeps its two best layers
        assert default_layers(back, value) == [best]
        assert default_layers(plain, value)[0] == best and len(default_layers(plain, value)) == 2
    cal = calibrate(tiny_backend, back, contrast, "power", budget=0.05)
    assert {p.layer for p in cal.points} == {back["power"].best_layer}


def test_training_settings_are_checked() -> None:
    with pytest.raises(UsageError, match="--train-steps 0"):
        Training(steps=0)
    with pytest.raises(UsageError, match="radius"):
        Training(radius=0)


def test_optimized_vectors_from_the_command_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = f"hf:{tiny_model_dir}"
    vec = tmp_path / "v.safetensors"
    contrast = str(small_contrast(tmp_path))
    done = run_cli("vectors", "-m", model, "--contrast", contrast, "--method", "optimized",
                   "--train-steps", "1", "--out", str(vec))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "optimized" in done.stdout and "power" in done.stdout
    meta = VectorSet.load(vec)
    assert meta.method == "optimized" and set(meta.extra["optimized"]) == {"benevolence", "power"}
    bad = run_cli("vectors", "-m", model, "--contrast", contrast, "--method", "optimized",
                  "--train-steps", "0", "--out", str(tmp_path / "x.safetensors"))  # fmt: skip
    assert bad.returncode == 2 and "--train-steps 0" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert json.loads(json.dumps(meta.extra))  # the training record is plain JSON
