"""The response cache and the retry policy, without a server."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from pathlib import Path

import pytest

from valuescope.backends.responses import ResponseCache, request_key
from valuescope.backends.retry import RetryPolicy, retry_after_seconds
from valuescope.errors import UsageError


def _write_many(path: str, worker: int, n: int) -> None:
    cache = ResponseCache(Path(path))
    for i in range(n):
        body = {"model": "m", "prompt": f"{worker}-{i}"}
        cache.put(request_key("http://x/v1", "completions", body), "completions", body, {"i": i})
        shared = {"model": "m", "prompt": f"shared-{i}"}
        key = request_key("http://x/v1", "completions", shared)
        cache.put(key, "completions", shared, {"worker": worker})
    cache.close()


def test_concurrent_writers_neither_corrupt_nor_lose_entries(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(path), w, 150)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cache = ResponseCache(path)
    assert len(cache) == 4 * 150 + 150  # own entries, and one entry per shared request
    first = cache.get(
        request_key("http://x/v1", "completions", {"model": "m", "prompt": "shared-7"})
    )
    assert first is not None and first["worker"] in range(4)  # the first answer is kept


def test_key_depends_on_everything_that_changes_the_answer() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 1}
    key = request_key("http://a/v1", "chat/completions", body)
    assert key == request_key("http://a/v1", "chat/completions", dict(reversed(body.items())))
    assert key != request_key("http://b/v1", "chat/completions", body)
    assert key != request_key("http://a/v1", "completions", body)
    assert key != request_key("http://a/v1", "chat/completions", {**body, "seed": 2})


def test_a_file_that_is_not_a_cache_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite"
    path.write_text("not a database, just text that is long enough to be read" * 20)
    with pytest.raises(UsageError, match="not a valuescope response cache"):
        ResponseCache(path)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_backoff_grows_is_jittered_capped_and_yields_to_retry_after() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0)
    rng = random.Random(1)
    delays = [[policy.delay(k, None, rng) for _ in range(200)] for k in (1, 2, 3, 6)]
    assert all(0 <= d <= 0.5 for d in delays[0])
    assert all(0 <= d <= 4.0 for d in delays[3]) and max(delays[3]) > 2.0
    assert max(delays[1]) > max(delays[0])
    assert len(set(delays[2])) > 150  # jitter: no two clients retry in lockstep
    assert policy.delay(1, 2.5, rng) == 2.5
    assert policy.delay(1, 600, rng) == 4.0
