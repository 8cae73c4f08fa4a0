"""Resumable runs: finished chunks are appended to `progress.jsonl` and never redone.

The first line fingerprints the run (model, instrument hash, method, system prompt, seed); a
directory holding another run's progress is refused rather than mixed. A line cut short by a
kill is ignored, so at most the chunk under way is lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from valuescope.errors import UsageError

FILENAME = "progress.jsonl"
T = TypeVar("T")


def _same(value: Any) -> Any:
    return value


class Checkpoint:
    """Append-only record of finished work, keyed by chunk name."""

    def __init__(self, directory: Path, fingerprint: dict[str, Any]) -> None:
        self.path = directory / FILENAME
        self.fingerprint = fingerprint
        self.done: dict[str, Any] = {}
        directory.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            self._load()
        else:
            self._append({"fingerprint": fingerprint})

    def _load(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        records = _records(text)
        found = records[0].get("fingerprint") if records else None
        if found != self.fingerprint and len(records) <= 1:
            # nothing finished under the other settings (a run that failed at once): start over
            self.path.unlink()
            self._append({"fingerprint": self.fingerprint})
            return
        _refuse_other(self.path, found, self.fingerprint)
        if text and not text.endswith("\n"):
            # A torn last line: end it so the next append starts on a line of its own.
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("\n")
        for record in records[1:]:
            if "chunk" in record:
                self.done[record["chunk"]] = record["data"]

    @staticmethod
    def check(directory: Path, fingerprint: dict[str, Any]) -> None:
        """Refuse a folder holding another run's finished work, reading two lines only."""
        path = directory / FILENAME
        if not path.is_file():
            return
        with path.open(encoding="utf-8") as handle:
            first = _records(handle.readline() + handle.readline())
        if len(first) > 1:  # another run's finished work is there: never mix or lose it
            _refuse_other(path, first[0].get("fingerprint"), fingerprint)

    def _append(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def get(self, chunk: str) -> Any | None:
        return self.done.get(chunk)

    def put(self, chunk: str, data: Any) -> None:
        self.done[chunk] = data
        self._append({"chunk": chunk, "data": data})

    def memo(
        self,
        chunk: str,
        compute: Callable[[], T],
        encode: Callable[[T], Any] = _same,
        decode: Callable[[Any], T] = _same,
    ) -> T:
        """The saved result of `chunk`, or `compute()` saved under it: get-or-compute."""
        saved = self.done.get(chunk)
        if saved is not None:
            return decode(saved)
        value = compute()
        self.put(chunk, encode(value))
        return value


def memo(
    checkpoint: Checkpoint | None,
    chunk: str,
    compute: Callable[[], T],
    encode: Callable[[T], Any] = _same,
    decode: Callable[[Any], T] = _same,
) -> T:
    """`checkpoint.memo(...)`, or just `compute()` for a run that keeps no checkpoint."""
    if checkpoint is None:
        return compute()
    return checkpoint.memo(chunk, compute, encode, decode)


def _records(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill: its chunk is simply redone
        if isinstance(record, dict):
            records.append(record)
    return records


def _refuse_other(path: Path, found: Any, fingerprint: dict[str, Any]) -> None:
    if found == fingerprint:
        return
    differs = (
        sorted(k for k in fingerprint if found.get(k) != fingerprint[k])
        if isinstance(found, dict)
        else ["(unreadable)"]
    )
    raise UsageError(
        f"{path.parent}: holds a run with different settings ({', '.join(differs)}); "
        "choose another --out directory to keep both, or delete it to start over"
    )
