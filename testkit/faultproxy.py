"""A loopback HTTP proxy that injects server faults on a schedule, for the server backend tests.

It sits between the backend and the real llama.cpp server. Each new POST body (a model
request seen for the first time) takes the next fault of the schedule, cycling; a body seen
before (a retry) passes, so every fault costs exactly one retry whatever the interleaving of
concurrent requests. GETs pass through. It records every POST body and what it did with it,
so tests can count retries and re-sent requests.

Faults:
- `ok`: forward and relay the answer;
- `drop`: close the connection without an answer;
- `delay`: hold the request `delay` seconds (past the client's timeout), then close;
- `429`: answer 429 with `Retry-After: 1`;
- `500`: answer 500;
- `truncate`: forward, then relay only the first half of the JSON body (well framed);
- `cut`: forward, announce the full length, send half and close mid-body;
- `invalid`: answer 200 with a body that is not JSON;
- `404`: answer 404 as a server does for an unknown model.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from testkit.llama_server import free_port

FAULTS = ("ok", "drop", "delay", "429", "500", "truncate", "cut", "invalid", "404")


@dataclass
class Record:
    path: str
    body: bytes
    fault: str


@dataclass
class FaultProxy:
    """Run with `with FaultProxy(upstream) as proxy:`; `proxy.base_url` replaces the server's."""

    upstream: str  # e.g. http://127.0.0.1:8080 (no /v1)
    schedule: list[str] = field(default_factory=lambda: ["ok"])
    delay: float = 6.0
    retries_too: bool = False
    records: list[Record] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = set(self.schedule) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {unknown}")
        self.port = free_port()
        self._posts = 0
        self._seen: set[bytes] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def set_schedule(self, schedule: list[str], retries_too: bool = False) -> None:
        """Faults for new requests; with `retries_too`, retried requests take them as well."""
        with self._lock:
            self.schedule = schedule
            self.retries_too = retries_too
            self._posts = 0
            self._seen.clear()

    def faults_done(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.fault] = counts.get(record.fault, 0) + 1
        return counts

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """One request to the upstream server (HTTP/1.1, connection closed after)."""
        target = urlsplit(self.upstream)
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {target.netloc}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        raw = await reader.read()
        writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in head.lower():
            payload = _dechunk(payload)
        return status, payload

    def _next_fault(self, body: bytes) -> str:
        with self._lock:
            if body in self._seen and not self.retries_too:
                return "ok"
            self._seen.add(body)
            fault = self.schedule[self._posts % len(self.schedule)]
            self._posts += 1
            return fault

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        fault = self._next_fault(body) if method == "POST" else "ok"
        if method == "POST":
            self.records.append(Record(path, body, fault))
        try:
            await self._answer(writer, method, path, headers, body, fault)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        fault: str,
    ) -> None:
        if fault == "drop":
            return
        if fault == "delay":
            await asyncio.sleep(self.delay)
            return
        if fault in ("429", "500", "404"):
            message = {"429": "slow down", "500": "internal error", "404": "model not found"}
            payload = json.dumps({"error": {"message": message[fault]}}).encode()
            extra = {"Retry-After": "1"} if fault == "429" else {}
            await _write(writer, int(fault), payload, extra)
            return
        if fault == "invalid":
            await _write(writer, 200, b"<html>upstream hiccup</html>", {})
            return
        forward = {k: v for k, v in headers.items() if k in ("authorization", "content-type")}
        status, payload = await self._forward(method, path, forward, body)
        if fault == "truncate":
            payload = payload[: len(payload) // 2]
        if fault == "cut":
            writer.write(_head(status, len(payload), {}) + payload[: len(payload) // 2])
            await writer.drain()
            return
        await _write(writer, status, payload, {})


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


def _head(status: int, length: int, extra: dict[str, str]) -> bytes:
    lines = [
        f"HTTP/1.1 {status} X",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _write(
    writer: asyncio.StreamWriter, status: int, payload: bytes, extra: dict[str, str]
) -> None:
    writer.write(_head(status, len(payload), extra) + payload)
    await writer.drain()
