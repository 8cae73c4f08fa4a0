"""`valuescope detect`: the values in any texts (arguments, a text file, CSV, TSV or JSON Lines),
read by any detector into `detections.csv` and `detections.jsonl` (registered in `cli.app`)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from valuescope.cli.options import check_out_file, err, out
from valuescope.errors import UsageError

TABLES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class Texts:
    """The texts to read, each with its id (a column's, else its row or line number)."""

    ids: list[str]
    texts: list[str]
    skipped: int = 0
    """Rows or lines with an empty text, left out."""


def read_texts(file: Path, column: str | None) -> Texts:
    """Texts of a CSV/TSV/JSON Lines/JSON file (`column`, default `text`; ids from an `id`
    column if it has one) or of any other file, one text per line; checked before any model
    loads."""
    from valuescope.instruments.tables import read_rows

    if file.suffix.lower() not in TABLES:
        if column is not None:
            raise UsageError(
                f"--column applies to CSV, TSV, JSON Lines and JSON files; {str(file)!r} is read "
                "as plain text, one text per line"
            )
        lines = _read_text(file).splitlines()
        kept = [(str(n), line.strip()) for n, line in enumerate(lines, start=1) if line.strip()]
        return Texts([i for i, _ in kept], [t for _, t in kept], len(lines) - len(kept))
    try:
        rows, _ = read_rows(str(file))
    except OSError as exc:
        raise UsageError(f"--file {str(file)!r}: cannot read it ({exc.strerror})") from None
    name = column or "text"
    if not rows:
        raise UsageError(f"--file {str(file)!r}: no rows to read")
    found = list(dict.fromkeys(str(k) for row in rows for k in row if k is not None))
    if name not in found:
        raise UsageError(
            f"--file {str(file)!r}: no column {name!r}; its columns: {', '.join(found)}"
            + ("" if column else " (choose one with --column)")
        )
    ids, texts, skipped = [], [], 0
    for number, row in enumerate(rows, start=1):
        text = _cell(row.get(name))
        if not text.strip():
            skipped += 1
            continue
        given = _cell(row.get("id"))
        ids.append(given if given.strip() else str(number))
        texts.append(text)
    return Texts(ids, texts, skipped)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _read_text(file: Path) -> str:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"--file {str(file)!r}: cannot read it ({exc.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--file {str(file)!r}: not UTF-8 text; save it as UTF-8") from None


def write_detections(path: Path, given: Texts, readings: Any, detector: str) -> Path:
    """`path` (CSV: id, text, one signed score per value, spreadsheet-safe) and the JSON
    Lines file beside it (relevance, score and presence per value); returns the latter."""
    from valuescope.audit.results import spreadsheet_safe

    path.parent.mkdir(parents=True, exist_ok=True)
    values = list(readings.values)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(c) for c in ["id", "text", *values]])
        for i, (id_, text) in enumerate(zip(given.ids, given.texts, strict=True)):
            scores = [f"{s:.4f}" for s in readings.score[i]]
            writer.writerow([spreadsheet_safe(id_), spreadsheet_safe(text), *scores])
    lines = path.with_suffix(".jsonl")
    present = readings.present()
    with lines.open("w", encoding="utf-8") as handle:
        for i, (id_, text) in enumerate(zip(given.ids, given.texts, strict=True)):
            row = {
                "id": id_,
                "text": text,
                "detector": detector,
                "values": {
                    v: {
                        "relevance": round(float(readings.relevance[i, j]), 4),
                        "score": round(float(readings.score[i, j]), 4),
                        "present": bool(present[i, j]),
                    }
                    for j, v in enumerate(values)
                },
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return lines


def print_summary(readings: Any, detector: str) -> None:
    """Per value: how many texts bear on it, and the mean signed score over those."""
    present = readings.present()
    table = Table(title=f"Values read by {detector} in {len(readings)} texts")
    for column in ("value", "present in", "mean score where present", "mean relevance"):
        table.add_column(column, justify="left" if column == "value" else "right")
    for j, value in enumerate(readings.values):
        where = present[:, j]
        mean = f"{readings.score[where, j].mean():+.2f}" if where.any() else "n/a"
        table.add_row(
            Text(value), str(int(where.sum())), mean, f"{readings.relevance[:, j].mean():.2f}"
        )
    out.print(table)


def detect(
    texts: Annotated[
        list[str] | None, typer.Argument(help="Texts to read (or give --file).", show_default=False)
    ] = None,
    detector: Annotated[
        str,
        typer.Option(
            "--detector",
            "-d",
            help="embed (the default: best measured macro-F1), lexicon (Schwartz only), "
            "probe:<local model spec> or judge:<model spec>, e.g. judge:smollm2.",
        ),
    ] = "embed",
    taxonomy: Annotated[
        str, typer.Option(help="schwartz, moral-foundations, or a taxonomy YAML file.")
    ] = "schwartz",
    by_sentence: Annotated[
        bool,
        typer.Option(
            "--by-sentence",
            help="Read each sentence and aggregate per text: relevance of the most relevant "
            "sentence, relevance-weighted mean score.",
        ),
    ] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Texts from a file: .csv, .tsv, .jsonl or .json (the --column, with ids from "
            "an id column if any, else row numbers), or any other file, one text per line.",
        ),
    ] = None,
    column: Annotated[
        str | None, typer.Option(help="With a table --file: the column of texts (default text).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Labelled YAML texts to fit the detector's heads on instead of the built-in "
            "ones (see docs/detect.md)."
        ),
    ] = None,
    out_file: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="CSV to write (id, text, a signed score per value); relevance goes to the "
            ".jsonl beside it.",
        ),
    ] = Path("runs/detections.csv"),
) -> None:
    """Read values in any texts: a signed score in [-1, 1] and a relevance per value."""
    from valuescope.detectors.api import detect as read_values
    from valuescope.detectors.registry import check_detector_name, get_detector
    from valuescope.instruments.taxonomy import load_taxonomy
    from valuescope.progress import progress_bar

    check_detector_name(detector)
    tax = load_taxonomy(taxonomy)
    check_out_file(out_file, "detections.csv")
    if out_file.suffix.lower() != ".csv":
        raise UsageError(f"--out {str(out_file)!r}: give a .csv file, e.g. detections.csv")
    if file is not None and texts:
        raise UsageError("give texts as arguments or --file, not both")
    if file is None:
        if column is not None:
            raise UsageError("--column applies with --file")
        if not texts:
            raise UsageError("no texts: give them as arguments or --file FILE")
        given = Texts([str(n) for n in range(1, len(texts) + 1)], list(texts))
    else:
        given = read_texts(file, column)
    if not given.texts:
        raise UsageError(f"--file {str(file)!r}: no texts to read (every one is empty)")
    if given.skipped:
        err.print(f"valuescope: {given.skipped} empty texts left out", markup=False)
    options = {}
    if labels is not None:
        from valuescope.detectors.labelled import load_labelled

        load_labelled(labels, tax)  # its errors before any model loads
        options["labels"] = labels
    with progress_bar(err) as hook:
        made = get_detector(detector, tax, progress=hook, **options)
        readings = read_values(given.texts, made, by_sentence=by_sentence, progress=hook)
    name = made.name + (" (by sentence)" if by_sentence else "")
    lines = write_detections(out_file, given, readings, name)
    print_summary(readings, name)
    out.print(Text(f"scores:    {out_file}"))
    out.print(Text(f"relevance: {lines}"))
