"""`valuescope steer --via activations|decoding|both` on the tiny random Llama."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from support.cli import Ran, run_cli
from support.contrast import small_contrast

from valuescope.detectors.base import Readings
from valuescope.detectors.registry import register_detector
from valuescope.instruments.taxonomy import Taxonomy

MINI = str(Path(__file__).parent / "fixtures" / "mini-dilemmas.yaml")


class CueDetector:
    """Reads benevolence as the share of words that are 'help' (a reward with a known truth)."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self._taxonomy = taxonomy

    @property
    def name(self) -> str:
        return "cues"

    @property
    def taxonomy(self) -> Taxonomy:
        return self._taxonomy

    def read(self, texts: Sequence[str], progress: Any = None) -> Readings:
        values = self._taxonomy.ids
        score = np.zeros((len(texts), len(values)))
        for i, text in enumerate(texts):
            words = text.lower().split() or [""]
            score[i, values.index("benevolence")] = words.count("help") / len(words)
        return Readings(values, np.abs(score), score, np.full(len(values), 0.5))


register_detector("cues", lambda arg, taxonomy, **options: CueDetector(taxonomy))


def _cli(*args: str) -> Ran:
    return run_cli(*args, columns=200)


@pytest.fixture
def short_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("valuescope.audit.answers.MAX_NEW_TOKENS", 12)  # quick on a CPU


def small_open(tmp_path: Path) -> Path:
    """Five prompts: the first two judged (--limit 2), the other three calibrate decoding."""
    texts = ["My friend needs help moving. Should I go?", "Should I try to win the contest?",
             "A neighbour is ill. What do I do?", "Should I lead the team?",
             "Someone dropped their wallet. What now?"]  # fmt: skip
    items = [{"id": f"o{k}", "text": t, "values": ["benevolence", "power"]}
             for k, t in enumerate(texts)]  # fmt: skip
    path = tmp_path / "mini-open.yaml"
    doc = {"kind": "open", "name": "mini-open", "taxonomy": "schwartz", "items": items}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _decoding_args(tmp_path: Path, model_dir: Path, out: str, *extra: str) -> list[str]:
    return ["steer", "-m", f"hf:{model_dir}", "--target", "benevolence=+0.2",
            "-i", str(small_open(tmp_path)), "--limit", "2", "--detector", "lexicon",
            "--reward", "cues", "--out", str(tmp_path / out), *extra]  # fmt: skip


def test_via_activations_is_the_default_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = f"hf:{tiny_model_dir}"
    vec = tmp_path / "v.safetensors"
    pairs = str(small_contrast(tmp_path))
    assert _cli("vectors", "-m", model, "--contrast", pairs, "--out", str(vec)).returncode == 0
    runs = []
    for name, via in (("r1", []), ("r2", ["--via", "activations"])):
        done = _cli("steer", "-m", model, "--vectors", str(vec), "--target", "power=+0.1",
                    "--contrast", pairs, "-i", MINI, "--method", "likelihood", "--seed", "3",
                    "--fluency-budget", "0.02", "--limit", "4", "--out", str(tmp_path / name),
                    *via)  # fmt: skip
        assert done.returncode == 0, done.stderr
        steering = json.loads((tmp_path / name / "steering.json").read_text())
        runs.append((done.stdout.replace(str(tmp_path / name), "OUT"), steering))
    assert runs[0] == runs[1]
    stdout, steering = runs[0]
    assert "Steering on mini-dilemmas (likelihood)" in stdout and "via" not in steering


def test_via_decoding_calibrates_n_within_the_budget(
    tiny_model_dir: Path, tmp_path: Path, short_answers: None
) -> None:
    budget = 0.05
    args = _decoding_args(tmp_path, tiny_model_dir, "bon", "--via", "decoding",
                          "--fluency-budget", str(budget), "--max-strength", "8")  # fmt: skip
    done = _cli(*args)
    out = tmp_path / "bon"
    if done.returncode == 2:  # even N = 2 past the budget: said in one line, nothing written
        assert "already costs more than the fluency budget" in done.stderr
        pytest.skip("N = 2 already past a 5% budget on this model; the refusal is what it says")
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "steering.json").read_text())
    cal = record["decoding"]
    strengths = [p["strength"] for p in cal["points"]]
    assert strengths == [2 * 2**k for k in range(len(strengths))]  # doubling from N = 2
    chosen = next(p for p in cal["points"] if p["strength"] == cal["strength"])
    assert chosen["fluency_cost"] <= budget and cal["fluency_cost"] == chosen["fluency_cost"]
    stronger = [p for p in cal["points"] if p["strength"] > cal["strength"]]
    # the next strength was over the budget, or the maximum was reached
    assert (stronger and stronger[0]["fluency_cost"] > budget) or cal["strength"] == 8
    assert cal["reached_maximum"] == (not stronger)
    aligned = record["alignment"]
    assert aligned["strategy"] == "best-of-n" and aligned["n"] == cal["strength"]
    assert aligned["reward"] == "cues" and record["measured_by"] == "lexicon"
    results = json.loads((out / "results.json").read_text())
    assert results["alignment"]["n"] == cal["strength"] and results["steering"] is None
    assert "alignment" not in json.loads((out / "unsteered" / "results.json").read_text())
    shift = record["measured_shift"]["benevolence"]
    assert 1 <= shift["n"] <= 2 and isinstance(shift["reached"], bool)  # of the 2 judged
    console = " ".join(done.stdout.split())
    assert f"decoding: best-of-n n = {cal['strength']:g}" in console
    assert "tokens/s" in console and "fluency cost" in console


def test_guided_weight_is_calibrated_the_same_way(
    tiny_model_dir: Path, tmp_path: Path, short_answers: None
) -> None:
    args = _decoding_args(tmp_path, tiny_model_dir, "g", "--via", "decoding", "--strategy",
                          "guided", "--fluency-budget", "0.5", "--max-strength", "2")  # fmt: skip
    done = _cli(*args)
    assert done.returncode in (0, 2), done.stderr
    if done.returncode == 0:
        cal = json.loads((tmp_path / "g" / "steering.json").read_text())["decoding"]
        assert cal["setting"] == "weight" and cal["fluency_cost"] <= 0.5
        assert [p["strength"] for p in cal["points"]][:1] == [0.5]


def test_reward_equal_to_the_measuring_detector_is_refused(tmp_path: Path, no_model: None) -> None:
    done = _cli("steer", "--via", "decoding", "--target", "benevolence=+0.2", "--reward",
                "lexicon", "--detector", "lexicon", "--out", str(tmp_path / "x"))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "the detector that measures a run is never its reward" in done.stderr
    done = _cli("steer", "--via", "decoding", "--target", "benevolence=+0.2", "-i", MINI,
                "--out", str(tmp_path / "y"))  # fmt: skip
    assert done.returncode == 2 and "re-measures on an open instrument" in done.stderr
    done = _cli("steer", "--via", "sideways", "--target", "benevolence=+0.2")
    assert done.returncode == 2 and "--via 'sideways'" in done.stderr


def test_via_both_records_both_interventions(
    tiny_model_dir: Path, tmp_path: Path, short_answers: None
) -> None:
    model = f"hf:{tiny_model_dir}"
    vec = tmp_path / "v.safetensors"
    pairs = str(small_contrast(tmp_path))
    assert _cli("vectors", "-m", model, "--contrast", pairs, "--out", str(vec)).returncode == 0
    args = _decoding_args(tmp_path, tiny_model_dir, "both", "--via", "both", "--vectors",
                          str(vec), "--contrast", pairs, "--fluency-budget", "0.5",
                          "--max-strength", "4")  # fmt: skip
    done = _cli(*args)
    if done.returncode == 2:
        assert "already costs more than the fluency budget" in done.stderr
        pytest.skip("the activations left decoding no budget on this model")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "both" / "steering.json").read_text())
    assert record["via"] == "both"
    act = record["activations"]
    assert act["target"] == {"benevolence": 0.2} and act["fluency_budget"] == pytest.approx(
        1.5**0.5 - 1
    )
    left = 1.5 / (1 + act["fluency_cost"]) - 1  # what the activations left the decoding
    assert record["decoding"]["budget"] == pytest.approx(left)
    results = json.loads((tmp_path / "both" / "results.json").read_text())
    assert results["steering"]["values"] == ["benevolence"]
    assert results["alignment"]["strategy"] == "best-of-n"
    assert "activations:" in done.stdout and "decoding:" in done.stdout
