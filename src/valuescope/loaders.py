"""Public instruments researchers already have: DailyDilemmas and Utility Engineering options.

Both name values in their own vocabulary, so a mapping file (YAML, `{their name: value id |
[value ids] | null}`) translates them to a taxonomy; names the mapping does not cover are
reported, never guessed. Use them as `--instrument dailydilemmas:<file.csv> --value-map
<map.yaml> --taxonomy schwartz` or `--instrument utility-options:<file.json> ...`.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .instrument import DilemmaItem, Instrument, Option
from .pairwise import Outcome, OutcomeSet
from .taxonomy import Taxonomy, load_taxonomy
from .yamlfile import read_yaml

PREFIXES = {"dailydilemmas": "dilemma", "utility-options": "pairwise"}


@dataclass
class Mapping:
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


def load_mapping(path: str | Path | None, taxonomy: Taxonomy) -> Mapping:
    if path is None:
        raise UsageError(
            "this instrument names values in its own words: give --value-map <file.yaml> "
            "mapping them to the taxonomy's ids (e.g. honesty: benevolence)"
        )
    doc = read_yaml(Path(path))
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected a mapping of value names to value ids")
    table: dict[str, tuple[str, ...]] = {}
    for name, target in doc.items():
        ids = [] if target is None else [target] if isinstance(target, str) else target
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise UsageError(f"{path}: {name!r}: expected a value id, a list of ids or null")
        for value in ids:
            if value not in taxonomy:
                raise UsageError(
                    f"{path}: {name!r}: unknown value id {value!r}; taxonomy {taxonomy.name!r} "
                    f"has {', '.join(taxonomy.ids)}"
                )
        table[str(name).strip().lower()] = tuple(ids)
    return Mapping(table)


def split_source(name: str) -> tuple[str, Path] | None:
    """('dailydilemmas', path) for a prefixed instrument source, else None."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix in PREFIXES:
        path = Path(rest).expanduser()
        if not path.is_file():
            raise UsageError(f"--instrument {name!r}: no such file {rest!r}")
        return prefix, path
    return None


def load_daily_dilemmas(
    path: Path, value_map: str | Path | None, taxonomy: str = "schwartz"
) -> tuple[Instrument, dict[str, int], int]:
    """DailyDilemmas CSV: two rows per dilemma (action_type to_do / not_to_do).

    Returns the instrument, the unmapped value names with counts, and how many dilemmas were
    dropped because neither action maps to any value.
    """
    tax = load_taxonomy(taxonomy)
    mapping = load_mapping(value_map, tax)
    raw = path.read_bytes()
    rows = list(csv.DictReader(raw.decode("utf-8").splitlines()))
    needed = {"dilemma_idx", "dilemma_situation", "action_type", "action", "values_aggregated"}
    missing = needed - set(rows[0] if rows else {})
    if missing:
        raise UsageError(f"{path}: not a DailyDilemmas CSV: missing column(s) {sorted(missing)}")
    by_dilemma: dict[str, dict[str, dict[str, str]]] = {}
    for number, row in enumerate(rows, start=2):
        kind = row["action_type"].strip()
        if kind not in ("to_do", "not_to_do"):
            raise UsageError(f"{path}: line {number}: action_type {kind!r} is not to_do/not_to_do")
        by_dilemma.setdefault(row["dilemma_idx"], {})[kind] = row
    items: list[DilemmaItem] = []
    dropped = 0
    for idx, pair in by_dilemma.items():
        if set(pair) != {"to_do", "not_to_do"}:
            raise UsageError(f"{path}: dilemma {idx!r}: needs one to_do and one not_to_do row")
        options = []
        for kind in ("to_do", "not_to_do"):
            row = pair[kind]
            options.append(Option(row["action"].strip(), mapping.map(_names(row, path))))
        if not any(o.values for o in options):
            dropped += 1
            continue
        text = pair["to_do"]["dilemma_situation"].strip()
        items.append(DilemmaItem(f"dd{idx}", text, tuple(options), None))
    if not items:
        raise UsageError(f"{path}: no dilemma has a mapped value; check --value-map")
    digest = hashlib.sha256(raw + json.dumps(mapping.table, sort_keys=True).encode()).hexdigest()
    instrument = Instrument(path.stem, "dilemma", tax, tuple(items), digest, str(path))
    return instrument, dict(sorted(mapping.unmapped.items())), dropped


def _names(row: dict[str, str], path: Path) -> list[str]:
    text = row["values_aggregated"].strip()
    try:
        value = ast.literal_eval(text) if text.startswith("[") else text.split(",")
    except (ValueError, SyntaxError):
        raise UsageError(f"{path}: values_aggregated {text[:40]!r} is not a list") from None
    return [str(v) for v in value]


def load_utility_options(
    path: Path, value_map: str | Path | None, taxonomy: str = "schwartz"
) -> tuple[OutcomeSet, dict[str, int], int]:
    """Utility Engineering options JSON: `{category: [option text, ...]}` (or a list of
    `{"text"|"description", "category"}`); categories map to values through the mapping."""
    tax = load_taxonomy(taxonomy)
    mapping = load_mapping(value_map, tax)
    raw = path.read_bytes()
    try:
        doc: Any = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None
    entries: list[tuple[str, str]] = []
    if isinstance(doc, dict):
        for category, texts in doc.items():
            if not isinstance(texts, list):
                raise UsageError(f"{path}: category {category!r}: expected a list of options")
            entries += [(str(category), str(t)) for t in texts]
    elif isinstance(doc, list):
        for number, entry in enumerate(doc, start=1):
            if not isinstance(entry, dict) or "category" not in entry:
                raise UsageError(f"{path}: option #{number}: expected text and category")
            entries.append(
                (str(entry["category"]), str(entry.get("text", entry.get("description"))))
            )
    else:
        raise UsageError(f"{path}: expected an object of categories or a list of options")
    outcomes = []
    dropped = 0
    for number, (category, text) in enumerate(entries, start=1):
        values = mapping.map([category])
        if not values:
            dropped += 1
            continue
        outcomes.append(Outcome(f"u{number:04d}", text, values))
    if len(outcomes) < 3:
        raise UsageError(f"{path}: fewer than 3 options have a mapped category; check --value-map")
    digest = hashlib.sha256(raw + json.dumps(mapping.table, sort_keys=True).encode()).hexdigest()
    outcome_set = OutcomeSet(path.stem, tax, tuple(outcomes), digest, str(path))
    return outcome_set, dict(sorted(mapping.unmapped.items())), dropped
