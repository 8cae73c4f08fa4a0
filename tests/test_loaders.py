"""Public instrument formats (DailyDilemmas CSV, Utility Engineering options), from local files.

The sample files in tests/fixtures/public are written here in the public formats; nothing is
downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import run_cli

from valuescope.audit.likert import Questionnaire
from valuescope.errors import UsageError
from valuescope.instruments.dilemma import Dilemmas
from valuescope.instruments.tables import (
    load_daily_dilemmas,
    load_table,
    load_utility_options,
    parse_columns,
)

PUBLIC = Path(__file__).parent / "fixtures" / "public"


def test_daily_dilemmas_map_values_and_report_what_is_unmapped() -> None:
    instrument, unmapped, dropped = load_daily_dilemmas(
        PUBLIC / "daily-dilemmas-sample.csv", PUBLIC / "daily-dilemmas-map.yaml"
    )
    assert [i.id for i in instrument.items] == ["dd1", "dd2", "dd3", "dd4", "dd5"]
    first = instrument.items[0]
    assert first.options[0].text.startswith("Tell your friend")
    assert first.options[0].values == ("benevolence", "conformity")
    assert first.options[1].values == ("security", "hedonism")
    assert unmapped == {"whimsy": 3}  # once in dilemma 4, twice in dilemma 6
    assert dropped == 1  # dilemma 6: no action maps to any value


def test_utility_options_become_outcomes_by_category() -> None:
    outcomes, unmapped, dropped = load_utility_options(
        PUBLIC / "utility-options-sample.json", PUBLIC / "utility-options-map.yaml"
    )
    assert len(outcomes.items) == 11 and dropped == 1 and unmapped == {"trivia": 1}
    assert outcomes.items[0].values == ("power",)


def test_a_value_map_naming_unknown_ids_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("honesty: truthfulness\n")
    with pytest.raises(UsageError, match="'honesty': unknown value id 'truthfulness'"):
        load_daily_dilemmas(PUBLIC / "daily-dilemmas-sample.csv", bad)
    with pytest.raises(UsageError, match="--value-map"):
        load_daily_dilemmas(PUBLIC / "daily-dilemmas-sample.csv", None)


def test_both_formats_audited_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    done = run_cli("audit", "--model", f"hf:{tiny_model_dir}",
                   "-i", f"dailydilemmas:{PUBLIC / 'daily-dilemmas-sample.csv'}",
                   "--value-map", str(PUBLIC / "daily-dilemmas-map.yaml"),
                   "--out", str(tmp_path / "dd"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "not in --value-map (ignored): whimsy (3)" in done.stderr
    doc = json.loads((tmp_path / "dd" / "results.json").read_text())
    assert doc["instrument"]["items"] == 5 and "benevolence" in doc["profile"]
    done = run_cli("audit", "--model", f"hf:{tiny_model_dir}",
                   "-i", f"utility-options:{PUBLIC / 'utility-options-sample.json'}",
                   "--value-map", str(PUBLIC / "utility-options-map.yaml"),
                   "--out", str(tmp_path / "ue"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "ue" / "results.json").read_text())
    assert doc["instrument"]["kind"] == "pairwise" and doc["pairwise"]["comparisons"] == 44
    assert set(doc["profile"]) == {"power", "hedonism", "universalism", "benevolence",
                                   "stimulation"}  # fmt: skip


def test_value_map_without_a_converted_instrument_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("audit", "--value-map", str(PUBLIC / "daily-dilemmas-map.yaml"),
                   "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 2 and "--value-map applies to" in done.stderr


def test_a_likert_table_with_a_column_mapping(tmp_path: Path) -> None:
    columns = parse_columns("id=qid,text=statement,value=trait,keyed=direction")
    assert columns.kind == "likert"
    table = PUBLIC / "statements-sample.csv"
    # Without a map, names must be the taxonomy's ids or labels: 'gluttony' is neither.
    with pytest.raises(UsageError, match=r"gluttony are not ids or labels .*--value-map"):
        load_table(str(table), columns)
    questionnaire, unmapped, dropped = load_table(
        str(table), columns, PUBLIC / "statements-map.yaml"
    )
    assert isinstance(questionnaire, Questionnaire)
    assert unmapped == {"gluttony": 1} and dropped == 1
    assert [(i.id, i.value, i.keyed) for i in questionnaire.items[:4]] == [
        ("s1", "self-direction", 1), ("s2", "self-direction", -1),
        ("s3", "stimulation", 1), ("s4", "stimulation", -1),
    ]  # fmt: skip


def test_a_dilemma_table_from_json_lines() -> None:
    columns = parse_columns("id=key,text=scenario,option=a|b,values=va|vb")
    instrument, unmapped, dropped = load_table(str(PUBLIC / "scenarios-sample.jsonl"), columns)
    assert isinstance(instrument, Dilemmas) and not unmapped
    assert dropped == 1  # t4: neither option upholds a value
    second = instrument.item("t2")
    assert second.options[0].values == ("universalism",)
    assert second.options[1].values == ("achievement", "power")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (None, "table: instruments need --columns"),
        ("text=scenario,option=a|b,values=va", "one values column per option"),
        ("text=s,value=v,colour=c", r"field\(s\) \['colour'\] do not belong to a likert item"),
        ("text", "'text' is not FIELD=COLUMN"),
        ("values=v", r"a pairwise item needs \['text'\]"),
    ],
)
def test_bad_column_mappings_say_what_is_expected(spec: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_columns(spec)


def test_a_table_missing_a_mapped_column_names_it() -> None:
    columns = parse_columns("text=statement,value=value")
    with pytest.raises(UsageError, match=r"missing column\(s\) \['value'\]; it has direction"):
        load_table(str(PUBLIC / "statements-sample.csv"), columns)


def _hub_folder(tmp_path: Path) -> Path:
    """A dataset folder laid out as on the hub (data/<split>-00000-of-00001.parquet), built
    from the DailyDilemmas sample; `datasets` loads it exactly as it loads a hub id."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(csv.DictReader((PUBLIC / "daily-dilemmas-sample.csv").open()))
    for row in rows:
        row["dilemma_idx"] = int(row["dilemma_idx"])  # typed as on the hub
    folder = tmp_path / "daily_dilemmas"
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:4]), folder / "data" / "train-00000-of-00001.parquet")
    return folder


def test_hub_datasets_load_through_datasets(tmp_path: Path) -> None:
    folder = _hub_folder(tmp_path)
    from_csv, _, _ = load_daily_dilemmas(
        PUBLIC / "daily-dilemmas-sample.csv", PUBLIC / "daily-dilemmas-map.yaml"
    )
    from_hub, unmapped, dropped = load_daily_dilemmas(
        f"hf:{folder}", PUBLIC / "daily-dilemmas-map.yaml"
    )  # no split named: 'test' is chosen over 'train'
    assert from_hub.items == from_csv.items
    assert unmapped == {"whimsy": 3} and dropped == 1 and from_hub.name == "daily_dilemmas"
    train, _, _ = load_daily_dilemmas(f"hf:{folder}@train", PUBLIC / "daily-dilemmas-map.yaml")
    assert [i.id for i in train.items] == ["dd1", "dd2"]
    with pytest.raises(UsageError, match=r"no split 'validation'; it has"):
        load_daily_dilemmas(f"hf:{folder}@validation", PUBLIC / "daily-dilemmas-map.yaml")


def test_an_unreachable_hub_dataset_is_a_clear_error() -> None:
    # The tests run with HF_DATASETS_OFFLINE=1, as a user without a connection would.
    with pytest.raises(UsageError, match=r"hf:nobody/no-such-dataset: could not load .* online"):
        load_daily_dilemmas("hf:nobody/no-such-dataset", PUBLIC / "daily-dilemmas-map.yaml")


def test_a_table_and_a_hub_dataset_audited_from_the_command_line(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    done = run_cli("audit", "--model", f"hf:{tiny_model_dir}",
                   "-i", f"table:{PUBLIC / 'statements-sample.csv'}",
                   "--columns", "id=qid,text=statement,value=trait,keyed=direction",
                   "--value-map", str(PUBLIC / "statements-map.yaml"),
                   "--out", str(tmp_path / "table"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "not in --value-map (ignored): gluttony (1)" in done.stderr
    doc = json.loads((tmp_path / "table" / "results.json").read_text())
    assert doc["instrument"]["kind"] == "likert" and doc["instrument"]["items"] == 7
    assert set(doc["profile"]) == {"self-direction", "stimulation", "benevolence", "universalism"}
    folder = _hub_folder(tmp_path)
    done = run_cli("audit", "--model", f"hf:{tiny_model_dir}", "-i", f"dailydilemmas:hf:{folder}",
                   "--value-map", str(PUBLIC / "daily-dilemmas-map.yaml"),
                   "--out", str(tmp_path / "hub"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "hub" / "results.json").read_text())
    assert doc["instrument"]["items"] == 5 and doc["instrument"]["source"].startswith("hf:")


def test_columns_without_a_table_source_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("audit", "--columns", "text=a,value=b", "--out", str(tmp_path))
    assert done.returncode == 2 and "--columns applies to table:" in done.stderr
    done = run_cli(
        "audit", "-i", f"table:{PUBLIC / 'statements-sample.csv'}", "--out", str(tmp_path)
    )
    assert done.returncode == 2 and "need --columns" in done.stderr
