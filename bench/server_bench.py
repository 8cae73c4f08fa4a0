"""The server backend against llama.cpp's server (llama-cpp-python[server]) on this machine.

Three measurements, one server (the embedded SmolLM2 GGUF on loopback, started here):

1. Throughput of `valuescope audit --method choice` at concurrency 1, 4 and 8 (items/s, each
   item = two chat requests, one per order), and the server's own ceiling: the very same
   request bodies (read back from the run's response cache) sent by a plain load loop
   (urllib in a thread pool, same concurrency). Ratio = valuescope / plain loop.
2. Faults: the audit through the fault-injecting proxy of the tests (drops, timeouts, 429
   with Retry-After, 500, truncated and cut JSON, non-JSON bodies), compared with a clean run
   through the same proxy: items completed, retries by cause, results.json identical apart
   from `timing`.
3. Kill -9 halfway, then resume: finished requests re-sent (should be 0), and the result
   compared with the clean run.

Run: `.venv/bin/python bench/server_bench.py [--items 40] [--fault-items 30]`
Writes bench/results/server.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # testkit: the helpers tests and benchmarks share

from testkit.faultproxy import FaultProxy  # noqa: E402
from testkit.llama_server import llama_server  # noqa: E402
from valuescope.backends.embedded import embedded_gguf_path  # noqa: E402
from valuescope.backends.responses import ResponseCache, request_key  # noqa: E402

KEY_ENV = "VALUESCOPE_BENCH_KEY"
SCHEDULE = ["ok", "drop", "ok", "429", "ok", "500", "ok", "truncate", "ok", "cut", "ok",
            "invalid", "ok", "delay"]  # fmt: skip


def audit(spec: str, out: Path, items: int, concurrency: int, *extra: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "valuescope.cli", "audit", "--model", spec, "--method",
               "choice", "--limit", str(items), "--out", str(out), "--api-key-env", KEY_ENV,
               "--concurrency", str(concurrency), *extra]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return dict(json.loads((out / "results.json").read_text()))


def plain_loop(base_url: str, key: str, bodies: list[dict[str, Any]], concurrency: int) -> float:
    """Seconds to send `bodies` to chat/completions with nothing but urllib and threads."""

    def send(body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"{base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            json.loads(response.read())

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, bodies))
    return time.perf_counter() - started


def item_bodies(cache_path: Path) -> list[dict[str, Any]]:
    """The run's item requests (not its capability probe), in the order they were stored."""
    with sqlite3.connect(cache_path) as db:
        rows = db.execute("SELECT request FROM responses ORDER BY created").fetchall()
    bodies = [json.loads(r[0]) for r in rows]
    return [b for b in bodies if b.get("top_logprobs") == 20]


def without_timing(doc: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in doc.items() if k != "timing"}, indent=1, sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--fault-items", type=int, default=30)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "server.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vs-server-bench-"))
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": {p: metadata.version(p) for p in ("llama_cpp_python", "openai", "valuescope")},
        "command": "python bench/server_bench.py " + " ".join(sys.argv[1:]),
    }
    with llama_server(embedded_gguf_path(), work / "server.log") as server:
        os.environ[KEY_ENV] = server.api_key
        throughput = []
        for concurrency in (1, 4, 8):
            out = work / f"c{concurrency}"
            doc = audit(server.spec, out, args.items, concurrency, "--no-paraphrase")
            seconds = doc["timing"]["seconds"]
            bodies = item_bodies(out / "responses.sqlite")
            loop_seconds = plain_loop(server.base_url, server.api_key, bodies, concurrency)
            row = {
                "concurrency": concurrency,
                "items": args.items,
                "requests": len(bodies),
                "valuescope_seconds": round(seconds, 2),
                "valuescope_items_per_s": round(args.items / seconds, 3),
                "plain_loop_seconds": round(loop_seconds, 2),
                "plain_loop_items_per_s": round(args.items / loop_seconds, 3),
                "ratio": round(loop_seconds / seconds, 3),
            }
            print(row, flush=True)
            throughput.append(row)
        report["throughput"] = throughput

        upstream = server.base_url.removesuffix("/v1")
        with FaultProxy(upstream, delay=6.0) as proxy:
            spec = f"openai:smollm2@{proxy.base_url}"
            clean = audit(spec, work / "clean", args.fault_items, 4)
            proxy.set_schedule(SCHEDULE)
            proxy.records.clear()
            faulted = audit(spec, work / "faulted", args.fault_items, 4, "--timeout", "5")
            faults = proxy.faults_done()
            report["faults"] = {
                "schedule": SCHEDULE,
                "items_expected": args.fault_items,
                "items_completed": len(faulted["items"]),
                "faults_injected": {k: v for k, v in faults.items() if k != "ok"},
                "requests": faulted["timing"]["requests"],
                "identical_to_clean_run": without_timing(faulted) == without_timing(clean),
            }
            print(report["faults"], flush=True)

            proxy.set_schedule(["ok"])
            killed = work / "killed"
            command = [sys.executable, "-m", "valuescope.cli", "audit", "--model", spec,
                       "--method", "choice", "--limit", str(args.fault_items), "--out",
                       str(killed), "--api-key-env", KEY_ENV, "--concurrency", "4",
                       "--max-rps", "8"]  # fmt: skip
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            expected = len(clean["items"]) * 2 * 2 + 4
            database = killed / "responses.sqlite"
            while True:
                try:
                    with sqlite3.connect(database, timeout=5) as db:
                        stored = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
                except sqlite3.OperationalError:
                    stored = 0
                if stored >= expected // 2:
                    break
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait()
            finished = ResponseCache(database).keys()
            proxy.records.clear()
            resumed = audit(spec, killed, args.fault_items, 4)
            resent = {
                request_key(
                    proxy.base_url,
                    urlsplit(r.path).path.removeprefix("/v1/"),
                    json.loads(r.body),
                )
                for r in proxy.records
            }
            report["kill_resume"] = {
                "requests_expected": expected,
                "finished_before_kill": len(finished),
                "sent_after_resume": len(proxy.records),
                "finished_requests_resent": len(resent & finished),
                "identical_to_clean_run": without_timing(resumed) == without_timing(clean),
            }
            print(report["kill_resume"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
