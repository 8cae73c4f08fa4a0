"""Talking to an OpenAI-compatible server: the cache, retries, pacing and the token budget.

Every finished response goes to the response cache at once, so a run killed at any moment
resumes without re-sending finished requests; retries, the request rate and a token budget are
under the user's control, and every retry is counted by cause.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from valuescope.backends.responses import ResponseCache, request_key
from valuescope.backends.retry import RetryPolicy, retry_after_seconds
from valuescope.errors import UsageError, ValuescopeError

CHAT = "chat/completions"
COMPLETIONS = "completions"
REFUSED_RETRIES = 2
"""Retries of a refused connection: a server restarting is back within them; a wrong port
is not worth the whole retry budget."""


class ServerError(ValuescopeError):
    """The server refused or failed in a way retrying cannot fix (exit code 2: fix the call)."""

    exit_code = 2


class BudgetExhausted(ValuescopeError):
    """The user's token budget is spent; finished requests are cached, so a rerun continues."""

    exit_code = 3


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _ProbeRefused(ServerError):
    """A 4xx other than auth/404/429: fatal for a real request, 'not offered' for a probe."""


@dataclass(frozen=True)
class ServerSettings:
    """How to talk to the server. The key is read from the environment, never stored."""

    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 120.0
    max_rps: float | None = None
    token_budget: int | None = None
    tokenizer: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.timeout <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        if self.max_rps is not None and self.max_rps <= 0:
            raise UsageError("--max-rps must be a positive number of requests per second")
        if self.token_budget is not None and self.token_budget < 1:
            raise UsageError("--token-budget must be a positive number of tokens")
        if self.retry.max_retries < 0:
            raise UsageError("--max-retries must be 0 or more")


@dataclass
class RequestStats:
    """Requests of this process: answered by the server, from the cache, retried (by cause)."""

    sent: int = 0
    cached: int = 0
    retries: int = 0
    retry_causes: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    outside_top_logprobs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "cached": self.cached,
            "retries": self.retries,
            "retry_causes": dict(sorted(self.retry_causes.items())),
            "tokens": self.tokens,
            "outside_top_logprobs": self.outside_top_logprobs,
        }


class _Pacer:
    """Spaces request starts at least 1/max_rps seconds apart (shared by all workers)."""

    def __init__(self, max_rps: float | None) -> None:
        self.interval = 1.0 / max_rps if max_rps else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class Transport:
    """Requests to one server for one model, through the response cache, with retries."""

    def __init__(
        self,
        base_url: str,
        model: str,
        settings: ServerSettings,
        cache_path: Path,
        query: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.base_url = base_url
        self.query = dict(query)
        """Sent with every request by the client (e.g. Azure's api-version); never stored."""
        self.model = model
        self.settings = settings
        self.cache = ResponseCache(cache_path)
        self.stats = RequestStats()
        self.rng = random.Random(0)
        self.pacer = _Pacer(settings.max_rps)

    def run(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine to the end; inside a running event loop (Jupyter), in a thread."""

        async def wrapped() -> Any:
            return await coro

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(wrapped())
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, wrapped()).result()

    async def gather(
        self, calls: list[tuple[str, dict[str, Any]]], on_done: Callable[[int], None] | None
    ) -> list[dict[str, Any]]:
        """Send the calls, at most `concurrency` at once; results in call order."""
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        results: list[dict[str, Any] | None] = [None] * len(calls)
        async with self.client() as client:

            async def one(index: int) -> None:
                endpoint, body = calls[index]
                results[index] = await self.call(endpoint, body, client, semaphore)
                if on_done is not None:
                    on_done(index)

            try:
                async with asyncio.TaskGroup() as group:
                    for index in range(len(calls)):
                        group.create_task(one(index))
            except* ValuescopeError as errors:
                raise errors.exceptions[0] from None
        return [r for r in results if r is not None]

    def client(self) -> Any:
        import openai

        key = os.environ.get(self.settings.api_key_env) or "no-key"
        return openai.AsyncOpenAI(
            api_key=key,
            base_url=self.base_url,
            default_query=self.query or None,
            max_retries=0,
            timeout=self.settings.timeout,
        )

    async def call(
        self,
        endpoint: str,
        body: dict[str, Any],
        client: Any = None,
        semaphore: asyncio.Semaphore | None = None,
        probe: bool = False,
    ) -> dict[str, Any] | None:
        """One request through the cache, with retries; `probe=True` returns None on a 4xx."""
        key = request_key(self.base_url, endpoint, body)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.cached += 1
            return cached
        if client is None:
            async with self.client() as own:
                return await self.call(endpoint, body, own, semaphore, probe)
        policy = self.settings.retry
        attempt = 0
        malformed = 0
        refused = 0
        while True:
            try:
                if semaphore is not None:
                    async with semaphore:
                        response = await self._send(client, endpoint, body)
                else:
                    response = await self._send(client, endpoint, body)
            except _Retryable as exc:
                if exc.reason == "malformed":
                    malformed += 1
                    if malformed > policy.malformed_retries:
                        raise ServerError(
                            f"{self.base_url}/{endpoint} answered with malformed responses "
                            f"{malformed} times in a row (invalid or truncated JSON, or fields "
                            "missing); check that it is an OpenAI-compatible server"
                        ) from None
                if exc.reason == "refused":
                    refused += 1
                    if refused > REFUSED_RETRIES:  # a restarting server gets a few seconds
                        raise ServerError(
                            f"{self.base_url}: connection refused ({refused} times): nothing "
                            "listens there; check the host and port of the URL and that the "
                            "server is running"
                        ) from None
                attempt += 1
                self.stats.retries += 1
                self.stats.retry_causes[exc.reason] += 1
                if attempt > policy.max_retries:
                    raise ServerError(
                        f"{self.base_url}/{endpoint}: gave up after {policy.max_retries} retries "
                        f"(last failure: {exc.reason}); finished requests are saved, so "
                        "rerunning the same command resumes; raise --max-retries or lower "
                        "--concurrency if the server is overloaded"
                    ) from None
                await asyncio.sleep(policy.delay(attempt, exc.retry_after, self.rng))
                continue
            except _ProbeRefused:
                if probe:
                    return None
                raise
            self._check_shape(endpoint, body, response, probe)
            self.stats.sent += 1
            usage = response.get("usage") or {}
            self.stats.tokens += int(usage.get("total_tokens") or 0) or (
                int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
            )
            self.cache.put(key, endpoint, body, response)
            return response

    async def _send(self, client: Any, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        import openai

        budget = self.settings.token_budget
        if budget is not None and self.stats.tokens >= budget:
            raise BudgetExhausted(
                f"the token budget ({budget:,} tokens, --token-budget) is spent after "
                f"{self.stats.sent} requests; finished requests are saved, so rerunning with a "
                "larger budget continues where this run stopped"
            )
        await self.pacer.wait()
        resource = client.chat.completions if endpoint == CHAT else client.completions
        try:
            raw = await resource.with_raw_response.create(**body)
            text = raw.http_response.text
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self.auth_error(exc) from None
        except openai.NotFoundError as exc:
            raise ServerError(
                f"{self.base_url}/{endpoint} answered 404 for model {self.model!r}: "
                f"{_server_message(exc)}; check the model name and the base URL (it usually "
                "ends in /v1)"
            ) from None
        except openai.RateLimitError as exc:
            raise _Retryable("429", _retry_after(exc)) from None
        except openai.InternalServerError as exc:
            raise _Retryable(str(exc.status_code), _retry_after(exc)) from None
        except openai.APITimeoutError:
            raise _Retryable("timeout") from None
        except openai.APIConnectionError as exc:
            raise _Retryable("refused" if _refused(exc) else "connection") from None
        except openai.APIStatusError as exc:
            if exc.status_code in (408, 409):
                raise _Retryable(str(exc.status_code), _retry_after(exc)) from None
            raise _ProbeRefused(
                f"{self.base_url}/{endpoint} refused the request ({exc.status_code}): "
                f"{_server_message(exc)}"
            ) from None
        try:
            data = json.loads(text)
        except ValueError:
            raise _Retryable("malformed") from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise _Retryable("malformed")
        return data

    def _check_shape(
        self, endpoint: str, body: dict[str, Any], response: dict[str, Any], probe: bool
    ) -> None:
        """Fields the request needs; missing ones in a real (not probe) answer are an error."""
        if probe:
            return
        choices = response["choices"]
        ok = bool(choices)
        if ok and endpoint == CHAT and body.get("logprobs"):
            ok = bool(top_logprobs(response))
        if ok and endpoint == COMPLETIONS and body.get("echo"):
            lp = choices[0].get("logprobs") or {}
            ok = bool(lp.get("text_offset")) and len(lp.get("text_offset", [])) == len(
                lp.get("token_logprobs", [])
            )
        if ok and endpoint == CHAT and not body.get("logprobs"):
            ok = all(isinstance(c.get("message"), dict) for c in choices)
        if not ok:
            raise ServerError(
                f"{self.base_url}/{endpoint} answered without the fields the request asks for "
                f"(body keys: {', '.join(sorted(response))}); the server may not support "
                f"{'logprobs' if body.get('logprobs') else 'this request'}"
            )

    def auth_error(self, exc: Any) -> ServerError:
        variable = self.settings.api_key_env
        state = "is set" if os.environ.get(variable) else "is not set"
        return ServerError(
            f"{self.base_url} refused the API key ({exc.status_code}); the key is read from the "
            f"environment variable {variable} (now it {state}); set it, or name another with "
            "--api-key-env"
        )


def top_logprobs(response: dict[str, Any]) -> dict[str, float]:
    """The first generated token's alternatives from a chat response: {token text: logprob}."""
    try:
        first = response["choices"][0]["logprobs"]["content"][0]
        top = {str(t["token"]): float(t["logprob"]) for t in first.get("top_logprobs") or []}
        top.setdefault(str(first["token"]), float(first["logprob"]))
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    return top


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    return retry_after_seconds(headers.get("retry-after"))


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return str(message)[:300]
    return str(getattr(exc, "message", exc))[:300]


def _refused(exc: BaseException) -> bool:
    """Whether a connection error is a refusal (nothing listens), not a drop or a reset."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
