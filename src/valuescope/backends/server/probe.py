"""What a server offers, found out once: chat log-probabilities, trustworthy echo, `n`.

The chat `logprobs`/`top_logprobs` serve the `choice` method (label probabilities); the
completions endpoint with `echo` serves the `likelihood` methods (full-text log-likelihoods,
with the served model's tokenizer to render chats, `--tokenizer`); `n` gives several samples in
one request for `generate`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from valuescope.backends.server.transport import (
    CHAT,
    COMPLETIONS,
    ServerError,
    Transport,
    top_logprobs,
)


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


async def probe(transport: Transport) -> Capabilities:
    """What the server offers, found with three tiny requests (cached like any other)."""
    await check_model(transport)
    chat = await transport.call(
        CHAT,
        {
            "model": transport.model,
            "messages": [{"role": "user", "content": "Say yes."}],
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": 5,
        },
        probe=True,
    )
    chat_logprobs = chat is not None and bool(top_logprobs(chat))
    echo, echo_note = await _probe_echo(transport)
    several = await transport.call(
        CHAT,
        {
            "model": transport.model,
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


async def _probe_echo(transport: Transport) -> tuple[bool, str | None]:
    """Whether echoed prompt log-probabilities can be trusted, checked, not assumed.

    The server generates one token after a prompt; then the prompt plus that token is
    echoed. The echoed log-probability of the token must equal the generated one, and the
    text offsets must cover the prompt. (llama-cpp-python 0.3 fails this on models without
    a BOS token: its echoed values are shifted by one position.)
    """
    prompt = "The capital of France is"
    base = {"model": transport.model, "max_tokens": 1, "temperature": 0.0, "logprobs": 1}
    generated = await transport.call(COMPLETIONS, {**base, "prompt": prompt}, probe=True)
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
    echoed = await transport.call(
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


async def check_model(transport: Transport) -> None:
    """An unknown model name is a 404 on most servers; some silently serve another model.

    The model list settles it up front when the server has one.
    """
    async with transport.client() as client:
        try:
            page = await client.models.list()
        except Exception as exc:  # the list is optional; the requests will tell
            import openai

            if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
                raise transport.auth_error(exc) from exc
            return
        ids = [m.id for m in page.data]
    if ids and transport.model not in ids:
        raise ServerError(
            f"model {transport.model!r} is not served at {transport.base_url} (it serves: "
            f"{', '.join(ids)}); use openai:<one of those>@{transport.base_url}"
        )
