"""The reach sweeps read against the trade-off law (no model is run).

`steering_bench.py --part reach` raises each direction's coefficient by sqrt(2) a step from
the calibrated one. If the shift grew linearly with the coefficient and the fluency cost with
its square (the trade-off law), +0.25 would cost `cost0 * (0.25 / shift0) ** 2`,
from the calibrated point's shift0 and cost0 alone (`valuescope.steering.tradeoff.law_cost`, what
`valuescope steer` says of a missed target). This prints that prediction per sweep,
beside what the sweep measured: the cost's local exponent in the coefficient (2 is quadratic)
at the first and fourth step, the perplexity up to which the shift stays at least 85% of the
linear extrapolation (a lower bound where the sweep stopped at +0.25 while still linear), and
the perplexity at which +0.25 was reached. The table is the one docs/results/reach.md shows;
`--json` prints the same rows as JSON lines, unrounded.

    .venv/bin/python bench/reach_law.py [bench/results/steering*.json ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from valuescope.steering.tradeoff import law_cost

HERE = Path(__file__).parent
TARGET = 0.25
LINEAR = 0.85  # a shift at least this share of the linear extrapolation counts as linear
TOO_SMALL = 0.015  # a calibrated shift this small gives no usable extrapolation


def exponent(points: list[dict[str, Any]], step: int) -> float | None:
    """Local exponent of the fluency cost in the coefficient between `step` and the next."""
    if step + 1 >= len(points):
        return None
    a, b = points[step], points[step + 1]
    if a["fluency_cost"] <= 0 or b["fluency_cost"] <= 0:
        return None
    return math.log(b["fluency_cost"] / a["fluency_cost"]) / math.log(b["coef"] / a["coef"])


def linear_until(points: list[dict[str, Any]]) -> float:
    """Perplexity (times the plain one) of the last step whose shift is still linear."""
    first = points[0]
    last = first["fluency_cost"] + 1
    for p in points:
        linear = first["instrument"]["shift"] * p["coef"] / first["coef"]
        shift = p["instrument"]["shift"]
        if not math.isfinite(shift) or shift < LINEAR * linear:  # an overflowed step ends it
            break
        last = p["fluency_cost"] + 1
    return float(last)


def rows(path: Path) -> list[dict[str, Any]]:
    """One row per stored sweep; a file that is no steering results file is a usage error."""
    try:
        text = path.read_text()
    except OSError as error:
        print(f"{path}: cannot read it ({error.strerror})", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        return _rows(json.loads(text))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        print(f"{path}: not a steering results file of bench/steering_bench.py ({error!r})",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2) from None


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    model = Path(str(results.get("model")).split(":", 1)[-1]).stem
    for direction, sweeps in results.get("reach", {}).items():
        for value, sweep in sweeps.items():
            points = sweep["points"]
            shift0, cost0 = points[0]["instrument"]["shift"], points[0]["fluency_cost"]
            reached = sweep["reached_at"]
            out.append({
                "model": model, "value": value, "direction": direction,
                "shift0": shift0, "cost0": cost0,
                "law": law_cost(cost0, shift0, TARGET) if shift0 >= TOO_SMALL else None,
                "exponent_first": exponent(points, 0), "exponent_fourth": exponent(points, 3),
                "linear_until": linear_until(points) if shift0 >= TOO_SMALL else None,
                "reached": reached["fluency_cost"] + 1 if reached else None,
            })  # fmt: skip
    return out


def fmt(x: float | None, spec: str, unit: str = "") -> str:
    return "-" if x is None else format(x, spec) + unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", type=Path,
                        help="results files (default: bench/results/steering*.json)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON row per sweep, unrounded")
    args = parser.parse_args()
    paths = args.results or sorted((HERE / "results").glob("steering*.json"))
    table = {path: rows(path) for path in paths}  # every file read before anything is printed
    empty = [str(path) for path, found in table.items() if not found]
    if empty:
        print(f"no reach sweeps in {', '.join(empty)}: run bench/steering_bench.py --part reach "
              f"first", file=sys.stderr)  # fmt: skip
    if not any(table.values()):
        raise SystemExit(2)
    if args.json:
        for found in table.values():
            for r in found:
                print(json.dumps(r))
        return
    print("| model | value | direction | shift at 10% | cost there | law: cost of +0.25 | "
          "exponent, 1st / 4th step | linear until | +0.25 reached at |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for found in table.values():
        for r in found:
            print(f"| {r['model']} | {r['value']} | {r['direction']} | {r['shift0']:+.3f} | "
                  f"{r['cost0']:+.1%} | {fmt(r['law'], '+.0%')} | "
                  f"{fmt(r['exponent_first'], '.1f')} / {fmt(r['exponent_fourth'], '.1f')} | "
                  f"{fmt(r['linear_until'], '.1f', 'x')} | "
                  f"{fmt(r['reached'], '.0f', 'x')} |")  # fmt: skip


if __name__ == "__main__":
    main()
