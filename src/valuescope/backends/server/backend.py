"""The server backend: a model behind an OpenAI-compatible API (vLLM, llama.cpp, Ollama, hosted).

Built on the official `openai` client (async, `transport`). What the server can do is probed
once (`probe`) and decides how each request is served: label probabilities from chat logprobs,
full-text log-likelihoods from completions echo, samples from chat completions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
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
from valuescope.backends.responses import ResponseCache
from valuescope.backends.server.probe import Capabilities, probe
from valuescope.backends.server.transport import (
    CHAT,
    COMPLETIONS,
    RequestStats,
    ServerError,
    ServerSettings,
    Transport,
    top_logprobs,
)
from valuescope.backends.spec import ModelSpec
from valuescope.backends.template import load_tokenizer, render
from valuescope.errors import BackendCapabilityError, UsageError

TOP_LOGPROBS = 20
"""How many alternatives the chat path asks for; OpenAI's API allows at most 20."""


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
        self.transport = Transport(self.base_url, self.model, self.settings, cache_path, spec.query)
        self._caps: Capabilities | None = None
        self._tokenizer: Any = None

    @property
    def stats(self) -> RequestStats:
        return self.transport.stats

    @property
    def cache(self) -> ResponseCache:
        return self.transport.cache

    @property
    def name(self) -> str:
        return self.model

    # -- what the server offers ------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            self._caps = self.transport.run(probe(self.transport))
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

    # -- the backend protocol --------------------------------------------------------------

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[Loglikelihood]:
        caps = self.capabilities
        if caps.echo and self.settings.tokenizer:
            return list(self.transport.run(self._echo_all(requests, progress)))
        if caps.chat_logprobs:
            return list(self.transport.run(self._chat_all(requests, progress)))
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
        responses = self.transport.run(self.transport.gather(calls, _per_owner(progress, owners)))
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
        responses = await self.transport.gather(calls, _weighted(progress, [1] * len(calls)))
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
        responses = await self.transport.gather(calls, _weighted(progress, weights))
        results: list[Loglikelihood | None] = [None] * len(requests)
        for context, response in zip(contexts, responses, strict=True):
            top = top_logprobs(response)
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
