"""Open instruments: requests a person might send, answered in the model's own words.

Each item lists the values at stake; the answers are read by a value detector
(`valuescope.detectors`). The items and their file format; how a model answers them is
`valuescope.audit.answers`, and how the answers become a profile `valuescope.audit.open`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from valuescope.errors import UsageError
from valuescope.instruments.document import Document, nonblank, unique_ids, validated
from valuescope.instruments.rows import Row, TableLayout
from valuescope.instruments.taxonomy import Taxonomy, check_value


class _OpenSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: Annotated[str, AfterValidator(nonblank)]
    values: list[str] = Field(min_length=1)
    paraphrase: Annotated[str, AfterValidator(nonblank)] | None = None


@dataclass(frozen=True)
class OpenItem:
    """A request answered freely; `values` are the values at stake in it."""

    id: str
    text: str
    values: tuple[str, ...]
    paraphrase: str | None = None


@dataclass(frozen=True)
class OpenPrompts:
    """A validated open instrument on one taxonomy."""

    name: str
    taxonomy: Taxonomy
    items: tuple[OpenItem, ...]
    sha256: str
    source: str
    kind: str = "open"

    @property
    def has_paraphrases(self) -> bool:
        return any(item.paraphrase for item in self.items)


def parse_open(doc: Document) -> OpenPrompts:
    """The prompts of an open document, each checked against the schema and taxonomy."""
    items: list[OpenItem] = []
    for label, entry in doc.entries("id, text, values[, paraphrase]"):
        schema = validated(_OpenSchema, entry, doc.path, label)
        for value in schema.values:
            check_value(doc.taxonomy, value, f"{doc.path}: {label}: field 'values'")
        if len(set(schema.values)) != len(schema.values):
            raise UsageError(f"{doc.path}: {label}: field 'values' names a value twice")
        items.append(OpenItem(schema.id, schema.text, tuple(schema.values), schema.paraphrase))
    unique_ids(doc.path, [item.id for item in items])
    if not items:
        raise UsageError(f"{doc.path}: no items; an open instrument needs at least one prompt")
    digest = hashlib.sha256(doc.raw).hexdigest()
    return OpenPrompts(doc.name, doc.taxonomy, tuple(items), digest, str(doc.path))


def _open_row(row: Row) -> OpenItem | None:
    values = row.values(row.fields["values"][0])
    if not values:
        return None
    column = row.column("paraphrase")
    cell = row.cells.get(column) if column else None
    paraphrase = str(cell).strip() if cell is not None and str(cell).strip() else None
    return OpenItem(
        row.id, row.text(row.fields["text"][0]), tuple(dict.fromkeys(values)), paraphrase
    )


TABLE = TableLayout(
    kind="open",
    marker="values",
    required=frozenset({"text", "values"}),
    optional=frozenset({"id", "paraphrase"}),
    multi=frozenset(),
    item=_open_row,
    assemble=lambda name, tax, items, sha, source: OpenPrompts(name, tax, items, sha, source),
    help="an open prompt: text=COL,values=COL[,paraphrase=COL][,id=COL]",
)
