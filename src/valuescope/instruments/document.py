"""Instrument files: locating, reading and checking the top level of any kind's document.

A kind's own module parses its items; what every kind shares (built-in names, YAML or JSON Lines,
the taxonomy reference, item labels in error messages, unique ids) is here, once. Every error
names the file, the item and the field, and says what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from valuescope.errors import UsageError
from valuescope.instruments.taxonomy import Taxonomy, load_taxonomy
from valuescope.yamlfile import read_yaml

TOP_LEVEL = ("kind", "name", "taxonomy", "items", "description")

BUILTIN_INSTRUMENTS = (
    "schwartz-dilemmas",
    "moral-foundations-dilemmas",
    "schwartz-portraits",
    "schwartz-outcomes",
    "schwartz-open",
    "moral-foundations-open",
)


@runtime_checkable
class Instrument(Protocol):
    """Items of one kind on one taxonomy, validated: what every kind's instrument offers."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def taxonomy(self) -> Taxonomy: ...

    @property
    def items(self) -> Sequence[Any]: ...

    @property
    def sha256(self) -> str:
        """Fingerprint of the source: a run never resumes another version's work."""
        ...

    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class Document:
    """An instrument file read and checked at its top level, its items not yet parsed."""

    path: Path
    raw: bytes
    kind: str
    name: str
    taxonomy: Taxonomy
    items: list[Any]

    def entries(self, fields: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(label for errors, mapping) per item; `fields` names what a mapping should hold."""
        for index, entry in enumerate(self.items):
            label = item_label(entry, index)
            if not isinstance(entry, dict):
                raise UsageError(f"{self.path}: {label}: expected a mapping with {fields}")
            yield label, entry


def item_label(entry: Any, index: int) -> str:
    """How errors name an item: by its id, or by its position when it has none."""
    item_id = entry.get("id") if isinstance(entry, dict) else None
    return f"item {item_id!r}" if item_id else f"item #{index + 1}"


SchemaT = TypeVar("SchemaT", bound=BaseModel)


def validated(schema: type[SchemaT], entry: Any, path: Path | str, label: str) -> SchemaT:
    """`entry` checked against `schema`; the first problem becomes an error naming the file,
    the item and the field."""
    try:
        return schema.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(item)"
        raise UsageError(f"{path}: {label}: field {where!r}: {first['msg']}") from None


def nonblank(text: str) -> str:
    """A pydantic field check: texts are never empty."""
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def unique_ids(path: Path | str, ids: Sequence[str]) -> None:
    """Refuse a second item with an id already used."""
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            raise UsageError(f"{path}: item {item_id!r}: duplicate id; ids must be unique")
        seen.add(item_id)


def builtin_instrument_path(name: str) -> Path:
    return Path(str(resources.files("valuescope") / "data" / "instruments" / f"{name}.yaml"))


def instrument_path(name_or_path: str | Path) -> Path:
    """The file of a built-in instrument or of a path, with an error that says which it is not."""
    key = str(name_or_path)
    if key in BUILTIN_INSTRUMENTS:
        return builtin_instrument_path(key)
    path = Path(key).expanduser()
    if path.is_dir():
        raise UsageError(
            f"instrument {key!r} is a folder; give an instrument file (.yaml or .jsonl) or a "
            "built-in name (list them with `valuescope instruments`)"
        )
    if not path.is_file():
        raise UsageError(
            f"unknown instrument {key!r}: not a built-in ({', '.join(BUILTIN_INSTRUMENTS)}) and "
            "no such file; list the built-ins with `valuescope instruments`"
        )
    return path


def read_document(
    name_or_path: str | Path, taxonomy: str | None = None, kind: str | None = None
) -> Document:
    """Locate, read and check the top level of an instrument file (any kind).

    `taxonomy` is required for JSON Lines (which holds only items) and overrides YAML's; `kind`
    is the kind of a JSON Lines file's items (default dilemma).
    """
    path = instrument_path(name_or_path)
    raw = path.read_bytes()
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        doc = _read_jsonl(path, raw, taxonomy, kind or "dilemma")
    else:
        doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected a mapping with kind, name, taxonomy and items")
    unknown = set(doc) - set(TOP_LEVEL)
    if unknown:
        raise UsageError(
            f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: {', '.join(TOP_LEVEL)}"
        )
    found = doc.get("kind")
    if not isinstance(found, str) or not found:
        raise UsageError(f"{path}: field 'kind' is {found!r}; name the kind of the items")
    tax_ref = taxonomy or doc.get("taxonomy")
    if not tax_ref:
        raise UsageError(f"{path}: field 'taxonomy' is missing; name a built-in or a YAML path")
    tax_path = Path(str(tax_ref))
    if not tax_path.is_absolute() and (path.parent / tax_path).is_file():
        tax_ref = str(path.parent / tax_path)
    try:
        tax = load_taxonomy(str(tax_ref))
    except UsageError as exc:
        raise UsageError(f"{path}: field 'taxonomy': {exc}") from None
    items = doc.get("items")
    if not isinstance(items, list) or not items:
        raise UsageError(f"{path}: field 'items' must be a non-empty list")
    name = str(doc.get("name") or path.stem)
    return Document(path, raw, str(found), name, tax, items)


def _read_jsonl(path: Path, raw: bytes, taxonomy: str | None, kind: str) -> dict[str, Any]:
    if not taxonomy:
        raise UsageError(
            f"{path}: JSON Lines instruments need --taxonomy (e.g. --taxonomy schwartz)"
        )
    items = []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None
    return {"kind": kind, "name": path.stem, "taxonomy": taxonomy, "items": items}
