"""Running an instrument: the one entry point every command and kind shares.

`run_audit` checks everything that can be checked from the arguments (the instrument, its
kind's settings, the model spec, the interventions) before a model loads, then hands the run to
the instrument's kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valuescope.audit.kinds import (
    InstrumentKind,
    RunResult,
    RunSpec,
    check_context,
    check_spec,
    fingerprint,
    load_instrument,
)
from valuescope.backends import Backend, load_run_backend
from valuescope.backends.spec import parse_spec
from valuescope.checkpoint import Checkpoint
from valuescope.errors import UsageError
from valuescope.instruments.document import Instrument
from valuescope.progress import ProgressHook


@dataclass(frozen=True)
class Prepared:
    """An instrument, its kind and a checked spec, with the model loaded and intervened on."""

    instrument: Instrument
    kind: InstrumentKind
    spec: RunSpec
    backend: Backend


def prepare(
    instrument: str | Path | Instrument,
    spec: RunSpec,
    *,
    backend: Backend | None = None,
    out: Path | None = None,
    backend_options: Mapping[str, Any] | None = None,
    run_folder: Path | None = None,
) -> Prepared:
    """Check the run, then load the model (unless `backend` is given) and apply the
    interventions; a server model keeps its response cache in `out`.

    Everything that can be checked without a model is checked first, `run_folder` (default
    `out`) holding another run's progress included: a mistake costs no model load.
    """
    model = parse_spec(spec.model)  # cheap checks first: a typo should not wait for a model
    loaded = instrument if isinstance(instrument, Instrument) else load_instrument(instrument)
    kind = check_spec(loaded, spec)
    raw = backend.spec.raw if backend is not None else model.raw
    for intervention in spec.interventions:
        if intervention.white_box and backend is None and model.kind == "openai":
            raise UsageError(  # before a server opens its response cache
                f"{intervention.flag} needs a local model (hidden states): smollm2, hf:<dir> or "
                f"gguf:<file>; {raw!r} is black-box"
            )
    folder = run_folder or out
    if folder is not None:
        Checkpoint.check(folder, fingerprint(raw, loaded, spec))
    backend = backend or load_run_backend(model, out, backend_options)
    check_context(loaded, kind, backend)
    for intervention in spec.interventions:
        backend = intervention.wrap(backend)
    return Prepared(loaded, kind, spec, backend)


def run_prepared(
    ready: Prepared,
    spec: RunSpec | None = None,
    out: Path | None = None,
    progress: ProgressHook | None = None,
) -> RunResult:
    """Run a prepared instrument, optionally with other settings of the same model (e.g. a
    persona's system prompt)."""
    return ready.kind.run(ready.instrument, spec or ready.spec, ready.backend, out, progress)


def run_audit(
    instrument: str | Path | Instrument = "schwartz-dilemmas",
    spec: RunSpec | None = None,
    *,
    backend: Backend | None = None,
    out: Path | None = None,
    progress: ProgressHook | None = None,
    backend_options: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run an instrument of any kind; with `out`, finished work is saved and a rerun resumes.

    `instrument` is a built-in name, a file, or a loaded instrument (e.g. from a table).
    `backend_options` go to the backend factory (for servers: `settings`, `cache_path`; the
    response cache defaults to `out/responses.sqlite`, so a resumed run re-sends nothing that
    finished).

    >>> from valuescope import RunSpec, run_audit
    >>> result = run_audit("schwartz-dilemmas", RunSpec(limit=20))  # doctest: +SKIP
    >>> result.profile.scores["benevolence"].score, result.verdict  # doctest: +SKIP
    """
    spec = spec or RunSpec()
    ready = prepare(instrument, spec, backend=backend, out=out, backend_options=backend_options)
    return run_prepared(ready, spec, out, progress)
