"""Value vectors, reading and steering: the methods on synthetic data with a known answer, the
extraction and hooks on the tiny random Llama, the file format round trip, and the CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from support.cli import Ran, run_cli
from support.contrast import small_contrast

from valuescope.backends.base import Chat, LoglikelihoodRequest
from valuescope.errors import UsageError
from valuescope.instruments.document import BUILTIN_INSTRUMENTS, builtin_instrument_path
from valuescope.steering.operators import (
    Steering,
    Term,
    fluency_cost,
    parse_steer,
    perplexity,
    preference,
)
from valuescope.vectors.aggregators import directions
from valuescope.vectors.contrast import QUESTIONS, load_contrast
from valuescope.vectors.extract import VectorSet, extract_vectors, read_texts
from valuescope.vectors.measure import fit_calibration, held_out_accuracy

DATA = Path(__file__).parents[1] / "src" / "valuescope" / "data"


# -- the built-in contrastive data ---------------------------------------------------------


@pytest.mark.parametrize("taxonomy", ["schwartz", "moral-foundations"])
def test_builtin_contrast_sets_cover_every_value(taxonomy: str) -> None:
    found = load_contrast(taxonomy)
    assert found.values == list(found.taxonomy.ids)
    assert all(len(found.of(v)) >= 24 for v in found.values)
    train, held = found.split(found.values[0], 0.3, seed=0)
    assert len(held) == 9 and not {p.id for p in train} & {p.id for p in held}
    assert found.split(found.values[0], 0.3, seed=0) == (train, held)  # seeded, stable


def _ngrams(text: str, n: int = 6) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", text.lower())
    return {tuple(words[k : k + n]) for k in range(len(words) - n + 1)}


def test_contrast_data_shares_no_wording_with_any_audit_instrument() -> None:
    """Vectors are judged on the instruments: no 6-word run of a pair may appear in one."""
    judged: set[tuple[str, ...]] = set()
    for name in BUILTIN_INSTRUMENTS:
        judged |= _ngrams(builtin_instrument_path(name).read_text())
    for taxonomy in ("schwartz", "moral-foundations"):
        for pair in load_contrast(taxonomy).pairs:
            for text in (pair.context, pair.uphold, pair.oppose):
                assert not _ngrams(text) & judged, (pair.id, text)


def test_bad_contrast_files_say_where(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"taxonomy": "schwartz", "pairs": [
        {"id": "a", "value": "kindness", "context": "x", "uphold": "y", "oppose": "z"}]}))  # fmt: skip
    with pytest.raises(UsageError, match=r"pair 'a': field 'value': unknown value id 'kindness'"):
        load_contrast(path)
    path.write_text(yaml.safe_dump({"taxonomy": "schwartz", "pairs": [
        {"id": "a", "value": "power", "context": "x", "uphold": " ", "oppose": "z"}]}))  # fmt: skip
    with pytest.raises(UsageError, match=r"pair 'a': field 'uphold'"):
        load_contrast(path)


# -- the three methods on synthetic activations with a known direction ---------------------


def test_each_method_recovers_a_planted_direction() -> None:
    rng = np.random.default_rng(0)
    d, n = 64, 40
    truth = np.zeros(d)
    truth[5] = 1.0
    topic = rng.normal(size=(n, d))  # shared by both answers of a pair
    pos = topic + 1.5 * truth + rng.normal(size=(n, d)) * 0.5
    neg = topic - 1.5 * truth + rng.normal(size=(n, d)) * 0.5
    found = directions(pos[:30], neg[:30])
    for name, unit in found.items():
        assert abs(np.linalg.norm(unit) - 1) < 1e-9
        assert unit @ truth > 0.8, name  # points at the planted value, with the right sign
        accuracy, _ = held_out_accuracy(unit, pos[:30], neg[:30], pos[30:], neg[30:])
        assert accuracy >= 0.7, (name, accuracy)
    # A direction with no signal scores near chance on the same data.
    noise = np.zeros(d)
    noise[40] = 1.0
    assert held_out_accuracy(noise, pos[:30], neg[:30], pos[30:], neg[30:])[0] < 0.75


def test_calibration_recovers_a_known_logistic_slope() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(2.0 * scores - 0.5)))).astype(float)
    a, b = fit_calibration(scores, y)
    assert a == pytest.approx(2.0, abs=0.25) and b == pytest.approx(-0.5, abs=0.15)


# -- extraction on the tiny model ----------------------------------------------------------


def test_answer_activations_average_the_answer_tokens(tiny_backend: Any) -> None:
    request = LoglikelihoodRequest(Chat("What do you do?"), "I share my lunch.")
    acts = tiny_backend.answer_activations([request, request], [1, 2])
    prompt = tiny_backend.render(request.context)
    ctx = tiny_backend._encode(prompt)
    whole = tiny_backend._encode(prompt + request.continuation)
    out = tiny_backend.model(input_ids=torch.tensor([whole]), output_hidden_states=True)
    for layer in (1, 2):
        expected = out.hidden_states[layer + 1][0, len(ctx) :].mean(0)
        assert torch.allclose(acts[layer][0], expected, atol=1e-4)
        assert torch.allclose(acts[layer][1], expected, atol=1e-4)  # padding changes nothing


def test_mean_diff_vectors_are_the_gap_between_the_stances(
    tiny_backend: Any, tmp_path: Path
) -> None:
    contrast = load_contrast(small_contrast(tmp_path))
    found = extract_vectors(tiny_backend, contrast, "mean-diff", held_out=0.25, seed=3)
    assert set(found.values) == {"benevolence", "power"}
    train, _ = contrast.split("power", 0.25, seed=3)
    requests = [LoglikelihoodRequest(p.chat, a) for p in train for a in p.answers()]
    acts = tiny_backend.answer_activations(requests, [2])[2].double().numpy()
    expected = (acts[0::2] - acts[1::2]).mean(0)
    assert np.allclose(found["power"].layers[2].vector, expected, atol=1e-5)
    best = found["power"].best_layer
    accuracies = [lv.accuracy["logistic"] for lv in found["power"].layers.values()]
    assert found["power"].best.accuracy["logistic"] == max(accuracies)
    assert 0 <= best < len(tiny_backend.residual)


def test_one_values_pairs_alone_give_that_values_vectors(tiny_backend: Any, tmp_path: Path) -> None:
    contrast = load_contrast(small_contrast(tmp_path))
    whole = extract_vectors(tiny_backend, contrast, seed=0)
    alone = extract_vectors(tiny_backend, contrast.only("benevolence"), seed=0)
    assert list(alone.values) == ["benevolence"]
    assert alone.contrast["sha256"] != whole.contrast["sha256"]  # never passes for the whole set
    twice = contrast.only(["benevolence", "power", "benevolence"])
    assert twice.sha256 == contrast.only(["power", "benevolence"]).sha256
    assert twice.pairs == contrast.pairs  # in the file's order, each pair once
    mine, theirs = alone["benevolence"], whole["benevolence"]
    assert mine.best_layer == theirs.best_layer and mine.layers.keys() == theirs.layers.keys()
    for layer, found in mine.layers.items():
        assert np.allclose(found.vector, theirs.layers[layer].vector, atol=1e-5)
        assert found.accuracy == theirs.layers[layer].accuracy
    with pytest.raises(UsageError, match="no contrastive pairs for kindness; it has pairs for"):
        contrast.only(["benevolence", "kindness"])
    with pytest.raises(UsageError, match="no value; it has pairs for"):
        contrast.only([])


def test_the_vector_file_round_trips(tiny_backend: Any, tmp_path: Path) -> None:
    from safetensors import safe_open

    contrast = load_contrast(small_contrast(tmp_path))
    found = extract_vectors(tiny_backend, contrast, "pca", seed=1)
    path = found.save(tmp_path / "v.safetensors")
    with safe_open(str(path), framework="numpy") as handle:
        names = set(handle.keys())
        meta = handle.metadata()
    layers = len(tiny_backend.residual)
    assert names == {f"{v}/{k}" for v in ("benevolence", "power") for k in range(layers)}
    assert meta["method"] == "pca" and int(meta["hidden_size"]) == tiny_backend.hidden_size
    assert set(json.loads(meta["probe_accuracy"])["power"]) == {str(k) for k in range(layers)}
    back = VectorSet.load(path)
    for value in ("benevolence", "power"):
        assert back[value].best_layer == found[value].best_layer
        for k in range(layers):
            assert np.allclose(back[value].layers[k].vector, found[value].layers[k].vector)
            assert back[value].layers[k].calibration == pytest.approx(
                found[value].layers[k].calibration
            )


def test_reading_separates_the_stances_it_was_fitted_on(tiny_backend: Any, tmp_path: Path) -> None:
    contrast = load_contrast(small_contrast(tmp_path))
    found = extract_vectors(tiny_backend, contrast, seed=0)
    pairs = contrast.of("benevolence")
    probs = read_texts(tiny_backend, found, [p.uphold for p in pairs] + [p.oppose for p in pairs],
                       context=Chat(QUESTIONS[0], answer_prefix=pairs[0].context))  # fmt: skip
    ups, downs = probs["benevolence"][:8], probs["benevolence"][8:]
    assert all(0 <= p <= 1 for p in ups + downs)
    assert np.mean(ups) > np.mean(downs)


# -- steering ------------------------------------------------------------------------------


@pytest.fixture
def vector_file(tiny_backend: Any, tmp_path: Path) -> Path:
    contrast = load_contrast(small_contrast(tmp_path))
    return extract_vectors(tiny_backend, contrast, seed=0).save(tmp_path / "v.safetensors")


def test_additive_steering_adds_coef_times_the_vector_and_then_leaves(
    tiny_backend: Any, vector_file: Path
) -> None:
    steering = parse_steer(f"{vector_file}:power@1=3,benevolence@1=-2")
    request = [LoglikelihoodRequest(Chat("Hello?"), "Fine, thanks.")]
    before = tiny_backend.answer_activations(request, [1])[1]
    with steering.apply(tiny_backend):
        during = tiny_backend.answer_activations(request, [1])[1]
    after = tiny_backend.answer_activations(request, [1])[1]
    vs = steering.vectors
    added = 3 * vs["power"].layers[1].vector - 2 * vs["benevolence"].layers[1].vector
    assert np.allclose((during - before)[0].numpy(), added, atol=1e-5)
    assert torch.equal(before, after)  # hooks are gone after the block


def test_gated_steering_moves_only_positions_below_the_target(vector_file: Path) -> None:
    steering = parse_steer(f"{vector_file}:power@2=1.5", "gated")
    lv = steering.vectors["power"].layers[2]
    unit = torch.tensor(lv.unit, dtype=torch.float32)
    target = lv.midpoint + 1.5 * lv.gap
    rng = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 6, unit.numel(), generator=rng)
    hidden[0, :3] += (target + 5 * lv.gap - hidden[0, :3] @ unit)[:, None] * unit  # above target
    hidden[0, 3:] += (target - 2 * lv.gap - hidden[0, 3:] @ unit)[:, None] * unit  # below it
    edited = steering.edits()[2](hidden)
    reading = edited[0] @ unit
    assert torch.allclose(edited[0, :3], hidden[0, :3])  # already there: untouched
    assert torch.allclose(reading[3:], torch.full((3,), target), atol=1e-3)  # lifted to target
    moved = edited[0, 3:] - hidden[0, 3:]
    residue = moved - (moved @ unit)[:, None] * unit
    assert residue.abs().max() < 1e-4  # only along the value's direction
    down = parse_steer(f"{vector_file}:power@2=-1.5", "gated").edits()[2](hidden)
    assert (down[0] @ unit <= lv.midpoint - 1.5 * lv.gap + 1e-3).all()


def test_fluency_cost_and_preference_respond_to_steering(
    tiny_backend: Any, vector_file: Path
) -> None:
    vectors = VectorSet.load(vector_file)
    none = Steering(vectors, [Term("power", 1, 0.0)])
    assert fluency_cost(tiny_backend, none) == pytest.approx(0.0, abs=1e-9)
    strong = Steering(vectors, [Term("power", 1, 400.0)])
    plain_ppl = perplexity(tiny_backend)
    with strong.apply(tiny_backend):
        steered_ppl = perplexity(tiny_backend)
    cost = fluency_cost(tiny_backend, strong)
    assert abs(cost) > 1e-3  # a random model's perplexity moves, up or down
    assert cost == pytest.approx(steered_ppl / plain_ppl - 1)
    pairs = load_contrast(small_contrast(Path(os.environ.get("TMPDIR", "/tmp")))).of("power")
    plain = preference(tiny_backend, pairs)
    assert 0 < plain < 1
    assert preference(tiny_backend, pairs, none) == pytest.approx(plain)
    assert math.isfinite(plain_ppl) and plain_ppl > 1


def test_steering_errors_are_clear(vector_file: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no vector for value 'kindness'"):
        parse_steer(f"{vector_file}:kindness=2")
    with pytest.raises(UsageError, match="expected FILE:value=coef"):
        parse_steer("power=2")
    with pytest.raises(UsageError, match="'power=lots': the coefficient is not a number"):
        parse_steer(f"{vector_file}:power=lots")
    with pytest.raises(UsageError, match="no power vector at layer 99"):
        parse_steer(f"{vector_file}:power@99=1")
    with pytest.raises(UsageError, match="no vector file"):
        parse_steer(f"{tmp_path / 'missing.safetensors'}:power=1")
    for args, flag in (
        (["audit", "--steer", f"{vector_file}:power=1", "--steer-mode", "sideways"],
         "--steer-mode"),
        (["steer", "--target", "power=+0.2", "--vectors", str(vector_file), "--mode", "sideways"],
         "--mode"),
    ):  # fmt: skip
        done = run_cli(*args, "--out", str(tmp_path / "never"))
        assert done.returncode == 2 and f"{flag} 'sideways': choose add" in done.stderr, done.stderr
        assert not (tmp_path / "never").exists()


# -- command line --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def made_by_cli(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Ran, Path]:
    """`valuescope vectors` run once on the tiny model: its output and the file it wrote."""
    where = tmp_path_factory.mktemp("cli-vectors")
    vec = where / "v.safetensors"
    done = run_cli("vectors", "-m", f"hf:{tiny_model_dir}", "--contrast",
                   str(small_contrast(where)), "--out", str(vec))  # fmt: skip
    return done, vec


def test_vectors_read_and_steered_audit_from_the_command_line(
    tiny_model_dir: Path, made_by_cli: tuple[Ran, Path], tmp_path: Path
) -> None:
    model = f"hf:{tiny_model_dir}"
    done, vec = made_by_cli
    assert done.returncode == 0, done.stderr
    assert "benevolence" in done.stdout and vec.is_file()
    done = run_cli("read", "--vectors", str(vec), "I helped them gladly.", "--out",
                   str(tmp_path / "read.csv"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = (tmp_path / "read.csv").read_text().splitlines()
    assert rows[0] == "text,power,benevolence" and len(rows) == 2
    mini = str(Path(__file__).parent / "fixtures" / "mini-dilemmas.yaml")
    done = run_cli("audit", "-m", model, "-i", mini, "--method", "likelihood", "--no-paraphrase",
                   "--steer", f"{vec}:power@1=4", "--out", str(tmp_path / "steered"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "steered" / "results.json").read_text())
    steering = doc["steering"]
    assert steering["terms"] == [{"value": "power", "layer": 1, "coef": 4.0}]
    assert steering["mode"] == "add" and isinstance(steering["fluency_cost"], float)
    plain = run_cli("audit", "-m", model, "-i", mini, "--method", "likelihood", "--no-paraphrase",
                    "--out", str(tmp_path / "plain"))  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    other = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert other["steering"] is None
    assert other["items"] != doc["items"]  # the vector changed the model's answers


def test_vectors_of_chosen_values_from_the_command_line(
    tiny_model_dir: Path, made_by_cli: tuple[Ran, Path], tmp_path: Path
) -> None:
    _, whole_file = made_by_cli
    contrast = str(small_contrast(tmp_path))
    vec = tmp_path / "benevolence.safetensors"
    done = run_cli("vectors", "-m", f"hf:{tiny_model_dir}", "--contrast", contrast,
                   "--values", "benevolence", "--out", str(vec))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "benevolence" in done.stdout and "power" not in done.stdout
    alone, whole = VectorSet.load(vec), VectorSet.load(whole_file)
    assert list(alone.values) == ["benevolence"]
    for layer, found in alone["benevolence"].layers.items():
        assert np.allclose(found.vector, whole["benevolence"].layers[layer].vector, atol=1e-5)
    wrong = run_cli("vectors", "-m", f"hf:{tiny_model_dir}", "--contrast", contrast,
                    "--values", "benevolence,kindness", "--out", str(tmp_path / "no.safetensors"))  # fmt: skip
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "--values" in wrong.stderr and "no contrastive pairs for kindness" in wrong.stderr
    assert not (tmp_path / "no.safetensors").exists()


def test_vectors_refuse_a_model_of_another_shape(
    tiny_model_dir: Path, made_by_cli: tuple[Ran, Path], tmp_path: Path
) -> None:
    done, vec = made_by_cli
    assert done.returncode == 0, done.stderr
    meta_path = tmp_path / "other.safetensors"
    loaded = VectorSet.load(vec)
    loaded.hidden_size += 1  # a whole file for a wider model: every vector one longer too
    for vv in loaded.values.values():
        vv.layers = {
            k: replace(lv, vector=np.append(lv.vector, 0.0)) for k, lv in vv.layers.items()
        }
    loaded.save(meta_path)
    done = run_cli("read", "--vectors", str(meta_path), "-m", f"hf:{tiny_model_dir}", "hello")
    assert done.returncode == 2 and "were made for" in done.stderr
    said = " ".join(done.stderr.split())
    assert (
        f"or make vectors for this model with `valuescope vectors --model hf:{tiny_model_dir}`"
        in said
    )


# -- reading a run's generated answers -------------------------------------------------------


def test_generate_runs_keep_their_answers_and_reload_them(
    tiny_backend: Any, tmp_path: Path
) -> None:
    from valuescope.audit.kinds import RunSpec
    from valuescope.audit.results import load_answers, write_results
    from valuescope.audit.run import run_audit

    mini = str(Path(__file__).parent / "fixtures" / "mini-dilemmas.yaml")
    config = RunSpec(model="hf:tiny", method="generate", paraphrase=False)
    result = run_audit(mini, config, backend=tiny_backend, out=tmp_path / "run")
    write_results(result, tmp_path / "run")
    records = load_answers(tmp_path / "run")
    samples = 8  # GenerateMethod's default
    assert len(records) == sum(len(r.orders) for r in result.results) * samples
    # The saved answers are the ones the probabilities came from: recount them.
    for r in result.results:
        for order in r.orders:
            mine = [
                x for x in records if x["item_id"] == r.item_id and x["order"] == list(order.order)
            ]
            assert len(mine) == samples
            counts = [sum(x["option"] == i for x in mine) for i in range(len(order.p))]
            mapped = sum(counts)
            expected = [(c + 0.5) / (mapped + 0.5 * len(counts)) for c in counts]
            assert list(order.p) == pytest.approx(expected)
    # Resuming from the checkpoint keeps them too.
    again = run_audit(mini, config, backend=tiny_backend, out=tmp_path / "run")
    write_results(again, tmp_path / "again")
    assert load_answers(tmp_path / "again") == records


def test_answers_are_read_in_their_own_context_and_set_against_the_choice(
    tiny_backend: Any, tmp_path: Path
) -> None:
    from valuescope.vectors.extract import read_answers

    contrast = load_contrast(small_contrast(tmp_path))
    found = extract_vectors(tiny_backend, contrast, seed=0)
    pairs = contrast.of("benevolence")
    records = []
    for pair in pairs:  # option 0 upholds benevolence; the answer is the stance it chose
        for option, text in ((0, pair.uphold), (1, pair.oppose)):
            records.append({"prompt": QUESTIONS[0], "system": None, "answer": text,
                            "option": option, "option_values": [["benevolence"], ["power"]]})  # fmt: skip
    reading = read_answers(tiny_backend, found, records)
    agree = reading.agreement["benevolence"]
    assert agree["n_upholding"] == agree["n_opposing"] == len(pairs)
    assert agree["difference"] == pytest.approx(
        np.mean(reading.probs["benevolence"][0::2]) - np.mean(reading.probs["benevolence"][1::2])
    )
    assert agree["difference"] > 0
    # Each answer is read after its own question, not a generic one.
    other = [{**r, "prompt": "Name a colour."} for r in records]
    assert read_answers(tiny_backend, found, other).probs != reading.probs


def test_read_run_from_the_command_line(
    tiny_model_dir: Path, made_by_cli: tuple[Ran, Path], tmp_path: Path
) -> None:
    model = f"hf:{tiny_model_dir}"
    done, vec = made_by_cli
    assert done.returncode == 0, done.stderr
    mini = str(Path(__file__).parent / "fixtures" / "mini-dilemmas.yaml")
    run = tmp_path / "gen"
    done = run_cli("audit", "-m", model, "-i", mini, "--method", "generate", "--no-paraphrase",
                   "--limit", "2", "--out", str(run))  # fmt: skip
    assert done.returncode == 0, done.stderr
    n_answers = len((run / "answers.jsonl").read_text().strip("\n").split("\n"))
    done = run_cli("read", "--vectors", str(vec), "--run", str(run), "--out",
                   str(tmp_path / "answers.csv"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "chose upholding" in done.stdout
    with (tmp_path / "answers.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:6] == ["item_id", "wording", "order", "sample", "option", "answer"]
    assert len(rows) == 1 + n_answers
    assert all(0 <= float(p) <= 1 for row in rows[1:] for p in row[6:])
    plain = tmp_path / "plain"
    assert run_cli("audit", "-m", model, "-i", mini, "--method", "likelihood", "--no-paraphrase",
                   "--limit", "2", "--out", str(plain)).returncode == 0  # fmt: skip
    done = run_cli("read", "--vectors", str(vec), "--run", str(plain))
    assert done.returncode == 2
    assert "answers.jsonl" in done.stderr and "--method generate" in done.stderr
    assert "Traceback" not in done.stderr
