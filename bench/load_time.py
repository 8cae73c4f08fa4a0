"""Load time of the embedded model: first load (dequantize + cache) and cached load.

Each load runs in a fresh Python process with a fresh or warm VALUESCOPE_CACHE, so import
caches do not flatter the second number. Run: `.venv/bin/python bench/load_time.py`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import time, sys
started = time.perf_counter()
import valuescope
imported = time.perf_counter()
backend = valuescope.load_backend("smollm2")
loaded = time.perf_counter()
print(f"{imported - started:.3f} {loaded - imported:.3f}")
"""


def one_load(cache: str) -> tuple[float, float]:
    env = {**os.environ, "VALUESCOPE_CACHE": cache, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    imported, loaded = done.stdout.split()
    return float(imported), float(loaded)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        first = one_load(cache)
        cached = [one_load(cache) for _ in range(3)]
    rows.append({"load": "first (dequantize GGUF, write cache)", "seconds": round(first[1], 2)})
    best = min(c[1] for c in cached)
    rows.append({"load": "cached (best of 3)", "seconds": round(best, 2)})
    report = {
        "benchmark": "smollm2 load time",
        "command": ".venv/bin/python bench/load_time.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "import_seconds": round(first[0], 2),
        "results": rows,
    }
    out = Path(__file__).parent / "results" / "load_time.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
