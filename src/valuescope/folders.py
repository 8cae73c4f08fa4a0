"""Folders valuescope writes into: created up front, refused in one line when they cannot be."""

from __future__ import annotations

import os
from pathlib import Path

from valuescope.errors import UsageError


def writable_folder(path: Path, name: str, remedy: str) -> Path:
    """`path` as a folder that exists and can be written, or a usage error saying which of
    those fails; `name` says what the folder is (a flag and its value), `remedy` what to do."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{name} is a file; {remedy}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{name}: cannot create the folder ({exc.strerror}); {remedy}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{name}: the folder is not writable; {remedy}")
    return path
