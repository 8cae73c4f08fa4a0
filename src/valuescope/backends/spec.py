"""Model specs: the one string that names a model everywhere (CLI, API, results)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from valuescope.errors import ModelSpecError

EMBEDDED = "smollm2"
ACCEPTED_FORMS = (
    "smollm2 (the embedded SmolLM2-135M-Instruct), hf:<local dir or hub id>, "
    "gguf:<path to .gguf>, openai:<model>@<base url>"
)

SpecKind = Literal["embedded", "hf", "gguf", "openai"]
BUILTIN_PREFIXES = ("hf", "gguf", "openai")
PLUGIN_PREFIXES: set[str] = set()
"""Prefixes of backends registered by plugins (`register_backend`, or the entry-point group
`valuescope.backends`): `<prefix>:<target>` names a model of theirs."""
ENTRY_POINTS = "valuescope.backends"


HIDDEN = "***"
"""What a query value of a server URL shows as wherever a spec is recorded or printed."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec; `raw` is what results record and messages print: what the user
    typed, except that a server URL's query values (an `api-key=`, an `api-version=`) show as
    `***`. The values themselves are only in `query`, sent with each request, never stored."""

    raw: str
    kind: SpecKind | str
    """A built-in kind, or a plugin backend's prefix."""
    target: str
    base_url: str | None = None
    query: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def white_box(self) -> bool:
        """Whether the backend exposes hidden states (local weights)."""
        return self.kind in ("embedded", "hf", "gguf")


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec string, or raise a one-line error listing the accepted forms.

    >>> parse_spec("gguf:/models/x.gguf").target
    '/models/x.gguf'
    """
    text = spec.strip()
    if text == EMBEDDED:
        return ModelSpec(raw=text, kind="embedded", target=EMBEDDED)
    prefix, sep, rest = text.partition(":")
    plugin = sep and prefix not in BUILTIN_PREFIXES and _plugin(prefix)
    if not sep or (prefix not in BUILTIN_PREFIXES and not plugin):
        others = "".join(f", {p}:<target>" for p in sorted(PLUGIN_PREFIXES))
        raise ModelSpecError(
            f"unknown model spec {_shown(spec)!r}; accepted forms: {ACCEPTED_FORMS}{others}"
        )
    if plugin:
        if not rest:
            raise ModelSpecError(f"model spec {spec!r} names nothing after '{prefix}:'")
        return ModelSpec(raw=text, kind=prefix, target=rest)
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
        return _server_spec(text, rest)
    folder = Path(rest).expanduser()
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise ModelSpecError(
            f"model spec {spec!r}: the folder {str(folder)!r} holds no config.json; an hf: folder "
            "is what save_pretrained writes (config.json, the weights and the tokenizer)"
        )
    return ModelSpec(raw=text, kind="hf", target=rest)


def _plugin(prefix: str) -> bool:
    """Whether a plugin backend answers to `prefix` (registered, or by entry point)."""
    if prefix in PLUGIN_PREFIXES:
        return True
    import importlib.metadata

    return any(e.name == prefix for e in importlib.metadata.entry_points(group=ENTRY_POINTS))


def _server_spec(text: str, rest: str) -> ModelSpec:
    """`openai:<model>@<url>`: the URL split into where requests go and their query."""
    model, at, url = rest.rpartition("@")
    if not at or not model or not url.startswith(("http://", "https://")):
        raise ModelSpecError(f"model spec {_shown(text)!r} is malformed; {_form('openai')}")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ModelSpecError(
            "a server URL with a user name or password in it would be recorded with the run; "
            "remove it and put the key in the environment variable named by --api-key-env"
        )
    if not parts.hostname:
        raise ModelSpecError(f"model spec {_shown(text)!r} has no host; {_form('openai')}")
    query = tuple(parse_qsl(parts.query, keep_blank_values=True))
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    shown = f"openai:{model}@{base}" + (
        "?" + "&".join(f"{k}={HIDDEN}" for k, _ in query) if query else ""
    )
    return ModelSpec(raw=shown, kind="openai", target=model, base_url=base, query=query)


def _shown(text: str) -> str:
    """A spec as messages may print it: anything after a '?' hidden."""
    head, sep, _ = text.partition("?")
    return head + (f"?{HIDDEN}" if sep else "")


def _form(prefix: str) -> str:
    forms = {
        "hf": "the form is hf:<local dir or hub id>",
        "gguf": "the form is gguf:<path to .gguf>",
        "openai": "the form is openai:<model>@<base url>, e.g. openai:llama@http://127.0.0.1:8000/v1",
    }
    return forms[prefix]
