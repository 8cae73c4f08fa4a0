"""Malformed instrument, taxonomy and table files, generated: each is refused with one line and
exit 2 before any model loads and before anything is written, or is in fact valid.

Hypothesis mutates valid documents of every built-in kind (keys removed, retyped, added; items
duplicated or emptied; kinds and taxonomies misnamed), writes arbitrary bytes, and builds
tables with missing or odd columns. The oracle is the loader itself: a file that
`load_instrument` refuses must be refused by the command line in one line, exit 2, nothing
written, no model loaded; a file it accepts must get as far as loading the model.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import Ran, run_cli

from valuescope import load_instrument
from valuescope.errors import UsageError
from valuescope.instruments.tables import load_table, parse_columns

EXAMPLES = 150
"""Examples per property in CI (four properties)."""

VALID: dict[str, dict[str, Any]] = {
    "dilemma": {
        "kind": "dilemma", "name": "d", "taxonomy": "schwartz",
        "items": [{"id": "d1", "text": "A choice.", "options": [
            {"text": "Help.", "values": ["benevolence"]},
            {"text": "Win.", "values": ["achievement"]}],
            "paraphrase": {"text": "Another choice.", "options": ["Assist.", "Succeed."]}}],
    },
    "likert": {
        "kind": "likert", "name": "l", "taxonomy": "schwartz",
        "items": [{"id": "l1", "text": "I like rules.", "value": "conformity", "keyed": 1}],
    },
    "pairwise": {
        "kind": "pairwise", "name": "p", "taxonomy": "schwartz",
        "items": [{"id": f"o{k}", "text": f"Outcome {k}.", "values": [v]}
                  for k, v in enumerate(["power", "hedonism", "security"])],
    },
}  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False),
    st.text(max_size=12), st.sampled_from(["", " ", "[/]", "schwartz", "benevolence", "x"]),
)  # fmt: skip
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = yaml.safe_load(yaml.safe_dump(VALID[draw(st.sampled_from(sorted(VALID)))]))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "item", "field"]))
        if where == "top":
            key = draw(st.sampled_from(["kind", "name", "taxonomy", "items", "extra"]))
            if draw(st.booleans()):
                doc.pop(key, None)
            else:
                doc[key] = draw(values)
        elif isinstance(doc.get("items"), list) and doc["items"]:
            items = doc["items"]
            if where == "item":
                action = draw(st.sampled_from(["dup", "drop", "replace"]))
                if action == "dup":
                    items.append(yaml.safe_load(yaml.safe_dump(items[0])))
                elif action == "drop":
                    items.pop()
                else:
                    items[0] = draw(values)
            elif isinstance(items[0], dict):
                key = draw(st.sampled_from([*items[0], "unknown"]))
                if draw(st.booleans()):
                    items[0].pop(key, None)
                else:
                    items[0][key] = draw(values)
    return doc


def _is_valid(load: Any) -> bool:
    try:
        load()
    except UsageError:
        return False
    return True


def _check(done: Ran, valid: bool, out: Path) -> None:
    assert "Traceback" not in done.stderr or "ModelReached" in done.stderr, done.stderr
    if valid:
        assert done.returncode == 2 or "ModelReached" in done.stderr, done.stderr
        if done.returncode == 2:
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        return
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("valuescope: error: "), done.stderr
    assert not out.exists(), "a refused run wrote its folder"


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder for one test; each example takes a fresh subfolder of it (`fresh`)."""
    with tempfile.TemporaryDirectory() as where:
        yield Path(where)


def fresh(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=scratch))


SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@SETTINGS
@given(doc=mutated())
def test_malformed_instruments_are_one_line(no_model: None, scratch: Path, doc: Any) -> None:
    scratch = fresh(scratch)
    path = scratch / "inst.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    out = scratch / "out"
    done = run_cli("audit", "--model", "hf:/no/such/model", "-i", str(path), "--out", str(out),
                   columns=200)  # fmt: skip
    _check(done, _is_valid(lambda: load_instrument(path)), out)


@SETTINGS
@given(raw=st.binary(max_size=200), suffix=st.sampled_from([".yaml", ".jsonl"]))
def test_arbitrary_bytes_are_one_line(
    no_model: None, scratch: Path, raw: bytes, suffix: str
) -> None:
    path = scratch / f"inst{suffix}"
    path.write_bytes(raw)
    out = scratch / "out"
    args = ("--taxonomy", "schwartz") if suffix == ".jsonl" else ()
    done = run_cli("audit", "--model", "hf:/no/such/model", "-i", str(path), *args,
                   "--out", str(out), columns=200)  # fmt: skip
    taxonomy = "schwartz" if suffix == ".jsonl" else None
    _check(done, _is_valid(lambda: load_instrument(path, taxonomy)), out)


@SETTINGS
@given(
    changes=st.dictionaries(st.sampled_from(["name", "label", "values", "extra"]), values,
                            min_size=1, max_size=2),
    value_changes=st.dictionaries(st.sampled_from(["id", "label", "definition", "group", "x"]),
                                  values, max_size=2),
)  # fmt: skip
def test_malformed_taxonomies_are_one_line(
    no_model: None, scratch: Path, changes: dict[str, Any], value_changes: dict[str, Any]
) -> None:
    scratch = fresh(scratch)
    taxonomy = {"name": "mine", "label": "Mine", "values": [
        {"id": "kind", "label": "Kind", "definition": "Helps."},
        {"id": "bold", "label": "Bold", "definition": "Dares."}]}  # fmt: skip
    taxonomy["values"][0].update(value_changes)
    taxonomy.update(changes)
    (scratch / "tax.yaml").write_text(yaml.safe_dump(taxonomy, allow_unicode=True))
    doc = {"kind": "likert", "name": "l", "taxonomy": "tax.yaml",
           "items": [{"id": "l1", "text": "I help.", "value": "kind"}]}  # fmt: skip
    path = scratch / "inst.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = scratch / "out"
    done = run_cli("audit", "--model", "hf:/no/such/model", "-i", str(path), "--out", str(out),
                   columns=200)  # fmt: skip
    _check(done, _is_valid(lambda: load_instrument(path)), out)


@SETTINGS
@given(
    header=st.lists(st.sampled_from(["statement", "trait", "key", "id", "other", ""]),
                    min_size=1, max_size=4),
    rows=st.lists(st.lists(st.one_of(st.text(max_size=8),
                                     st.sampled_from(["power", "benevolence", "-1", "=1+1"])),
                           max_size=5), max_size=4),
    columns=st.sampled_from(["text=statement,value=trait", "text=statement,value=trait,keyed=key",
                             "text=statement,values=trait", "text=statement", "value=x=y", ""]),
)  # fmt: skip
def test_malformed_tables_are_one_line(
    no_model: None, scratch: Path, header: list[str], rows: list[list[str]], columns: str
) -> None:
    scratch = fresh(scratch)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path = scratch / "t.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    out = scratch / "out"
    done = run_cli("audit", "--model", "hf:/no/such/model", "-i", f"table:{path}",
                   "--columns", columns, "--out", str(out), columns=200)  # fmt: skip
    _check(done, _is_valid(lambda: load_table(str(path), parse_columns(columns))), out)
