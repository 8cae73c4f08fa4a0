"""Chat rendering: the exact text a chat becomes under a model's chat template.

Shared by the local backend and the server backend, which renders chats itself when it scores
text through the completions endpoint (servers apply templates only to chat requests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from valuescope.backends.base import Context
from valuescope.backends.spec import parse_spec
from valuescope.errors import ModelNotAvailableError, UsageError


def render(tokenizer: Any, context: Context) -> str:
    """The text the model sees; a chat ends with the assistant turn's opening (and prefix)."""
    if isinstance(context, str):
        return context
    messages = []
    if context.system is not None:
        messages.append({"role": "system", "content": context.system})
    messages.append({"role": "user", "content": context.user})
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(text) + context.answer_prefix
    # A base model without a template: a plain transcript is the honest fallback.
    system = f"{context.system}\n\n" if context.system else ""
    return f"{system}Question: {context.user}\nAnswer: {context.answer_prefix}".rstrip(" ")


def check_tokenizer(spec: str) -> None:
    """`--tokenizer` checked before any request: a local model spec whose files are here."""
    parsed = parse_spec(spec)
    if parsed.kind == "openai":
        raise UsageError(
            f"--tokenizer {spec!r}: give the local tokenizer of the served model "
            "(smollm2, gguf:<file> or hf:<dir>), not a server"
        )
    if parsed.kind == "hf" and not Path(parsed.target).expanduser().is_dir():
        raise UsageError(
            f"--tokenizer {spec!r}: no such folder; give the served model's local folder "
            "(hf:<dir> with tokenizer.json), smollm2 or gguf:<file>"
        )


def load_tokenizer(spec: str) -> Any:
    """The tokenizer (with chat template) of a local model spec: smollm2, gguf:<file>, hf:<dir>.

    A server backend needs it to score text through the completions endpoint; it must be the
    tokenizer of the model the server runs.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    parsed = parse_spec(spec)
    if parsed.kind == "openai":
        raise UsageError(
            f"--tokenizer {spec!r}: give the local tokenizer of the served model "
            "(smollm2, gguf:<file> or hf:<dir>), not a server"
        )
    if parsed.kind in ("embedded", "gguf"):
        from valuescope.backends.gguf import dequantized_dir

        if parsed.kind == "embedded":
            from valuescope.backends.embedded import embedded_gguf_path

            path = embedded_gguf_path()
        else:
            path = Path(parsed.target)
        return PreTrainedTokenizerFast.from_pretrained(str(dequantized_dir(path)))
    try:
        return AutoTokenizer.from_pretrained(parsed.target)
    except OSError as exc:
        raise ModelNotAvailableError(
            f"--tokenizer {spec!r}: could not load a tokenizer: {str(exc).splitlines()[0]}"
        ) from exc
