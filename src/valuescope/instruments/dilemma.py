"""Dilemma instruments: situations with two or more options, each upholding values.

The items and their file format; how a model is asked about them is `valuescope.audit.dilemma`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from valuescope.errors import UsageError
from valuescope.instruments.document import Document, nonblank, read_document, unique_ids, validated
from valuescope.instruments.rows import Row, TableLayout
from valuescope.instruments.taxonomy import Taxonomy, check_value


class _OptionSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    values: list[str] = Field(default_factory=list)

    _text = field_validator("text")(nonblank)


class _ParaphraseSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    options: list[str]

    _text = field_validator("text")(nonblank)

    @field_validator("options")
    @classmethod
    def _options(cls, options: list[str]) -> list[str]:
        for option in options:
            nonblank(option)
        return options


class _DilemmaSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: str
    options: list[_OptionSchema] = Field(min_length=2)
    paraphrase: _ParaphraseSchema | None = None

    _text = field_validator("text")(nonblank)


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
class Dilemmas:
    """A validated dilemma instrument: situations with options upholding values."""

    name: str
    taxonomy: Taxonomy
    items: tuple[DilemmaItem, ...]
    sha256: str
    source: str
    kind: str = "dilemma"

    @property
    def has_paraphrases(self) -> bool:
        return all(item.paraphrase is not None for item in self.items)

    def item(self, item_id: str) -> DilemmaItem:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    def deciding(self, value: str) -> Dilemmas:
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


def parse_dilemmas(doc: Document) -> Dilemmas:
    """The items of a dilemma document, each checked against the schema and the taxonomy."""
    items = tuple(
        _parse_dilemma(doc.path, label, entry, doc.taxonomy)
        for label, entry in doc.entries("id, text and options")
    )
    unique_ids(doc.path, [item.id for item in items])
    return Dilemmas(
        doc.name, doc.taxonomy, items, hashlib.sha256(doc.raw).hexdigest(), str(doc.path)
    )


def load_dilemmas(name_or_path: str | Path, taxonomy: str | None = None) -> Dilemmas:
    """A built-in dilemma instrument by name, or one from a YAML / JSON Lines file.

    `taxonomy` is required for JSON Lines (which holds only items) and overrides YAML's. Any
    kind loads with `valuescope.load_instrument`.

    >>> len(load_dilemmas("schwartz-dilemmas").items) >= 180
    True
    """
    doc = read_document(name_or_path, taxonomy, "dilemma")
    if doc.kind != "dilemma":
        raise UsageError(
            f"{doc.path}: is a {doc.kind} instrument (field 'kind' is {doc.kind!r}); this "
            "needs a dilemma instrument"
        )
    return parse_dilemmas(doc)


def _parse_dilemma(path: Path, label: str, entry: dict[str, Any], tax: Taxonomy) -> DilemmaItem:
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


def _dilemma_row(row: Row) -> DilemmaItem | None:
    options = [
        Option(row.text(option), row.values(values))
        for option, values in zip(row.fields["option"], row.fields["values"], strict=True)
    ]
    if not any(o.values for o in options):
        return None
    return DilemmaItem(row.id, row.text(row.fields["text"][0]), tuple(options), None)


def _dilemma_columns(fields: dict[str, tuple[str, ...]]) -> str | None:
    count, per_option = len(fields["option"]), len(fields["values"])
    if count < 2 or per_option != count:
        return (
            f"a dilemma needs two or more option columns and one values column per option (got "
            f"{count} and {per_option}), e.g. option=a|b,values=va|vb"
        )
    return None


TABLE = TableLayout(
    kind="dilemma",
    marker="option",
    required=frozenset({"text", "option", "values"}),
    optional=frozenset({"id"}),
    multi=frozenset({"option", "values"}),
    item=_dilemma_row,
    assemble=lambda name, tax, items, sha, source: Dilemmas(name, tax, items, sha, source),
    help="a dilemma: text=COL,option=COL_A|COL_B,values=COL_A_VALUES|COL_B_VALUES[,id=COL]",
    check=_dilemma_columns,
)
