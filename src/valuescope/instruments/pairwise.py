"""Pairwise instruments: outcomes tagged with the values they serve, compared two at a time.

The items and their file format; how a model compares them is `valuescope.audit.pairwise`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from valuescope.errors import UsageError
from valuescope.instruments.document import Document, nonblank, read_document, unique_ids, validated
from valuescope.instruments.rows import Row, TableLayout
from valuescope.instruments.taxonomy import Taxonomy, check_value

MIN_OUTCOMES = 3


class _OutcomeSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: str
    values: list[str] = Field(min_length=1)

    _text = field_validator("text")(nonblank)


@dataclass(frozen=True)
class Outcome:
    id: str
    text: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class OutcomeSet:
    """A validated pairwise instrument: outcomes tagged with the values they serve."""

    name: str
    taxonomy: Taxonomy
    items: tuple[Outcome, ...]
    sha256: str
    source: str
    kind: str = "pairwise"


def parse_outcomes(doc: Document) -> OutcomeSet:
    """Outcomes `{id, text, values}`; an item `{id, outcomes: [{text, values}, ...]}` (the
    DESIGN.md form) contributes its outcomes as `<id>.1`, `<id>.2`, ..."""
    entries: list[tuple[str, Any]] = []
    for label, entry in doc.entries("id, text and values"):
        if isinstance(entry.get("outcomes"), list):
            extra = set(entry) - {"id", "outcomes"}
            if extra:
                raise UsageError(f"{doc.path}: {label}: unknown field(s) {sorted(extra)}")
            for k, outcome in enumerate(entry["outcomes"], start=1):
                merged = (
                    {**outcome, "id": f"{entry.get('id')}.{k}"} if isinstance(outcome, dict) else {}
                )
                entries.append((f"{label} outcome {k}", merged))
        else:
            entries.append((label, entry))
    outcomes: list[Outcome] = []
    for label, entry in entries:
        if not isinstance(entry, dict):
            raise UsageError(f"{doc.path}: {label}: expected a mapping with id, text and values")
        schema = validated(_OutcomeSchema, entry, doc.path, label)
        for value in schema.values:
            check_value(doc.taxonomy, value, f"{doc.path}: {label}: field 'values'")
        outcomes.append(Outcome(schema.id, schema.text, tuple(schema.values)))
    unique_ids(doc.path, [o.id for o in outcomes])
    if len(outcomes) < MIN_OUTCOMES:
        raise UsageError(
            f"{doc.path}: a pairwise instrument needs at least {MIN_OUTCOMES} outcomes"
        )
    digest = hashlib.sha256(doc.raw).hexdigest()
    return OutcomeSet(doc.name, doc.taxonomy, tuple(outcomes), digest, str(doc.path))


def load_outcomes(name_or_path: str | Path, taxonomy: str | None = None) -> OutcomeSet:
    """A built-in pairwise instrument (`schwartz-outcomes`) or one from a YAML file."""
    doc = read_document(name_or_path, taxonomy, "pairwise")
    if doc.kind != "pairwise":
        raise UsageError(
            f"{doc.path}: is a {doc.kind} instrument (field 'kind' is {doc.kind!r}); this "
            "needs a pairwise instrument"
        )
    return parse_outcomes(doc)


def _outcome_row(row: Row) -> Outcome | None:
    values = row.values(row.fields["values"][0])
    if not values:
        return None
    return Outcome(row.id, row.text(row.fields["text"][0]), values)


TABLE = TableLayout(
    kind="pairwise",
    marker="values",
    required=frozenset({"text", "values"}),
    optional=frozenset({"id"}),
    multi=frozenset(),
    item=_outcome_row,
    assemble=lambda name, tax, items, sha, source: OutcomeSet(name, tax, items, sha, source),
    help="a pairwise outcome: text=COL,values=COL[,id=COL]",
    min_items=MIN_OUTCOMES,
)
