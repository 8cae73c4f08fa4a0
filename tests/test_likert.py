"""Likert questionnaires: loading, scoring arithmetic, ratings from a model, the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.cli import run_cli

from valuescope.audit.likert import (
    POINTS,
    Rating,
    analyse,
    cronbach_alpha,
    likert_prompt,
    rate,
)
from valuescope.backends import Chat, LoglikelihoodRequest
from valuescope.errors import UsageError
from valuescope.instruments.likert import load_questionnaire


def test_builtin_portraits_cover_every_value_with_reverse_keys() -> None:
    q = load_questionnaire("schwartz-portraits")
    assert len(q.items) == 80
    for value in q.taxonomy.ids:
        items = [i for i in q.items if i.value == value]
        assert len(items) == 8
        assert sum(i.keyed == -1 for i in items) == 3
    assert len({i.text for i in q.items}) == 80


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{id: a1, text: 'I like it.', value: kindness, keyed: 1}", "field 'value': unknown value"),
        ("{id: a1, text: 'I like it.', value: power, keyed: 2}", "item 'a1': field 'keyed'"),
        ("{id: a1, text: '  ', value: power}", "item 'a1': field 'text'"),
        ("{id: a1, text: 'x', value: power, weight: 2}", "item 'a1': field 'weight'"),
    ],
)
def test_bad_items_name_file_item_and_field(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(f"kind: likert\nname: q\ntaxonomy: schwartz\nitems:\n  - {entry}\n")
    with pytest.raises(UsageError, match=message) as info:
        load_questionnaire(path)
    assert str(path) in str(info.value)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    item = "  - {id: a1, text: 'I lead.', value: power}\n"
    path.write_text("kind: likert\ntaxonomy: schwartz\nitems:\n" + item * 2)
    with pytest.raises(UsageError, match="item 'a1': duplicate id"):
        load_questionnaire(path)


def _point(rating: float) -> tuple[float, ...]:
    """A distribution over 1..6 with the given expected rating (two neighbouring points)."""
    low = int(np.floor(rating))
    p = [0.0] * POINTS
    if low >= POINTS:
        p[-1] = 1.0
    else:
        p[low - 1] = 1 - (rating - low)
        p[low] = rating - low
    return tuple(p)


def _ratings(q: Any, raw: dict[str, float], shift: float = 0.0) -> list[Rating]:
    return [Rating(i.id, _point(raw[i.id] + shift), _point(raw[i.id] + shift)) for i in q.items]


def test_reverse_keys_and_ipsatization_remove_acquiescence() -> None:
    q = load_questionnaire("schwartz-portraits")
    # A respondent who holds power (agrees with its direct items, rejects its reversed ones)
    # and is lukewarm about everything else.
    raw = {i.id: (5.0 if i.keyed == 1 else 2.0) if i.value == "power" else 3.0 for i in q.items}
    profile, means, ipsatized, acquiescence, _ = analyse(q, _ratings(q, raw), seed=0)
    assert means["power"].score == pytest.approx(5.0)
    assert means["security"].score == pytest.approx((5 * 3 + 3 * 4) / 8)  # reversed: 7 - 3
    assert profile.scores["power"].score == pytest.approx((5.0 - 1) / 5)
    assert max(ipsatized, key=lambda v: ipsatized[v].score) == "power"
    # The same respondent agreeing with everything a point more: raw means move, ipsatized
    # scores and the ranking do not; acquiescence shows the shift.
    _, means2, ipsatized2, acquiescence2, _ = analyse(q, _ratings(q, raw, 1.0), seed=0)
    assert acquiescence2 == pytest.approx(acquiescence + 1)
    assert means2["universalism"].score != pytest.approx(means["universalism"].score)
    for value in q.taxonomy.ids:
        assert ipsatized2[value].score == pytest.approx(ipsatized[value].score)


def test_direction_consistency_tells_agreement_from_a_digit_habit() -> None:
    q = load_questionnaire("schwartz-portraits")
    rng = np.random.default_rng(0)
    truth = {i.id: float(rng.uniform(1.5, 5.5)) for i in q.items}
    honest = [Rating(i.id, _point(truth[i.id]), _point(truth[i.id])) for i in q.items]
    # Always answering "5" whichever way the scale runs: forward 5, reverse means 7 - 5 = 2.
    habit = [Rating(i.id, _point(5.0), _point(2.0)) for i in q.items]
    assert analyse(q, honest, 0)[4] == pytest.approx(1.0)
    assert np.isnan(analyse(q, habit, 0)[4])  # no variation at all: undefined, not "good"


def test_cronbach_alpha_matches_the_formula() -> None:
    rng = np.random.default_rng(1)
    trait = rng.normal(size=(50, 1))
    scores = trait + 0.5 * rng.normal(size=(50, 4))
    k = 4
    expected = k / (k - 1) * (1 - scores.var(0, ddof=1).sum() / scores.sum(1).var(ddof=1))
    assert cronbach_alpha(scores) == pytest.approx(expected)
    assert cronbach_alpha(scores) > 0.8  # four noisy measures of one trait
    assert cronbach_alpha(rng.normal(size=(50, 4))) < 0.3  # four unrelated items
    assert np.isnan(cronbach_alpha(scores[:1]))


def test_ratings_are_the_digit_probabilities_in_both_directions(tiny_backend: Any) -> None:
    q = load_questionnaire("schwartz-portraits")
    item = q.items[0]
    [rating] = rate(tiny_backend, [item], system=None)
    for reverse, got in ((False, rating.forward), (True, rating.reverse)):
        context = Chat(likert_prompt(item.text, reverse))
        scores = tiny_backend.loglikelihood(
            [LoglikelihoodRequest(context, str(d)) for d in range(1, 7)]
        )
        p = np.exp([s.logprob for s in scores])
        p = p / p.sum()
        expected = p[::-1] if reverse else p  # digit d on the reversed scale is rating 7 - d
        assert np.allclose(got, expected, atol=1e-6)
    assert sum(rating.p) == pytest.approx(1.0)


def test_cli_audit_of_a_questionnaire_with_alpha(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["audit", "--model", f"hf:{tiny_model_dir}", "--instrument", "schwartz-portraits",
            "--limit", "20", "--alpha", "--out", str(out)]  # fmt: skip
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["instrument"]["kind"] == "likert" and len(doc["items"]) == 20
    likert = doc["likert"]
    assert set(likert["alpha"]) == set(doc["values"])  # 20 items: two per value
    assert len(likert["panel"]) == 10
    recovery = likert["persona_recovery"]
    assert set(recovery) == set(doc["values"])
    assert sorted(r["rank"] for r in recovery.values())[0] >= 1
    assert all(1 <= r["rank"] <= 10 for r in recovery.values())
    assert "persona recovery (ipsatized)" in done.stdout
    assert 1 <= likert["acquiescence"] <= 6
    for item in doc["items"]:
        assert sum(item["p"]) == pytest.approx(1.0, abs=1e-5)
    assert "acquiescence" in done.stdout and "verdict:" in done.stdout
    card = (out / "card.html").read_text()
    assert "scale-direction consistency" in card and "Cronbach" in card
    # Rerunning resumes from the checkpoint: same results, nothing recomputed differently.
    again = run_cli(*args)
    assert again.returncode == 0
    redo = json.loads((out / "results.json").read_text())
    assert redo["likert"] == likert


def test_alpha_flag_with_a_dilemma_instrument_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("audit", "--alpha", "--out", str(tmp_path))
    assert done.returncode == 2 and "--alpha does not apply to dilemma instruments" in done.stderr
