"""Instrument kinds: one protocol for every way of asking a model about its values.

A kind (dilemma, likert, pairwise, ...) turns its instrument's items into a profile. It parses
its own documents, declares which run settings it honours, runs with one `RunSpec`, and returns
a `RunResult` that knows its results.json block, its items table, its console summary and its
card sections. Commands never branch on a kind: they ask the registry. Built-in kinds register
like plugins (lazy factories, as backends do); a third party adds one with `register_kind` or
the entry-point group `valuescope.instrument_kinds`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rich.console import RenderableType

from valuescope.audit.profile import Profile
from valuescope.backends.base import Backend, Intervention
from valuescope.checkpoint import Checkpoint
from valuescope.errors import UsageError
from valuescope.instruments.document import Document, Instrument, read_document
from valuescope.progress import ProgressHook

FLAGS = {
    "method": "--method",
    "limit": "--limit",
    "budget": "--budget",
    "paraphrase": "--paraphrase/--no-paraphrase",
    "panel": "--alpha",
    "interventions": "--steer/--align",
    "samples": "--samples",
    "detector": "--detector",
}
"""The `RunSpec` settings a kind may or may not honour, by the flag that sets them."""


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run of an instrument (and so its resume fingerprint).

    Settings left at their default mean "not asked for": a kind refuses a setting it does not
    honour only when it was given.
    """

    model: str = "smollm2"
    method: str = "auto"
    system: str | None = None
    seed: int = 0
    limit: int | None = None
    """Score only the first `limit` items."""
    budget: int | None = None
    """Comparisons to make (pairwise instruments)."""
    paraphrase: bool | None = None
    """Score the second wordings too; None: where the instrument has them."""
    panel: Mapping[str, str] | None = None
    """Respondents besides the model itself (name -> system prompt), e.g. the personas."""
    interventions: tuple[Intervention, ...] = ()
    samples: int | None = None
    """Answers per prompt (open instruments)."""
    detector: str | None = None
    """The detector that reads free-text answers, then those it is compared with (`a,b`)."""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise UsageError("--limit must be a positive number of items")
        if self.budget is not None and self.budget < 1:
            raise UsageError("--budget must be a positive number of comparisons")
        if self.samples is not None and self.samples < 1:
            raise UsageError("--samples must be a positive number of answers per prompt")

    def given(self) -> list[str]:
        """The settings of `FLAGS` that differ from their defaults."""
        defaults = RunSpec()
        return [name for name in FLAGS if getattr(self, name) != getattr(defaults, name)]

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ItemsTable:
    """items.csv: one header and its rows."""

    header: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class CardSection:
    """A part of the value card a kind draws: a Jinja template and its data (`s` in it).

    `template` names one of valuescope's own (under `data/card/`); a kind from another package
    gives its template's text as `source` instead. Either is rendered with autoescaping on.
    """

    template: str
    context: dict[str, Any] = field(default_factory=dict)
    source: str | None = None


@dataclass(frozen=True)
class DiagnosticRow:
    """One validity measure on the card: its name, value (None = not measured), meaning."""

    name: str
    value: float | None
    meaning: str
    shown: str | None = None
    """Text shown instead of the value, for a measure with several parts (alpha per value)."""


@runtime_checkable
class RunResult(Protocol):
    """A finished run of one instrument, whatever its kind."""

    spec: RunSpec
    model_name: str
    method: str
    profile: Profile
    seconds: float
    server: dict[str, Any] | None
    """For server backends: base URL and what the server offered (never the key)."""
    requests: dict[str, Any] | None
    """For server backends: requests sent, answered from the cache, retried (by cause)."""

    @property
    def instrument(self) -> Instrument: ...

    @property
    def verdict(self) -> str:
        """How far to trust the profile, in plain words."""
        ...

    def results_block(self) -> dict[str, Any]:
        """results.json's fields after the shared head (diagnostics, items, the kind's own)."""
        ...

    def items_table(self) -> ItemsTable: ...

    def summary(self) -> list[RenderableType]:
        """What the console shows of the run: a table and lines of figures."""
        ...

    def files(self) -> dict[str, str]:
        """Further files of the run folder by name (e.g. answers.jsonl), possibly none."""
        ...

    def recovery_scores(self) -> dict[str, float]:
        """Per value, the score persona recovery compares between respondents."""
        ...


@runtime_checkable
class InstrumentKind(Protocol):
    """One kind of instrument: its documents, the settings it honours, and how it runs."""

    @property
    def name(self) -> str: ...

    @property
    def honours(self) -> frozenset[str]:
        """The `RunSpec` settings (keys of `FLAGS`) it reads; others are refused when given."""
        ...

    @property
    def methods(self) -> tuple[str, ...]:
        """`--method` choices besides auto."""
        ...

    def hint(self, setting: str) -> str:
        """What to use instead of a setting it does not honour (may be empty)."""
        ...

    def parse(self, doc: Document) -> Instrument: ...

    def check(self, instrument: Instrument, spec: RunSpec) -> None:
        """Refuse, before any model loads, settings this instrument cannot run with."""
        ...

    def texts(self, instrument: Instrument) -> Iterator[tuple[str, str]]:
        """(item id, text) for every text an item puts in a prompt: checked against the
        model's context before any scoring."""
        ...

    def warnings(self, instrument: Instrument) -> list[str]:
        """What in a valid instrument measures nothing (said on loading, not refused)."""
        ...

    def settings(self, instrument: Instrument, spec: RunSpec) -> dict[str, Any]:
        """What besides model, instrument, system prompt, seed and interventions makes two
        runs the same run (their resume fingerprint); known before any model loads."""
        ...

    def run(
        self,
        instrument: Instrument,
        spec: RunSpec,
        backend: Backend,
        out: Path | None,
        progress: ProgressHook | None,
    ) -> RunResult: ...

    def card(self, doc: Mapping[str, Any]) -> tuple[list[DiagnosticRow], list[CardSection]]:
        """The card's validity rows and sections for a results.json document of this kind."""
        ...

    def evidence(self, doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
        """Per value, each item's score on a [0, 1] scale from a results.json document of
        this kind: what a paired comparison of two runs differences item by item."""
        ...


KindFactory = Callable[[], InstrumentKind]


def _builtin(module: str) -> KindFactory:
    def load() -> InstrumentKind:
        kind: InstrumentKind = importlib.import_module(module).KIND
        return kind

    return load


_REGISTRY: dict[str, KindFactory] = {
    "dilemma": _builtin("valuescope.audit.dilemma"),
    "likert": _builtin("valuescope.audit.likert"),
    "pairwise": _builtin("valuescope.audit.pairwise"),
    "open": _builtin("valuescope.audit.open"),
}
_LOADED: dict[str, InstrumentKind] = {}


def register_kind(name: str, factory: KindFactory) -> None:
    """Make instruments of kind `name` load and run through `factory()`."""
    _REGISTRY[name] = factory
    _LOADED.pop(name, None)


def kind_names() -> list[str]:
    return list(_REGISTRY)


def get_kind(name: str) -> InstrumentKind:
    """The registered kind `name`, or a clear error naming the kinds that run."""
    if name not in _LOADED:
        factory = _REGISTRY.get(name)
        if factory is None:
            for entry in importlib.metadata.entry_points(group="valuescope.instrument_kinds"):
                if entry.name == name:
                    factory = entry.load()
                    break
        if factory is None:
            raise UsageError(
                f"instruments of kind {name!r} are not supported in this version; "
                f"supported: {', '.join(_REGISTRY)}"
            )
        _LOADED[name] = factory()
    return _LOADED[name]


def load_instrument(
    name_or_path: str | Path, taxonomy: str | None = None, kind: str | None = None
) -> Instrument:
    """Any instrument: a built-in by name, or a YAML / JSON Lines file of any kind.

    `taxonomy` is required for JSON Lines (items only) and overrides YAML's; `kind` is the kind
    of a JSON Lines file's items (default dilemma).

    >>> load_instrument("schwartz-portraits").kind
    'likert'
    """
    doc = read_document(name_or_path, taxonomy, kind)
    try:
        found = get_kind(doc.kind)
    except UsageError:
        raise UsageError(
            f"{doc.path}: field 'kind' is {doc.kind!r}; expected one of {', '.join(kind_names())}"
        ) from None
    return found.parse(doc)


def check_spec(instrument: Instrument, spec: RunSpec) -> InstrumentKind:
    """The instrument's kind, after refusing every setting it would not honour (one line that
    names the flag, the instrument and what to use instead), before any model loads."""
    kind = get_kind(instrument.kind)
    for setting in spec.given():
        if setting not in kind.honours:
            hint = kind.hint(setting)
            flag = FLAGS[setting]
            if setting == "interventions":  # name the flags this run used, not every one
                flag = " and ".join(dict.fromkeys(i.flag for i in spec.interventions)) or flag
            raise UsageError(
                f"{flag} does not apply to {kind.name} instruments "
                f"({instrument.name}){f'; {hint}' if hint else ''}"
            )
    if spec.method != "auto" and spec.method not in kind.methods:
        if not any(spec.method in get_kind(name).methods for name in _REGISTRY):
            raise UsageError(
                f"--method {spec.method!r} is unknown; choose auto, {', '.join(kind.methods)}"
            )
        raise UsageError(
            f"--method {spec.method!r} does not apply to {kind.name} instruments "
            f"({instrument.name}); choose auto, {', '.join(kind.methods)}"
        )
    kind.check(instrument, spec)
    return kind


def fingerprint(model: str, instrument: Instrument, spec: RunSpec) -> dict[str, Any]:
    """What makes two runs the same run: the model spec, the instrument's version, the system
    prompt, the seed, the interventions and the kind's own settings. Known before any model
    loads, so a folder holding another run is refused before the work, not after."""
    found = {"model": model, "instrument": instrument.sha256, "system": spec.system,
             "seed": spec.seed, **get_kind(instrument.kind).settings(instrument, spec)}  # fmt: skip
    for intervention in spec.interventions:
        found[intervention.name] = intervention.fingerprint()
    return found


def run_checkpoint(
    out: Path | None, backend: Backend, instrument: Instrument, spec: RunSpec
) -> Checkpoint | None:
    """The record of finished work of a run writing into `out` (None without `out`)."""
    if out is None:
        return None
    return Checkpoint(out, fingerprint(backend.spec.raw, instrument, spec))


def intervention_records(spec: RunSpec) -> dict[str, Any]:
    """The interventions' results.json fields (e.g. `steering`), by name."""
    return {i.name: i.as_dict() for i in spec.interventions}


def chunk_key(prefix: str, start: int, size: int, full: int) -> str:
    """The checkpoint key of the chunk of items starting at `start`. A chunk cut short by
    --limit gets its size in the key, so a longer run scores it again, whole, rather than
    taking the short one for it."""
    return f"{prefix}/{start}" if size == full else f"{prefix}/{start}+{size}"


QUESTION_TOKENS = 256
"""Room left in the context for the question around an item (template, options, labels)."""


def check_context(instrument: Instrument, kind: InstrumentKind, backend: Backend) -> None:
    """Refuse, before any scoring, an item too long for the model's context: one line naming
    the file, the item and its length (a local model's context is known; a server's is not)."""
    limit = getattr(backend, "max_tokens", None)
    count = getattr(backend, "count_tokens", None)
    if not limit or count is None:
        return
    room = max(limit - QUESTION_TOKENS, 1)
    for item_id, text in kind.texts(instrument):
        if len(text) < room:  # fewer characters than tokens allowed: it fits
            continue
        n = count(text)
        if n > room:
            raise UsageError(
                f"{instrument.source}: item {item_id!r} is {n:,} tokens, past the {room:,} that "
                f"{backend.name} reads with the question around it (context {limit:,}); "
                "shorten or drop the item"
            )


def server_figures(backend: Backend) -> dict[str, Any]:
    """A run result's `server` and `requests` fields: what a server backend offered and the
    requests it sent (None for a local model)."""
    describe = getattr(backend, "describe", None)
    stats = getattr(backend, "stats", None)
    return {
        "server": describe() if describe is not None else None,
        "requests": stats.as_dict() if stats is not None else None,
    }
