"""The server backend against a real llama.cpp server (llama-cpp-python[server]) on loopback.

The server runs the embedded SmolLM2 GGUF; a fault-injecting proxy (tests/support) sits in
front of it where a test needs faults or a count of what was sent.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from testkit.faultproxy import FaultProxy
from testkit.llama_server import RunningServer, llama_server
from valuescope.audit.kinds import RunSpec
from valuescope.audit.results import results_json
from valuescope.audit.run import run_audit
from valuescope.backends import Chat, GenerationParams, LoglikelihoodRequest, load_backend
from valuescope.backends.responses import ResponseCache, request_key
from valuescope.backends.retry import RetryPolicy
from valuescope.backends.server import (
    BudgetExhausted,
    ServerBackend,
    ServerError,
    ServerSettings,
)
from valuescope.errors import BackendCapabilityError

KEY_ENV = "VALUESCOPE_TEST_SERVER_KEY"
PROBES = 4  # chat logprobs, a completion and its echo, n
FAST_RETRY = RetryPolicy(max_retries=8, base=0.05, cap=2.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from valuescope.backends.embedded import embedded_gguf_path

    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with llama_server(embedded_gguf_path(), log) as running:
        os.environ[KEY_ENV] = running.api_key
        yield running


@pytest.fixture(scope="module")
def proxy(server: RunningServer) -> Iterator[FaultProxy]:
    upstream = server.base_url.removesuffix("/v1")
    with FaultProxy(upstream) as running:
        yield running


def _backend(spec: str, cache: Path, **settings: Any) -> ServerBackend:
    options = {"api_key_env": KEY_ENV, "retry": FAST_RETRY, **settings}
    backend = load_backend(spec, settings=ServerSettings(**options), cache_path=cache)
    assert isinstance(backend, ServerBackend)
    return backend


def _without_timing(path: Path) -> str:
    doc = json.loads(path.read_text())
    doc.pop("timing")
    return json.dumps(doc, indent=1, sort_keys=True)


def _key_of(record: Any, base_url: str) -> str:
    endpoint = urlsplit(record.path).path.removeprefix("/v1/")
    return request_key(base_url, endpoint, json.loads(record.body))


# -- the backend protocol on the real server ----------------------------------------------------


def test_probe_finds_what_llama_cpp_offers(server: RunningServer, tmp_path: Path) -> None:
    backend = _backend(server.spec, tmp_path / "r.sqlite")
    caps = backend.capabilities
    assert caps.chat_logprobs
    assert not caps.n  # llama-cpp-python answers one choice whatever n asks
    # llama-cpp-python 0.3 echoes prompt log-probabilities shifted by one token on models
    # without a BOS token (SmolLM2): the probe's consistency check must catch that.
    assert not caps.echo and caps.echo_note and "disagree" in caps.echo_note
    assert backend.auto_candidates() == ("choice",)
    with_tokenizer = _backend(server.spec, tmp_path / "r.sqlite", tokenizer="smollm2")
    assert with_tokenizer.auto_candidates() == ("choice",)
    assert with_tokenizer.stats.sent == 0  # the probe came from the cache the second time
    with pytest.raises(BackendCapabilityError, match="disagree with generation"):
        with_tokenizer.check_method("likelihood")


def test_label_logprobs_match_the_local_model(
    server: RunningServer, smollm2: Any, tmp_path: Path
) -> None:
    from valuescope.audit.scoring import choice_prompt
    from valuescope.instruments.dilemma import load_dilemmas

    items = load_dilemmas("schwartz-dilemmas").items[:6]
    requests = [
        LoglikelihoodRequest(Chat(choice_prompt(i.text, [o.text for o in i.options])), label)
        for i in items
        for label in "AB"
    ]
    remote = _backend(server.spec, tmp_path / "r.sqlite").loglikelihood(requests)
    local = smollm2.loglikelihood(requests)
    diffs = [abs(r.logprob - x.logprob) for r, x in zip(remote, local, strict=True)]
    # Same weights (Q4_1), but llama.cpp multiplies them with 8-bit-quantized activations,
    # while the local backend runs the dequantized weights in fp32: labels differ by up to
    # ~0.2 nats, the choice between them (what the audit uses) much less.
    assert max(diffs) < 0.4, diffs
    for k in range(0, len(requests), 2):
        p_remote = 1 / (1 + math.exp(remote[k + 1].logprob - remote[k].logprob))
        p_local = 1 / (1 + math.exp(local[k + 1].logprob - local[k].logprob))
        assert abs(p_remote - p_local) < 0.05, (k, p_remote, p_local)


def test_chat_path_refuses_what_it_cannot_score(server: RunningServer, tmp_path: Path) -> None:
    backend = _backend(server.spec, tmp_path / "r.sqlite")  # no trusted echo here
    with pytest.raises(BackendCapabilityError, match="choice method"):
        backend.loglikelihood([LoglikelihoodRequest(Chat("Hi"), "a whole sentence here")])
    with pytest.raises(BackendCapabilityError, match="completions endpoint with echo"):
        backend.loglikelihood([LoglikelihoodRequest(Chat("Hi", None, "I would"), "go")])


def test_generate_is_seeded_and_sends_the_system_prompt(
    server: RunningServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.set_schedule(["ok"])
    proxy.records.clear()
    spec = f"openai:smollm2@{proxy.base_url}"
    prompts = [Chat("Name a colour.", "You answer in one word."), Chat("Name an animal.")]
    params = GenerationParams(max_new_tokens=6, temperature=1.0, n=3, seed=5)
    backend = _backend(spec, tmp_path / "a.sqlite")
    first = backend.generate(prompts, params)
    assert [len(s) for s in first] == [3, 3]
    sent = [json.loads(r.body) for r in proxy.records if r.path.endswith("chat/completions")]
    systems = [b["messages"][0] for b in sent if b["messages"][0]["role"] == "system"]
    assert {"role": "system", "content": "You answer in one word."} in systems
    # The server ignores n, so each sample is its own request with its own seed.
    for prompt in prompts:
        seeds = [b["seed"] for b in sent if b["messages"][-1]["content"] == prompt.user]
        assert sorted(seeds) == [5, 6, 7]
    # llama.cpp's sampling is not bit-reproducible across its cache states (a near-tie can
    # flip); reproducibility comes from the response cache: the same cache, the same samples.
    again = _backend(spec, tmp_path / "a.sqlite")
    assert again.generate(prompts, params) == first
    assert again.stats.sent == 0


def test_works_inside_a_running_event_loop(server: RunningServer, tmp_path: Path) -> None:
    """As in a notebook cell, where an event loop is already running."""
    backend = _backend(server.spec, tmp_path / "r.sqlite")

    async def cell() -> list[list[str]]:
        return backend.generate([Chat("Say hi.")], GenerationParams(max_new_tokens=4))

    answers = asyncio.run(cell())
    assert len(answers) == 1 and len(answers[0]) == 1 and answers[0][0].strip()


# -- the audit through the server ---------------------------------------------------------------


def _cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "valuescope.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_audit_end_to_end_from_the_command_line(server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _cli(
        "audit",
        "--model",
        server.spec,
        "--limit",
        "6",
        "--out",
        str(out),
        "--api-key-env",
        KEY_ENV,
        "--concurrency",
        "4",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["method"] == "choice"  # auto: the only method this server supports without echo
    caps = doc["model"]["server"]["capabilities"]
    assert (caps["chat_logprobs"], caps["echo"], caps["n"]) == (True, False, False)
    assert len(doc["items"]) == 6
    requests = doc["timing"]["requests"]
    assert requests["sent"] == 6 * 2 * 2 + PROBES  # items x orders x wordings, and the probe
    assert "server: offers chat_logprobs;" in done.stdout
    for path in out.rglob("*"):
        if path.is_file():
            assert server.api_key.encode() not in path.read_bytes(), path
    # Run again: everything comes from the cache and the checkpoint, nothing is sent.
    again = _cli("audit", "--model", server.spec, "--limit", "6", "--out", str(out),
                 "--api-key-env", KEY_ENV)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "0 sent" in again.stdout


def test_generate_audit_through_the_server(server: RunningServer, tmp_path: Path) -> None:
    config = RunSpec(model=server.spec, method="generate", paraphrase=False, limit=2)
    backend = _backend(server.spec, tmp_path / "r.sqlite", concurrency=2)
    result = run_audit("schwartz-dilemmas", config, backend=backend)
    assert len(result.results) == 2
    assert backend.stats.sent == 2 * 2 * 8 + PROBES  # items x orders x samples (no n here)
    for r in result.results:
        assert abs(sum(r.p) - 1) < 1e-9


def test_likert_ratings_from_server_logprobs_match_the_local_model(
    server: RunningServer, smollm2: Any, tmp_path: Path
) -> None:
    from valuescope.audit.likert import rate
    from valuescope.instruments.likert import load_questionnaire

    items = load_questionnaire("schwartz-portraits").items[:10]
    backend = _backend(server.spec, tmp_path / "r.sqlite")
    remote = rate(backend, items, system=None)
    local = rate(smollm2, items, system=None)
    assert backend.stats.outside_top_logprobs == 0  # all six digits among the alternatives
    for r, x in zip(remote, local, strict=True):
        assert abs(r.rating - x.rating) < 0.15, (r, x)


def test_server_profile_agrees_with_the_local_model(
    server: RunningServer, smollm2: Any, tmp_path: Path
) -> None:
    config = RunSpec(model=server.spec, method="choice", paraphrase=False, limit=60)
    remote = run_audit(
        "schwartz-dilemmas",
        config,
        backend=_backend(server.spec, tmp_path / "r.sqlite", concurrency=4),
    )
    local = run_audit(
        "schwartz-dilemmas", RunSpec(method="choice", paraphrase=False, limit=60), backend=smollm2
    )
    # Agreement within the CIs: for every value the two 95% intervals overlap. (Letter
    # probabilities sit near 0.5 on this model, so the intervals are narrow: ~0.02 wide.)
    for value, score in remote.profile.scores.items():
        theirs = local.profile.scores[value]
        assert score.ci[0] <= theirs.ci[1] and theirs.ci[0] <= score.ci[1], (value, score, theirs)
        assert abs(score.score - theirs.score) < 0.03
    import numpy as np

    # Item-level agreement: letter probabilities sit near 0.5 on this model, so quantized
    # arithmetic moves the ranking of items more than it moves the profile (r = 0.79 seen).
    r = np.corrcoef([x.p[0] for x in remote.results], [x.p[0] for x in local.results])[0, 1]
    assert r > 0.6, r


# -- faults, kills and budgets ------------------------------------------------------------------

LIMIT = 8
SCHEDULE = ["ok", "drop", "ok", "429", "ok", "500", "ok", "truncate", "ok", "cut", "ok",
            "invalid", "ok", "delay"]  # fmt: skip


@pytest.fixture(scope="module")
def clean_run(proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference audit through the proxy with no faults (same URL as the faulted runs)."""
    proxy.set_schedule(["ok"])
    out = tmp_path_factory.mktemp("clean")
    done = _cli(*_audit_args(proxy, out))
    assert done.returncode == 0, done.stderr
    return out / "results.json"


def _audit_args(proxy: FaultProxy, out: Path, *extra: str) -> list[str]:
    return ["audit", "--model", f"openai:smollm2@{proxy.base_url}", "--method", "choice",
            "--limit", str(LIMIT), "--out", str(out), "--api-key-env", KEY_ENV,
            "--concurrency", "3", *extra]  # fmt: skip


def test_faults_lose_nothing_and_count_nothing_twice(
    proxy: FaultProxy, clean_run: Path, tmp_path: Path
) -> None:
    proxy.set_schedule(SCHEDULE)
    proxy.records.clear()
    config = RunSpec(model=f"openai:smollm2@{proxy.base_url}", method="choice", limit=LIMIT)
    backend = _backend(config.model, tmp_path / "responses.sqlite", concurrency=3, timeout=5)
    result = run_audit("schwartz-dilemmas", config, backend=backend)
    from valuescope.audit.results import write_results

    write_results(result, tmp_path)
    proxy.set_schedule(["ok"])
    faults = proxy.faults_done()
    assert sum(n for f, n in faults.items() if f != "ok") >= 10  # every kind of fault happened
    assert set(faults) == set(SCHEDULE)
    stats = backend.stats
    expected = LIMIT * 2 * 2 + PROBES
    # On a loaded machine an answered request can still outlast the client's 5 s timeout: the
    # client retries it (a timeout the proxy did not cause) and the proxy sees one more "ok".
    slow = stats.retry_causes["timeout"] - faults["delay"]
    assert slow >= 0
    assert stats.sent == expected and faults["ok"] == expected + slow
    assert stats.retries == sum(n for f, n in faults.items() if f != "ok") + slow
    assert stats.retry_causes["429"] == faults["429"]
    assert len(result.results) == LIMIT
    assert _without_timing(tmp_path / "results.json") == _without_timing(clean_run)
    assert results_json(result)["timing"]["requests"]["retries"] == stats.retries


def test_kill_minus_9_then_resume_resends_nothing_finished(
    proxy: FaultProxy, clean_run: Path, tmp_path: Path
) -> None:
    proxy.set_schedule(["ok"])
    out = tmp_path / "killed"
    expected = LIMIT * 2 * 2 + PROBES
    env = {**os.environ}
    process = subprocess.Popen(
        [sys.executable, "-m", "valuescope.cli", *_audit_args(proxy, out, "--max-rps", "6")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    database = out / "responses.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if database.exists():
            try:
                with sqlite3.connect(database, timeout=5) as db:
                    n = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
            if n >= expected // 2:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = ResponseCache(database).keys()
    assert expected // 2 <= len(finished) < expected
    proxy.records.clear()
    done = _cli(*_audit_args(proxy, out))
    assert done.returncode == 0, done.stderr
    resent = [_key_of(r, proxy.base_url) for r in proxy.records]
    assert not set(resent) & finished
    assert len(resent) == expected - len(finished)
    assert _without_timing(out / "results.json") == _without_timing(clean_run)


def test_token_budget_stops_and_a_rerun_continues(server: RunningServer, tmp_path: Path) -> None:
    config = RunSpec(model=server.spec, method="choice", limit=4, paraphrase=False)
    cache = tmp_path / "responses.sqlite"
    with pytest.raises(BudgetExhausted, match="--token-budget"):
        run_audit(
            "schwartz-dilemmas",
            config,
            backend=_backend(server.spec, cache, token_budget=600, concurrency=1),
        )
    spent = len(ResponseCache(cache))
    assert 0 < spent < 4 * 2 + PROBES
    backend = _backend(server.spec, cache)
    run_audit("schwartz-dilemmas", config, backend=backend)
    assert backend.stats.sent == 4 * 2 + PROBES - spent
    assert backend.stats.cached == spent


# -- clear errors -------------------------------------------------------------------------------


def test_wrong_key_is_one_clear_line(server: RunningServer, tmp_path: Path) -> None:
    done = _cli("audit", "--model", server.spec, "--limit", "2", "--out", str(tmp_path),
                "--api-key-env", "WRONG_KEY_VAR", env_extra={"WRONG_KEY_VAR": "nope"})  # fmt: skip
    assert done.returncode == 2
    assert "refused the API key" in done.stderr and "WRONG_KEY_VAR" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_model_is_one_clear_line(server: RunningServer, tmp_path: Path) -> None:
    spec = server.spec.replace("smollm2@", "gpt-9@")
    done = _cli("audit", "--model", spec, "--limit", "2", "--out", str(tmp_path),
                "--api-key-env", KEY_ENV)  # fmt: skip
    assert done.returncode == 2
    assert "'gpt-9' is not served" in done.stderr and "smollm2" in done.stderr
    assert "Traceback" not in done.stderr


def test_404_and_malformed_responses_stop_with_a_clear_error(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    spec = f"openai:smollm2@{proxy.base_url}"
    try:
        proxy.set_schedule(["404"], retries_too=True)
        with pytest.raises(ServerError, match="404"):
            _ = _backend(spec, tmp_path / "a.sqlite").capabilities
        proxy.set_schedule(["invalid"], retries_too=True)
        proxy.records.clear()
        with pytest.raises(ServerError, match="malformed"):
            _ = _backend(spec, tmp_path / "b.sqlite").capabilities
        assert len(proxy.records) == 3  # the first try and two retries, then the error
    finally:
        proxy.set_schedule(["ok"])


def test_likelihood_without_trusted_echo_is_refused_up_front(
    server: RunningServer, tmp_path: Path
) -> None:
    done = _cli("audit", "--model", server.spec, "--method", "likelihood", "--limit", "2",
                "--out", str(tmp_path), "--api-key-env", KEY_ENV)  # fmt: skip
    assert done.returncode == 2
    assert "echo" in done.stderr and "choice" in done.stderr and "Traceback" not in done.stderr
