"""The docs' runnable examples, run as documented on the real embedded model, so they stay true."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from valuescope.instruments.dilemma import load_dilemmas

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_audit_example_prints_every_value_with_a_ci_around_its_score() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / "audit_embedded.py")],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    head, *rows = done.stdout.splitlines()
    assert re.fullmatch(r"method: \S+; verdict: .+", head)
    seen = set()
    for row in rows:
        found = re.fullmatch(r"(\S+)\s+([\d.]+)\s+\[([\d.]+), ([\d.]+)\]\s+n=(\d+)", row)
        assert found, row
        value, score, low, high, n = found.groups()
        assert 0 <= float(low) <= float(score) <= float(high) <= 1 and int(n) > 0, row
        seen.add(value)
    # the first 20 dilemmas, as the example audits them, decide these values
    dilemmas = load_dilemmas("schwartz-dilemmas")
    first = dilemmas.items[:20]
    ids = dilemmas.taxonomy.ids
    assert seen == {v for v in ids if any(item.upholding(v) is not None for item in first)}
    assert len(seen) >= 5


def test_steer_example_moves_achievement_on_dilemmas_no_vector_saw(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = _example("steer_embedded")
    found = example.main("achievement")
    assert found.probe_accuracy >= 0.9
    upholding, opposing = found.readings
    assert upholding > 0.5 > opposing
    assert 0 < found.fluency_cost <= 0.10 and found.pair_shift > 0
    # the paired CI on the 36 deciding items is clear of zero (docs/steering.md: +0.043)
    shift = found.shift
    assert shift["n"] == 36
    low = shift["ci"][0]
    assert low is not None and low > 0 and shift["flipped_toward"] > shift["flipped_away"]
    example.show("achievement", found)
    printed = capsys.readouterr().out
    assert f"{shift['shift']:+.3f}" in printed and f"layer {found.layer}" in printed
