"""Run outputs: results.json (schema valuescope.results/1), items.csv, card.html and the
run's further files, written the same way for every kind of instrument."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from valuescope import __version__
from valuescope.audit.kinds import RunResult, intervention_records
from valuescope.backends.spec import parse_spec
from valuescope.errors import UsageError

SCHEMA = "valuescope.results/1"
ANSWERS = "answers.jsonl"


def json_safe(value: Any) -> Any:
    """JSON has no NaN: undefined figures are written as null."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def results_json(result: RunResult) -> dict[str, Any]:
    """The results document; everything but `timing` is reproducible from the run's spec.

    `timing` holds what differs between runs of one spec: seconds, and for servers the
    request counts (sent, from the cache, retries by cause).
    """
    instrument, spec = result.instrument, result.spec
    taxonomy = instrument.taxonomy
    block = result.results_block()
    timing = {"seconds": result.seconds, **block.pop("timing", {})}
    if result.requests is not None:
        timing["requests"] = result.requests
    doc = {
        "schema": SCHEMA,
        "valuescope": __version__,
        "model": {
            "spec": parse_spec(spec.model).raw,  # a server URL's query values hidden
            "name": result.model_name,
            **({"server": result.server} if result.server else {}),
        },
        "instrument": {
            "name": instrument.name,
            "kind": instrument.kind,
            "items": _items_run(result),
            "sha256": instrument.sha256,
            "source": instrument.source,
        },
        "taxonomy": taxonomy.name,
        "values": {v.id: {"label": v.label, "definition": v.definition} for v in taxonomy.values},
        "method": result.method,
        "system": spec.system,
        "steering": None,
        **intervention_records(spec),
        "seed": spec.seed,
        "profile": result.profile.as_dict(),
        **block,
        "timing": timing,
    }
    cleaned: dict[str, Any] = json_safe(doc)
    return cleaned


def _items_run(result: RunResult) -> int:
    """How many of the instrument's items the run scored (all but for a `--limit`)."""
    limit = result.spec.limit if "limit" in result.spec.given() else None
    return min(limit or len(result.instrument.items), len(result.instrument.items))


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula: text starting with = + - @ (or a
    tab or carriage return) gets a leading apostrophe, as spreadsheets expect; numbers, and
    text that reads as a number such as -0.5, are left as they are. Item ids and texts come
    from third parties (hub tables, users' files)."""
    if not isinstance(cell, str) or not cell.startswith(FORMULA_START):
        return cell
    try:
        float(cell)
    except ValueError:
        return "'" + cell
    return cell


def write_results(result: RunResult, out: Path) -> dict[str, Path]:
    """Write results.json, items.csv, card.html and the run's further files into `out`;
    returns their paths by name (results, items, card, and e.g. answers)."""
    from valuescope.audit.card import render_card

    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "items": out / "items.csv", "card": out / "card.html"}
    doc = results_json(result)
    _atomic_write(paths["results"], json.dumps(doc, indent=1) + "\n")
    _atomic_write(paths["card"], render_card([doc]))
    table = result.items_table()
    tmp = paths["items"].with_name(f".items.csv.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(cell) for cell in table.header])
        writer.writerows([spreadsheet_safe(cell) for cell in row] for row in table.rows)
    os.replace(tmp, paths["items"])
    for name, text in result.files().items():
        paths[Path(name).stem] = out / name
        _atomic_write(out / name, text)
    return paths


def load_answers(directory: Path) -> list[dict[str, Any]]:
    """A run's generated answers (`answers.jsonl`), with a clear error when it has none."""
    path = directory / ANSWERS if directory.is_dir() else directory
    if not path.is_file():
        raise UsageError(
            f"{str(directory)!r} holds no generated answers ({ANSWERS}): only runs with "
            "--method generate keep them; audit with --method generate --out DIR first"
        )
    records = []
    # Not splitlines(): answers may hold U+2028 or U+0085, which JSON leaves unescaped.
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record.get("answer"), str) or not isinstance(
                record.get("prompt"), str
            ):
                raise ValueError("no answer/prompt text")
        except (ValueError, AttributeError) as exc:
            raise UsageError(f"{path}:{number}: not an answer record ({exc})") from None
        records.append(record)
    if not records:
        raise UsageError(
            f"{path}: holds no answers (the run was stopped before its first); rerun the audit "
            "with the same --out to resume it"
        )
    return records


def read_results(directory: Path) -> dict[str, Any]:
    """A run's results.json, with a clear error when the folder holds no finished run."""
    path = directory / "results.json" if directory.is_dir() else directory
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{directory}: no results.json here; is this an audit's --out folder?"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable results.json: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UsageError(f"{path}: schema is not {SCHEMA}")
    for key, fields in REQUIRED.items():
        part = doc.get(key)
        if part is None or (fields and not isinstance(part, dict)):
            raise UsageError(f"{path}: not a complete results.json: no {key!r}; rerun its audit")
        missing = [f for f in fields if f not in part]
        if missing:
            raise UsageError(
                f"{path}: not a complete results.json: {key!r} has no {', '.join(missing)}; "
                "rerun its audit"
            )
    return doc


REQUIRED: dict[str, tuple[str, ...]] = {
    "model": ("spec", "name"),
    "instrument": ("name", "kind", "items"),
    "taxonomy": (),
    "method": (),
    "seed": (),
    "profile": (),
    "diagnostics": ("verdict",),
}
"""What `compare` and the card read from a results.json (schema valuescope.results/1)."""
