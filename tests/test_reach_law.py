"""bench/reach_law.py, whose figures docs/results/reach.md quotes, run as a user runs it on
sweeps whose law is known."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).parents[1] / "bench" / "reach_law.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def _rows(path: Path) -> dict[str, dict[str, Any]]:
    """The script's rows for `path`, by value (`--json`: the table's figures, unrounded)."""
    done = _run(str(path), "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    table = _run(str(path)).stdout.splitlines()
    assert len(table) == 2 + len(rows)  # the markdown table shows the same rows
    return {r["value"]: r for r in rows}


def _sweep(shift: Any, cost: Any, steps: int = 8) -> dict[str, Any]:
    """A reach sweep as steering_bench.py stores it: the coefficient up by sqrt(2) a step."""
    points = []
    reached = None
    for k in range(steps):
        coef = 2.0 * 2 ** (k / 2)
        point = {"coef": coef, "fluency_cost": cost(coef), "instrument": {"shift": shift(coef)}}
        points.append(point)
        if point["instrument"]["shift"] >= 0.25:
            reached = point
            break
    return {"points": points, "reached_at": reached}


def test_a_sweep_that_follows_the_law_reaches_where_the_law_says(tmp_path: Path) -> None:
    # shift 0.025 per unit coefficient, cost 0.025 per unit squared: +0.25 at coef 10, where
    # the cost is 2.5; the calibrated point (coef 2) has shift 0.05 at cost 0.1
    follows = _sweep(lambda c: 0.025 * c, lambda c: 0.025 * c * c, steps=20)
    # the same start, but the shift stops growing after coef 4 and the cost goes quartic
    bends = _sweep(lambda c: 0.025 * min(c, 4.0), lambda c: 0.1 * (c / 2) ** 4)
    # four steps, the first at no measurable cost: no exponent where nothing can be divided by
    # the cost, nor after the last step
    free = {"points": [{"coef": c, "fluency_cost": cost, "instrument": {"shift": 0.025 * c}}
                       for c, cost in ((1.0, 0.0), (2.0, 0.1), (3.0, 0.2), (4.0, 0.4))],
            "reached_at": None}  # fmt: skip
    path = tmp_path / "steering-x.json"
    path.write_text(json.dumps({"model": "gguf:/m/x.gguf", "reach": {"trained": {
        "power": follows, "hedonism": bends, "universalism": free}}}))  # fmt: skip
    rows = _rows(path)
    power, hedonism = rows["power"], rows["hedonism"]
    assert power["model"] == "x" and power["direction"] == "trained"
    assert power["law"] == pytest.approx(0.1 * (0.25 / 0.05) ** 2) == pytest.approx(2.5)
    assert power["exponent_first"] == pytest.approx(2.0)
    assert power["exponent_fourth"] == pytest.approx(2.0)
    last = follows["points"][-1]
    assert power["reached"] == pytest.approx(last["fluency_cost"] + 1)  # the first step >= 0.25
    assert power["linear_until"] == pytest.approx(last["fluency_cost"] + 1)  # linear throughout
    assert last["coef"] == pytest.approx(
        2.0 * 2**2.5
    )  # the sweep stopped at the first step past 10
    assert hedonism["law"] == pytest.approx(2.5)  # the same start predicts the same
    assert hedonism["exponent_first"] == pytest.approx(4.0)
    # shift 0.1 at coef 4 is linear (the step at 5.66 is 0.1 < 0.85 x 0.141): cost 0.1 x 2^4
    assert hedonism["linear_until"] == pytest.approx(1 + 0.1 * 2**4)
    assert hedonism["reached"] is None
    assert rows["universalism"]["exponent_fourth"] is None  # no next step
    assert rows["universalism"]["exponent_first"] is None  # nothing to take the logarithm of
    assert rows["universalism"]["law"] is None  # nor a cost for the law to scale


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    cases = {"missing.json": None, "bad.json": "{not json", "foreign.json": '{"reach": {"x": 1}}'}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        done = _run(str(path))
        assert done.returncode == 2, name
        assert done.stderr.count("\n") == 1 and str(path) in done.stderr, done.stderr
    empty = tmp_path / "empty.json"
    empty.write_text('{"model": "x"}')
    done = _run(str(empty))
    assert done.returncode == 2 and "run bench/steering_bench.py --part reach" in done.stderr
