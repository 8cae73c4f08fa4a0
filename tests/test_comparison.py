"""Paired comparison of two runs: per value, item-by-item differences with a paired bootstrap
CI and Holm's correction; `compare A B`, and `audit --baseline RUN --fail-on D` for CI jobs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.cli import run_cli

from valuescope.audit.comparison import compare_runs, holm, why_not_paired
from valuescope.errors import UsageError

MINI = str(Path(__file__).parent / "fixtures" / "mini-dilemmas.yaml")
VALUES = ("benevolence", "power", "security")


def doc(shift: dict[str, float] | None = None, n: int = 30, seed: int = 0) -> dict[str, Any]:
    """A dilemma results document: item k pits two of VALUES; `shift` raises a value's option."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(n):
        a, b = VALUES[k % 3], VALUES[(k + 1) % 3]
        p = float(rng.uniform(0.2, 0.8)) + (shift or {}).get(a, 0.0) - (shift or {}).get(b, 0.0)
        p = min(max(p, 0.01), 0.99)
        items.append({"id": f"i{k}", "p": [p, 1 - p],
                      "options": [{"text": "x", "values": [a]}, {"text": "y", "values": [b]}]})  # fmt: skip
    return {
        "model": {"spec": "hf:tiny", "name": "tiny"},
        "instrument": {"name": "t", "kind": "dilemma", "items": n, "sha256": "abc"},
        "values": {v: {"label": v.title(), "definition": ""} for v in VALUES},
        "method": "choice",
        "system": None,
        "items": items,
    }


def test_holm_adjusts_step_down_and_stays_monotone() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_an_identical_rerun_never_moves() -> None:
    a = doc()
    found = compare_runs(a, copy.deepcopy(a))
    assert all(c.diff == 0 and c.p_holm == 1 and not c.moved for c in found.values.values())
    assert found.failing(0.0001) == []
    assert found.summary().startswith("no value moved beyond noise")


def test_a_shifted_value_moves_and_the_paired_ci_is_narrow() -> None:
    a = doc()
    b = copy.deepcopy(a)
    for item in b["items"]:  # B chooses the benevolence option 0.08 more often, item by item
        for slot, option in enumerate(item["options"]):
            if "benevolence" in option["values"]:
                item["p"][slot] += 0.08
                item["p"][1 - slot] -= 0.08
    found = compare_runs(a, b)
    benevolence = found.values["benevolence"]
    assert benevolence.diff == pytest.approx(0.08) and benevolence.moved
    low, high = benevolence.ci
    assert low > 0 and high - low < 0.01  # the items' own spread cancels in the differences
    assert found.failing(0.05) == [
        "benevolence",
        "power",
        "security",
    ] or "benevolence" in found.failing(0.05)
    assert "B upholds Benevolence more: +0.080" in found.summary()
    as_json = found.as_dict()
    assert as_json["schema"] == "valuescope.comparison/1"
    assert set(as_json["values"]["power"]) >= {"diff", "ci", "p_holm", "n", "moved"}


def test_runs_that_do_not_pair_say_why() -> None:
    a = doc()
    other = dict(a, method="likelihood")
    assert "other methods (choice and likelihood)" in str(why_not_paired(a, other))
    version = copy.deepcopy(a)
    version["instrument"]["sha256"] = "def"
    assert "other instrument versions" in str(why_not_paired(a, version))
    with pytest.raises(UsageError, match="do not pair"):
        compare_runs(a, other)


def test_compare_and_baseline_from_the_command_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = f"hf:{tiny_model_dir}"
    base = ("audit", "--model", model, "-i", MINI, "--method", "choice")
    assert run_cli(*base, "--out", str(tmp_path / "a")).returncode == 0
    # an identical rerun against the baseline never trips --fail-on
    again = run_cli(*base, "--out", str(tmp_path / "b"), "--baseline", str(tmp_path / "a"),
                    "--fail-on", "0.001")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "no value moved beyond noise" in again.stdout
    paired = json.loads((tmp_path / "b" / "comparison.json").read_text())
    assert not any(v["moved"] for v in paired["values"].values())
    assert "Paired comparison" in (tmp_path / "b" / "card.html").read_text()
    # a baseline whose benevolence options were chosen much less: the rerun moved it
    shifted = json.loads((tmp_path / "a" / "results.json").read_text())
    for item in shifted["items"]:
        for slot, option in enumerate(item["options"]):
            if "benevolence" in option["values"] and len(item["options"]) == 2:
                item["p"][slot], item["p"][1 - slot] = (
                    item["p"][slot] - 0.3,
                    item["p"][1 - slot] + 0.3,
                )
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps(shifted))
    moved = run_cli(*base, "--out", str(tmp_path / "c"), "--baseline", str(tmp_path / "old"),
                    "--fail-on", "0.1")  # fmt: skip
    assert moved.returncode == 4, moved.stderr
    line = moved.stderr.strip().splitlines()[-1]
    assert line.startswith("valuescope: error: values moved by at least 0.1 against the baseline: ")
    assert "benevolence +0.300" in line
    # compare A B pairs them too
    done = run_cli("compare", str(tmp_path / "a"), str(tmp_path / "c"), "--out",
                   str(tmp_path / "cmp" / "card.html"))  # fmt: skip
    assert done.returncode == 0 and (tmp_path / "cmp" / "comparison.json").is_file()
    # refusals before any model loads
    refused = run_cli(*base, "--out", str(tmp_path / "d"), "--fail-on", "0.1")
    assert refused.returncode == 2 and "--fail-on applies with --baseline" in refused.stderr
    other = run_cli("audit", "--model", model, "-i", "schwartz-dilemmas", "--out",
                    str(tmp_path / "e"), "--baseline", str(tmp_path / "a"))  # fmt: skip
    assert other.returncode == 2 and "a comparison needs the same items" in other.stderr


@pytest.mark.parametrize(
    ("instrument", "spec"),
    [(MINI, {"method": "choice"}), ("schwartz-portraits", {"limit": 20}),
     ("schwartz-outcomes", {"budget": 100})],
)  # fmt: skip
def test_each_kinds_item_scores_average_to_its_profile(
    tiny_backend: Any, instrument: str, spec: dict[str, Any]
) -> None:
    """What a comparison differences item by item is what the profile averages."""
    from valuescope import RunSpec, run_audit
    from valuescope.audit.kinds import get_kind
    from valuescope.audit.results import results_json

    result = run_audit(instrument, RunSpec(model="hf:tiny", **spec), backend=tiny_backend)
    found = results_json(result)
    evidence = get_kind(found["instrument"]["kind"]).evidence(found)
    assert set(evidence) == set(found["profile"])
    for value, items in evidence.items():
        assert np.mean(list(items.values())) == pytest.approx(
            found["profile"][value]["score"], abs=1e-5
        )
        assert len(items) == found["profile"][value]["n"]
