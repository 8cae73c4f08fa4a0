"""Pairwise instruments: loading, the Thurstonian fit, active selection, the command line."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import spearmanr
from support.cli import run_cli

from valuescope.audit.kinds import RunSpec
from valuescope.audit.pairwise import fit_thurstone, run_pairwise, transitivity_violations
from valuescope.backends import Loglikelihood, LoglikelihoodRequest
from valuescope.backends.spec import parse_spec
from valuescope.errors import UsageError
from valuescope.instruments.pairwise import load_outcomes


def test_builtin_outcomes_cover_every_value() -> None:
    outcomes = load_outcomes("schwartz-outcomes")
    assert len(outcomes.items) == 80
    for value in outcomes.taxonomy.ids:
        assert sum(value in o.values for o in outcomes.items) == 8


def test_design_form_with_outcomes_lists_and_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "kind: pairwise\ntaxonomy: schwartz\nitems:\n"
        "  - id: set1\n    outcomes:\n"
        "      - {text: 'You win a prize.', values: [achievement]}\n"
        "      - {text: 'A friend recovers.', values: [benevolence]}\n"
        "  - {id: x, text: 'The river is cleaned.', values: [universalism]}\n"
    )
    assert [o.id for o in load_outcomes(path).items] == ["set1.1", "set1.2", "x"]
    path.write_text(
        "kind: pairwise\ntaxonomy: schwartz\nitems:\n"
        "  - {id: a, text: 'One.', values: [power]}\n  - {id: b, text: 'Two.', values: [fame]}\n"
        "  - {id: c, text: 'Three.', values: [power]}\n"
    )
    with pytest.raises(UsageError, match="item 'b': field 'values': unknown value id 'fame'"):
        load_outcomes(path)


def test_thurstone_fit_recovers_utilities_from_soft_preferences() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=12)
    pairs = [(i, j) for i in range(12) for j in range(i + 1, 12)]
    p = [float(ndtr((truth[i] - truth[j]) / math.sqrt(2))) for i, j in pairs]
    fit = fit_thurstone(12, pairs, p)
    assert spearmanr(fit.mu, truth).statistic > 0.97
    for (i, j), pij in zip(pairs, p, strict=True):
        assert abs(fit.p(i, j) - pij) < 0.1


def test_transitivity_counts_cycles() -> None:
    assert transitivity_violations([(0, 1), (1, 2), (2, 0)], [0.9, 0.9, 0.9]) == 1.0
    assert transitivity_violations([(0, 1), (1, 2), (0, 2)], [0.9, 0.9, 0.9]) == 0.0
    assert transitivity_violations([(0, 1), (1, 2)], [0.9, 0.9]) is None


class OracleBackend:
    """A named fake model with known utilities per outcome text and a bias for label A.

    It stands in for a model whose preferences are known, which no real model offers; the
    answer is P(A) = sigmoid(u_A - u_B + bias).
    """

    def __init__(self, utilities: dict[str, float], bias: float) -> None:
        self.spec = parse_spec("smollm2")
        self.utilities = utilities
        self.bias = bias
        self.calls = 0

    @property
    def name(self) -> str:
        return "oracle"

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: object = None
    ) -> list[Loglikelihood]:
        out = []
        for request in requests:
            self.calls += 1
            text = request.context.user  # type: ignore[union-attr]
            a, b = re.findall(r"^[AB]\. (.*)$", text, flags=re.MULTILINE)
            logit = self.utilities[a] - self.utilities[b] + self.bias
            sign = 1 if request.continuation == "A" else -1
            value = -math.log1p(math.exp(-sign * logit))
            out.append(Loglikelihood(value, (value,), sign * logit > 0))
        return out

    def generate(self, *args: object, **kwargs: object) -> list[list[str]]:
        raise NotImplementedError


def test_active_pairs_recover_known_preferences_despite_a_position_bias(tmp_path: Path) -> None:
    outcomes = load_outcomes("schwartz-outcomes")
    rng = np.random.default_rng(3)
    # The oracle loves benevolence and dislikes power; everything else is noise.
    shift = {"benevolence": 1.5, "power": -1.5}
    utilities = {
        o.text: float(shift.get(o.values[0], 0.0) + rng.normal(scale=0.7)) for o in outcomes.items
    }
    backend = OracleBackend(utilities, bias=2.0)  # strongly prefers whatever is labelled A
    result = run_pairwise(outcomes, RunSpec(model="oracle", budget=240), backend, tmp_path)  # type: ignore[arg-type]
    assert len(result.pairs) == 240 == len(set(map(frozenset, result.pairs)))
    truth = [utilities[o.text] for o in outcomes.items]
    assert spearmanr(result.fit.mu, truth).statistic > 0.9
    scores = result.profile.scores
    assert max(scores, key=lambda v: scores[v].score) == "benevolence"
    assert min(scores, key=lambda v: scores[v].score) == "power"
    assert result.accuracy is not None and result.accuracy > 0.8
    assert result.transitivity is not None and result.transitivity < 0.1
    # Resuming from the checkpoint asks nothing again and gives the same fit.
    calls = backend.calls
    again = run_pairwise(outcomes, RunSpec(model="oracle", budget=240), backend, tmp_path)  # type: ignore[arg-type]
    assert backend.calls == calls
    assert np.allclose(again.fit.mu, result.fit.mu)


def test_budget_below_a_spanning_start_is_refused() -> None:
    backend = OracleBackend({}, 0.0)
    with pytest.raises(UsageError, match="--budget 10 is below the 80"):
        run_pairwise(
            load_outcomes("schwartz-outcomes"), RunSpec(model="oracle", budget=10), backend
        )  # type: ignore[arg-type]


def test_cli_audit_of_outcomes(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_cli("audit", "--model", f"hf:{tiny_model_dir}", "--instrument",
                   "schwartz-outcomes", "--budget", "100", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "results.json").read_text())
    block = doc["pairwise"]
    assert doc["instrument"]["kind"] == "pairwise" and block["comparisons"] == 100
    assert block["held_out"] == 20 and 0 <= block["heldout_accuracy"] <= 1
    assert set(doc["profile"]) == set(doc["values"])
    assert "held-out accuracy" in (out / "card.html").read_text()
    assert "transitivity" in done.stdout and "verdict:" in done.stdout
