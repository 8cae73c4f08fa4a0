"""Compare the scoring methods on the embedded model: validity diagnostics and persona recovery.

For each method: a baseline audit of the instrument (both wordings) and one audit per value
persona (original wording), through `run_validation`. Runs resume from
bench/results/methods/<instrument>/<method>/ if interrupted.

Run: `.venv/bin/python bench/method_comparison.py [--instrument schwartz-dilemmas]
[--methods choice,likelihood,generate] [--limit N] [--generate-limit 60]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from valuescope import load_backend
from valuescope.validate import run_validation

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instrument", default="schwartz-dilemmas")
    parser.add_argument("--methods", default="choice,likelihood,generate")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--generate-limit", type=int, default=60, help="items for the (slow) generate method"
    )
    args = parser.parse_args()
    backend = load_backend("smollm2")
    root = HERE / "results" / "methods" / args.instrument
    report: dict[str, object] = {
        "benchmark": "scoring methods on the embedded model",
        "command": (
            f".venv/bin/python bench/method_comparison.py --instrument {args.instrument} "
            f"--methods {args.methods}"
            + (f" --limit {args.limit}" if args.limit else "")
            + f" --generate-limit {args.generate_limit}"
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "methods": {},
    }
    for method in args.methods.split(","):
        limit = args.generate_limit if method == "generate" else args.limit
        started = time.perf_counter()
        recovery = run_validation(
            "smollm2", args.instrument, method, limit=limit, backend=backend, out=root / method
        )
        d = recovery.baseline.diagnostics
        row = {
            "items": len(recovery.baseline.results),
            "order_consistency": d.order_consistency,
            "position_bias": d.position_bias,
            "paraphrase_consistency": d.paraphrase_consistency,
            "ci_includes_half": d.ci_includes_half,
            "verdict": d.verdict,
            "top1": recovery.top_k(1),
            "top3": recovery.top_k(3),
            "mean_own_delta": recovery.mean_own_delta,
            "own_delta": {v: recovery.deltas[v][v] for v in recovery.deltas},
            "own_rank": {v: recovery.rank_of_own(v) for v in recovery.deltas},
            "seconds": round(time.perf_counter() - started, 1),
        }
        report["methods"][method] = row  # type: ignore[index]
        print(json.dumps({method: row}), flush=True)
    out = root / "comparison.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
