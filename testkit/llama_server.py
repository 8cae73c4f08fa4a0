"""Start llama.cpp's OpenAI-compatible server (from `llama-cpp-python[server]`) on loopback.

Used by the tests and by `bench/server_bench.py`; the server runs the embedded SmolLM2
GGUF, so the server and local backends see the same weights.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MODEL_ALIAS = "smollm2"


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    api_key: str
    log: Path

    @property
    def spec(self) -> str:
        return f"openai:{MODEL_ALIAS}@{self.base_url}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_server(
    gguf: Path, log: Path, api_key: str = "test-key", threads: int = 2, ready_within: float = 120
) -> Iterator[RunningServer]:
    """A running server; stopped (and its log kept) on exit. Raises if it never gets ready."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--api_key",
        api_key,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    handle = log.open("wb")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_within
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited early:\n{log.read_text()[-3000:]}")
            try:
                request = urllib.request.Request(
                    f"{base_url}/models", headers={"Authorization": f"Bearer {api_key}"}
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server not ready after {ready_within} s")
            time.sleep(0.3)
        yield RunningServer(base_url, api_key, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        handle.close()
