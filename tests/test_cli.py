"""The command line as a user runs it: a real subprocess, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
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
