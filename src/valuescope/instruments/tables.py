"""Instruments researchers already have: DailyDilemmas, Utility Engineering options, any table.

The public formats name values in their own vocabulary, so a mapping file (YAML, `{their name:
value id | [value ids] | null}`) translates them to a taxonomy; names the mapping does not cover
are reported, never guessed. Sources are local files or, through the `datasets` library when
the user is online, Hugging Face hub datasets (`hf:<dataset id or local dataset folder>[@split]`):

    --instrument dailydilemmas:<file.csv | hf:kellycyy/daily_dilemmas> --value-map <map.yaml>
    --instrument utility-options:<file.json> --value-map <map.yaml>
    --instrument table:<file.csv | file.jsonl | hf:...> --columns text=...,value=...,keyed=...
    --instrument open:<file.csv | hf:...> --columns text=...,values=...[,paraphrase=...]
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valuescope.errors import UsageError
from valuescope.instruments.dilemma import TABLE as DILEMMA_TABLE
from valuescope.instruments.dilemma import DilemmaItem, Dilemmas, Option
from valuescope.instruments.document import Instrument
from valuescope.instruments.likert import TABLE as LIKERT_TABLE
from valuescope.instruments.open import TABLE as OPEN_TABLE
from valuescope.instruments.pairwise import TABLE as PAIRWISE_TABLE
from valuescope.instruments.pairwise import Outcome, OutcomeSet
from valuescope.instruments.rows import Row, TableLayout, ValueMapping, layout_for, value_names
from valuescope.instruments.taxonomy import Taxonomy, check_value, load_taxonomy
from valuescope.yamlfile import read_yaml

PREFIXES = {
    "dailydilemmas": "dilemma",
    "utility-options": "pairwise",
    "table": "table",
    "open": "open",
}
HUB = "hf:"
Rows = list[dict[str, Any]]


def load_mapping(path: str | Path | None, taxonomy: Taxonomy) -> ValueMapping:
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
            check_value(taxonomy, value, f"{path}: {name!r}")
        table[str(name).strip().lower()] = tuple(ids)
    return ValueMapping(table)


def identity_mapping(taxonomy: Taxonomy) -> ValueMapping:
    """Value ids (and labels) of the taxonomy itself, for tables that already use them."""
    table: dict[str, tuple[str, ...]] = {v: (v,) for v in taxonomy.ids}
    table.update({taxonomy[v].label.lower(): (v,) for v in taxonomy.ids})
    return ValueMapping(table)


def split_source(name: str) -> tuple[str, str] | None:
    """('dailydilemmas', location) for a prefixed instrument source, else None.

    A local location must exist; a hub location (`hf:...`) is checked when it is loaded.
    """
    prefix, sep, rest = name.partition(":")
    if sep and prefix in PREFIXES:
        if not rest.startswith(HUB) and not Path(rest).expanduser().is_file():
            raise UsageError(f"--instrument {name!r}: no such file {rest!r}")
        return prefix, rest
    return None


def source_label(location: str) -> str:
    """A short name for a source: the file's stem or the dataset's last path part."""
    if location.startswith(HUB):
        return location[len(HUB) :].split("@")[0].rstrip("/").split("/")[-1] or "dataset"
    return Path(location).stem


def read_rows(location: str) -> tuple[Rows, bytes]:
    """Rows of a CSV/TSV, JSON Lines or JSON-list file, or of a hub dataset split.

    Returns the rows and the bytes their fingerprint is computed from.
    """
    if location.startswith(HUB):
        hub = hub_rows(location[len(HUB) :])
        return hub, json.dumps(hub, sort_keys=True, default=str).encode()
    path = Path(location).expanduser()
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(
            io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",", strict=True
        )
        try:
            return [dict(row) for row in reader], raw
        except csv.Error as exc:
            raise UsageError(
                f"{path}: not a well-formed table ({exc}); check its "
                "quotes (a quote opened and never closed takes the rest of the file)"
            ) from None
    if suffix in (".jsonl", ".ndjson"):
        rows: Rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise UsageError(f"{path}: line {number}: expected a JSON object")
            rows.append(row)
        return rows, raw
    if suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: not JSON: {exc.msg}") from None
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise UsageError(f"{path}: expected a JSON list of objects (one per row)")
        return doc, raw
    raise UsageError(
        f"{path}: unknown table format {suffix or '(no suffix)'!r}; use .csv, .tsv, .jsonl "
        "or .json, or hf:<dataset> for a Hugging Face dataset"
    )


def hub_rows(reference: str) -> Rows:
    """Rows of `<dataset id or local dataset folder>[@split]`, loaded by `datasets`.

    Without `@split`: the only split, else `test`, else `train`. Hub ids need a network
    connection the first time (then `datasets` serves its own cache); folders load offline.
    """
    from valuescope.cache import cache_dir

    name, _, split = reference.partition("@")
    if not name:
        raise UsageError("hf: needs a dataset id or folder, e.g. hf:kellycyy/daily_dilemmas@test")
    try:
        import datasets
    except ImportError:
        raise UsageError(
            "loading instruments from the Hugging Face hub needs the datasets package; "
            "install it with: pip install 'valuescope[hub]'"
        ) from None
    datasets.logging.set_verbosity_error()
    try:
        loaded = datasets.load_dataset(name, cache_dir=str(cache_dir() / "datasets"))
    except Exception as exc:  # datasets raises many types (network, missing repo, format)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(
            f"hf:{name}: could not load the dataset ({message}); check the id or folder, and "
            "that you are online the first time a hub dataset is used"
        ) from None
    splits = list(loaded)
    if not split:
        split = splits[0] if len(splits) == 1 else "test" if "test" in splits else "train"
    if split not in loaded:
        raise UsageError(f"hf:{name}: no split {split!r}; it has {', '.join(splits)}")
    return [dict(row) for row in loaded[split]]


def _require(rows: Rows, columns: set[str], where: str, what: str) -> None:
    if not rows:
        raise UsageError(f"{where}: has no rows")
    missing = columns - set(rows[0])
    if missing:
        raise UsageError(
            f"{where}: not {what}: missing column(s) {sorted(missing)}; it has "
            f"{', '.join(sorted(map(str, rows[0])))}"
        )


def load_daily_dilemmas(
    location: str | Path, value_map: str | Path | None, taxonomy: str = "schwartz"
) -> tuple[Dilemmas, dict[str, int], int]:
    """DailyDilemmas (CSV file or hub dataset): two rows per dilemma, to_do and not_to_do.

    Returns the instrument, the unmapped value names with counts, and how many dilemmas were
    dropped because neither action maps to any value.
    """
    tax = load_taxonomy(taxonomy)
    mapping = load_mapping(value_map, tax)
    location = str(location)
    rows, raw = read_rows(location)
    needed = {"dilemma_idx", "dilemma_situation", "action_type", "action", "values_aggregated"}
    _require(rows, needed, location, "DailyDilemmas data")
    by_dilemma: dict[str, dict[str, dict[str, Any]]] = {}
    for number, row in enumerate(rows, start=2):
        kind = str(row["action_type"]).strip()
        if kind not in ("to_do", "not_to_do"):
            raise UsageError(
                f"{location}: row {number}: action_type {kind!r} is not to_do/not_to_do"
            )
        by_dilemma.setdefault(str(row["dilemma_idx"]), {})[kind] = row
    items: list[DilemmaItem] = []
    dropped = 0
    for idx, pair in by_dilemma.items():
        if set(pair) != {"to_do", "not_to_do"}:
            raise UsageError(f"{location}: dilemma {idx!r}: needs one to_do and one not_to_do row")
        options = []
        for kind in ("to_do", "not_to_do"):
            row = pair[kind]
            names = value_names(row["values_aggregated"], f"{location}: dilemma {idx!r}")
            options.append(Option(str(row["action"]).strip(), mapping.map(names)))
        if not any(o.values for o in options):
            dropped += 1
            continue
        text = str(pair["to_do"]["dilemma_situation"]).strip()
        items.append(DilemmaItem(f"dd{idx}", text, tuple(options), None))
    if not items:
        raise UsageError(f"{location}: no dilemma has a mapped value; check --value-map")
    digest = _digest(raw, mapping)
    instrument = Dilemmas(source_label(location), tax, tuple(items), digest, location)
    return instrument, dict(sorted(mapping.unmapped.items())), dropped


def _digest(raw: bytes, mapping: ValueMapping, extra: object = None) -> str:
    tail = json.dumps([mapping.table, extra], sort_keys=True).encode()
    return hashlib.sha256(raw + tail).hexdigest()


def load_utility_options(
    location: str | Path, value_map: str | Path | None, taxonomy: str = "schwartz"
) -> tuple[OutcomeSet, dict[str, int], int]:
    """Utility Engineering options: a JSON `{category: [option text, ...]}`, or rows (a JSON
    list, JSON Lines, CSV or hub dataset) with `category` and `text` (or `description`);
    categories map to values through the mapping."""
    tax = load_taxonomy(taxonomy)
    mapping = load_mapping(value_map, tax)
    location = str(location)
    entries: list[tuple[str, str]] = []
    doc: Any = None
    if not location.startswith(HUB) and Path(location).suffix.lower() == ".json":
        raw = Path(location).expanduser().read_bytes()
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"{location}: not JSON: {exc}") from None
        if not isinstance(doc, dict | list):
            raise UsageError(f"{location}: expected an object of categories or a list of options")
    if isinstance(doc, dict):
        for category, texts in doc.items():
            if not isinstance(texts, list):
                raise UsageError(f"{location}: category {category!r}: expected a list of options")
            entries += [(str(category), str(t)) for t in texts]
    else:
        rows, raw = read_rows(location)
        for number, row in enumerate(rows, start=1):
            text = row.get("text", row.get("description"))
            if "category" not in row or text is None:
                raise UsageError(f"{location}: option #{number}: expected text and category")
            entries.append((str(row["category"]), str(text)))
    outcomes = []
    dropped = 0
    for number, (category, text) in enumerate(entries, start=1):
        values = mapping.map([category])
        if not values:
            dropped += 1
            continue
        outcomes.append(Outcome(f"u{number:04d}", text, values))
    if len(outcomes) < 3:
        raise UsageError(
            f"{location}: fewer than 3 options have a mapped category; check --value-map"
        )
    outcome_set = OutcomeSet(
        source_label(location), tax, tuple(outcomes), _digest(raw, mapping), location
    )
    return outcome_set, dict(sorted(mapping.unmapped.items())), dropped


LAYOUTS = (DILEMMA_TABLE, LIKERT_TABLE, PAIRWISE_TABLE, OPEN_TABLE)
"""Tried in order by their marker field; open prompts share pairwise's fields, so an `open:`
source names its kind."""
"""The kinds a table can hold, tried in this order by their marker field (a dilemma names
`option`, a likert item `value`, a pairwise outcome `values`)."""
COLUMNS_HELP = "; ".join(layout.help for layout in LAYOUTS[:-1])


@dataclass(frozen=True)
class Columns:
    """Which table column holds each field of an item, and the kind's table layout."""

    layout: TableLayout
    fields: dict[str, tuple[str, ...]]

    @property
    def kind(self) -> str:
        return self.layout.kind

    def one(self, name: str) -> str | None:
        found = self.fields.get(name)
        return found[0] if found else None


def parse_columns(spec: str | None, kind: str | None = None) -> Columns:
    """`text=situation,option=a|b,values=va|vb` -> Columns of the dilemma layout.

    `kind` picks the layout where the fields alone do not (`open:` sources: text, values)."""
    if not spec:
        raise UsageError(f"table: instruments need --columns naming the columns of {COLUMNS_HELP}")
    fields: dict[str, tuple[str, ...]] = {}
    for part in spec.split(","):
        name, sep, given = part.partition("=")
        name = name.strip()
        if not sep or not name or not given.strip():
            raise UsageError(f"--columns: {part!r} is not FIELD=COLUMN; use {COLUMNS_HELP}")
        if name in fields:
            raise UsageError(f"--columns: field {name!r} given twice")
        fields[name] = tuple(c.strip() for c in given.split("|"))
    layout = (
        next(lay for lay in LAYOUTS if lay.kind == kind) if kind else layout_for(LAYOUTS, fields)
    )
    kind = layout.kind
    unknown = set(fields) - layout.required - layout.optional
    if unknown:
        raise UsageError(
            f"--columns: field(s) {sorted(unknown)} do not belong to a {kind} item; use "
            f"{COLUMNS_HELP}"
        )
    missing = layout.required - set(fields)
    if missing:
        raise UsageError(f"--columns: a {kind} item needs {sorted(missing)}; use {COLUMNS_HELP}")
    for name, columns in fields.items():
        if name not in layout.multi and len(columns) != 1:
            raise UsageError(f"--columns: field {name!r} takes one column, got {len(columns)}")
    problem = layout.check(fields)
    if problem:
        raise UsageError(f"--columns: {problem}")
    return Columns(layout, fields)


def load_table(
    location: str,
    columns: Columns,
    value_map: str | Path | None = None,
    taxonomy: str = "schwartz",
) -> tuple[Instrument, dict[str, int], int]:
    """An instrument from any table, one item per row, fields named by `columns`.

    Value cells hold taxonomy ids or labels, or, with `value_map`, names of the table's own
    vocabulary. Returns the instrument, unmapped names with counts, and rows dropped for having
    no mapped value.
    """
    tax = load_taxonomy(taxonomy)
    mapping = load_mapping(value_map, tax) if value_map else identity_mapping(tax)
    rows, raw = read_rows(location)
    _require(rows, {c for cs in columns.fields.values() for c in cs}, location, "this table")
    id_column = columns.one("id")
    dropped = 0
    seen: set[str] = set()
    built: list[Any] = []
    for number, cells in enumerate(rows, start=1):
        item_id = str(cells[id_column]).strip() if id_column else f"r{number:04d}"
        where = f"{location}: row {number} (item {item_id!r})"
        if not item_id:
            raise UsageError(f"{where}: column {id_column!r} is empty")
        if item_id in seen:
            raise UsageError(f"{where}: duplicate id; ids must be unique")
        seen.add(item_id)
        item = columns.layout.item(Row(item_id, where, cells, columns.fields, mapping))
        if item is None:
            dropped += 1
            continue
        built.append(item)
    unmapped = dict(sorted(mapping.unmapped.items()))
    if not value_map and unmapped:
        listed = ", ".join(unmapped)
        raise UsageError(
            f"{location}: value name(s) {listed} are not ids or labels of taxonomy "
            f"{tax.name!r} ({', '.join(tax.ids)}); give --value-map <file.yaml> to map them"
        )
    if len(built) < columns.layout.min_items:
        where = "--value-map" if value_map else f"the value cells (ids or labels of {tax.name!r})"
        raise UsageError(
            f"{location}: {len(built)} of {len(rows)} rows have a value to score "
            f"({columns.layout.min_items} needed); check {where} and --columns"
        )
    digest = _digest(raw, mapping, columns.fields)
    name = source_label(location)
    return columns.layout.assemble(name, tax, tuple(built), digest, location), unmapped, dropped
