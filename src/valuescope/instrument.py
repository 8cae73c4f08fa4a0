"""Instruments: items that elicit values, loaded from YAML (or JSON Lines) and validated.

Every validation error names the file, the item id and the field, and says what to fix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import UsageError
from .taxonomy import Taxonomy, check_value, load_taxonomy
from .yamlfile import read_yaml

KINDS = ("dilemma", "likert", "pairwise", "open")
SUPPORTED_KINDS = ("dilemma", "likert", "pairwise")


SchemaT = TypeVar("SchemaT", bound=BaseModel)


def validated(schema: type[SchemaT], entry: Any, path: Path, label: str) -> SchemaT:
    """`entry` checked against `schema`; the first problem becomes an error naming the file,
    the item and the field."""
    try:
        return schema.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(item)"
        raise UsageError(f"{path}: {label}: field {where!r}: {first['msg']}") from None


def _nonblank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


class _OptionSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    values: list[str] = Field(default_factory=list)

    _text = field_validator("text")(_nonblank)


class _ParaphraseSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    options: list[str]

    _text = field_validator("text")(_nonblank)

    @field_validator("options")
    @classmethod
    def _options(cls, options: list[str]) -> list[str]:
        for option in options:
            _nonblank(option)
        return options


class _DilemmaSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: str
    options: list[_OptionSchema] = Field(min_length=2)
    paraphrase: _ParaphraseSchema | None = None

    _text = field_validator("text")(_nonblank)


@dataclass(frozen=True)
class Option:
    """One course of action and the values it upholds."""

    text: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Wording:
    """A situation and its option texts, in one wording."""

    text: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class DilemmaItem:
    """A situation with two or more options; `paraphrase` is a second wording, if any."""

    id: str
    text: str
    options: tuple[Option, ...]
    paraphrase: Wording | None = None

    @property
    def original(self) -> Wording:
        return Wording(self.text, tuple(o.text for o in self.options))

    def upholding(self, value: str) -> int | None:
        """Index of the single option that upholds `value`, or None if zero or several do."""
        hits = [i for i, option in enumerate(self.options) if value in option.values]
        return hits[0] if len(hits) == 1 else None


@dataclass(frozen=True)
class Instrument:
    """A validated set of items of one kind, on one taxonomy."""

    name: str
    kind: Literal["dilemma"]
    taxonomy: Taxonomy
    items: tuple[DilemmaItem, ...]
    sha256: str
    source: str

    @property
    def has_paraphrases(self) -> bool:
        return all(item.paraphrase is not None for item in self.items)

    def item(self, item_id: str) -> DilemmaItem:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    def deciding(self, value: str) -> Instrument:
        """The items whose score for `value` counts (exactly one option upholds it): all an
        audit of that value alone needs, for example to measure what steering it changed.

        The subset has its own fingerprint, so a run of it never resumes a whole-instrument run.
        """
        check_value(self.taxonomy, value, f"instrument {self.name!r}")
        items = tuple(item for item in self.items if item.upholding(value) is not None)
        if not items:
            raise UsageError(
                f"instrument {self.name!r} has no item with exactly one option upholding {value}"
            )
        return replace(self, items=items, sha256=f"{self.sha256}:{value}")


BUILTIN_INSTRUMENTS = (
    "schwartz-dilemmas",
    "moral-foundations-dilemmas",
    "schwartz-portraits",
    "schwartz-outcomes",
)


def builtin_instrument_path(name: str) -> Path:
    return Path(str(resources.files("valuescope") / "data" / "instruments" / f"{name}.yaml"))


def read_document(
    name_or_path: str | Path, taxonomy: str | None = None
) -> tuple[Path, bytes, dict[str, Any], Taxonomy]:
    """Locate, read and check the top level of an instrument file (any kind)."""
    key = str(name_or_path)
    path = builtin_instrument_path(key) if key in BUILTIN_INSTRUMENTS else Path(key).expanduser()
    if not path.is_file():
        raise UsageError(
            f"unknown instrument {key!r}: not a built-in ({', '.join(BUILTIN_INSTRUMENTS)}) and "
            "no such file; list the built-ins with `valuescope instruments`"
        )
    raw = path.read_bytes()
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        doc = _read_jsonl(path, raw, taxonomy)
    else:
        doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected a mapping with kind, name, taxonomy and items")
    unknown = set(doc) - {"kind", "name", "taxonomy", "items", "description"}
    if unknown:
        raise UsageError(
            f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: "
            "kind, name, taxonomy, items, description"
        )
    kind = doc.get("kind")
    if kind not in KINDS:
        raise UsageError(f"{path}: field 'kind' is {kind!r}; expected one of {', '.join(KINDS)}")
    if kind not in SUPPORTED_KINDS:
        raise UsageError(f"{path}: instruments of kind {kind!r} are not supported in this version")
    tax_ref = taxonomy or doc.get("taxonomy")
    if not tax_ref:
        raise UsageError(f"{path}: field 'taxonomy' is missing; name a built-in or a YAML path")
    tax_path = Path(str(tax_ref))
    if not tax_path.is_absolute() and (path.parent / tax_path).is_file():
        tax_ref = str(path.parent / tax_path)
    tax = load_taxonomy(str(tax_ref))
    items = doc.get("items")
    if not isinstance(items, list) or not items:
        raise UsageError(f"{path}: field 'items' must be a non-empty list")
    return path, raw, doc, tax


def instrument_kind(name_or_path: str | Path, taxonomy: str | None = None) -> str:
    """The kind of an instrument file (dilemma, likert, ...), after checking its top level."""
    return str(read_document(name_or_path, taxonomy)[2]["kind"])


def load_instrument(name_or_path: str | Path, taxonomy: str | None = None) -> Instrument:
    """A built-in dilemma instrument by name, or one from a YAML / JSON Lines file.

    `taxonomy` is required for JSON Lines (which holds only items) and overrides YAML's.
    Likert questionnaires load with `valuescope.questionnaire.load_questionnaire`.

    >>> len(load_instrument("schwartz-dilemmas").items) >= 180
    True
    """
    path, raw, doc, tax = read_document(name_or_path, taxonomy)
    if doc["kind"] != "dilemma":
        raise UsageError(f"{path}: is a {doc['kind']} instrument; this needs a dilemma instrument")
    items = doc["items"]
    parsed = tuple(_parse_dilemma(path, index, entry, tax) for index, entry in enumerate(items))
    seen: set[str] = set()
    for item in parsed:
        if item.id in seen:
            raise UsageError(f"{path}: item {item.id!r}: duplicate id; ids must be unique")
        seen.add(item.id)
    name = str(doc.get("name") or path.stem)
    return Instrument(name, "dilemma", tax, parsed, hashlib.sha256(raw).hexdigest(), str(path))


def _read_jsonl(path: Path, raw: bytes, taxonomy: str | None) -> dict[str, Any]:
    if not taxonomy:
        raise UsageError(
            f"{path}: JSON Lines instruments need --taxonomy (e.g. --taxonomy schwartz)"
        )
    items = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None
    return {"kind": "dilemma", "name": path.stem, "taxonomy": taxonomy, "items": items}


def _parse_dilemma(path: Path, index: int, entry: Any, tax: Taxonomy) -> DilemmaItem:
    item_id = entry.get("id") if isinstance(entry, dict) else None
    label = f"item {item_id!r}" if item_id else f"item #{index + 1}"
    if not isinstance(entry, dict):
        raise UsageError(f"{path}: {label}: expected a mapping with id, text and options")
    schema = validated(_DilemmaSchema, entry, path, label)
    for number, option in enumerate(schema.options):
        for value in option.values:
            check_value(tax, value, f"{path}: {label}: field 'options.{number}.values'")
    paraphrase = None
    if schema.paraphrase is not None:
        count = len(schema.paraphrase.options)
        if count != len(schema.options):
            raise UsageError(
                f"{path}: {label}: field 'paraphrase.options': has {count} options, the item "
                f"has {len(schema.options)}; reword every option, in the same order"
            )
        paraphrase = Wording(schema.paraphrase.text, tuple(schema.paraphrase.options))
    options = tuple(Option(o.text, tuple(o.values)) for o in schema.options)
    return DilemmaItem(schema.id, schema.text, options, paraphrase)
