"""Persona recovery on the tiny model: deltas, ranks and top-k follow their definitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from valuescope.audit.kinds import RunSpec
from valuescope.audit.likert import LikertResult
from valuescope.audit.pairwise import PairwiseResult
from valuescope.audit.recovery import run_validation
from valuescope.errors import UsageError
from valuescope.instruments.personas import load_personas
from valuescope.instruments.taxonomy import load_taxonomy

MINI = str(Path(__file__).parent / "fixtures" / "mini-dilemmas.yaml")
VALUES = load_taxonomy("schwartz").ids


def persona_file(tmp_path: Path) -> Path:
    path = tmp_path / "personas.yaml"
    path.write_text(yaml.safe_dump({v: f"You care about {v} above everything." for v in VALUES}))
    return path


def test_recovery_matches_its_definition(tiny_backend: Any, tmp_path: Path) -> None:
    recovery = run_validation(
        MINI,
        RunSpec(model="hf:tiny", method="likelihood"),
        persona_file(tmp_path),
        backend=tiny_backend,
        out=tmp_path / "v",
    )
    assert set(recovery.deltas) == set(VALUES)
    base = recovery.baseline.profile.scores
    for value, run in recovery.personas.items():
        assert run.spec.system == f"You care about {value} above everything."
        expected = run.profile.scores[value].score - base[value].score
        assert recovery.deltas[value][value] == pytest.approx(expected)
        bigger = sum(d > recovery.deltas[value][value] for d in recovery.deltas[value].values())
        assert recovery.rank_of_own(value) == bigger + 1
    top1 = sum(recovery.rank_of_own(v) == 1 for v in VALUES) / len(VALUES)
    assert recovery.top_k(1) == pytest.approx(top1)
    assert recovery.top_k(3) >= recovery.top_k(1)
    assert (tmp_path / "v" / "persona-power" / "progress.jsonl").is_file()


def test_personas_must_cover_every_value(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"power": "You want control."}))
    with pytest.raises(UsageError, match="no persona prompt for self-direction"):
        load_personas(load_taxonomy("schwartz"), path)


def test_pairwise_recovery_matches_its_definition(tiny_backend: Any, tmp_path: Path) -> None:
    outcomes = tmp_path / "outcomes.yaml"
    items = [
        {"id": f"{v}-{k}", "text": f"Outcome {k} that serves {v}.", "values": [v]}
        for v in VALUES
        for k in (1, 2)
    ]
    outcomes.write_text(yaml.safe_dump({"kind": "pairwise", "name": "mini-outcomes",
                                        "taxonomy": "schwartz", "items": items}))  # fmt: skip
    recovery = run_validation(
        str(outcomes),
        RunSpec(model="hf:tiny", budget=24),
        persona_file(tmp_path),
        backend=tiny_backend,
        out=tmp_path / "v",
    )
    assert recovery.method == "choice" and set(recovery.deltas) == set(VALUES)
    base = recovery.baseline.profile.scores
    for value, run in recovery.personas.items():
        assert isinstance(run, PairwiseResult)
        assert run.spec.system == f"You care about {value} above everything."
        assert len(run.pairs) == 24
        assert recovery.deltas[value][value] == pytest.approx(
            run.profile.scores[value].score - base[value].score
        )
    assert (tmp_path / "v" / "persona-power" / "progress.jsonl").is_file()


def test_validation_flags_that_do_not_fit_the_instrument(tiny_backend: Any) -> None:
    with pytest.raises(UsageError, match="--budget does not apply to dilemma instruments"):
        run_validation(MINI, RunSpec(model="hf:tiny", budget=10), backend=tiny_backend)
    with pytest.raises(UsageError, match=r"--limit does not apply to pairwise .*use --budget"):
        run_validation("schwartz-outcomes", RunSpec(model="hf:tiny", limit=5), backend=tiny_backend)


def test_likert_recovery_runs_through_the_same_path(tiny_backend: Any, tmp_path: Path) -> None:
    """Persona recovery of a questionnaire compares ipsatized means, as its --alpha panel does."""
    recovery = run_validation(
        "schwartz-portraits",
        RunSpec(model="hf:tiny", limit=20),
        persona_file(tmp_path),
        backend=tiny_backend,
        out=tmp_path / "v",
    )
    assert recovery.method == "scale"
    base = recovery.baseline
    assert isinstance(base, LikertResult)
    for value, run in recovery.personas.items():
        assert isinstance(run, LikertResult) and run.spec.system is not None
        if value in recovery.deltas:
            expected = run.ipsatized[value].score - base.ipsatized[value].score
            assert recovery.deltas[value][value] == pytest.approx(expected)
    assert set(recovery.deltas) == set(base.ipsatized) == set(VALUES)
    assert (tmp_path / "v" / "persona-power" / "progress.jsonl").is_file()
