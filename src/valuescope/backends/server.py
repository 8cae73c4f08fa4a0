"""The server backend: a model behind an OpenAI-compatible API (vLLM, llama.cpp, Ollama, hosted).

Built on the official `openai` client (async). What a server can do is found out once, with
three tiny requests, and remembered: chat `logprobs`/`top_logprobs` (the `choice` method reads
label probabilities from them), the completions endpoint with `echo` (full-text
log-likelihoods, for the `likelihood` methods; needs the served model's tokenizer to render
chats, `--tokenizer`), and `n` (several samples in one request, for `generate`).

Every finished response goes to the response cache at once, so a run killed at any moment
resumes without re-sending finished requests; retries, the request rate and a token budget
are under the user's control, and every retry is counted by cause.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from valuescope.backends.base import (
    Chat,
    Context,
    GenerationParams,
    Loglikelihood,
    LoglikelihoodRequest,
    Progress,
)
from valuescope.backends.responses import ResponseCache, request_key
from valuescope.backends.retry import RetryPolicy, retry_after_seconds
from valuescope.backends.spec import ModelSpec
from valuescope.backends.template import load_tokenizer, render
from valuescope.errors import BackendCapabilityError, UsageError, ValuescopeError

CHAT = "chat/completions"
COMPLETIONS = "completions"
TOP_LOGPROBS = 20
"""How many alternatives the chat path asks for; OpenAI's API allows at most 20."""


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


@dataclass(frozen=True)
class Capabilities:
    """What the server offers, as found by the probe requests."""

    chat_logprobs: bool
    echo: bool
    n: bool
    echo_note: str | None = None
    """Why echo is not used, when the server offers it but fails the consistency check."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class ServerBackend:
    """A black-box backend over HTTP; see the module docstring for what it needs from servers."""

    def __init__(
        self,
        spec: ModelSpec,
        settings: ServerSettings | None = None,
        cache_path: Path | None = None,
    ) -> None:
        if spec.base_url is None:
            raise UsageError(f"model spec {spec.raw!r} has no base URL")
        self.spec = spec
        self.model = spec.target
        self.base_url = spec.base_url
        self.settings = settings or ServerSettings()
        if cache_path is None:
            from valuescope.backends.responses import FILENAME
            from valuescope.cache import cache_dir

            cache_path = cache_dir() / FILENAME
        self.cache = ResponseCache(cache_path)
        self.stats = RequestStats()
        self._caps: Capabilities | None = None
        self._tokenizer: Any = None
        self._rng = random.Random(0)
        self._pacer = _Pacer(self.settings.max_rps)
        self._checked_model = False

    @property
    def name(self) -> str:
        return self.model

    # -- what the server offers ------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            self._caps = self._run(self._probe())
        return self._caps

    def describe(self) -> dict[str, Any]:
        """For results.json: where the model ran and what the server offered (no key)."""
        return {
            "base_url": self.base_url,
            "capabilities": self.capabilities.as_dict(),
            "tokenizer": self.settings.tokenizer,
        }

    def auto_candidates(self) -> tuple[str, ...]:
        """The methods `--method auto` weighs on this server, best-supported first."""
        caps = self.capabilities
        candidates: list[str] = []
        if caps.echo and self.settings.tokenizer:
            candidates += ["likelihood", "likelihood-first-person"]
        if caps.chat_logprobs:
            candidates.append("choice")
        return tuple(candidates) or ("generate",)

    def check_method(self, method: str) -> None:
        """Fail before any work when the server cannot serve `method`, saying what would."""
        caps = self.capabilities
        if method.startswith("likelihood") and not (caps.echo and self.settings.tokenizer):
            missing = (
                "the completions endpoint with trustworthy echo log-probabilities "
                f"({caps.echo_note or 'not offered'})"
                if not caps.echo
                else "the served model's tokenizer to render chats: pass --tokenizer "
                "(smollm2, gguf:<file> or hf:<dir>)"
            )
            raise BackendCapabilityError(
                f"--method {method} on {self.spec.raw!r} needs {missing}; methods this server "
                f"supports: {', '.join(self.auto_candidates())}, generate"
            )
        if (
            method == "choice"
            and not caps.chat_logprobs
            and not (caps.echo and self.settings.tokenizer)
        ):
            raise BackendCapabilityError(
                f"--method choice on {self.spec.raw!r} needs token log-probabilities: chat "
                "logprobs, or completions echo with --tokenizer; "
                + (
                    "this server offers echo: pass --tokenizer"
                    if caps.echo
                    else "this server gives neither: use --method generate"
                )
            )

    async def _probe(self) -> Capabilities:
        await self._check_model()
        chat = await self._call(
            CHAT,
            {
                "model": self.model,
                "messages": [{"role": "user", "content": "Say yes."}],
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "top_logprobs": 5,
            },
            probe=True,
        )
        chat_logprobs = chat is not None and bool(_top_logprobs(chat))
        echo, echo_note = await self._probe_echo()
        several = await self._call(
            CHAT,
            {
                "model": self.model,
                "messages": [{"role": "user", "content": "Say yes."}],
                "max_tokens": 1,
                "temperature": 1.0,
                "n": 2,
                "seed": 0,
            },
            probe=True,
        )
        n = several is not None and len(several.get("choices", [])) == 2
        return Capabilities(chat_logprobs=chat_logprobs, echo=echo, n=n, echo_note=echo_note)

    async def _probe_echo(self) -> tuple[bool, str | None]:
        """Whether echoed prompt log-probabilities can be trusted, checked, not assumed.

        The server generates one token after a prompt; then the prompt plus that token is
        echoed. The echoed log-probability of the token must equal the generated one, and the
        text offsets must cover the prompt. (llama-cpp-python 0.3 fails this on models without
        a BOS token: its echoed values are shifted by one position.)
        """
        prompt = "The capital of France is"
        base = {"model": self.model, "max_tokens": 1, "temperature": 0.0, "logprobs": 1}
        generated = await self._call(COMPLETIONS, {**base, "prompt": prompt}, probe=True)
        if generated is None:
            return False, "the completions endpoint is not offered"
        try:
            choice = generated["choices"][0]
            token = str(choice["text"])
            expected = float(choice["logprobs"]["token_logprobs"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            return False, "the completions endpoint gives no log-probabilities"
        if not token:
            return False, "the completions endpoint generated nothing to check echo with"
        echoed = await self._call(
            COMPLETIONS, {**base, "prompt": prompt + token, "echo": True}, probe=True
        )
        try:
            assert echoed is not None
            lp = echoed["choices"][0]["logprobs"]
            at = [i for i, o in enumerate(lp["text_offset"]) if int(o) == len(prompt)]
            found = float(lp["token_logprobs"][at[0]]) if at else None
        except (AssertionError, KeyError, IndexError, TypeError, ValueError):
            return False, "echo with logprobs is not offered"
        if found is None:
            return False, "echoed text offsets do not match the prompt"
        if abs(found - expected) > 0.05:
            return False, (
                f"echoed log-probabilities disagree with generation ({found:.3f} vs "
                f"{expected:.3f} for the same token), so echo is not used"
            )
        return True, None

    async def _check_model(self) -> None:
        """An unknown model name is a 404 on most servers; some silently serve another model.

        The model list settles it up front when the server has one.
        """
        if self._checked_model:
            return
        self._checked_model = True
        async with self._client() as client:
            try:
                page = await client.models.list()
            except Exception as exc:  # the list is optional; the requests will tell
                import openai

                if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
                    raise self._auth_error(exc) from exc
                return
            ids = [m.id for m in page.data]
        if ids and self.model not in ids:
            raise ServerError(
                f"model {self.model!r} is not served at {self.base_url} (it serves: "
                f"{', '.join(ids)}); use openai:<one of those>@{self.base_url}"
            )

    # -- the backend protocol --------------------------------------------------------------

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[Loglikelihood]:
        caps = self.capabilities
        if caps.echo and self.settings.tokenizer:
            return list(self._run(self._echo_all(requests, progress)))
        if caps.chat_logprobs:
            return list(self._run(self._chat_all(requests, progress)))
        raise BackendCapabilityError(
            f"{self.spec.raw!r} gives no token log-probabilities (neither chat logprobs nor "
            "completions echo); use --method generate"
        )

    def generate(
        self, prompts: Sequence[Context], params: GenerationParams, progress: Progress | None = None
    ) -> list[list[str]]:
        # Greedy answers are identical: one request serves all n. Otherwise one request asks
        # for n samples where the server honours `n`, else n requests with seeds seed..seed+n-1.
        greedy = params.temperature == 0
        per_request = params.n if (greedy or self.capabilities.n) else 1
        calls: list[tuple[str, dict[str, Any]]] = []
        owners: list[int] = []
        for index, prompt in enumerate(prompts):
            messages = _messages(prompt)
            for k in range(params.n // per_request):
                body: dict[str, Any] = {
                    "model": self.model,
                    "messages": messages,
                    "max_tokens": params.max_new_tokens,
                    "temperature": params.temperature,
                    "top_p": params.top_p,
                    "seed": params.seed + k,
                }
                if per_request > 1 and not greedy:
                    body["n"] = per_request
                calls.append((CHAT, body))
                owners.append(index)
        responses = self._run(self._gather_async(calls, _per_owner(progress, owners)))
        out: list[list[str]] = [[] for _ in prompts]
        for owner, response in zip(owners, responses, strict=True):
            texts = [_content(choice) for choice in response["choices"]]
            out[owner].extend(texts[:1] * params.n if greedy else texts)
        short = [i for i, texts in enumerate(out) if len(texts) < params.n]
        if short:
            raise ServerError(
                f"{self.base_url}: asked for {params.n} samples per prompt and got "
                f"{len(out[short[0]])} for prompt {short[0]}; the server does not honour n"
            )
        return [texts[: params.n] for texts in out]

    # -- log-likelihood paths --------------------------------------------------------------

    async def _echo_all(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None
    ) -> list[Loglikelihood]:
        """Full-text log-likelihoods: prompt = rendered context + continuation, echoed back."""
        if self._tokenizer is None:
            assert self.settings.tokenizer is not None
            self._tokenizer = load_tokenizer(self.settings.tokenizer)
        calls = []
        splits = []
        for request in requests:
            prompt = render(self._tokenizer, request.context)
            text = prompt + request.continuation
            splits.append((len(prompt.rstrip(" ")), len(text)))
            body = {
                "model": self.model,
                "prompt": text,
                "max_tokens": 1,
                "temperature": 0.0,
                "echo": True,
                "logprobs": 1,
            }
            calls.append((COMPLETIONS, body))
        responses = await self._gather_async(calls, _weighted(progress, [1] * len(calls)))
        return [
            _echo_loglikelihood(r, boundary, end, request.continuation)
            for r, (boundary, end), request in zip(responses, splits, requests, strict=True)
        ]

    async def _chat_all(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None
    ) -> list[Loglikelihood]:
        """First-token log-probabilities from one chat request per context (labels only)."""
        groups: dict[Chat, list[int]] = {}
        for index, request in enumerate(requests):
            context = request.context
            if not isinstance(context, Chat) or context.answer_prefix:
                raise BackendCapabilityError(
                    f"{self.spec.raw!r}: scoring raw text or an answer prefix needs the "
                    "completions endpoint with echo (and --tokenizer); this server offers only "
                    "chat logprobs, which serve the choice method"
                )
            cont = request.continuation
            if not cont.strip() or len(cont) > 8 or " " in cont.strip():
                raise BackendCapabilityError(
                    f"{self.spec.raw!r}: chat logprobs give first-token probabilities, which "
                    f"score short labels (the choice method), not {cont[:40]!r}; pass --tokenizer "
                    "on a server with completions echo, or use --method choice or generate"
                )
            groups.setdefault(context, []).append(index)
        contexts = list(groups)
        calls = [
            (
                CHAT,
                {
                    "model": self.model,
                    "messages": _messages(context),
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "logprobs": True,
                    "top_logprobs": TOP_LOGPROBS,
                },
            )
            for context in contexts
        ]
        weights = [len(groups[c]) for c in contexts]
        responses = await self._gather_async(calls, _weighted(progress, weights))
        results: list[Loglikelihood | None] = [None] * len(requests)
        for context, response in zip(contexts, responses, strict=True):
            top = _top_logprobs(response)
            if not top:
                raise ServerError(
                    f"{self.base_url}: a chat response came without logprobs although the "
                    "server offered them when probed"
                )
            best = max(top.values())
            floor = min(top.values())
            for index in groups[context]:
                cont = requests[index].continuation
                if cont in top:
                    value = top[cont]
                else:
                    # Not among the alternatives: its probability is at most the last one's.
                    self.stats.outside_top_logprobs += 1
                    value = floor
                results[index] = Loglikelihood(value, (value,), value >= best)
        return [r for r in results if r is not None]

    # -- requests --------------------------------------------------------------------------

    def _run(self, coro: Awaitable[Any]) -> Any:
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

    async def _gather_async(
        self, calls: list[tuple[str, dict[str, Any]]], on_done: Callable[[int], None] | None
    ) -> list[dict[str, Any]]:
        """Send the calls, at most `concurrency` at once; results in call order."""
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        results: list[dict[str, Any] | None] = [None] * len(calls)
        async with self._client() as client:

            async def one(index: int) -> None:
                endpoint, body = calls[index]
                results[index] = await self._call(endpoint, body, client, semaphore)
                if on_done is not None:
                    on_done(index)

            try:
                async with asyncio.TaskGroup() as group:
                    for index in range(len(calls)):
                        group.create_task(one(index))
            except* ValuescopeError as errors:
                raise errors.exceptions[0] from None
        return [r for r in results if r is not None]

    def _client(self) -> Any:
        import openai

        key = os.environ.get(self.settings.api_key_env) or "no-key"
        return openai.AsyncOpenAI(
            api_key=key, base_url=self.base_url, max_retries=0, timeout=self.settings.timeout
        )

    async def _call(
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
            async with self._client() as own:
                return await self._call(endpoint, body, own, semaphore, probe)
        policy = self.settings.retry
        attempt = 0
        malformed = 0
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
                await asyncio.sleep(policy.delay(attempt, exc.retry_after, self._rng))
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
        await self._pacer.wait()
        resource = client.chat.completions if endpoint == CHAT else client.completions
        try:
            raw = await resource.with_raw_response.create(**body)
            text = raw.http_response.text
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._auth_error(exc) from None
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
        except openai.APIConnectionError:
            raise _Retryable("connection") from None
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
            ok = bool(_top_logprobs(response))
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

    def _auth_error(self, exc: Any) -> ServerError:
        variable = self.settings.api_key_env
        state = "is set" if os.environ.get(variable) else "is not set"
        return ServerError(
            f"{self.base_url} refused the API key ({exc.status_code}); the key is read from the "
            f"environment variable {variable} (now it {state}); set it, or name another with "
            "--api-key-env"
        )


class _ProbeRefused(ServerError):
    """A 4xx other than auth/404/429: fatal for a real request, 'not offered' for a probe."""


def _messages(context: Context) -> list[dict[str, str]]:
    if isinstance(context, str):
        return [{"role": "user", "content": context}]
    if context.answer_prefix:
        raise BackendCapabilityError(
            "a chat server cannot start the model's answer with a given prefix; this method "
            "needs the completions endpoint with echo (and --tokenizer)"
        )
    messages = []
    if context.system is not None:
        messages.append({"role": "system", "content": context.system})
    messages.append({"role": "user", "content": context.user})
    return messages


def _content(choice: dict[str, Any]) -> str:
    return str((choice.get("message") or {}).get("content") or "")


def _top_logprobs(response: dict[str, Any]) -> dict[str, float]:
    """The first generated token's alternatives from a chat response: {token text: logprob}."""
    try:
        first = response["choices"][0]["logprobs"]["content"][0]
        top = {str(t["token"]): float(t["logprob"]) for t in first.get("top_logprobs") or []}
        top.setdefault(str(first["token"]), float(first["logprob"]))
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    return top


def _echo_loglikelihood(
    response: dict[str, Any], boundary: int, end: int, continuation: str
) -> Loglikelihood:
    """Sum the echoed log-probs of the tokens that cover text[boundary:end].

    A token straddling the boundary counts with the continuation (as the local backend puts
    whitespace at the end of a context into the continuation). The generated token, past
    `end`, is left out.
    """
    lp = response["choices"][0]["logprobs"]
    offsets = [int(o) for o in lp["text_offset"]]
    values = lp["token_logprobs"]
    tops = lp.get("top_logprobs") or [None] * len(values)
    tokens = lp.get("tokens")
    inside = [i for i, o in enumerate(offsets) if o < end]
    if tokens and inside and offsets[inside[-1]] + len(str(tokens[inside[-1]])) != end:
        raise ServerError(
            "the server's echoed tokens do not spell out the prompt sent (special tokens "
            "echoed as other text?), so their log-probabilities cannot be assigned to the answer"
        )
    picked: list[float] = []
    greedy = True
    for i, start in enumerate(offsets):
        stop = offsets[i + 1] if i + 1 < len(offsets) else math.inf
        if start >= end or stop <= boundary or values[i] is None:
            continue
        picked.append(float(values[i]))
        alternatives = tops[i] or {}
        if alternatives and float(values[i]) < max(float(v) for v in alternatives.values()) - 1e-6:
            greedy = False
    if not picked:
        raise ServerError(
            f"the server's echo covered no token of the continuation {continuation[:40]!r}; "
            "its text offsets do not match the prompt sent"
        )
    return Loglikelihood(sum(picked), tuple(picked), greedy)


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


def _weighted(progress: Progress | None, weights: list[int]) -> Callable[[int], None] | None:
    """Progress in scored requests: a finished call reports how many it served."""
    if progress is None:
        return None
    return lambda index: progress(weights[index])


def _per_owner(progress: Progress | None, owners: list[int]) -> Callable[[int], None] | None:
    """Progress in prompts: a prompt counts once all of its calls are done."""
    if progress is None:
        return None
    left = Counter(owners)

    def done(index: int) -> None:
        left[owners[index]] -= 1
        if left[owners[index]] == 0:
            progress(1)

    return done
