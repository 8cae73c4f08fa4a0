"""The command line run in this process, through its entry point `valuescope.cli.app.main`.

A subprocess would import torch and transformers again for each run (about 5 s); tests that
need a real process (a kill, the import of torch at start-up, a server's environment) keep one.
What a test sees is what a shell sees: the exit code, stdout and stderr, with an unexpected
exception printed as its traceback and exit code 1, as the interpreter would.
"""

from __future__ import annotations

import io
import os
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from valuescope.cli.app import main


@dataclass(frozen=True)
class Ran:
    """One run's outcome, like subprocess.CompletedProcess."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, columns: int | None = None) -> Ran:
    """`valuescope ARGS...`; `columns` sets the terminal width the output is laid out for."""
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_columns = sys.argv, os.environ.get("COLUMNS")
    sys.argv = ["valuescope", *args]
    if columns is not None:
        os.environ["COLUMNS"] = str(columns)
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved_argv
        if saved_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved_columns
    return Ran(list(args), code, out.getvalue(), err.getvalue())
