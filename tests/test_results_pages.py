"""The results pages (docs/results/*.md) print figures from bench/results/*.json. Each marked
figure is recomputed from its file, so a page cannot drift from what the benchmarks measured.

Markers are HTML comments, invisible on the rendered page:

- `<!-- check from bench/results/X.json -->`: the file the page's markers read unless they
  name another.
- A figure followed at once by `<!-- EXPR -->`, as in `+0.043<!-- success.achievement.shift -->`:
  the figure must equal EXPR rounded as printed (`+0.043` is `+.3f`; `8.1%` is 100 x EXPR).
- Right before a table: `<!-- check [from FILE] [rows PREFIX]`, optional alias lines
  (`$2: trained=success_optimized`), template rows, `-->`. Each row of the table must read as
  the template whose first cell is the row's own, else the one starting with `$1`: `$N` is the
  row's Nth cell (through the aliases inside a path), `{EXPR}` a figure as above, and a
  template's other text holds no digit, so every number of the table is checked.

EXPR: a dotted path into the JSON (`ci.0` indexes a list, `*` takes every entry, `_` also
matches a space), `.path` below the table's PREFIX, `other.json:path` in another file of
bench/results; arithmetic with spaces around its operators; the functions in FUNCTIONS. A
figure printed as n/a or no stands for null. A reach sweep (a dict of `points`) also has
`peak`, its point of largest shift, `within_doubled`, the largest below doubled perplexity, and
`linear_until`.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGES = sorted(p for p in (ROOT / "docs" / "results").glob("*.md") if p.name != "README.md")
NUMBER = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
NULL = ("n/a", "no")
BEFORE = re.compile(rf"(?<![\w.])({NUMBER})(%?)×?$")
COMMENT = re.compile(r"<!--(.*?)-->", re.S)
PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
PATH = re.compile(r"(?:[\w.-]+\.json:)?[A-Za-z_][\w@*.-]*|(?<![\w)])\.[\w@*][\w@*.-]*")


def _side(intervals: list[list[float]], above: bool) -> int:
    return sum(1 for low, high in intervals if (low > 0 if above else high < 0))


FUNCTIONS: dict[str, Any] = {
    "mean": statistics.fmean,
    "median": statistics.median,
    "min": min,
    "max": max,
    "sum": sum,
    "count": len,
    "above": lambda cis: _side(cis, True),  # CIs wholly above zero
    "below": lambda cis: _side(cis, False),
    "clear": lambda cis: _side(cis, True) + _side(cis, False),  # CIs excluding zero
    "log": math.log,
}


class Every(list[Any]):
    """What a `*` selected, flattened when a path holds several."""


def walk(node: Any, parts: list[str], path: str) -> Any:
    """The entry at `parts` below `node`; a key may hold dots itself (`achievement@0.25`)."""
    if not parts or node is None:  # a null reads as null all the way down
        return node
    if parts[0] == "*":
        found = Every()
        for item in node.values() if isinstance(node, dict) else node:
            if isinstance(item, dict | list) or len(parts) == 1:
                below = walk(item, parts[1:], path)
                found.extend(below if isinstance(below, Every) else [below])
        return found
    for end in range(1, len(parts) + 1):
        key = ".".join(parts[:end])
        if isinstance(node, dict):
            for spelling in (key, key.replace("_", " ")):
                if spelling in node:
                    return walk(node[spelling], parts[end:], path)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            return walk(node[int(key)], parts[end:], path)
    raise KeyError(f"{path}: nothing at {'.'.join(parts)!r}")


def linear_until(points: list[dict[str, Any]]) -> float:
    """Perplexity (times the plain one) of a sweep's last step whose shift is at least 85% of
    the linear extrapolation from its first step (as bench/reach_law.py reads it)."""
    first, last = points[0], points[0]["fluency_cost"] + 1
    for point in points:
        linear = first["instrument"]["shift"] * point["coef"] / first["coef"]
        if (
            not math.isfinite(point["instrument"]["shift"])
            or point["instrument"]["shift"] < 0.85 * linear
        ):
            break
        last = point["fluency_cost"] + 1
    return float(last)


def with_sweep_views(node: Any) -> Any:
    """Adds `peak`, `within_doubled` and `linear_until` to every reach sweep below `node`."""
    if isinstance(node, dict):
        points = node.get("points")
        if isinstance(points, list) and points and "instrument" in points[0]:
            node["peak"] = max(points, key=lambda p: p["instrument"]["shift"])
            node["within_doubled"] = max(
                (p for p in points if p["fluency_cost"] <= 1),
                key=lambda p: p["instrument"]["shift"],
            )
            node["linear_until"] = linear_until(points)
        for value in node.values():
            with_sweep_views(value)
    elif isinstance(node, list):
        for value in node:
            with_sweep_views(value)
    return node


_loaded: dict[str, Any] = {}


def load(name: str) -> Any:
    name = name.removeprefix("bench/results/")
    if name not in _loaded:
        _loaded[name] = with_sweep_views(json.loads((RESULTS / name).read_text()))
    return _loaded[name]


def evaluate(expr: str, default: str, prefix: str = "") -> Any:
    """EXPR's value: its paths looked up, then its arithmetic and functions applied."""
    found: list[Any] = []

    def lookup(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in FUNCTIONS:
            return token
        if token.startswith("."):
            token = prefix + token
        name, _, path = token.rpartition(".json:")
        found.append(walk(load(f"{name}.json" if name else default), path.split("."), token))
        return f"_[{len(found) - 1}]"

    code = PATH.sub(lookup, expr)
    try:
        return eval(code, {"__builtins__": {}, "_": found, **FUNCTIONS})  # the docs' own markers
    except TypeError:  # arithmetic on a null: the figure is n/a
        return None


def rounded_as(value: Any, figure: str, percent: bool) -> str:
    """`value` rounded half up and signed as `figure` is printed (1.095 as 1.10, like a reader
    of the file would, where binary floating point says 1.09)."""
    if value is None:
        return figure if figure in NULL else "n/a"
    if figure in NULL:
        return repr(value)
    digits = figure.replace(",", "")
    places = Decimal(1).scaleb(-len(digits.partition(".")[2]))
    exact = Decimal(repr(float(value))) * (100 if percent else 1)
    return format(exact.quantize(places, ROUND_HALF_UP), "+f" if digits.startswith("+") else "f")


@dataclass(frozen=True)
class Figure:
    where: str
    printed: str
    expected: str

    @property
    def drifted(self) -> bool:
        return self.printed.replace(",", "") != self.expected


def figure(
    where: str, printed: str, percent: bool, expr: str, default: str, prefix: str = ""
) -> Figure:
    value = evaluate(expr.strip(), default, prefix)
    return Figure(f"{where}: {expr.strip()}", printed, rounded_as(value, printed, percent))


@dataclass(frozen=True)
class Check:
    """A `check` comment: the file and row prefix it reads, its aliases and template rows."""

    default: str
    prefix: str
    aliases: dict[str, dict[str, str]]
    templates: list[list[str]]


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def parse_check(body: str, default: str) -> Check:
    head, *lines = body.strip().splitlines()
    found = re.fullmatch(r"check(?: from (\S+))?(?: rows (.+))?", head.strip())
    assert found, f"not a check comment: {head!r}"
    aliases: dict[str, dict[str, str]] = {}
    templates = []
    for line in filter(None, (line.strip() for line in lines)):
        if line.startswith("|"):
            templates.append(cells(line))
        else:
            column, _, pairs = line.partition(":")
            aliases[column.strip()] = dict(pair.strip().split("=", 1) for pair in pairs.split(","))
    return Check(found.group(1) or default, found.group(2) or "", aliases, templates)


def substitute(text: str, row: list[str], aliases: dict[str, dict[str, str]] | None = None) -> str:
    """`$N` replaced by the row's Nth cell, or by that cell's alias when `aliases` are given."""

    def cell(match: re.Match[str]) -> str:
        value = row[int(match.group(1)) - 1]
        return (aliases or {}).get(match.group(0), {}).get(value, value)

    return re.sub(r"\$(\d)", cell, text)


def row_figures(where: str, check: Check, row: list[str]) -> Iterator[Figure]:
    """The figures of one table row, each against its template's expression."""
    mine = [t for t in check.templates if t[0] == row[0]] or [
        t for t in check.templates if t[0] == "$1"
    ]
    assert mine, f"{where}: no template for the row {row[0]!r}"
    template = mine[0]
    assert len(template) == len(row), f"{where}: {len(row)} cells, its template {len(template)}"
    file, _, prefix = substitute(check.prefix, row, check.aliases).rpartition(":")
    for want, got in zip(template[1:], row[1:], strict=True):
        parts = PLACEHOLDER.split(want)  # text, expression, text, expression, ...
        pattern = "".join(
            rf"({NUMBER}|{'|'.join(NULL)})" if odd else re.escape(substitute(part, row))
            for odd, part in ((i % 2, p) for i, p in enumerate(parts))
        )
        matched = re.fullmatch(pattern, got)
        assert matched, f"{where}: {got!r} does not read as {want!r}"
        for index, printed in enumerate(matched.groups()):
            expr = substitute(parts[2 * index + 1], row, check.aliases)
            percent = parts[2 * index + 2].startswith("%")
            yield figure(where, printed, percent, expr, file or check.default, prefix)


def page_figures(page: Path) -> Iterator[Figure]:
    """Every marked figure of a page; fails on a table without a check and a stray marker."""
    name = page.relative_to(ROOT).as_posix()
    text = page.read_text()
    lines = text.splitlines()
    default = ""
    checks: dict[int, Check] = {}  # a table's header line -> its check
    for match in COMMENT.finditer(text):
        body = match.group(1).strip()
        where = f"{name}:{text.count(chr(10), 0, match.start()) + 1}"
        header = text.count("\n", 0, match.end()) + 1
        while header < len(lines) and not lines[header].strip():
            header += 1  # the line a table after this comment starts on
        if body.startswith("not from bench/results"):  # a table of figures no file holds
            checks[header] = Check(default, "", {}, [])
        elif body.startswith("check"):
            check = parse_check(body, default)
            if not check.templates:
                default = check.default
                continue
            checks[header] = check
            for template in check.templates:
                for cell in template[1:]:
                    text_only = re.sub(r"\$\d", "", PLACEHOLDER.sub("", cell))
                    assert not re.search(r"\d", text_only), (
                        f"{where}: {cell!r} prints an unchecked number"
                    )
        else:
            marked = BEFORE.search(text[max(0, match.start() - 40) : match.start()])
            assert marked, f"{where}: a marker must follow a figure"
            yield figure(where, marked.group(1), marked.group(2) == "%", body, default)
    for index in range(len(lines) - 1):
        if lines[index].startswith("|") and re.fullmatch(
            r"\|( *:?-+:? *\|)+", lines[index + 1].strip()
        ):
            assert index in checks, f"{name}:{index + 1}: a table without a check comment"
            row = index + 2
            while checks[index].templates and row < len(lines) and lines[row].startswith("|"):
                yield from row_figures(f"{name}:{row + 1}", checks[index], cells(lines[row]))
                row += 1


def test_there_are_results_pages() -> None:
    assert PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_figure_of_a_results_page_is_what_its_results_file_holds(page: Path) -> None:
    found = list(page_figures(page))
    drifted = [
        f"{f.where}: printed {f.printed}, the file says {f.expected}" for f in found if f.drifted
    ]
    assert not drifted, "\n".join(drifted)


FENCE = re.compile(r"^```.*?^```", re.S | re.M)
HEADING = re.compile(r"^#+\s+(.*)$", re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(ROOT).as_posix())
def test_links_between_the_docs_reach_a_file_and_a_heading(doc: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, name = target.partition("#")
        found = (doc.parent / path).resolve() if path else doc
        if not found.exists() or not found.is_relative_to(ROOT):
            broken.append(target)
        elif name and found.suffix == ".md":
            headings = HEADING.findall(FENCE.sub("", found.read_text()))
            if name not in {anchor(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to {broken}"
