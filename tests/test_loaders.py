"""Public instrument formats (DailyDilemmas CSV, Utility Engineering options), from local files.

The sample files in tests/fixtures/public are written here in the public formats; nothing is
downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from valuescope.errors import UsageError
from valuescope.loaders import load_daily_dilemmas, load_utility_options

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


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "valuescope.cli", *args],
        capture_output=True, text=True, env=dict(os.environ), timeout=600,
    )  # fmt: skip


def test_both_formats_audited_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    done = _cli("audit", "--model", f"hf:{tiny_model_dir}",
                "-i", f"dailydilemmas:{PUBLIC / 'daily-dilemmas-sample.csv'}",
                "--value-map", str(PUBLIC / "daily-dilemmas-map.yaml"),
                "--out", str(tmp_path / "dd"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "not in --value-map (ignored): whimsy (3)" in done.stderr
    doc = json.loads((tmp_path / "dd" / "results.json").read_text())
    assert doc["instrument"]["items"] == 5 and "benevolence" in doc["profile"]
    done = _cli("audit", "--model", f"hf:{tiny_model_dir}",
                "-i", f"utility-options:{PUBLIC / 'utility-options-sample.json'}",
                "--value-map", str(PUBLIC / "utility-options-map.yaml"),
                "--out", str(tmp_path / "ue"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "ue" / "results.json").read_text())
    assert doc["instrument"]["kind"] == "pairwise" and doc["pairwise"]["comparisons"] == 44
    assert set(doc["profile"]) == {"power", "hedonism", "universalism", "benevolence",
                                   "stimulation"}  # fmt: skip


def test_value_map_without_a_converted_instrument_is_a_usage_error(tmp_path: Path) -> None:
    done = _cli("audit", "--value-map", str(PUBLIC / "daily-dilemmas-map.yaml"),
                "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 2 and "--value-map applies to" in done.stderr
