"""The response cache: every finished server request, kept in SQLite so runs resume exactly.

A request is keyed by the server's base URL, the endpoint and the full request body (model,
prompt, sampling settings and seed included), never by credentials: the API key is not part
of any request body and is never written here. Each response is committed as soon as it
arrives (WAL journal), so a run killed at any moment, SIGKILL included, loses at most the
requests in flight, and a rerun re-sends only those. Several processes may share one file:
SQLite serialises their writes and `INSERT OR IGNORE` keeps the first answer to a request.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from valuescope.errors import UsageError

FILENAME = "responses.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def request_key(base_url: str, endpoint: str, body: dict[str, Any]) -> str:
    """The cache key: SHA-256 of the canonical JSON of (base URL, endpoint, request body)."""
    canonical = json.dumps(
        {"base_url": base_url, "endpoint": endpoint, "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Finished requests by key; safe to share between processes and to kill at any time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # One connection, used by one thread at a time (the backend's event loop may run
            # in a helper thread inside notebooks), so it may cross threads.
            self._db = sqlite3.connect(
                path, timeout=60.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA busy_timeout = 60000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UsageError(
                f"{path}: not a valuescope response cache ({exc}); delete it or choose another "
                "--out directory"
            ) from exc

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, key: str, endpoint: str, body: dict[str, Any], response: dict[str, Any]) -> None:
        """Store a finished response; the first answer to a request wins."""
        self._db.execute(
            "INSERT OR IGNORE INTO responses (key, endpoint, request, response, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                key,
                endpoint,
                json.dumps(body, sort_keys=True, ensure_ascii=False),
                json.dumps(response, sort_keys=True, ensure_ascii=False),
                time.time(),
            ),
        )

    def keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM responses")}

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()
