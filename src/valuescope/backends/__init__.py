"""Backends run models; one registry maps model-spec kinds to factories.

Third parties register a factory under the entry-point group `valuescope.backends`
(name = spec prefix); heavy imports happen inside factories.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from valuescope.backends.base import (
    Backend,
    Chat,
    Context,
    GenerationParams,
    Loglikelihood,
    LoglikelihoodRequest,
    Progress,
    WhiteBoxBackend,
)
from valuescope.backends.spec import BUILTIN_PREFIXES, PLUGIN_PREFIXES, ModelSpec, parse_spec
from valuescope.errors import ModelSpecError, UsageError

BackendFactory = Callable[..., Backend]
_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(kind: str, factory: BackendFactory) -> None:
    """Make `load_backend` build specs of `kind` with `factory(spec, **options)`; a kind that
    is not built in becomes a spec prefix (`<kind>:<target>`)."""
    _REGISTRY[kind] = factory
    if kind not in ("embedded", *BUILTIN_PREFIXES):
        PLUGIN_PREFIXES.add(kind)


def load_backend(spec: str | ModelSpec, **options: Any) -> Backend:
    """Build the backend for a model spec.

    >>> backend = load_backend("smollm2")  # doctest: +SKIP
    """
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    factory = _REGISTRY.get(parsed.kind)
    if factory is None:
        for entry in importlib.metadata.entry_points(group="valuescope.backends"):
            if entry.name == parsed.kind:
                factory = entry.load()
                break
    if factory is None:
        raise ModelSpecError(f"no backend is installed for model spec {parsed.raw!r}")
    return factory(parsed, **options)


def load_run_backend(
    spec: str | ModelSpec, out: Path | None, options: Mapping[str, Any] | None = None
) -> Backend:
    """The backend for a run writing into `out`: a server model keeps its response cache there
    (`out/responses.sqlite`, unless `options` names one), so rerunning resumes without
    re-sending finished requests."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    chosen = dict(options or {})
    if parsed.kind == "openai" and out is not None:
        from valuescope.backends.responses import FILENAME

        chosen.setdefault("cache_path", out / FILENAME)
    return load_backend(parsed, **chosen)


def load_white_box(spec: str | ModelSpec, **options: Any) -> WhiteBoxBackend:
    """A backend with hidden-state access, or a clear error for black-box specs."""
    backend = load_backend(spec, **options)
    if not isinstance(backend, WhiteBoxBackend):
        raise UsageError(
            f"model {backend.spec.raw!r} is black-box (no hidden states); this needs a local "
            "model: smollm2, hf:<dir> or gguf:<file>"
        )
    return backend


def _local(spec: ModelSpec, **options: Any) -> Backend:
    from valuescope.backends.gguf import dequantized_dir
    from valuescope.backends.local import LocalBackend

    if spec.kind == "embedded":
        from valuescope.backends.embedded import MODEL_NAME, embedded_gguf_path

        return LocalBackend.from_dir(
            spec, dequantized_dir(embedded_gguf_path()), MODEL_NAME, plain_tokenizer=True, **options
        )
    if spec.kind == "gguf":
        path = Path(spec.target)
        return LocalBackend.from_dir(
            spec, dequantized_dir(path), path.stem, plain_tokenizer=True, **options
        )
    name = spec.target.rstrip("/").split("/")[-1] if Path(spec.target).is_dir() else spec.target
    return LocalBackend.from_dir(spec, spec.target, name, **options)


def _openai(spec: ModelSpec, **options: Any) -> Backend:
    from valuescope.backends.server import ServerBackend

    return ServerBackend(spec, **options)


for _kind in ("embedded", "gguf", "hf"):
    register_backend(_kind, _local)
register_backend("openai", _openai)

__all__ = [
    "Backend",
    "Chat",
    "Context",
    "GenerationParams",
    "Loglikelihood",
    "LoglikelihoodRequest",
    "Progress",
    "WhiteBoxBackend",
    "load_backend",
    "load_run_backend",
    "load_white_box",
    "register_backend",
]
