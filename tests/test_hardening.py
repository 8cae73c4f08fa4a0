"""Bad input is refused up front with one line and exit 2; what is written never leaks or
misleads (issue-level hardening: flags, run folders, tables, server URLs, terminals)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.cli import Ran, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
MINI = str(FIXTURES / "mini-dilemmas.yaml")


def refused(done: Ran, *expected: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("valuescope: error: "), done.stderr
    for text in expected:
        assert text in lines[0], (text, done.stderr)


# -- settings a kind does not honour, and checks that need no model ------------------------


def test_settings_are_checked_before_any_model(no_model: None, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cases = [
        (("-i", "schwartz-outcomes", "--limit", "4"), "--limit does not apply to pairwise"),
        (("-i", "schwartz-outcomes", "--budget", "0"), "--budget must be a positive number"),
        (("-i", "schwartz-outcomes", "--budget", "5"), "--budget 5 is below the 80 comparisons"),
        (("-i", "schwartz-portraits", "--no-paraphrase"), "--paraphrase/--no-paraphrase does not"),
        (("-i", MINI, "-i", "moral-foundations-dilemmas"), "different taxonomies"),
    ]
    for args, expected in cases:
        refused(run_cli("audit", *args, "--out", str(out)), expected)
        assert not out.exists()


def test_run_folders_are_checked_before_any_model(
    no_model: None, tmp_path: Path, tiny_model_dir: Path
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    refused(run_cli("audit", "-i", MINI, "--out", str(a_file)), "is a file; give a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root can write anywhere: nothing to check then
            refused(run_cli("audit", "-i", MINI, "--out", str(locked / "run")), "cannot create")
    finally:
        locked.chmod(0o700)
    # a folder holding another run's progress is refused before the model loads
    other = tmp_path / "other"
    other.mkdir()
    finished = [{"fingerprint": {"model": "x"}}, {"chunk": "/likelihood/original/0", "data": []}]
    (other / "progress.jsonl").write_text("".join(json.dumps(r) + "\n" for r in finished))
    refused(run_cli("audit", "-i", MINI, "--model", f"hf:{tiny_model_dir}", "--out", str(other)),
            "holds a run with different settings")  # fmt: skip
    refused(run_cli("compare", MINI, "--out", str(tmp_path)), "is a folder; give a file path")


def test_a_longer_limit_resumes_a_shorter_run(tiny_backend: Any, tmp_path: Path) -> None:
    """Chunks are fixed by position: --limit 8 after --limit 4 keeps what it can and ends
    equal to a run that asked for 8 from the start."""
    from valuescope import RunSpec, run_audit
    from valuescope.audit.results import results_json

    doc = yaml.safe_load(Path(MINI).read_text())
    doc["items"] = [dict(item, id=f"{item['id']}-{k}") for k in range(4) for item in doc["items"]]
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump(doc))
    spec = RunSpec(model="hf:tiny", method="likelihood", paraphrase=False)
    run_audit(str(path), spec.replace(limit=4), backend=tiny_backend, out=tmp_path / "run")
    longer = run_audit(
        str(path), spec.replace(limit=20), backend=tiny_backend, out=tmp_path / "run"
    )
    whole = run_audit(str(path), spec.replace(limit=20), backend=tiny_backend, out=tmp_path / "new")
    a, b = results_json(longer), results_json(whole)
    a.pop("timing"), b.pop("timing")
    assert a == b and a["instrument"]["items"] == 20


def test_json_lines_instruments_take_the_taxonomy(tiny_model_dir: Path, tmp_path: Path) -> None:
    items = yaml.safe_load(Path(MINI).read_text())["items"]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    refused(run_cli("audit", "-i", str(path), "--out", str(tmp_path / "x")), "need --taxonomy")
    out = tmp_path / "run"
    done = run_cli("audit", "--model", f"hf:{tiny_model_dir}", "-i", str(path), "--taxonomy",
                   "schwartz", "--method", "choice", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "results.json").read_text())["instrument"]["items"] == len(items)
    done = run_cli("validate", "--model", f"hf:{tiny_model_dir}", "-i", str(path), "--taxonomy",
                   "schwartz", "--method", "choice", "--limit", "2", "--out", str(tmp_path / "v"))  # fmt: skip
    assert done.returncode == 0, done.stderr


# -- items past the model's context ----------------------------------------------------------


def test_an_item_past_the_context_is_refused_before_scoring(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    doc = yaml.safe_load(Path(MINI).read_text())
    doc["items"][1]["text"] = "word " * 5000  # past the tiny model's 4,096 tokens
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "run"
    started = time.perf_counter()
    done = run_cli("audit", "--model", f"hf:{tiny_model_dir}", "-i", str(path), "--out", str(out))
    refused(done, str(path), f"item {doc['items'][1]['id']!r} is ", "tokens", "(context 4,096)")
    assert time.perf_counter() - started < 30
    assert (
        not (out / "progress.jsonl").exists()
        or len((out / "progress.jsonl").read_text().splitlines()) <= 1
    )  # nothing scored


def test_long_items_batch_within_a_token_budget(tiny_backend: Any) -> None:
    """Many long requests go a few at a time (the padded batch stays within the budget), with
    the same numbers as one at a time."""
    from valuescope.backends import Chat, LoglikelihoodRequest

    requests = [LoglikelihoodRequest(Chat("word " * (120 + k)), " yes") for k in range(6)]
    seen: list[int] = []
    original = tiny_backend._score_batch

    def spy(batch: Any, encoded: Any) -> Any:
        seen.append(len(batch))
        return original(batch, encoded)

    saved = tiny_backend.token_budget
    try:
        tiny_backend._score_batch = spy
        tiny_backend.token_budget = 400
        budgeted = tiny_backend.loglikelihood(requests)
        assert max(seen) * 130 <= 400 + 130 and len(seen) >= 2
        tiny_backend.token_budget = 10**6
        whole = tiny_backend.loglikelihood(requests)
    finally:
        tiny_backend.token_budget = saved
        del tiny_backend._score_batch
    assert [a.logprob for a in budgeted] == pytest.approx([b.logprob for b in whole], abs=1e-4)


# -- what is printed and written --------------------------------------------------------------


def test_markup_in_user_text_is_printed_as_text(tiny_model_dir: Path, tmp_path: Path) -> None:
    taxonomy = {"name": "odd", "label": "Odd", "values": [
        {"id": "a", "label": "[/]", "definition": "x"},
        {"id": "b", "label": "[link=http://evil]B[/link]", "definition": "y"}]}  # fmt: skip
    (tmp_path / "tax.yaml").write_text(yaml.safe_dump(taxonomy))
    items = [{"id": f"i{k}", "text": f"Case {k} [bold]x[/bold].", "options": [
        {"text": "A.", "values": ["a"]}, {"text": "B.", "values": ["b"]}]} for k in range(8)]  # fmt: skip
    path = tmp_path / "inst.yaml"
    path.write_text(yaml.safe_dump({"kind": "dilemma", "name": "[/] [link=http://evil]n[/link]",
                                    "taxonomy": "tax.yaml", "items": items}))  # fmt: skip
    done = run_cli("audit", "--model", f"hf:{tiny_model_dir}", "-i", str(path), "--method",
                   "choice", "--out", str(tmp_path / "run"), columns=200)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "[/]" in done.stdout and "[link=http://evil]B[/link]" in done.stdout
    assert "results: " in done.stdout


def test_compare_refuses_an_incomplete_results_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": "valuescope.results/1", "model": {"name": "m"}}))
    refused(run_cli("compare", str(path), "--out", str(tmp_path / "c.html")),
            "not a complete results.json", "'model' has no spec")  # fmt: skip


def test_model_and_cache_mistakes_are_one_line(
    no_model: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(run_cli("audit", "--model", f"hf:{empty}", "--out", str(tmp_path / "x")),
            "holds no config.json")  # fmt: skip
    a_file = tmp_path / "cache-file"
    a_file.write_text("")
    monkeypatch.setenv("VALUESCOPE_CACHE", str(a_file))
    from valuescope.cache import cache_dir
    from valuescope.errors import UsageError

    with pytest.raises(UsageError, match="is a file; point VALUESCOPE_CACHE at a writable folder"):
        cache_dir()


def test_a_terminal_without_unicode_still_gets_the_listing() -> None:
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-m", "valuescope.cli", "instruments"], env=env,
                          capture_output=True, text=True, encoding="ascii", errors="replace")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "schwartz-dilemmas" in done.stdout and "moral-foundations-dilemmas" in done.stdout


def test_confusions_are_said_plainly(no_model: None, tmp_path: Path) -> None:
    # a table with a quote never closed is not blamed on a --value-map nobody gave
    table = tmp_path / "t.csv"
    table.write_text('statement,trait\n"I like rules,conformity\nHelp,benevolence\n')
    refused(run_cli("audit", "-i", f"table:{table}", "--columns", "text=statement,value=trait",
                    "--out", str(tmp_path / "x")), "not a well-formed table", "quotes")  # fmt: skip
    # a folder given as an instrument
    refused(run_cli("audit", "-i", str(tmp_path), "--out", str(tmp_path / "x")), "is a folder")
    # a --tokenizer that is not there is reported before any request
    refused(run_cli("audit", "--model", "openai:m@http://127.0.0.1:9/v1", "--tokenizer",
                    f"hf:{tmp_path / 'nope'}", "--out", str(tmp_path / "x")), "--tokenizer",
            "no such folder")  # fmt: skip
    # items that measure nothing are named on loading (and the run goes on to the model)
    doc = yaml.safe_load(Path(MINI).read_text())
    doc["items"][0]["options"][1]["values"] = doc["items"][0]["options"][0]["values"]
    doc["items"][1]["options"] = [{"text": "A.", "values": []}, {"text": "B.", "values": []}]
    for item in doc["items"][:2]:
        item.pop("paraphrase", None)
    path = tmp_path / "idle.yaml"
    path.write_text(yaml.safe_dump(doc))
    done = run_cli("audit", "-i", str(path), "--out", str(tmp_path / "y"), columns=300)
    assert "ModelReached" in done.stderr
    warning = next(line for line in done.stderr.splitlines() if "warning" in line)
    assert "2 item(s) decide no value" in warning and "no option names a value" in warning


def test_progress_bars_complete(tiny_backend: Any) -> None:
    """Every phase's bar ends at its total (the order-free likelihood method's did not)."""
    from valuescope import RunSpec, run_audit

    done: dict[str, int] = {}
    totals: dict[str, int] = {}

    def hook(phase: str, advance: int, total: int) -> None:
        done[phase] = done.get(phase, 0) + advance
        totals[phase] = total

    run_audit(MINI, RunSpec(model="hf:tiny"), backend=tiny_backend, progress=hook)
    assert any(phase.startswith("likelihood") for phase in totals)
    assert done == totals


def test_a_larger_budget_resumes_a_pairwise_run(tiny_backend: Any, tmp_path: Path) -> None:
    """Rounds are fixed by position: --budget 120 after --budget 96 in one folder keeps the
    finished rounds, asks only the rest, and equals a run that asked for 120 from the start."""
    from valuescope import RunSpec, run_audit
    from valuescope.audit.results import results_json

    spec = RunSpec(model="hf:tiny")
    run_audit(
        "schwartz-outcomes", spec.replace(budget=96), backend=tiny_backend, out=tmp_path / "r"
    )
    asked: list[int] = []
    original = tiny_backend.loglikelihood

    def counting(requests: Any, progress: Any = None) -> Any:
        asked.append(len(requests))
        return original(requests, progress)

    tiny_backend.loglikelihood = counting
    try:
        longer = run_audit("schwartz-outcomes", spec.replace(budget=120), backend=tiny_backend,
                           out=tmp_path / "r")  # fmt: skip
    finally:
        del tiny_backend.loglikelihood
    whole = run_audit("schwartz-outcomes", spec.replace(budget=120), backend=tiny_backend,
                      out=tmp_path / "w")  # fmt: skip
    a, b = results_json(longer), results_json(whole)
    a.pop("timing"), b.pop("timing")
    assert a == b
    assert sum(asked) < 120 * 4  # the rounds finished under --budget 96 were not asked again


def test_several_instruments_say_where_a_setting_does_not_apply(
    no_model: None, tmp_path: Path
) -> None:
    """With several instruments a setting goes where it applies and stderr says where it does
    not (a method of one kind included); a setting no instrument takes is refused."""
    done = run_cli("audit", "-i", MINI, "-i", "schwartz-portraits", "--method", "choice",
                   "--limit", "2", "--out", str(tmp_path / "a"), columns=300)  # fmt: skip
    assert "ModelReached" in done.stderr  # it went on to the model
    notices = [line for line in done.stderr.splitlines() if "does not apply" in line]
    assert notices == [
        "valuescope: --method choice does not apply to schwartz-portraits (they run with their "
        "defaults; kept for the others)"
    ]
    refused(run_cli("audit", "-i", MINI, "-i", "schwartz-portraits", "--budget", "90",
                    "--out", str(tmp_path / "b")), "--budget does not apply")  # fmt: skip
