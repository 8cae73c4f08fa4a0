"""When to retry a server request, and how long to wait first.

Written here rather than taken from the openai client's own retries: the audit must count
every retry by cause, retry responses the client accepts (truncated or invalid JSON), cap
`Retry-After`, and stop on errors that a retry cannot fix (401, 404, 400).
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; `Retry-After` from the server wins when given.

    Attempt k (1-based) waits a uniform random time in [0, min(cap, base * 2**(k-1))]; with a
    `Retry-After` header it waits that long (at most `cap`) instead.
    """

    max_retries: int = 8
    base: float = 0.5
    cap: float = 30.0
    malformed_retries: int = 2
    """Invalid or truncated JSON is retried this often (a cut transfer heals; a server that
    always answers garbage does not), then the run stops with a clear error."""

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        return rng.uniform(0.0, min(self.cap, self.base * 2 ** (attempt - 1)))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
