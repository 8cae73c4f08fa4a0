"""bench/reach_law.py, whose figures docs/steering.md quotes, on sweeps whose law is known."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).parents[1] / "bench" / "reach_law.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("reach_law", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    law = _load()
    # shift 0.025 per unit coefficient, cost 0.025 per unit squared: +0.25 at coef 10, where
    # the cost is 2.5; the calibrated point (coef 2) has shift 0.05 at cost 0.1
    follows = _sweep(lambda c: 0.025 * c, lambda c: 0.025 * c * c, steps=20)
    # the same start, but the shift stops growing after coef 4 and the cost goes quartic
    bends = _sweep(lambda c: 0.025 * min(c, 4.0), lambda c: 0.1 * (c / 2) ** 4)
    path = tmp_path / "steering-x.json"
    path.write_text(json.dumps({"model": "gguf:/m/x.gguf",
                                "reach": {"trained": {"power": follows, "hedonism": bends}}}))  # fmt: skip
    rows = {r["value"]: r for r in law.rows(path)}
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
    assert law.exponent(follows["points"], len(follows["points"]) - 1) is None  # no next step
    free = [{"coef": 1.0, "fluency_cost": 0.0}, {"coef": 2.0, "fluency_cost": 0.1}]
    assert law.exponent(free, 0) is None  # nothing to take the logarithm of


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    cases = {"missing.json": None, "bad.json": "{not json", "foreign.json": '{"reach": {"x": 1}}'}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        done = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2, name
        assert done.stderr.count("\n") == 1 and str(path) in done.stderr, done.stderr
    empty = tmp_path / "empty.json"
    empty.write_text('{"model": "x"}')
    done = subprocess.run([sys.executable, str(SCRIPT), str(empty)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "run bench/steering_bench.py --part reach" in done.stderr
