"""The server backend's echo path (full-text log-likelihoods), against FakeEchoServer.

A named fake: the servers that echo prompt log-probabilities correctly (vLLM) cannot run
here, and llama-cpp-python's echo fails the consistency check (see test_server.py). The fake
answers from the tiny local model, so the server path must reproduce the local backend's
numbers: this tests rendering, the context/continuation split and the parsing of offsets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.echo_fake import FakeEchoServer

from valuescope.audit.kinds import RunSpec
from valuescope.audit.run import run_audit
from valuescope.backends import Chat, LoglikelihoodRequest, load_backend
from valuescope.backends.server import ServerBackend, ServerSettings


@pytest.fixture(scope="module")
def fake(tiny_model_dir: Path) -> Iterator[FakeEchoServer]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with FakeEchoServer(model, tokenizer) as server:
        yield server


def _backend(fake: FakeEchoServer, tiny_model_dir: Path, cache: Path) -> ServerBackend:
    settings = ServerSettings(tokenizer=f"hf:{tiny_model_dir}", concurrency=2)
    backend = load_backend(f"openai:fake-echo@{fake.base_url}", settings=settings, cache_path=cache)
    assert isinstance(backend, ServerBackend)
    return backend


def test_trustworthy_echo_enables_the_likelihood_methods(
    fake: FakeEchoServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    backend = _backend(fake, tiny_model_dir, tmp_path / "r.sqlite")
    assert backend.capabilities.echo and backend.capabilities.echo_note is None
    assert backend.auto_candidates() == ("likelihood", "likelihood-first-person", "choice")
    backend.check_method("likelihood-first-person")  # no error


def test_echo_loglikelihoods_equal_the_local_backend(
    fake: FakeEchoServer, tiny_model_dir: Path, tiny_backend: Any, tmp_path: Path
) -> None:
    requests = [
        LoglikelihoodRequest(Chat("What would you do?", None, "I would"), " tell the truth."),
        LoglikelihoodRequest(Chat("Describe your weekend.", "Be brief."), "I went hiking."),
        LoglikelihoodRequest("The capital of France is", " Paris, on the Seine."),
        LoglikelihoodRequest("Numbers: 1, 2,", " 3"),
    ]
    remote = _backend(fake, tiny_model_dir, tmp_path / "r.sqlite").loglikelihood(requests)
    local = tiny_backend.loglikelihood(requests)
    for r, x in zip(remote, local, strict=True):
        assert r.n_tokens == x.n_tokens
        assert abs(r.logprob - x.logprob) < 1e-3, (r, x)
        assert r.greedy == x.greedy


def test_likelihood_audit_through_the_server_equals_the_local_one(
    fake: FakeEchoServer, tiny_model_dir: Path, tiny_backend: Any, tmp_path: Path
) -> None:
    spec = f"openai:fake-echo@{fake.base_url}"
    config = RunSpec(model=spec, method="likelihood-first-person", limit=4)
    remote = run_audit(
        "schwartz-dilemmas", config, backend=_backend(fake, tiny_model_dir, tmp_path / "r.sqlite")
    )
    local = run_audit(
        "schwartz-dilemmas",
        RunSpec(method="likelihood-first-person", limit=4),
        backend=tiny_backend,
    )
    for r, x in zip(remote.results + remote.paraphrase_results,
                    local.results + local.paraphrase_results, strict=True):  # fmt: skip
        assert r.item_id == x.item_id
        assert max(abs(a - b) for a, b in zip(r.p, x.p, strict=True)) < 1e-3


def test_a_url_query_reaches_the_server_and_never_the_disk(
    fake: FakeEchoServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Azure-style base URLs carry `?api-version=` (and some services a key): the client sends
    the query with every request, and no file of the run holds its values."""
    out = tmp_path / "run"
    spec = f"openai:fake-echo@{fake.base_url}?api-version=2024-06&api-key=SECRET-VALUE"
    fake.paths.clear()
    done = run_cli("audit", "--model", spec, "--tokenizer", f"hf:{tiny_model_dir}",
                   "--method", "choice", "--limit", "2", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    posts = [p for p in fake.paths if "completions" in p]
    assert posts and all(
        p.endswith("/completions?api-version=2024-06&api-key=SECRET-VALUE") for p in posts
    ), posts
    for path in out.rglob("*"):
        if path.is_file():
            assert b"SECRET-VALUE" not in path.read_bytes(), path
            assert b"2024-06" not in path.read_bytes(), path
    doc = json.loads((out / "results.json").read_text())
    assert doc["model"]["spec"].endswith("/v1?api-version=***&api-key=***")
    assert "SECRET" not in done.stdout + done.stderr
