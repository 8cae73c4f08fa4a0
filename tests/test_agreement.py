"""Convergent validity: rank agreement between instruments' profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import run_cli

from valuescope.audit.agreement import agreement, rank_correlation
from valuescope.errors import UsageError

VALUES = ["a", "b", "c", "d", "e", "f", "g", "h"]


def test_rank_correlation_and_its_interval() -> None:
    first = {v: float(k) for k, v in enumerate(VALUES)}
    same_order = {v: float(k) ** 2 for k, v in enumerate(VALUES)}
    reversed_order = {v: -float(k) for k, v in enumerate(VALUES)}
    assert rank_correlation(first, same_order)["rho"] == pytest.approx(1.0)
    assert rank_correlation(first, reversed_order)["rho"] == pytest.approx(-1.0)
    noisy = {v: float(k) + (3 if k % 2 else -3) for k, v in enumerate(VALUES)}
    result = rank_correlation(first, noisy, seed=1)
    low, high = result["ci"]
    assert low <= result["rho"] <= high and high - low > 0.1
    assert rank_correlation({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})["rho"] is None


def test_agreement_refuses_mixed_taxonomies() -> None:
    doc = {"taxonomy": "schwartz", "profile": {"a": {"score": 0.5}}}
    with pytest.raises(UsageError, match="different taxonomies"):
        agreement({"x": doc, "y": {**doc, "taxonomy": "moral-foundations"}})


def test_cli_audits_three_instruments_and_reports_agreement(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "all"
    done = run_cli("audit", "--model", f"hf:{tiny_model_dir}",
                   "-i", "schwartz-dilemmas", "-i", "schwartz-portraits", "-i", "schwartz-outcomes",
                   "--limit", "30", "--budget", "80", "--no-paraphrase", "--method", "auto",
                   "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "agreement.json").read_text())
    assert len(report["pairs"]) == 3
    for pair in report["pairs"]:
        assert -1 <= pair["rho"] <= 1 and pair["n_values"] >= 3
    for name in ("schwartz-dilemmas", "schwartz-portraits", "schwartz-outcomes"):
        assert (out / name / "results.json").is_file()
    card = (out / "card.html").read_text()
    assert "schwartz-portraits (likert)" in card and "schwartz-outcomes (pairwise)" in card
    assert "convergent validity" in done.stdout
