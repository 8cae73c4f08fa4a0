"""`valuescope rewards fit|eval|score`: what they write and print, and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import Ran, run_cli
from support.rewards import planted_rows, population, write_jsonl


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("rewards-cli")
    rows = planted_rows(population(12), 40, seed=0)
    held = planted_rows(population(12), 30, seed=1)
    fit = write_jsonl(where / "fit.jsonl", [r for r in rows if r["user"] < "u10"])
    model = where / "model.json"
    done = run_cli("rewards", "fit", "--preferences", str(fit), "--out", str(model),
                   "--heads", "words", "--fit", "mixture", "--prototypes", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {
        "fit": fit,
        "held": write_jsonl(where / "held.jsonl", held),
        "model": model,
        "at": where,
    }


def refused(done: Ran, *expected: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for text in expected:
        assert text in message, (text, done.stderr)


def test_fit_writes_a_reward_model_and_prints_its_heads(files: dict[str, Path]) -> None:
    doc = json.loads(files["model"].read_text())
    assert doc["schema"] == "valuescope.reward/1" and doc["fit"]["kind"] == "mixture"
    assert len(doc["fit"]["posterior"]) == 10


def test_eval_writes_per_user_accuracy_with_cis_and_fits_absent_users(
    files: dict[str, Path],
) -> None:
    out = files["at"] / "eval.json"
    done = run_cli("rewards", "eval", "--model", str(files["model"]),
                   "--preferences", str(files["held"]), "--shots", "5", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert set(doc["users"]) == {f"u{u:02d}" for u in range(12)}
    for user in ("u10", "u11"):
        assert doc["users"][user]["n"] == 25 and doc["users"][user]["fitted_from_shots"]
    first = doc["users"]["u00"]
    assert first["n"] == 30 and first["ci"][0] <= first["accuracy"] <= first["ci"][1]
    assert doc["overall"]["n"] == 10 * 30 + 2 * 25 and doc["overall"]["accuracy"] > 0.7


def test_score_prints_each_texts_reward_for_the_user(files: dict[str, Path]) -> None:
    done = run_cli("rewards", "score", "--model", str(files["model"]), "--user", "u00",
                   "control wealth status", "care friend help", columns=200)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│" in line}
    reward = {
        text: float(line.split("│")[2])
        for text, line in lines.items()
        if text[:4] in ("cont", "care")
    }
    assert reward["control wealth status"] > reward["care friend help"]


def test_errors_exit_2_with_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    model = str(files["model"])
    refused(run_cli("rewards", "score", "--model", model, "--user", "zed", "text"),
            "user 'zed' is not in the reward model")  # fmt: skip
    refused(run_cli("rewards", "fit", "--preferences", str(tmp_path / "none.jsonl")),
            "none.jsonl", "no such file")  # fmt: skip
    refused(run_cli("rewards", "fit", "--preferences", str(files["fit"]), "--fit", "bayes"),
            "--fit 'bayes': unknown fit; choose shared, low-rank, mixture")  # fmt: skip
    refused(run_cli("rewards", "eval", "--model", str(files["fit"]),
                    "--preferences", str(files["held"])), "not a reward model")  # fmt: skip
    refused(run_cli("rewards", "fit", "--preferences", str(files["fit"]), "--out", str(tmp_path)),
            "is a folder")  # fmt: skip
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"user": "a", "prompt": "q", "chosen": "x",
                                                 "rejected": "y", "weight": "w"}])  # fmt: skip
    refused(run_cli("rewards", "eval", "--model", model, "--preferences", str(bad)),
            "bad.jsonl: row 1: column 'weight'")  # fmt: skip
