"""Decoding-time alignment: rewards, strategies, the palette solver, the intervention."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from support.cli import run_cli

from valuescope.audit.kinds import RunSpec
from valuescope.audit.results import read_results, write_results
from valuescope.audit.run import run_audit
from valuescope.backends.base import Chat, Context, GenerationParams, LoglikelihoodRequest
from valuescope.detectors.base import Readings
from valuescope.detectors.registry import register_detector
from valuescope.errors import UsageError
from valuescope.instruments.taxonomy import Taxonomy, load_taxonomy
from valuescope.steering.alignment import Alignment, parse_align
from valuescope.steering.guided import RewardLogitsProcessor, guided_generate, tilt
from valuescope.steering.palette import solve_palette, tilted_mean
from valuescope.steering.rewards import ValueReward, log_sigmoid, parse_weights
from valuescope.steering.strategies import (
    Settings,
    best_of_n,
    best_of_n_curve,
    best_of_n_strategy,
    curve_sizes,
)

SCHWARTZ = load_taxonomy("schwartz")


class WordDetector:
    """Reads each value as (occurrences of its cue word) / 4, capped at 1: a known truth."""

    def __init__(self, taxonomy: Taxonomy, cues: dict[str, str] | None = None) -> None:
        self._taxonomy = taxonomy
        self.cues = cues or {"benevolence": "help", "power": "win", "universalism": "all"}
        self.read_texts: list[str] = []

    @property
    def name(self) -> str:
        return "cue-words"

    @property
    def taxonomy(self) -> Taxonomy:
        return self._taxonomy

    def read(self, texts: Sequence[str], progress: Any = None) -> Readings:
        self.read_texts += list(texts)
        values = self._taxonomy.ids
        score = np.zeros((len(texts), len(values)))
        for i, text in enumerate(texts):
            words = text.lower().split()
            for j, value in enumerate(values):
                cue = self.cues.get(value)
                if cue:
                    score[i, j] = min(1.0, words.count(cue) / 4)
        return Readings(values, np.abs(score), score, np.full(len(values), 0.5))


register_detector("cue-words", lambda arg, taxonomy, **options: WordDetector(taxonomy))


class HashedDetector(WordDetector):
    """Reads benevolence as a fixed pseudo-random number of the text in [-1, 1): a reward that
    tells apart the tiny model's random answers."""

    @property
    def name(self) -> str:
        return "hashed"

    def read(self, texts: Sequence[str], progress: Any = None) -> Readings:
        values = self._taxonomy.ids
        score = np.zeros((len(texts), len(values)))
        column = values.index("benevolence")
        for i, text in enumerate(texts):
            score[i, column] = zlib.crc32(text.encode()) % 2000 / 1000 - 1
        return Readings(values, np.abs(score), score, np.full(len(values), 0.5))


register_detector("hashed", lambda arg, taxonomy, **options: HashedDetector(taxonomy))


class ScriptedBackend:
    """A black-box backend whose k-th sample of a prompt is `answers[k]` (generate only)."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.asked: list[GenerationParams] = []
        self.spec = type("Spec", (), {"raw": "scripted"})()

    @property
    def name(self) -> str:
        return "scripted"

    def generate(
        self, prompts: Sequence[Context], params: GenerationParams, progress: Any = None
    ) -> list[list[str]]:
        self.asked.append(params)
        return [[self.answers[k % len(self.answers)] for k in range(params.n)] for _ in prompts]

    def loglikelihood(self, requests: Any, progress: Any = None) -> Any:
        raise NotImplementedError("no log-probabilities here")


def test_log_sigmoid_combination_is_the_formula() -> None:
    reward = ValueReward(WordDetector(SCHWARTZ), {"benevolence": 2.0, "power": -0.5},
                         {"benevolence": 0.25, "power": 0.5})  # fmt: skip
    parts = np.array([[0.75, 0.0], [0.0, 1.0]])
    expected = [
        2.0 * math.log(1 / (1 + math.exp(-(0.75 - 0.25)))) + 0.5 * math.log(1 / (1 + math.exp(-(0.5 - 0.0)))),
        2.0 * math.log(1 / (1 + math.exp(-(0.0 - 0.25)))) + 0.5 * math.log(1 / (1 + math.exp(-(0.5 - 1.0)))),
    ]  # fmt: skip
    assert reward.combine(parts) == pytest.approx(expected)
    # every term is at most 0: a sum near 0 means good on every value at once
    assert (reward.combine(np.random.default_rng(0).uniform(-1, 1, (50, 2))) < 0).all()
    assert log_sigmoid(np.array([-800.0, 800.0])) == pytest.approx([-800.0, 0.0])
    got = reward(["q", "q"], ["help help help", "win win win win"])
    assert got == pytest.approx(reward.combine(np.array([[0.75, 0.0], [0.0, 1.0]])))


def test_a_reward_refuses_unknown_values_and_zero_weights() -> None:
    with pytest.raises(UsageError, match="'kindness' is not a value of schwartz"):
        ValueReward(WordDetector(SCHWARTZ), {"kindness": 1.0})
    with pytest.raises(UsageError, match="weight other than 0"):
        ValueReward(WordDetector(SCHWARTZ), {"power": 0.0})
    assert parse_weights("benevolence=1,power=-0.5") == {"benevolence": 1.0, "power": -0.5}
    with pytest.raises(UsageError, match="given twice"):
        parse_weights("power=1,power=2")


def test_best_of_n_picks_the_argmax_of_the_reward() -> None:
    answers = ["win the day", "help help", "help help help help", "help", "win win"]
    backend = ScriptedBackend(answers)
    reward = ValueReward(WordDetector(SCHWARTZ), {"benevolence": 1.0})
    chosen = best_of_n(backend, ["Should I?", "And now?"], reward, n=5)  # type: ignore[arg-type]
    assert chosen == ["help help help help"] * 2
    assert backend.asked[0].n == 5
    down = ValueReward(WordDetector(SCHWARTZ), {"power": -1.0})
    found = best_of_n_strategy(backend, ["q"], GenerationParams(n=2), down, Settings(n=5))  # type: ignore[arg-type]
    # answers 0-4 then 5-9 (= 0-4 again): the first without "win" in each group of five
    assert found.answers == [["help help", "help help"]]
    assert found.plain == [["win the day", "win the day"]]


def test_resampling_follows_exp_lambda_r_and_is_seeded() -> None:
    answers = ["help help help help", "nothing here", "nothing at all", "still nothing"]
    reward = ValueReward(WordDetector(SCHWARTZ), {"benevolence": 1.0})
    many = [f"q{i}" for i in range(400)]

    def share(lam: float, seed: int = 0) -> float:
        aligned = Alignment({"benevolence": 1.0}, "resample", "cue-words",
                            Settings(n=4, lam=lam), model=reward)  # fmt: skip
        wrapped = aligned.wrap(ScriptedBackend(answers))  # type: ignore[arg-type]
        got = wrapped.generate(many, GenerationParams(n=1, seed=seed))
        return sum(g[0] == answers[0] for g in got) / len(got)

    # P(best) = e^{lam d} / (e^{lam d} + 3), d the combined-reward gap of the best answer
    parts = np.array([[1.0], [0.0], [0.0], [0.0]])
    r = reward.referenced(parts).combine(parts)
    for lam in (0.0, 4.0):
        p = math.exp(lam * (r[0] - r[1])) / (math.exp(lam * (r[0] - r[1])) + 3)
        assert share(lam) == pytest.approx(p, abs=0.07)
    assert share(200.0) == 1.0
    assert share(4.0, seed=1) == share(4.0, seed=1)


def test_the_best_of_n_curve_keeps_the_best_of_each_pools_first_m_samples() -> None:
    assert curve_sizes(1) == [1] and curve_sizes(4) == [1, 2, 4]
    assert curve_sizes(5) == [1, 2, 4, 5] and curve_sizes(32) == [1, 2, 4, 8, 16, 32]
    scores = np.array([[-0.5, -0.2, -0.2, -0.9, 0.0], [-0.1, -0.3, -0.05, -0.4, -0.6]])
    parts = (2 * scores + 1)[:, :, None]  # one value, not the scores themselves
    # the measuring detector's signed reading of each sample (benevolence up, power down)
    measured = np.zeros((2, 5, 2))
    measured[0, 1] = [0.5, 0.2]  # toward: 0.5 - 0.2 > 0
    measured[0, 4] = [0.1, 0.3]  # away: 0.1 - 0.3 < 0
    measured[1, 2] = [0.4, 0.0]
    weights = {"benevolence": 1.0, "power": -1.0}
    curve = best_of_n_curve(scores, parts, ("benevolence",), measured, weights, seed=0)
    picks = {1: [0, 0], 2: [1, 0], 4: [1, 2], 5: [4, 2]}  # the first of equals at m = 4
    assert [p.n for p in curve] == [1, 2, 4, 5]
    for point in curve:
        chosen = picks[point.n]
        assert point.kl_bound == pytest.approx(math.log(point.n) - (point.n - 1) / point.n)
        assert point.reward == pytest.approx(np.mean([scores[0, chosen[0]], scores[1, chosen[1]]]))
        assert point.reward_reading["benevolence"] == pytest.approx(2 * point.reward + 1)
        read = measured[[0, 1], chosen]
        assert point.measuring == pytest.approx(dict(zip(weights, read.mean(axis=0), strict=True)))
        assert point.success == np.mean(read @ np.array([1.0, -1.0]) > 0)
    assert [p.success for p in curve] == [0.0, 0.5, 1.0, 0.5]
    assert curve[0].as_dict()["success"] == {"rate": 0.0, "ci": [0.0, 0.0]}
    alone = best_of_n_curve(scores, parts, ("benevolence",))  # no measuring detector
    assert [p.reward for p in alone] == [p.reward for p in curve]
    assert all(p.measuring is None and p.as_dict()["success"] is None for p in alone)


def test_reward_hacking_shows_on_the_curve_as_success_falling_while_reward_rises() -> None:
    answers = ["We will see.", "help help kind.", "help help help win.", "help help help help now."]
    reward = ValueReward(WordDetector(SCHWARTZ), {"benevolence": 1.0})
    judge = WordDetector(SCHWARTZ, {"benevolence": "kind."})  # another detector: kindness

    def curve(measurer: Any) -> list[dict[str, Any]]:
        aligned = Alignment({"benevolence": 1.0}, "best-of-n", "cue-words", Settings(n=4),
                            model=reward, measurer=measurer)  # fmt: skip
        aligned.wrap(ScriptedBackend(answers)).generate(["q1", "q2"], GenerationParams(n=1))  # type: ignore[arg-type]
        found: list[dict[str, Any]] = aligned.as_dict()["best_of_n_curve"]
        return found

    judged = curve(judge)
    assert [p["n"] for p in judged] == [1, 2, 4]
    rewards = [p["reward"] for p in judged]
    assert rewards == sorted(rewards) and rewards[0] < rewards[-1]
    assert [p["reward_reading"]["benevolence"] for p in judged] == [0.0, 0.5, 1.0]
    assert [p["success"]["rate"] for p in judged] == [0.0, 1.0, 0.0]
    assert [p["measuring"]["benevolence"] for p in judged] == [0.0, 0.25, 0.0]
    # the Python API without a measuring detector: the curve, its reward only
    alone = curve(None)
    assert [p["reward"] for p in alone] == rewards
    assert all(p["success"] is None and p["measuring"] is None for p in alone)
    resampled = Alignment({"benevolence": 1.0}, "resample", "cue-words", Settings(n=4),
                          model=reward, measurer=judge)  # fmt: skip
    resampled.wrap(ScriptedBackend(answers)).generate(["q"], GenerationParams(n=1))  # type: ignore[arg-type]
    assert resampled.as_dict()["best_of_n_curve"] is None  # best-of-n's curve only


@pytest.mark.parametrize("n", [4, 5])
def test_a_best_of_n_run_records_its_curve(
    tiny_backend: Any, tmp_path: Path, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("valuescope.audit.answers.MAX_NEW_TOKENS", 24)
    aligned = parse_align("benevolence=1", "best-of-n", n, "hashed", "lexicon")
    assert aligned.measuring == "lexicon"
    spec = RunSpec(model="hf:tiny", samples=2, detector="lexicon", paraphrase=False,
                   interventions=(aligned,))  # fmt: skip
    out = tmp_path / "run"
    write_results(run_audit(str(small_open(tmp_path)), spec, backend=tiny_backend, out=out), out)
    record = read_results(out)["alignment"]
    curve = record["best_of_n_curve"]
    assert [p["n"] for p in curve] == ([1, 2, 4] if n == 4 else [1, 2, 4, 5])
    bounds = [math.log(m) - (m - 1) / m for m in curve_sizes(n)]  # results.json rounds them
    assert [p["kl_bound"] for p in curve] == pytest.approx(bounds, abs=1e-6)
    # m = 1 is the plain first samples, m = n the answers the run kept
    assert curve[0]["reward"] == record["combined_reward"]["plain"]
    assert curve[0]["reward_reading"] == record["reward_reading"]["plain"]
    assert curve[-1]["reward"] == record["combined_reward"]["aligned"]
    assert curve[-1]["reward_reading"] == record["reward_reading"]["aligned"]
    rewards = [p["reward"] for p in curve]
    assert rewards == sorted(rewards)  # best of more samples never reads worse
    assert rewards[-1] > rewards[0]  # the hashed reward tells the samples apart
    for point in curve:
        assert set(point["measuring"]) == {"benevolence"}
        assert 0 <= point["success"]["rate"] <= 1
        low, high = point["success"]["ci"]
        assert low <= point["success"]["rate"] <= high


def test_the_palette_solver_recovers_lambda_and_flags_infeasible_targets() -> None:
    rng = np.random.default_rng(0)
    parts = rng.normal(size=(40, 64, 2))  # prompts x samples x values
    truth = np.array([0.8, 0.3])
    targets = tilted_mean(parts, truth)
    found = solve_palette(parts, {"a": targets[0], "b": targets[1]}, ("a", "b"))
    assert found.feasible and not found.infeasible
    assert [found.weights["a"], found.weights["b"]] == pytest.approx(truth, abs=0.02)
    assert [found.reached["a"], found.reached["b"]] == pytest.approx(targets, abs=1e-3)
    # a value asked down gets a negative weight
    down = tilted_mean(parts, np.array([0.0, -0.5]))[1]
    found = solve_palette(parts, {"b": down}, ("a", "b"))
    assert found.feasible and found.weights["b"] == pytest.approx(-0.5, abs=0.02)
    # beyond the best sample: infeasible, and the report says how far it goes
    found = solve_palette(parts, {"a": 5.0, "b": 0.0}, ("a", "b"))
    assert not found.feasible and found.infeasible == ("a",)
    assert found.reachable["a"] == pytest.approx(parts[:, :, 0].max(axis=1).mean())
    # two values that never rise together: each is reachable alone, not both at once
    tied = np.stack([parts[:, :, 0], -parts[:, :, 0]], axis=2)
    each = tied[:, :, 0].max(axis=1).mean() * 0.6
    assert solve_palette(tied, {"a": each}, ("a", "b")).feasible
    assert not solve_palette(tied, {"a": each, "b": each}, ("a", "b")).feasible


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_guided_decoding_with_weight_zero_is_plain_decoding(
    tiny_backend: Any, temperature: float
) -> None:
    prompts = [Chat("Should I help my neighbour?"), Chat("What matters most?"), Chat("Hi")]
    params = GenerationParams(max_new_tokens=12, temperature=temperature, n=2, seed=3)
    reward = ValueReward(WordDetector(SCHWARTZ), {"benevolence": 1.0})
    plain = tiny_backend.generate(prompts, params)
    guided = guided_generate(tiny_backend, prompts, params, reward, 0.0, 4)
    assert guided == plain


def test_guided_decoding_raises_the_candidates_the_reward_prefers(tiny_backend: Any) -> None:
    tokenizer = tiny_backend.tokenizer
    logits = torch.randn(2, len(tokenizer))
    top = torch.topk(logits, 4, dim=-1).indices
    favourite = [int(top[0, 2]), int(top[1, 3])]  # third and fourth most likely

    class Likes:
        name, values = "likes", ("x",)

        def parts(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
            wanted = {tokenizer.decode([t]).strip() for t in favourite}
            return np.array([[1.0 if r in wanted else 0.0] for r in responses])

        def combine(self, parts: np.ndarray) -> np.ndarray:
            return parts[:, 0]

        def referenced(self, parts: np.ndarray) -> Any:
            return self

    def partial(row: int, token: int) -> str:
        return str(tokenizer.decode([token])).strip()

    same = tilt(logits, [0, 1], partial, ["q", "q"], Likes(), 0.0, 4)
    assert torch.equal(same, logits)
    tilted = tilt(logits, [0, 1], partial, ["q", "q"], Likes(), 50.0, 4)
    assert tilted.argmax(-1).tolist() == favourite
    outside = torch.ones_like(logits, dtype=torch.bool)
    outside.scatter_(1, top, False)
    assert torch.equal(tilted[outside], logits[outside])  # tokens outside the top-k untouched
    processor = RewardLogitsProcessor(tokenizer, Likes(), 0, ["q"], 50.0, 4)
    assert torch.equal(processor(torch.zeros((2, 0), dtype=torch.long), logits), tilted)


def test_log_likelihoods_pass_through_alignment_unchanged(tiny_backend: Any) -> None:
    aligned = Alignment({"benevolence": 1.0}, "best-of-n", "cue-words", Settings(n=2))
    wrapped = aligned.wrap(tiny_backend)
    requests = [LoglikelihoodRequest(Chat("Help?"), "Yes, I will help.")]
    assert wrapped.loglikelihood(requests) == tiny_backend.loglikelihood(requests)


def test_guided_needs_a_local_model() -> None:
    aligned = Alignment({"benevolence": 1.0}, "guided", "cue-words")
    with pytest.raises(UsageError, match="guided needs a local model"):
        aligned.wrap(ScriptedBackend(["x"]))  # type: ignore[arg-type]


def small_open(tmp_path: Path) -> Path:
    doc = {"kind": "open", "name": "mini-open", "taxonomy": "schwartz", "items": [
        {"id": "o1", "text": "My friend needs help moving. Should I go?", "values": ["benevolence"]},
        {"id": "o2", "text": "Should I try to win the contest?", "values": ["power"]},
    ]}  # fmt: skip
    path = tmp_path / "mini-open.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("strategy", ["best-of-n", "guided", "sentence"])
def test_results_json_records_the_alignment(
    tiny_backend: Any, tmp_path: Path, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("valuescope.audit.answers.MAX_NEW_TOKENS", 24)  # short answers: quick
    aligned = parse_align("benevolence=1", strategy, 3, "cue-words", "lexicon")
    spec = RunSpec(model="hf:tiny", samples=1, detector="lexicon", paraphrase=False,
                   interventions=(aligned,))  # fmt: skip
    out = tmp_path / "run"
    result = run_audit(str(small_open(tmp_path)), spec, backend=tiny_backend, out=out)
    write_results(result, out)
    doc = read_results(out)
    record = doc["alignment"]
    assert record["strategy"] == strategy and record["reward"] == "cue-words"
    assert record["weights"] == {"benevolence": 1.0} and record["answers"] == 2
    assert record["reward_reading"]["aligned"]["benevolence"] is not None
    assert record["fluency"]["perplexity_plain"] > 0 and record["fluency"]["perplexity_aligned"] > 0
    assert record["speed"]["tokens_per_second"] > 0
    card = (out / "card.html").read_text()
    if strategy == "best-of-n":  # the kept answer reads at least as well as the plain one
        reading = record["reward_reading"]
        assert reading["aligned"]["benevolence"] >= reading["plain"]["benevolence"]
        assert [p["n"] for p in record["best_of_n_curve"]] == [1, 2, 3]
        assert 'class="best-of-n-chart"' in card
    else:  # the curve is best-of-n's alone
        assert record["best_of_n_curve"] is None
        assert "best-of-n-chart" not in card and "Best-of-N curve" not in card
    assert doc["open"]["detector"] == "lexicon"
    assert 'class="alignment"' in card
    answers = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 2


def test_the_measuring_detector_is_never_the_reward(tmp_path: Path, no_model: None) -> None:
    done = run_cli("audit", "-i", "schwartz-open", "--align", "benevolence=1", "--reward",
                   "embed", "--out", str(tmp_path / "x"), columns=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "the detector that measures a run is never its reward" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli("audit", "-i", "schwartz-open", "--detector", "lexicon,embed", "--align",
                   "power=1", "--reward", "lexicon", "--out", str(tmp_path / "y"), columns=300)  # fmt: skip
    assert done.returncode == 2 and "never its reward" in done.stderr
    with pytest.raises(UsageError, match="never its reward"):  # the Python API too
        aligned = Alignment({"power": 1.0}, reward="embed")
        run_audit("schwartz-open", RunSpec(interventions=(aligned,)))
    done = run_cli("audit", "-i", "schwartz-open", "--strategy", "guided", "--out",
                   str(tmp_path / "z"), columns=300)  # fmt: skip
    assert done.returncode == 2 and "apply with --align" in done.stderr
    done = run_cli("audit", "-i", "schwartz-open", "--align", "power=1", "--strategy", "nope",
                   "--out", str(tmp_path / "w"), columns=300)  # fmt: skip
    assert done.returncode == 2 and "--strategy 'nope'" in done.stderr
