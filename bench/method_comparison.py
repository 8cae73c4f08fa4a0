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

import yaml

from valuescope import load_backend
from valuescope.audit.dilemma import DilemmaResult
from valuescope.audit.kinds import RunSpec
from valuescope.audit.recovery import run_validation
from valuescope.instruments.dilemma import load_dilemmas

HERE = Path(__file__).parent


def balanced_subset(name: str, root: Path) -> Path:
    """The first item of each (value shown first, value shown second) pair, as a YAML file.

    Every value pair then appears once in each position, so a smaller run keeps the balance
    of the full instrument (the first N items would cover only the first values' pairs).
    """
    inst = load_dilemmas(name)
    seen: set[tuple[str, ...]] = set()
    items = []
    for item in inst.items:
        key = tuple(v for o in item.options for v in o.values)
        if key in seen:
            continue
        seen.add(key)
        assert item.paraphrase is not None
        items.append(
            {
                "id": item.id,
                "text": item.text,
                "options": [{"text": o.text, "values": list(o.values)} for o in item.options],
                "paraphrase": {
                    "text": item.paraphrase.text,
                    "options": list(item.paraphrase.options),
                },
            }
        )
    doc = {"kind": "dilemma", "name": f"{inst.name}-balanced", "taxonomy": inst.taxonomy.name}
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{inst.name}-balanced.yaml"
    path.write_text(yaml.safe_dump({**doc, "items": items}, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instrument", default="schwartz-dilemmas")
    parser.add_argument("--methods", default="choice,likelihood,generate")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--balanced",
        action="store_true",
        help="use one item per value pair and position (90 of the 180 Schwartz items)",
    )
    parser.add_argument(
        "--generate-limit", type=int, default=60, help="items for the (slow) generate method"
    )
    args = parser.parse_args()
    backend = load_backend("smollm2")
    root = HERE / "results" / "methods" / (args.instrument + ("-balanced" if args.balanced else ""))
    instrument = str(balanced_subset(args.instrument, root)) if args.balanced else args.instrument
    report: dict[str, object] = {
        "benchmark": "scoring methods on the embedded model",
        "command": (
            f".venv/bin/python bench/method_comparison.py --instrument {args.instrument} "
            f"--methods {args.methods}"
            + (" --balanced" if args.balanced else "")
            + (f" --limit {args.limit}" if args.limit else "")
            + f" --generate-limit {args.generate_limit}"
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "methods": {},
    }
    for method in args.methods.split(","):
        limit = args.generate_limit if method == "generate" else args.limit
        started = time.perf_counter()
        spec = RunSpec(method=method, limit=limit)
        recovery = run_validation(instrument, spec, backend=backend, out=root / method)
        # this bench compares the scoring methods of a dilemma instrument: never pairwise
        assert isinstance(recovery.baseline, DilemmaResult)
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
            "deltas": {v: dict(row) for v, row in recovery.deltas.items()},
            "seconds": round(time.perf_counter() - started, 1),
        }
        report["methods"][method] = row  # type: ignore[index]
        print(json.dumps({method: {k: v for k, v in row.items() if k != "deltas"}}), flush=True)
    out = root / "comparison.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
