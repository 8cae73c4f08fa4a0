"""Where valuescope keeps derived files (dequantized models); `VALUESCOPE_CACHE` overrides."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

from valuescope.folders import writable_folder

CACHE_ENV = "VALUESCOPE_CACHE"


def cache_dir() -> Path:
    """The user cache directory, created on first use; a clear error when it cannot be."""
    root = os.environ.get(CACHE_ENV)
    path = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("valuescope"))
    where = f"{CACHE_ENV}={root}" if root else f"the cache folder {path}"
    return writable_folder(path, where, f"point {CACHE_ENV} at a writable folder")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (model files are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
