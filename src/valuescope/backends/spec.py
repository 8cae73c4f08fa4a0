"""Model specs: the one string that names a model everywhere (CLI, API, results)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from valuescope.errors import ModelSpecError

EMBEDDED = "smollm2"
ACCEPTED_FORMS = (
    "smollm2 (the embedded SmolLM2-135M-Instruct), hf:<local dir or hub id>, "
    "gguf:<path to .gguf>, openai:<model>@<base url>"
)

SpecKind = Literal["embedded", "hf", "gguf", "openai"]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec; `raw` is what the user typed and what results record."""

    raw: str
    kind: SpecKind
    target: str
    base_url: str | None = None

    @property
    def white_box(self) -> bool:
        """Whether the backend exposes hidden states (local weights)."""
        return self.kind != "openai"


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec string, or raise a one-line error listing the accepted forms.

    >>> parse_spec("gguf:/models/x.gguf").target
    '/models/x.gguf'
    """
    text = spec.strip()
    if text == EMBEDDED:
        return ModelSpec(raw=text, kind="embedded", target=EMBEDDED)
    prefix, sep, rest = text.partition(":")
    if not sep or prefix not in ("hf", "gguf", "openai"):
        raise ModelSpecError(f"unknown model spec {spec!r}; accepted forms: {ACCEPTED_FORMS}")
    if not rest:
        raise ModelSpecError(
            f"model spec {spec!r} names nothing after '{prefix}:'; {_form(prefix)}"
        )
    if prefix == "gguf":
        path = Path(rest).expanduser()
        if path.suffix.lower() != ".gguf":
            raise ModelSpecError(f"model spec {spec!r}: expected a .gguf file; {_form(prefix)}")
        if not path.is_file():
            raise ModelSpecError(
                f"model spec {spec!r}: no such file {str(path)!r}; check the path "
                "(the form is gguf:<path to .gguf>)"
            )
        return ModelSpec(raw=text, kind="gguf", target=str(path.resolve()))
    if prefix == "openai":
        model, at, url = rest.rpartition("@")
        if not at or not model or not url.startswith(("http://", "https://")):
            raise ModelSpecError(f"model spec {spec!r} is malformed; {_form(prefix)}")
        return ModelSpec(raw=text, kind="openai", target=model, base_url=url.rstrip("/"))
    return ModelSpec(raw=text, kind="hf", target=rest)


def _form(prefix: str) -> str:
    forms = {
        "hf": "the form is hf:<local dir or hub id>",
        "gguf": "the form is gguf:<path to .gguf>",
        "openai": "the form is openai:<model>@<base url>, e.g. openai:llama@http://127.0.0.1:8000/v1",
    }
    return forms[prefix]
