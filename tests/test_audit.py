"""The audit end to end on the tiny model, and resuming after a crash or a kill -9."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.cli import run_cli

from valuescope.audit.kinds import RunSpec
from valuescope.audit.results import results_json, write_results
from valuescope.audit.run import run_audit
from valuescope.errors import UsageError

FIXTURES = Path(__file__).parent / "fixtures"
MINI = str(FIXTURES / "mini-dilemmas.yaml")


def big_instrument(tmp_path: Path, copies: int = 7) -> Path:
    """The mini items repeated under new ids: enough items for several checkpoint chunks."""
    doc = yaml.safe_load((FIXTURES / "mini-dilemmas.yaml").read_text())
    items = [
        {**item, "id": f"{item['id']}-{n}", "text": f"{item['text']} (case {n})"}
        for n in range(copies)
        for item in doc["items"]
    ]
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({**doc, "name": "big", "items": items}))
    return path


@pytest.mark.parametrize("method", ["choice", "likelihood", "generate"])
def test_audit_profile_is_well_formed(tiny_backend: Any, method: str) -> None:
    result = run_audit(MINI, RunSpec(model="hf:tiny", method=method), backend=tiny_backend)
    assert result.method == method
    assert len(result.results) == 6 and len(result.paraphrase_results) == 6
    for r in result.results:
        assert len(r.orders) == (1 if method == "likelihood" else 2)  # likelihood is order-free
        assert sum(r.p) == pytest.approx(1.0)
    benevolence = result.profile.scores["benevolence"]
    assert benevolence.n == 2  # m01 and m06
    assert 0.0 <= benevolence.score <= 1.0
    assert set(result.profile.scores) == {
        "benevolence",
        "stimulation",
        "achievement",
        "universalism",
        "tradition",
        "hedonism",
        "security",
        "power",
        "self-direction",
        "conformity",
    }


def test_auto_probes_methods_and_records_why(tiny_backend: Any) -> None:
    result = run_audit(MINI, RunSpec(model="hf:tiny"), backend=tiny_backend)
    assert set(result.method_probe) == {"likelihood", "likelihood-first-person", "choice"}
    probe = result.method_probe
    best = max(probe, key=lambda m: probe[m]["validity"] or 0.0)
    assert result.method == best
    for figures in probe.values():
        bias = figures["position_bias"] or 0.0
        assert figures["validity"] == pytest.approx(
            (figures["paraphrase_agreement"] or 0.0) - abs(bias)
        )
    assert probe["likelihood"]["position_bias"] is None  # order-free
    assert probe["choice"]["position_bias"] is not None


def test_results_are_reproducible(tiny_backend: Any) -> None:
    config = RunSpec(model="hf:tiny", method="likelihood", seed=3)
    first = results_json(run_audit(MINI, config, backend=tiny_backend))
    second = results_json(run_audit(MINI, config, backend=tiny_backend))
    first.pop("timing"), second.pop("timing")
    assert first == second


def test_results_json_follows_the_schema(tiny_backend: Any, tmp_path: Path) -> None:
    result = run_audit(MINI, RunSpec(model="hf:tiny", method="choice"), backend=tiny_backend)
    paths = write_results(result, tmp_path)
    doc = json.loads(paths["results"].read_text())
    assert doc["schema"] == "valuescope.results/1"
    assert doc["instrument"] == {
        "name": "mini-dilemmas",
        "kind": "dilemma",
        "items": 6,
        "sha256": result.instrument.sha256,
        "source": result.instrument.source,
    }
    assert doc["method"] == "choice" and doc["steering"] is None and doc["seed"] == 0
    for value, entry in doc["profile"].items():
        assert set(entry) == {"score", "ci", "n"}, value
    assert {"order_consistency", "position_bias", "paraphrase_consistency", "verdict"} <= set(
        doc["diagnostics"]
    )
    assert doc["items"][0]["id"] == "m01" and len(doc["items"][0]["p"]) == 2
    rows = paths["items"].read_text().splitlines()
    assert rows[0].startswith("item_id,wording,order,shown_first,p0,p1")
    assert len(rows) == 1 + 6 * 2 * 2  # items x wordings x orders


class Crash(Exception):
    pass


def test_resume_after_crash_gives_identical_results(tiny_backend: Any, tmp_path: Path) -> None:
    inst = str(big_instrument(tmp_path))
    config = RunSpec(model="hf:tiny", method="likelihood")
    clean = results_json(run_audit(inst, config, backend=tiny_backend, out=tmp_path / "clean"))
    calls: list[int] = []

    def crash_later(phase: str, done: int, total: int) -> None:
        calls.append(done)
        if sum(calls) > 40:  # inside the second chunk
            raise Crash

    with pytest.raises(Crash):
        run_audit(inst, config, backend=tiny_backend, out=tmp_path / "run", progress=crash_later)
    lines = (tmp_path / "run" / "progress.jsonl").read_text().splitlines()
    assert 2 <= len(lines) < 7  # fingerprint plus some, not all, chunks
    scored: list[int] = []
    resumed = run_audit(
        inst,
        config,
        backend=tiny_backend,
        out=tmp_path / "run",
        progress=lambda phase, done, total: scored.append(done),
    )
    doc = results_json(resumed)
    clean.pop("timing"), doc.pop("timing")
    assert doc == clean


def test_resume_refuses_a_folder_of_another_run(tiny_backend: Any, tmp_path: Path) -> None:
    run_audit(
        MINI,
        RunSpec(model="hf:tiny", method="choice"),
        backend=tiny_backend,
        out=tmp_path,
    )
    with pytest.raises(UsageError, match=r"different settings \(method\)"):
        run_audit(
            MINI,
            RunSpec(model="hf:tiny", method="likelihood"),
            backend=tiny_backend,
            out=tmp_path,
        )


def test_items_without_paraphrases_run_and_say_so(tiny_backend: Any, tmp_path: Path) -> None:
    """Users' own items rarely have a second wording: the audit runs on one, says that
    paraphrase consistency was not measured, and refuses only an explicit --paraphrase."""
    doc = yaml.safe_load((FIXTURES / "mini-dilemmas.yaml").read_text())
    del doc["items"][0]["paraphrase"]
    path = tmp_path / "nopara.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(
        UsageError, match="without a paraphrase; add them or leave out --paraphrase"
    ):
        run_audit(str(path), RunSpec(model="hf:tiny", paraphrase=True), backend=tiny_backend)
    for spec in (RunSpec(model="hf:tiny", method="choice"),
                 RunSpec(model="hf:tiny", method="choice", paraphrase=False)):  # fmt: skip
        result = run_audit(str(path), spec, backend=tiny_backend)
        assert result.paraphrase_profile is None
        assert result.diagnostics.paraphrase_consistency is None
        assert any("paraphrase consistency was not measured" in w
                   for w in result.diagnostics.warnings)  # fmt: skip
    paths = write_results(result, tmp_path / "run")
    card = paths["card"].read_text()
    assert "paraphrase consistency" in card and "not measured" in card


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "valuescope.cli", *args]


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    """A real SIGKILL of the CLI on the embedded model, then a rerun of the same command."""
    inst = str(big_instrument(tmp_path, copies=6))
    base = ["audit", "--instrument", inst, "--method", "likelihood", "--no-paraphrase"]
    env = {**os.environ}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(*base, "--out", str(killed)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    progress = killed / "progress.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if progress.is_file() and len(progress.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    chunks_before = len(progress.read_text().splitlines()) - 1
    assert 1 <= chunks_before < 3  # 36 items = 3 chunks: killed part-way
    resumed = run_cli(*base, "--out", str(killed))  # the same command, run again
    assert resumed.returncode == 0, resumed.stderr
    clean = run_cli(*base, "--out", str(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr
    a = json.loads((killed / "results.json").read_text())
    b = json.loads((tmp_path / "clean" / "results.json").read_text())
    a.pop("timing"), b.pop("timing")
    assert a == b


def test_items_csv_cells_never_run_as_formulas(tiny_backend: Any, tmp_path: Path) -> None:
    """Ids and texts from third-party tables starting with = + - @ are neutralised."""
    doc = yaml.safe_load((FIXTURES / "mini-dilemmas.yaml").read_text())
    hostile = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)"]
    for entry, item_id in zip(doc["items"], hostile, strict=False):
        entry["id"] = item_id
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run_audit(str(path), RunSpec(model="hf:tiny", method="choice"), backend=tiny_backend)
    paths = write_results(result, tmp_path / "run")
    with paths["items"].open(newline="") as handle:
        rows = list(csv.reader(handle))
    ids = {row[0] for row in rows[1:]}
    assert {f"'{i}" for i in hostile} <= ids
    assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row)
    # numbers stay numbers
    assert all(float(row[4]) >= 0 for row in rows[1:])
