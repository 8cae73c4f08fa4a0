"""Likert questionnaires: first-person statements, each keyed to a value.

The items and their file format; how a model rates them is `valuescope.audit.likert`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from valuescope.errors import UsageError
from valuescope.instruments.document import Document, nonblank, read_document, unique_ids, validated
from valuescope.instruments.rows import Row, TableLayout
from valuescope.instruments.taxonomy import Taxonomy, check_value


class _LikertSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: str
    value: str
    keyed: Literal[1, -1] = 1

    _text = field_validator("text")(nonblank)


@dataclass(frozen=True)
class LikertItem:
    """A statement keyed to a value: `keyed=1` agreeing upholds it, `-1` agreeing opposes it."""

    id: str
    text: str
    value: str
    keyed: int


@dataclass(frozen=True)
class Questionnaire:
    """A validated Likert instrument on one taxonomy."""

    name: str
    taxonomy: Taxonomy
    items: tuple[LikertItem, ...]
    sha256: str
    source: str
    kind: str = "likert"


def parse_questionnaire(doc: Document) -> Questionnaire:
    """The statements of a likert document, each checked against the schema and taxonomy."""
    items: list[LikertItem] = []
    for label, entry in doc.entries("id, text, value, keyed"):
        schema = validated(_LikertSchema, entry, doc.path, label)
        check_value(doc.taxonomy, schema.value, f"{doc.path}: {label}: field 'value'")
        items.append(LikertItem(schema.id, schema.text, schema.value, schema.keyed))
    unique_ids(doc.path, [item.id for item in items])
    digest = hashlib.sha256(doc.raw).hexdigest()
    return Questionnaire(doc.name, doc.taxonomy, tuple(items), digest, str(doc.path))


def load_questionnaire(name_or_path: str | Path, taxonomy: str | None = None) -> Questionnaire:
    """A built-in questionnaire by name (`schwartz-portraits`) or one from a YAML file.

    >>> len(load_questionnaire("schwartz-portraits").items)
    80
    """
    doc = read_document(name_or_path, taxonomy, "likert")
    if doc.kind != "likert":
        raise UsageError(
            f"{doc.path}: is a {doc.kind} instrument (field 'kind' is {doc.kind!r}); this "
            "needs a likert questionnaire"
        )
    return parse_questionnaire(doc)


def keyed_cell(cell: Any, where: str) -> int:
    """1 or -1 from a table's keyed cell (empty means forward)."""
    text = "" if cell is None else str(cell).strip().lower()
    if text in ("", "1", "+1", "1.0", "forward", "f", "+"):
        return 1
    if text in ("-1", "-1.0", "reverse", "reversed", "r", "-"):
        return -1
    raise UsageError(
        f"{where}: keyed {cell!r} is not 1/-1 (or forward/reverse); reverse-keyed items "
        "are ones where agreeing opposes the value"
    )


def _likert_row(row: Row) -> LikertItem | None:
    values = row.values(row.fields["value"][0])
    if len(values) != 1:
        return None
    keyed_column = row.column("keyed")
    keyed = keyed_cell(row.cells[keyed_column], row.where) if keyed_column else 1
    return LikertItem(row.id, row.text(row.fields["text"][0]), values[0], keyed)


TABLE = TableLayout(
    kind="likert",
    marker="value",
    required=frozenset({"text", "value"}),
    optional=frozenset({"id", "keyed"}),
    multi=frozenset(),
    item=_likert_row,
    assemble=lambda name, tax, items, sha, source: Questionnaire(name, tax, items, sha, source),
    help="a likert item: text=COL,value=COL[,keyed=COL][,id=COL]",
)
