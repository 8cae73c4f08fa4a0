"""The command line as a user runs it: a real subprocess, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import valuescope


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "valuescope.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"valuescope {valuescope.__version__}"


def test_help_lists_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("audit", "instruments"):
        assert command in result.stdout


def test_the_command_line_starts_without_loading_torch() -> None:
    """torch takes seconds to import: help, usage errors and server runs never need it."""
    probe = "import sys, valuescope.cli.app, valuescope.backends.residual; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_unknown_model_spec_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run("audit", "--model", "gpt5", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown model spec 'gpt5'" in lines[0] and "gguf:<path to .gguf>" in lines[0]


def test_missing_gguf_path_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run("audit", "--model", f"gguf:{tmp_path}/missing.gguf", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "missing.gguf" in result.stderr and "no such file" in result.stderr


def test_unknown_flag_is_usage_error() -> None:
    result = run("audit", "--no-such-flag")
    assert result.returncode == 2
    assert "No such option" in result.stderr


def test_compare_of_a_folder_without_results_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run("compare", str(tmp_path), "--out", str(tmp_path / "c.html"))
    assert result.returncode == 2
    assert "no results.json here" in result.stderr and "Traceback" not in result.stderr


def test_bad_instrument_file_error_names_item_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kind: dilemma\ntaxonomy: schwartz\nitems:\n"
        "  - id: q1\n    text: S.\n    options:\n"
        "      - {text: a, values: [kindness]}\n      - {text: b, values: [power]}\n"
    )
    result = run("audit", "--instrument", str(bad), "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "item 'q1': field 'options.0.values': unknown value id 'kindness'" in result.stderr


def test_instruments_lists_builtins() -> None:
    result = run("instruments")
    assert result.returncode == 0
    assert "schwartz-dilemmas" in result.stdout and "moral-foundations-dilemmas" in result.stdout


def test_server_flags_with_a_local_model_are_a_usage_error(tmp_path: Path) -> None:
    result = run("audit", "--concurrency", "4", "--tokenizer", "smollm2", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--concurrency, --tokenizer apply to server models" in result.stderr
    assert "Traceback" not in result.stderr


def test_nonsense_server_settings_are_usage_errors(tmp_path: Path) -> None:
    spec = "openai:m@http://127.0.0.1:9/v1"
    for flag, value, message in [
        ("--concurrency", "0", "--concurrency must be at least 1"),
        ("--timeout", "-1", "--timeout must be a positive"),
        ("--token-budget", "0", "--token-budget must be a positive"),
    ]:
        result = run("audit", "--model", spec, flag, value, "--out", str(tmp_path))
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_unreachable_server_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback has no listener: every attempt is a refused connection,
    # which is not worth the whole retry budget (8 retries took 51 s before).
    started = time.perf_counter()
    result = run("audit", "--model", "openai:m@http://127.0.0.1:9/v1", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "connection refused (3 times): nothing listens there" in result.stderr
    assert "--max-retries" not in result.stderr
    assert "Traceback" not in result.stderr
    assert time.perf_counter() - started < 20
    # a refused run finished nothing: the corrected command may use the same folder
    fixed = run("audit", "--model", "openai:other@http://127.0.0.1:9/v1", "--out", str(tmp_path))
    assert "holds a run with different settings" not in fixed.stderr
