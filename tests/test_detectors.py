"""Detectors without the embedding model: labelled files, heads and their cache, quality
measures against hand-computed cases, sentence splitting, the lexicon's negation, the judge."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from valuescope.detectors.base import Readings
from valuescope.detectors.heads import Heads, fit_heads, fitted_heads
from valuescope.detectors.judge import OPTIONS, SYSTEM, Judge, rubric
from valuescope.detectors.labelled import load_labelled
from valuescope.detectors.lexicon import LexiconFeatures
from valuescope.detectors.quality import expected_calibration_error, score_readings
from valuescope.detectors.registry import check_detector_name, get_detector
from valuescope.detectors.sentences import aggregate, split_sentences
from valuescope.errors import UsageError
from valuescope.instruments.taxonomy import Taxonomy, load_taxonomy
from valuescope.progress import ProgressHook

SCHWARTZ = load_taxonomy("schwartz")

# -- labelled files --------------------------------------------------------------------------

GOOD = {
    "id": "t1",
    "text": "Help your neighbour.",
    "upholds": ["benevolence"],
    "split": "fit",
}


def _labelled_file(tmp_path: Path, *entries: dict[str, Any], name: str = "mine.yaml") -> Path:
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump({"taxonomy": "schwartz", "texts": list(entries)}))
    return path


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({**GOOD, "upholds": ["kindness"]}, ["item 't1'", "'upholds'", "kindness"]),
        ({**GOOD, "opposes": ["powr"]}, ["item 't1'", "'opposes'", "powr"]),
        ({**GOOD, "split": "test"}, ["item 't1'", "field 'split'"]),
        ({**GOOD, "text": "  "}, ["item 't1'", "field 'text'", "must not be empty"]),
        ({**GOOD, "label": "x"}, ["item 't1'", "field 'label'"]),
        ({**GOOD, "opposes": ["benevolence"]}, ["item 't1'", "both upheld and opposed"]),
        ({k: v for k, v in GOOD.items() if k != "id"}, ["item #1", "field 'id'"]),
    ],
)
def test_a_labelled_file_error_names_the_file_item_and_field(
    tmp_path: Path, entry: dict[str, Any], expected: list[str]
) -> None:
    path = _labelled_file(tmp_path, entry)
    with pytest.raises(UsageError) as caught:
        load_labelled(path)
    message = str(caught.value)
    assert str(path) in message
    for part in expected:
        assert part in message, (part, message)


def test_a_duplicate_id_in_a_labelled_file_is_named(tmp_path: Path) -> None:
    path = _labelled_file(tmp_path, GOOD, {**GOOD, "split": "validation"})
    with pytest.raises(UsageError, match=r"mine\.yaml: item 't1': duplicate id"):
        load_labelled(path)


def test_a_labelled_file_without_texts_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("taxonomy: schwartz\n")
    with pytest.raises(UsageError, match=r"empty\.yaml: expected a mapping"):
        load_labelled(path)


def test_labels_are_plus_one_minus_one_or_zero_per_value(tmp_path: Path) -> None:
    path = _labelled_file(
        tmp_path, {**GOOD, "opposes": ["power"]}, {"id": "t2", "text": "x", "split": "validation"}
    )
    found = load_labelled(path)
    labels = found.labels()
    assert labels[0, SCHWARTZ.ids.index("benevolence")] == 1
    assert labels[0, SCHWARTZ.ids.index("power")] == -1
    assert abs(labels).sum() == 2 and not labels[1].any()
    assert [t.id for t in found.part("validation").texts] == ["t2"]


def test_the_built_in_parts_share_no_text() -> None:
    for name in ("schwartz", "moral-foundations"):
        found = load_labelled(name)
        fit, held = set(found.part("fit").strings()), set(found.part("validation").strings())
        assert fit and held and not fit & held, name


# -- heads -----------------------------------------------------------------------------------


def _separable(n: int = 120, dims: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features whose first columns carry each value's label (with noise)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1, 0, 0, 1], size=(n, len(SCHWARTZ.ids)))
    x = rng.normal(size=(n, dims + len(SCHWARTZ.ids)))
    x[:, : len(SCHWARTZ.ids)] += 2.0 * labels
    return x, labels


def test_heads_saved_as_json_read_exactly_as_the_fitted_ones(tmp_path: Path) -> None:
    x, labels = _separable()
    heads = fit_heads(x, labels, SCHWARTZ, c=0.3)
    heads.save(tmp_path / "heads.json")
    loaded = Heads.load(tmp_path / "heads.json")
    assert loaded is not None
    fresh = np.random.default_rng(1).normal(size=(30, x.shape[1]))
    a, b = heads.read(fresh), loaded.read(fresh)
    assert np.array_equal(a.relevance, b.relevance)
    assert np.array_equal(a.score, b.score)
    assert np.array_equal(a.threshold, b.threshold)


def test_heads_read_relevance_and_score_from_the_three_class_probabilities() -> None:
    x, labels = _separable()
    heads = fit_heads(x, labels, SCHWARTZ, c=1.0)
    readings = heads.read(x)
    p = heads.heads[0].probabilities(x)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.allclose(readings.relevance[:, 0], 1 - p[:, 1])
    assert np.allclose(readings.score[:, 0], p[:, 2] - p[:, 0])
    # the signal is in the features: upheld texts score above opposed ones for every value
    for j in range(len(SCHWARTZ.ids)):
        assert (
            readings.score[labels[:, j] == 1, j].mean()
            > readings.score[labels[:, j] == -1, j].mean()
        )


def test_the_threshold_is_the_one_of_best_f1_as_sklearn_computes_it() -> None:
    from sklearn.metrics import f1_score

    from valuescope.detectors.heads import best_f1_threshold

    rng = np.random.default_rng(0)
    for _ in range(20):
        present = rng.random(80) < 0.3
        relevance = np.clip(0.6 * rng.random(80) + 0.4 * present * rng.random(80), 0, 1)
        candidates = np.unique(np.round(relevance, 3))
        f1s = [f1_score(present, relevance >= t, zero_division=0) for t in candidates]
        assert best_f1_threshold(present, relevance) == candidates[int(np.argmax(f1s))]


def test_a_value_no_fitting_text_bears_on_gets_a_head_that_never_finds_it() -> None:
    x, labels = _separable()
    labels[:, 3] = 0
    readings = fit_heads(x, labels, SCHWARTZ, c=0.3).read(x)
    assert readings.relevance[:, 3].max() < 1e-9 and not readings.present()[:, 3].any()
    assert np.abs(readings.score[:, 3]).max() < 1e-9


def test_a_heads_file_of_another_version_or_damaged_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "heads.json"
    path.write_text('{"version": 0, "values": [], "heads": []}')
    assert Heads.load(path) is None
    path.write_text("{not json")
    assert Heads.load(path) is None
    assert Heads.load(tmp_path / "absent.json") is None


class CountingFeatures:
    """Cheap deterministic features that count how often they are computed."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts: Sequence[str], progress: ProgressHook | None = None) -> np.ndarray:
        self.calls += 1
        rows = [[len(t), t.count("e"), t.count(" "), sum(map(ord, t)) % 7] for t in texts]
        return np.asarray(rows, dtype=float)


def _small_set(tmp_path: Path, extra: str = "") -> Path:
    entries = [
        {
            "id": f"t{i}",
            "text": f"text number {i} {'e' * (i % 5)}{extra}",
            "upholds": ["benevolence"] if i % 3 == 0 else [],
            "opposes": ["power"] if i % 4 == 0 and i % 3 else [],
            "split": "fit" if i % 5 else "validation",
        }
        for i in range(40)
    ]
    return _labelled_file(tmp_path, *entries)


def test_fitted_heads_are_cached_by_the_labelled_files_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VALUESCOPE_CACHE", str(tmp_path / "cache"))
    features = CountingFeatures()
    path = _small_set(tmp_path)
    first = fitted_heads(features, "counting", load_labelled(path), c=0.1)
    again = fitted_heads(features, "counting", load_labelled(path), c=0.1)
    assert features.calls == 1  # the second came from the cache
    probe = features(["something else entirely"])
    assert np.array_equal(first.read(probe).score, again.read(probe).score)
    calls = features.calls
    _small_set(tmp_path, extra=" changed")  # same file name, other content: refit
    changed = fitted_heads(features, "counting", load_labelled(path), c=0.1)
    assert features.calls == calls + 1
    assert not np.array_equal(first.read(probe).score, changed.read(probe).score)
    fitted_heads(features, "other features", load_labelled(path), c=0.1)
    fitted_heads(features, "counting", load_labelled(path), c=0.3)
    assert features.calls == calls + 3  # features and regularisation are in the key too
    assert len(list((tmp_path / "cache" / "detectors").glob("heads-*.json"))) == 4


# -- quality ---------------------------------------------------------------------------------


def test_expected_calibration_error_matches_a_hand_computed_case() -> None:
    y = np.array([1, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.95, 0.85, 0.31, 0.39])
    # bins: 0.05 | 0.15 | 0.95 | 0.85 | {0.31, 0.39}: |1-.05|+|0-.15|+|1-.95|+|1-.85| + 2|.5-.35|
    assert expected_calibration_error(y, p) == pytest.approx((0.95 + 0.15 + 0.05 + 0.15 + 0.3) / 6)
    assert expected_calibration_error(np.array([1, 0]), np.array([1.0, 0.0])) == 0.0
    assert expected_calibration_error(np.array([0, 0]), np.array([1.0, 1.0])) == 1.0


def _readings(relevance: list[list[float]], score: list[list[float]], threshold: float) -> Readings:
    values = ("a", "b")
    return Readings(values, np.array(relevance), np.array(score), np.full(2, threshold))


def test_quality_measures_match_hand_computed_and_sklearn_values() -> None:
    relevance = [[0.9, 0.2], [0.8, 0.1], [0.3, 0.7], [0.1, 0.6]]
    score = [[0.4, 0.0], [0.1, 0.0], [-0.2, 0.5], [0.0, 0.3]]
    labels = np.array([[1, 0], [0, 0], [-1, 1], [0, -1]])
    found = score_readings(_readings(relevance, score, 0.5), labels)
    a, b = found["a"], found["b"]
    # a: positives 0.9, 0.3 against negatives 0.8, 0.1 -> 3 of 4 pairs ordered right
    assert a["auc"] == pytest.approx(0.75)
    assert a["auc"] == pytest.approx(roc_auc_score([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]))
    assert a["f1"] == pytest.approx(0.5)  # predicted rows 0, 1; present rows 0, 2
    assert a["sign_accuracy"] == 1.0  # +0.4 upheld, -0.2 opposed
    assert b["auc"] == 1.0 and b["f1"] == 1.0
    assert b["sign_accuracy"] == 0.5  # +0.5 upheld (right), +0.3 opposed (wrong)


def test_a_value_without_labelled_texts_has_no_auc_and_is_left_out_of_the_macro() -> None:
    from valuescope.detectors.quality import Quality

    labels = np.array([[1, 0], [0, 0]])
    found = score_readings(_readings([[0.9, 0.1], [0.2, 0.1]], [[0.5, 0], [0, 0]], 0.5), labels)
    assert found["b"]["auc"] is None and found["b"]["sign_accuracy"] is None
    quality = Quality("x", found, 2, 1.0)
    assert quality.macro("auc") == 1.0
    assert quality.as_dict()["macro"]["sign_accuracy"] == 1.0


# -- sentences -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Save money. Then help others!", ["Save money.", "Then help others!"]),
        ("Ask Dr. Lee first. Then decide.", ["Ask Dr. Lee first.", "Then decide."]),
        ("Bring food, e.g. Bread. Go.", ["Bring food, e.g. Bread.", "Go."]),
        ("Just say no. Then leave.", ["Just say no.", "Then leave."]),
        ("Ask for No. 5 today. Fine.", ["Ask for No. 5 today.", "Fine."]),
        ('He said "Stop." Then left.', ['He said "Stop."', "Then left."]),
        ("Really?! Yes.", ["Really?!", "Yes."]),
        ("It rose 3.5 percent. Good.", ["It rose 3.5 percent.", "Good."]),
        ("- Be kind\n- Be brave", ["Be kind", "Be brave"]),
        ("1. Save money. 2. Help others.", ["Save money.", "Help others."]),
        ("-5 degrees today. Stay in.", ["-5 degrees today.", "Stay in."]),
        ("First line\n\nsecond line", ["First line", "second line"]),
        ("no end mark at all", ["no end mark at all"]),
        ("lower case. after a stop", ["lower case. after a stop"]),
    ],
)
def test_sentence_splitting(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_by_sentence_relevance_is_the_top_sentences_and_score_its_weighted_mean() -> None:
    per = Readings(
        ("a",), np.array([[0.8], [0.2], [0.0]]), np.array([[0.5], [-1.0], [0.3]]), np.array([0.5])
    )
    found = aggregate(per, np.array([0, 0, 1]), 3)
    assert found.relevance[:, 0].tolist() == [0.8, 0.0, 0.0]
    assert found.score[0, 0] == pytest.approx((0.8 * 0.5 + 0.2 * -1.0) / 1.0)
    assert found.score[1, 0] == 0.0 and found.score[2, 0] == 0.0  # no weight; no sentence


# -- lexicon ---------------------------------------------------------------------------------


def test_the_lexicon_counts_a_negated_mention_apart() -> None:
    features = LexiconFeatures(SCHWARTZ)
    j = SCHWARTZ.ids.index("benevolence")
    x = features(
        [
            "We offered assistance to them.",
            "We did not offer assistance to them.",
            "Never mind the weather, we offered them assistance.",  # out of the negation's reach
        ]
    )
    plain, negated = x[:, 2 * j], x[:, 2 * j + 1]
    assert plain.tolist() == [math.log(2), 0.0, math.log(2)]
    assert negated.tolist() == [0.0, math.log(2), 0.0]


def test_the_lexicon_refuses_a_taxonomy_it_has_no_dictionaries_for() -> None:
    with pytest.raises(UsageError, match="no dictionary for care"):
        get_detector("lexicon", "moral-foundations")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("nope", "unknown detector"),
        ("judge", "judge:<model spec>"),
        ("probe:", "probe:<model spec>"),
    ],
)
def test_detector_names_are_checked_before_anything_loads(
    name: str, expected: str, no_model: None
) -> None:
    with pytest.raises(UsageError, match=expected):
        check_detector_name(name)


# -- judge -----------------------------------------------------------------------------------


def test_the_judge_averages_both_orders_of_its_answers(tiny_backend: Any) -> None:
    from valuescope.backends.base import Chat, LoglikelihoodRequest

    small = Taxonomy("two", "two", SCHWARTZ.values[7:9])  # tradition, benevolence
    text = "Keep the old family recipes and share the meal with the neighbours."
    judge = Judge(tiny_backend, small, "judge:tiny")
    found = judge.read([text])
    assert found.values == ("tradition", "benevolence")
    assert ((found.relevance >= 0) & (found.relevance <= 1)).all()
    assert ((found.score >= -1) & (found.score <= 1)).all()
    for j, value in enumerate(small.values):
        each = []
        for order in (OPTIONS, tuple(reversed(OPTIONS))):
            chat = Chat(rubric(text, value.label, value.definition, order), system=SYSTEM)
            scores = tiny_backend.loglikelihood([LoglikelihoodRequest(chat, o) for o in OPTIONS])
            logp = np.array([s.logprob for s in scores])
            each.append(np.exp(logp - logp.max()) / np.exp(logp - logp.max()).sum())
        p = np.mean(each, axis=0)
        assert found.relevance[0, j] == pytest.approx(1 - p[2])
        assert found.score[0, j] == pytest.approx(p[0] - p[1])


class FirstListed:
    """A judge that always answers with the option listed first: only averaging both orders
    keeps that from deciding."""

    def loglikelihood(self, requests: Sequence[Any], progress: Any = None) -> list[Any]:
        from valuescope.backends.base import Loglikelihood

        found = []
        for request in requests:
            prompt = request.context.user
            first = min(OPTIONS, key=lambda o: prompt.rindex(f'"{o}"'))
            logprob = 0.0 if request.continuation == first else -20.0
            found.append(Loglikelihood(logprob, (logprob,), True))
        return found


def test_a_judge_biased_to_the_first_listed_answer_reads_half_and_half() -> None:
    found = Judge(FirstListed(), SCHWARTZ, "judge:first").read(["Anything at all."])  # type: ignore[arg-type]
    # upholds (listed first in one order) and neither (in the other) get half each
    assert np.allclose(found.relevance, 0.5, atol=1e-6)
    assert np.allclose(found.score, 0.5, atol=1e-6)
