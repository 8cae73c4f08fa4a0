"""Replay of the blocks below a swept layer, on the tiny random Llama: the same numbers as
running every block, fewer blocks run, and a replay that would change the numbers turns off."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from support.contrast import small_contrast

import valuescope.backends.replay
from valuescope import load_backend
from valuescope.steering.calibration import calibrate
from valuescope.steering.operators import Steering, Term, neutral_texts, perplexity, preference
from valuescope.vectors.contrast import load_contrast
from valuescope.vectors.extract import VectorSet, extract_vectors


@pytest.fixture(scope="module")
def made(tiny_backend: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[VectorSet, Any]:
    contrast = load_contrast(small_contrast(tmp_path_factory.mktemp("pairs")))
    return extract_vectors(tiny_backend, contrast, seed=0), contrast


@contextmanager
def counting_block(backend: Any, index: int) -> Iterator[list[int]]:
    """Counts the times decoder block `index` really runs (its own forward, under any wrapper)."""
    block = backend.residual._layers[index]
    calls: list[int] = []
    forward = block.forward

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return forward(*args, **kwargs)

    block.forward = counted
    try:
        yield calls
    finally:
        del block.forward


def test_a_replayed_sweep_gives_the_same_numbers_and_runs_fewer_blocks(
    made: Any, tiny_backend: Any
) -> None:
    vectors, contrast = made
    layer = vectors["power"].best_layer
    runs = {}
    for replay in (False, True):
        with counting_block(tiny_backend, 0) as calls:
            before = tiny_backend.residual.replay.replayed
            cal = calibrate(tiny_backend, vectors, contrast, "power", budget=0.05,
                            layers=[layer], replay=replay)  # fmt: skip
            runs[replay] = (cal, len(calls), tiny_backend.residual.replay.replayed - before)
    (plain, plain_calls, none), (fast, fast_calls, replayed) = runs[False], runs[True]
    assert len(plain.points) >= 3  # a sweep, not one point
    assert fast.points == plain.points  # every shift and cost, exactly
    assert (fast.layer, fast.coef) == (plain.layer, plain.coef)
    assert none == 0 and replayed > 0
    assert fast_calls < plain_calls / 2  # block 0 ran for the first point and the check only
    assert tiny_backend.residual.replay.status == "checked"
    # the user's model is as it was: no block keeps a patched forward
    assert all("forward" not in block.__dict__ for block in tiny_backend.residual._layers)


def test_hooks_below_the_swept_layer_make_every_block_run(made: Any, tiny_backend: Any) -> None:
    vectors, contrast = made
    pairs = contrast.of("power")
    plain = Steering(vectors, [Term("power", 1, 0.5), Term("power", 2, 1.0)])
    expected = preference(tiny_backend, pairs, plain)
    replay = tiny_backend.residual.replay
    with replay.below(2):
        preference(tiny_backend, pairs, None)  # recorded
        before = replay.replayed
        # an edit on block 1 changes what block 2 sees: nothing may be replayed
        assert preference(tiny_backend, pairs, plain) == expected
        assert replay.replayed == before
        with pytest.raises(RuntimeError, match="does not nest"), replay.below(1):
            pass
        # a batch replays only once every pass of it was recorded
        ids = torch.tensor([[5, 6, 7]])
        with replay.pass_of("batch", "context") as mode:
            tiny_backend.model(input_ids=ids)
        assert mode == "record"
        replay.complete("batch", ("context", "continuation"))
        assert replay.mode_of("batch") == "record"
        replay.complete("batch", ("context",))
        assert replay.mode_of("batch") == "replay"
    with pytest.raises(ValueError, match="out of range"), replay.below(len(tiny_backend.residual)):
        pass


def test_a_replay_that_changes_the_numbers_turns_itself_off(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend = load_backend(f"hf:{tiny_model_dir}", batch_size=3)  # its own: replay goes off
    texts = neutral_texts()[:7]
    expected = perplexity(backend, texts)
    # Skipped blocks that leave their KV cache empty: the model then masks the continuation
    # pass wrongly (or refuses to run it), as an architecture with shared state might.
    monkeypatch.setattr(valuescope.backends.replay, "_advance_cache", lambda *args: None)
    replay = backend.residual.replay
    with caplog.at_level(logging.WARNING, logger="valuescope.backends.replay"), replay.below(2):
        assert perplexity(backend, texts) == expected  # recorded
        assert perplexity(backend, texts) == expected  # checked, found different, run for real
        assert replay.status == "off"
        before = replay.replayed
        assert perplexity(backend, texts) == expected
        assert replay.replayed == before  # off stays off
    assert "replay is off" in caplog.text
