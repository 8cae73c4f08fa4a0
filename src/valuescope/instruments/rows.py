"""Table rows as items: the cells of one row, read the way every kind's table layout needs.

Each kind's item module declares a `TableLayout` (the fields an item takes from a table and how
a row becomes an item); `valuescope.instruments.tables` reads the table and hands every row to
the layout that the `--columns` fields name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from valuescope.errors import UsageError
from valuescope.instruments.taxonomy import Taxonomy


@dataclass
class ValueMapping:
    """Their value names to taxonomy ids; `unmapped` collects names seen but not covered."""

    table: dict[str, tuple[str, ...]]
    unmapped: dict[str, int] = field(default_factory=dict)

    def map(self, names: list[str]) -> tuple[str, ...]:
        out: list[str] = []
        for name in names:
            key = name.strip().lower()
            if key not in self.table:
                self.unmapped[key] = self.unmapped.get(key, 0) + 1
                continue
            out += [v for v in self.table[key] if v not in out]
        return tuple(out)


def value_names(cell: Any, where: str) -> list[str]:
    """Value names in a cell: a list, a list literal ("['a', 'b']") or `a; b` / `a, b`."""
    if isinstance(cell, list | tuple):
        return [str(v) for v in cell]
    text = "" if cell is None else str(cell).strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UsageError(f"{where}: value list {text[:40]!r} is not a list") from None
        if not isinstance(value, list | tuple):
            raise UsageError(f"{where}: value list {text[:40]!r} is not a list")
        return [str(v) for v in value]
    return [part for part in re.split(r"[;,|]", text) if part.strip()]


@dataclass(frozen=True)
class Row:
    """One table row of an item: its id, where it is (for errors), its cells and the mapping."""

    id: str
    where: str
    cells: dict[str, Any]
    fields: dict[str, tuple[str, ...]]
    mapping: ValueMapping

    def text(self, column: str) -> str:
        """A non-empty text cell."""
        value = self.cells.get(column)
        text = "" if value is None else str(value).strip()
        if not text:
            raise UsageError(f"{self.where}: column {column!r} is empty")
        return text

    def values(self, column: str) -> tuple[str, ...]:
        """The taxonomy ids a cell of value names maps to (unmapped names are counted)."""
        return self.mapping.map(value_names(self.cells[column], self.where))

    def column(self, name: str) -> str | None:
        found = self.fields.get(name)
        return found[0] if found else None


@dataclass(frozen=True)
class TableLayout:
    """How a kind's items come from a table: the fields `--columns` names, and the builders."""

    kind: str
    marker: str
    """The field that says a `--columns` spec is of this kind (the first layout that has it)."""
    required: frozenset[str]
    optional: frozenset[str]
    multi: frozenset[str]
    """Fields that take several columns (`option=a|b`)."""
    item: Callable[[Row], Any | None]
    """A row's item, or None to drop it (no mapped value)."""
    assemble: Callable[[str, Taxonomy, tuple[Any, ...], str, str], Any]
    """(name, taxonomy, items, sha256, source) -> the instrument."""
    help: str
    min_items: int = 1
    check: Callable[[dict[str, tuple[str, ...]]], str | None] = lambda fields: None
    """A problem with the fields beyond required/optional, in words, or None."""


def layout_for(layouts: Sequence[TableLayout], fields: dict[str, tuple[str, ...]]) -> TableLayout:
    """The first layout whose marker field is given (layouts are tried in order)."""
    for layout in layouts:
        if layout.marker in fields:
            return layout
    return layouts[-1]
