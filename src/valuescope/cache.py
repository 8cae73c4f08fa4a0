"""Where valuescope keeps derived files (dequantized models); `VALUESCOPE_CACHE` overrides."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Mapping, Sequence
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


class KeptScores:
    """Numbers computed once and kept across runs and processes, by key, in one sqlite file.

    sqlite's own locking makes two writers safe; a file that cannot be read or written (a
    read-only cache, a damaged file) makes every key a miss, so callers compute as without it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def named(cls, name: str) -> KeptScores:
        """The store `name`.sqlite in the cache directory (beside the dequantized models)."""
        return cls(cache_dir() / f"{name}.sqlite")

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=60)
        connection.execute("CREATE TABLE IF NOT EXISTS kept (key TEXT PRIMARY KEY, value REAL)")
        return connection

    def get(self, keys: Sequence[str]) -> dict[str, float]:
        """The kept values of those `keys` that have one."""
        found: dict[str, float] = {}
        try:
            connection = self._connect()
            try:
                wanted = list(dict.fromkeys(keys))
                for start in range(0, len(wanted), 500):  # under sqlite's limit on parameters
                    part = wanted[start : start + 500]
                    marks = ",".join("?" * len(part))
                    query = f"SELECT key, value FROM kept WHERE key IN ({marks})"
                    found.update(connection.execute(query, part).fetchall())
            finally:
                connection.close()
        except sqlite3.Error:
            return {}
        return found

    def put(self, values: Mapping[str, float]) -> None:
        """Keep `values` (one transaction: readers see all of them or none)."""
        try:
            connection = self._connect()
            try:
                with connection:
                    connection.executemany(
                        "INSERT OR REPLACE INTO kept (key, value) VALUES (?, ?)", values.items()
                    )
            finally:
                connection.close()
        except sqlite3.Error:
            return
