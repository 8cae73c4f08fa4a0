"""Instrument files: valid ones load; every kind of mistake names file, item and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from valuescope.errors import UsageError
from valuescope.instruments.dilemma import load_dilemmas
from valuescope.instruments.taxonomy import load_taxonomy

FIXTURES = Path(__file__).parent / "fixtures"
GOOD_ITEM = """
  - id: x1
    text: "A situation."
    options:
      - text: "Help a friend."
        values: [benevolence]
      - text: "Go climbing."
        values: [stimulation]
"""


def write(
    tmp_path: Path, body: str, header: str = "kind: dilemma\nname: t\ntaxonomy: schwartz\n"
) -> Path:
    path = tmp_path / "inst.yaml"
    path.write_text(header + "items:" + body)
    return path


def test_fixture_instrument_loads() -> None:
    inst = load_dilemmas(FIXTURES / "mini-dilemmas.yaml")
    assert inst.name == "mini-dilemmas" and inst.kind == "dilemma"
    assert inst.taxonomy.name == "schwartz" and len(inst.items) == 6
    assert inst.has_paraphrases and len(inst.sha256) == 64
    assert inst.item("m02").upholding("universalism") == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            GOOD_ITEM.replace("[benevolence]", "[kindness]"),
            r"item 'x1'.*'options\.0\.values'.*unknown value id 'kindness'",
        ),
        (GOOD_ITEM + GOOD_ITEM, r"item 'x1': duplicate id"),
        (GOOD_ITEM.replace('"A situation."', '"  "'), r"item 'x1'.*field 'text'.*empty"),
        (GOOD_ITEM.replace('"Go climbing."', '""'), r"item 'x1'.*field 'options\.1\.text'"),
        (
            GOOD_ITEM.replace(
                '    text: "A situation."', '    text: "A situation."\n    colour: red'
            ),
            r"item 'x1'.*field 'colour'.*Extra inputs",
        ),
        (
            '\n  - id: x2\n    text: "S."\n    options:\n      - text: "Only one."\n        values: [power]\n',
            r"item 'x2'.*field 'options'.*at least 2",
        ),
        (
            GOOD_ITEM + '    paraphrase:\n      text: "Reworded."\n      options: ["one"]\n',
            r"item 'x1'.*'paraphrase\.options'.*has 1 options",
        ),
    ],
)
def test_invalid_items_name_file_item_and_field(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(UsageError, match=expected) as info:
        load_dilemmas(path)
    assert str(path) in str(info.value)


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_ITEM + "  - id: [unclosed\n")
    with pytest.raises(UsageError, match=r"YAML syntax error at line \d+, column \d+"):
        load_dilemmas(path)


def test_unknown_kind_and_taxonomy(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="field 'kind' is 'survey'"):
        load_dilemmas(write(tmp_path, GOOD_ITEM, "kind: survey\ntaxonomy: schwartz\n"))
    with pytest.raises(UsageError, match="unknown taxonomy 'nope'"):
        load_dilemmas(write(tmp_path, GOOD_ITEM, "kind: dilemma\ntaxonomy: nope\n"))


def test_unknown_builtin_name_suggests_listing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="valuescope instruments"):
        load_dilemmas("no-such-instrument")


def test_jsonl_needs_taxonomy_and_reports_bad_lines(tmp_path: Path) -> None:
    item = {
        "id": "j1",
        "text": "S.",
        "options": [{"text": "a", "values": ["power"]}, {"text": "b", "values": ["security"]}],
    }
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(item) + "\n\n")
    with pytest.raises(UsageError, match="need --taxonomy"):
        load_dilemmas(path)
    inst = load_dilemmas(path, taxonomy="schwartz")
    assert inst.name == "items" and inst.items[0].upholding("security") == 1
    path.write_text(json.dumps(item) + "\n{not json\n")
    with pytest.raises(UsageError, match="line 2: invalid JSON"):
        load_dilemmas(path, taxonomy="schwartz")


def test_custom_taxonomy_relative_to_instrument(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        "name: mine\nlabel: Mine\nvalues:\n"
        "  - {id: thrift, label: Thrift, definition: Saving.}\n"
        "  - {id: generosity, label: Generosity, definition: Giving.}\n"
    )
    body = GOOD_ITEM.replace("benevolence", "thrift").replace("stimulation", "generosity")
    inst = load_dilemmas(write(tmp_path, body, "kind: dilemma\ntaxonomy: mine.yaml\n"))
    assert inst.taxonomy.ids == ("thrift", "generosity")


def test_custom_taxonomy_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nlabel: Bad\nvalues:\n  - {id: a, label: A, definition: x}\n  - {id: a, label: B, definition: y}\n"
    )
    with pytest.raises(UsageError, match="duplicate value id 'a'"):
        load_taxonomy(path)


def test_builtin_taxonomies_have_definitions() -> None:
    schwartz = load_taxonomy("schwartz")
    assert len(schwartz.ids) == 10 and all(len(v.definition) > 20 for v in schwartz.values)
    mft = load_taxonomy("moral-foundations")
    assert mft.ids == ("care", "fairness", "loyalty", "authority", "sanctity", "liberty")


def test_deciding_keeps_only_items_with_exactly_one_upholding_option(tmp_path: Path) -> None:
    body = (
        GOOD_ITEM
        + """
  - id: both
    text: "Both options help."
    options:
      - text: "Help a friend."
        values: [benevolence]
      - text: "Help a neighbour."
        values: [benevolence, security]
  - id: neither
    text: "A trip."
    options:
      - text: "Go climbing."
        values: [stimulation]
      - text: "Stay in."
        values: [security]
"""
    )
    inst = load_dilemmas(write(tmp_path, body))
    kind = inst.deciding("benevolence")
    assert [item.id for item in kind.items] == ["x1"]
    assert kind.sha256 != inst.sha256 and kind.sha256 != inst.deciding("stimulation").sha256
    assert [item.id for item in inst.deciding("stimulation").items] == ["x1", "neither"]
    with pytest.raises(UsageError, match="no item with exactly one option upholding conformity"):
        inst.deciding("conformity")
    with pytest.raises(UsageError, match=r"unknown value id 'kindness'.*benevolence"):
        inst.deciding("kindness")
