"""Calibration, composition, the steer loop, and vectors in llama.cpp / repeng /
steering-vectors formats, on the tiny random Llama (real model, real files)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.cli import Ran, run_cli
from support.contrast import small_contrast

import valuescope.audit.scoring
from valuescope.audit.profile import value_evidence
from valuescope.audit.scoring import ItemResult, OrderResult
from valuescope.audit.shifts import choice, paired_shift, reached
from valuescope.errors import UsageError
from valuescope.instruments.dilemma import DilemmaItem, Option
from valuescope.instruments.taxonomy import Taxonomy, Value
from valuescope.steering.calibration import (
    MAX_STEPS,
    REFINE,
    START,
    Calibration,
    calibrate,
    parse_target,
)
from valuescope.steering.composition import compose, misses, pair_conflicts
from valuescope.steering.export import export_gguf
from valuescope.steering.loop import steer_to_target
from valuescope.steering.operators import Steering, Term, fluency_cost, parse_steer
from valuescope.steering.tradeoff import Miss, law_cost, measured_law_budget, reach_note
from valuescope.vectors.contrast import load_contrast
from valuescope.vectors.controlvector import import_directions, load_directions, read_gguf
from valuescope.vectors.extract import VectorSet, extract_vectors

MINI = str(Path(__file__).parent / "fixtures" / "mini-dilemmas.yaml")


@pytest.fixture
def made(tiny_backend: Any, tmp_path: Path) -> tuple[VectorSet, Path, Any]:
    contrast = load_contrast(small_contrast(tmp_path))
    vectors = extract_vectors(tiny_backend, contrast, seed=0)
    return vectors, vectors.save(tmp_path / "v.safetensors"), contrast


# -- portability ---------------------------------------------------------------------------


def test_gguf_export_holds_coef_times_vector_per_layer(made: Any, tmp_path: Path) -> None:
    vectors, path, _ = made
    steering = parse_steer(f"{path}:power@2=1.5,benevolence@2=-0.5,benevolence@3=2")
    out = export_gguf(steering, tmp_path / "cv.gguf")
    found = read_gguf(out)
    assert sorted(found) == [2, 3]
    expected = (
        1.5 * vectors["power"].layers[2].vector - 0.5 * vectors["benevolence"].layers[2].vector
    )
    assert np.allclose(found[2], expected, atol=1e-6)
    assert np.allclose(found[3], 2 * vectors["benevolence"].layers[3].vector, atol=1e-6)
    import gguf

    reader = gguf.GGUFReader(str(out))
    hint = reader.get_field("controlvector.model_hint")
    assert bytes(hint.parts[-1]).decode() == "llama"
    with pytest.raises(UsageError, match="layer 0"):
        export_gguf(parse_steer(f"{path}:power@0=1"), tmp_path / "zero.gguf")


def _repeng_style_gguf(path: Path, directions: dict[int, np.ndarray]) -> Path:
    """A control vector written the way repeng's ControlVector.export_gguf writes one
    (architecture controlvector, model_hint, layer_count, direction.<layer>, unit vectors)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", "llama")
    writer.add_uint32("controlvector.layer_count", len(directions))
    for layer, direction in directions.items():
        writer.add_tensor(f"direction.{layer}", direction.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_vectors_round_trip_through_other_formats(
    made: Any, tiny_backend: Any, tmp_path: Path
) -> None:
    vectors, path, contrast = made
    original = vectors["power"].layers[2]
    # ours -> llama.cpp GGUF -> ours: the direction survives, re-measured on our pairs
    back = import_directions(
        load_directions(export_gguf(parse_steer(f"{path}:power@2=1"), tmp_path / "cv.gguf")),
        "power", tiny_backend, contrast, "cv.gguf",
    )  # fmt: skip
    assert back.method == "imported"
    assert back["power"].layers[2].unit @ original.unit == pytest.approx(1.0, abs=1e-5)
    assert back["power"].layers[2].gap > 0  # oriented toward upholding answers
    # repeng's GGUF (unit vectors) and a steering-vectors safetensors, both at two layers
    unit = {1: vectors["power"].layers[1].unit, 3: vectors["power"].layers[3].unit}
    repeng = import_directions(load_directions(_repeng_style_gguf(tmp_path / "r.gguf", unit)),
                               "power", tiny_backend, contrast, "r.gguf")  # fmt: skip
    from safetensors.numpy import save_file

    save_file(
        {str(k): v.astype(np.float32) for k, v in unit.items()}, str(tmp_path / "sv.safetensors")
    )
    sv = import_directions(load_directions(tmp_path / "sv.safetensors"), "power", tiny_backend,
                           contrast, "sv.safetensors")  # fmt: skip
    for imported in (repeng, sv):
        assert sorted(imported["power"].layers) == [1, 3]
        for k in (1, 3):
            assert imported["power"].layers[k].unit @ unit[k] == pytest.approx(1.0, abs=1e-5)
            acc = imported["power"].layers[k].probe_accuracy
            assert 0 <= acc <= 1
    saved = repeng.save(tmp_path / "imported.safetensors")
    assert VectorSet.load(saved)["power"].best_layer == repeng["power"].best_layer


def test_foreign_files_are_clear_errors(made: Any, tiny_backend: Any, tmp_path: Path) -> None:
    contrast = made[2]
    with pytest.raises(UsageError, match="not a control vector"):
        read_gguf(_model_gguf(tmp_path))
    from safetensors.numpy import save_file

    save_file({"layer.1": np.zeros(3, dtype=np.float32)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(UsageError, match="expected layer numbers"):
        load_directions(tmp_path / "bad.safetensors")
    save_file({"1": np.zeros(3, dtype=np.float32)}, str(tmp_path / "small.safetensors"))
    with pytest.raises(UsageError, match="hidden size is"):
        import_directions(load_directions(tmp_path / "small.safetensors"), "power", tiny_backend,
                          contrast, "small")  # fmt: skip


def _model_gguf(tmp_path: Path) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(tmp_path / "model.gguf"), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((2, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tmp_path / "model.gguf"


# -- calibration and composition -----------------------------------------------------------


def test_targets_parse_and_reject_nonsense() -> None:
    assert parse_target("benevolence=+0.2, power=-0.1") == {"benevolence": 0.2, "power": -0.1}
    for bad in ("benevolence", "power=lots", "power=0", "power=1.5"):
        with pytest.raises(UsageError, match="--target"):
            parse_target(bad)


def test_calibration_keeps_the_best_setting_within_the_budget(made: Any, tiny_backend: Any) -> None:
    vectors, _, contrast = made
    cal = calibrate(tiny_backend, vectors, contrast, "power", direction=-1.0, budget=0.02,
                    n_layers=2)  # fmt: skip
    layers = vectors["power"].layers
    ranked = sorted(layers, key=lambda k: (-layers[k].probe_accuracy, -layers[k].separation, k))
    assert ranked[0] == vectors["power"].best_layer  # calibration starts at the chosen layer
    assert sorted({p.layer for p in cal.points}) == sorted(ranked[:2])
    for layer in {p.layer for p in cal.points}:
        at_layer = [p for p in cal.points if p.layer == layer]
        coefs = [p.coef for p in at_layer]
        doubled = [c for c in coefs if math.log2(-c / START).is_integer()]
        assert doubled == [-START * 2**k for k in range(len(doubled))]  # doubling, negative side
        first_over = next((k for k, p in enumerate(at_layer) if p.fluency_cost > 0.02), None)
        if first_over is None:
            assert coefs == doubled  # never over: no refinement
            continue
        assert coefs[: first_over + 1] == doubled  # doubling stops at the first over budget
        refined = at_layer[first_over + 1 :]
        assert len(refined) == (REFINE if first_over > 0 else 0)
        low, high = -coefs[first_over - 1] if first_over else 0, -coefs[first_over]
        for p in refined:  # each refinement is the geometric middle of the bracket so far
            assert -p.coef == pytest.approx((low * high) ** 0.5)
            low, high = (low, -p.coef) if p.fluency_cost > 0.02 else (-p.coef, high)
    feasible = [p for p in cal.points if p.fluency_cost <= 0.02]
    assert cal.shift == min(p.shift for p in feasible) and cal.fluency_cost <= 0.02
    at = [p for p in feasible if p.layer == cal.layer]
    c, s = np.array([p.coef for p in at]), np.array([p.shift for p in at])
    assert cal.sensitivity == pytest.approx(float(c @ s / (c @ c)))


def test_calibration_narrows_the_coefficient_between_within_and_over_budget(
    made: Any, tiny_backend: Any
) -> None:
    vectors, _, contrast = made
    layer = vectors["power"].best_layer
    costs = [fluency_cost(tiny_backend, Steering(vectors, [Term("power", layer, START * 2**k)]))
             for k in range(MAX_STEPS)]  # fmt: skip
    # A budget between two doubling steps, with every earlier step under it.
    k = next(k for k in range(1, MAX_STEPS) if costs[k] > max(costs[:k]) + 1e-4)
    budget = (max(costs[:k]) + costs[k]) / 2
    cal = calibrate(tiny_backend, vectors, contrast, "power", budget=budget, layers=[layer])
    coefs = [p.coef for p in cal.points]
    assert coefs[: k + 1] == [START * 2**j for j in range(k + 1)]
    refined = cal.points[k + 1 :]
    assert len(refined) == REFINE
    low, high = coefs[k - 1], coefs[k]
    for p in refined:  # each is the geometric middle of what is still in doubt
        assert p.coef == pytest.approx((low * high) ** 0.5) and low < p.coef < high
        low, high = (low, p.coef) if p.fluency_cost > budget else (p.coef, high)
    assert cal.fluency_cost <= budget
    assert cal.shift == max(p.shift for p in cal.points if p.fluency_cost <= budget)


def test_composition_solves_within_bounds(made: Any, tiny_backend: Any) -> None:
    vectors, _, contrast = made
    target = {"power": 0.05, "benevolence": -0.05}
    cals = {
        v: calibrate(tiny_backend, vectors, contrast, v, t, budget=0.05) for v, t in target.items()
    }
    comp = compose(tiny_backend, vectors, contrast, target, cals, budget=0.05)
    values = list(target)
    matrix = np.array([[comp.sensitivity[v][w] for w in values] for v in values])
    coefs = np.array([comp.coefs[v] for v in values])
    for v in values:
        assert abs(comp.coefs[v]) <= abs(cals[v].coef) + 1e-9
        assert comp.layers[v] == cals[v].layer
        assert comp.sensitivity[v][v] == pytest.approx(cals[v].shift / cals[v].coef)
    assert np.allclose(matrix @ coefs, [comp.expected[v] for v in values])
    assert comp.fluency_cost <= 0.05 or comp.scaled < 1 / 32
    steering = Steering(vectors, [Term(v, comp.layers[v], comp.coefs[v]) for v in values])
    assert steering.as_dict()["values"] == sorted(values)
    for v in values:  # a target missed by more than half is reported with what it would take
        missed = abs(comp.expected[v] - target[v]) > 0.5 * abs(target[v])
        assert (v in comp.out_of_reach) == missed
        assert any(c.startswith(f"{v}: the target") for c in comp.conflicts) == missed


def _cal(shift: float, cost: float) -> Calibration:
    return Calibration("power", 3, 2.0, shift, cost, shift / 2.0)


def test_conflicts_name_vectors_that_work_against_the_target() -> None:
    values = ["power", "benevolence", "hedonism"]
    # power and benevolence raise each other (cross 0.5 of own 1.0); hedonism is apart (0.1)
    matrix = np.array([[1.0, 0.5, 0.1], [0.5, 1.0, 0.0], [0.1, 0.0, 1.0]])
    same = pair_conflicts(values, {"power": 0.2, "benevolence": 0.1, "hedonism": -0.1}, matrix)
    assert same == []  # they raise each other and the target wants both up
    apart = pair_conflicts(values, {"power": 0.2, "benevolence": -0.1, "hedonism": 0.1}, matrix)
    assert apart == [
        "power and benevolence: their vectors raise each other, but the target moves them in "
        "opposite directions"
    ]
    matrix[0, 1] = matrix[1, 0] = -0.4
    lower = pair_conflicts(values, {"power": 0.2, "benevolence": 0.1, "hedonism": 0.1}, matrix)
    assert lower == [
        "power and benevolence: their vectors lower each other, but the target moves them the "
        "same way"
    ]


def test_misses_carry_what_each_values_calibration_says() -> None:
    cals = {"power": _cal(0.05, 0.08), "benevolence": _cal(-0.02, 0.09), "hedonism": _cal(0.1, 0)}
    target = {"power": 0.25, "benevolence": 0.2, "hedonism": 0.2}
    found = misses(target, {"power": 0.05, "benevolence": 0.15, "hedonism": 0.09}, cals)
    # benevolence is expected within half of its target (0.15 of 0.2); the others miss it
    assert found == {
        "power": Miss(0.25, 0.05, 0.05, 0.08, pytest.approx(0.08 * 25)),  # cost x (0.25/0.05)^2
        "hedonism": Miss(0.2, 0.09, 0.1, 0, None),  # no cost measured: nothing to scale from
    }


# -- the whole loop from the command line --------------------------------------------------


def _cli(*args: str) -> Ran:
    return run_cli(*args, columns=200)  # wide enough that no figure wraps


def test_paired_shift_counts_changed_choices_apart_from_the_mean() -> None:
    before = [0.40, 0.45, 0.60, 0.20, 0.55, 0.50, 0.52]
    after = [0.52, 0.44, 0.48, 0.30, 0.70, 0.51, 0.50]
    shift = paired_shift(before, after, seed=0)
    assert shift["shift"] == pytest.approx(np.mean(np.subtract(after, before)))
    assert shift["n"] == 7 and shift["ci"][0] < shift["shift"] < shift["ci"][1]
    # 0.40->0.52 turns toward, 0.60->0.48 away; into or out of a tie (0.50) is no flip
    assert (shift["flipped_toward"], shift["flipped_away"]) == (1, 1)
    with pytest.raises(ValueError, match="differ in length"):
        paired_shift(before, after[:-1], seed=0)


def test_choices_read_the_top_option_so_three_options_count_right() -> None:
    def three(item_id: str) -> DilemmaItem:
        return DilemmaItem(item_id, "S.", (Option("x", ("power",)), Option("y", ("care",)),
                                           Option("z", ("fairness",))))  # fmt: skip

    def result(item_id: str, *p: float) -> ItemResult:
        return ItemResult(item_id, "original", (OrderResult((0, 1, 2), p),))

    taxonomy = Taxonomy(
        "t", "T", tuple(Value(v, v, f"{v}.") for v in ("power", "care", "fairness"))
    )

    def choices(results: list[ItemResult]) -> list[float]:
        return value_evidence(taxonomy, items, results, choice)["power"]

    items = [three("a"), three("b"), three("c")]
    before = [result("a", 0.30, 0.40, 0.30), result("b", 0.45, 0.30, 0.25),
              result("c", 0.40, 0.40, 0.20)]  # fmt: skip
    after = [result("a", 0.45, 0.30, 0.25), result("b", 0.30, 0.40, 0.30),
             result("c", 0.45, 0.35, 0.20)]  # fmt: skip
    # P(power) stays below 0.5 throughout, yet "a" turns to it and "b" away; "c" was a tie
    assert choices(before) == [-1, 1, 0]
    assert choices(after) == [1, -1, 1]
    chosen = (choices(before), choices(after))
    shift = paired_shift([0.30, 0.45, 0.40], [0.45, 0.30, 0.45], 0, chosen)
    assert (shift["flipped_toward"], shift["flipped_away"]) == (1, 1)
    assert paired_shift([0.30, 0.45, 0.40], [0.45, 0.30, 0.45], 0)["flipped_away"] == 0


def _upholding_p(items_csv: Path, value: str) -> dict[str, float]:
    """P(option upholding `value`) per original-wording item, read back from items.csv."""
    out = {}
    with items_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            slots = [k for k in range(2) if value in row[f"values{k}"].split("|")]
            if row["wording"] == "original" and len(slots) == 1:
                out[row["item_id"]] = float(row[f"p{slots[0]}"])
    return out


def _rounded(figure: float, cost: float, shift: float) -> Any:
    """`figure` = cost x (change / shift)^2, recomputed from the 6 decimals results.json keeps:
    equal within what that rounding can move it."""
    return pytest.approx(figure, rel=1e-6 / abs(cost) + 2.5e-6 / abs(shift) + 1e-6)


@pytest.fixture(scope="module")
def steer_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `valuescope steer` from the command line: power up a little, benevolence far down."""
    tmp_path = tmp_path_factory.mktemp("steer")
    model = f"hf:{tiny_model_dir}"
    vec = tmp_path / "v.safetensors"
    assert _cli("vectors", "-m", model, "--contrast", str(small_contrast(tmp_path)),
                "--out", str(vec)).returncode == 0  # fmt: skip
    done = _cli("steer", "-m", model, "--vectors", str(vec), "--target",
                "power=+0.1,benevolence=-0.9", "--contrast", str(small_contrast(tmp_path)),
                "-i", MINI, "--method", "likelihood", "--fluency-budget", "0.05",
                "--out", str(tmp_path / "s"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"dir": tmp_path, "out": tmp_path / "s", "done": done, "model": model, "vec": vec}


def test_steer_audits_steered_and_unsteered_and_reports_the_shift(steer_run: Any) -> None:
    tmp_path, out, done, vec = (
        steer_run["dir"],
        steer_run["out"],
        steer_run["done"],
        steer_run["vec"],
    )
    steered = json.loads((out / "results.json").read_text())
    plain = json.loads((out / "unsteered" / "results.json").read_text())
    st = steered["steering"]
    assert plain["steering"] is None and st["target"] == {"power": 0.1, "benevolence": -0.9}
    assert st["fluency_cost"] <= 0.05 or st["composition"]["scaled"] < 1 / 32
    assert st["calibration"]["power"]["points"] and st["vectors"] == str(vec)
    shift = st["measured_shift"]["power"]
    assert shift["shift"] == pytest.approx(  # results.json rounds to 6 decimals
        steered["profile"]["power"]["score"] - plain["profile"]["power"]["score"], abs=3e-6
    )
    before = _upholding_p(out / "unsteered" / "items.csv", "power")
    after = _upholding_p(out / "items.csv", "power")
    assert shift["n"] == len(before) == len(after) > 0
    toward = sum(before[i] < 0.5 < after[i] for i in before)
    away = sum(after[i] < 0.5 < before[i] for i in before)
    assert (shift["flipped_toward"], shift["flipped_away"]) == (toward, away)
    assert f"+{toward} / -{away} of {shift['n']}" in done.stdout
    card = (out / "card.html").read_text()
    assert "Steering trade-off" in card and card.count("<svg") == 2
    assert "unsteered" in card and "fluency cost" in card

    def no_nan(name: str) -> None:
        raise AssertionError(f"steering.json holds {name}, which is not JSON")

    kept = json.loads((out / "steering.json").read_text(), parse_constant=no_nan)
    assert kept["measured_shift"] == st["measured_shift"]
    # -0.9 is far out of reach at 5%: the miss keeps what benevolence's own calibration says,
    # and the console says why and what it would take (tests/test_tradeoff.py: each reason)
    cal = st["calibration"]["benevolence"]
    miss = st["composition"]["out_of_reach"]["benevolence"]
    need = law_cost(cal["fluency_cost"], cal["shift"], -0.9)
    assert miss == {"target": -0.9, "expected": st["composition"]["expected"]["benevolence"],
                    "alone": cal["shift"], "alone_cost": cal["fluency_cost"],
                    "law_budget": need and _rounded(need, cal["fluency_cost"], cal["shift"])}  # fmt: skip
    console = " ".join(done.stdout.split())
    assert f"conflict: {Miss(**miss).message('benevolence', 0.05)}" in console
    for value in st["composition"]["out_of_reach"]:
        assert f"conflict: {value}: the " in console
    # after the audit: reached or not, and the law read on the instrument
    for value, change in st["target"].items():
        measured = st["measured_shift"][value]
        assert measured["reached"] == reached(change, measured)
        need = measured_law_budget(change, measured, st["fluency_cost"])
        if need is None:
            assert measured["law_budget"] is None
        else:
            assert measured["law_budget"] == _rounded(need, st["fluency_cost"], measured["shift"])
        note = reach_note(value, change, measured, st["fluency_cost"], 0.05, "mini-dilemmas")
        assert (
            (f"not reached: {note}" in console)
            if note
            else ("not reached: " + value) not in console
        )
    assert not st["measured_shift"]["benevolence"]["reached"]
    assert "reached" not in st["measured_shift"]["hedonism"]  # not a target
    bad = _cli("steer", "-m", steer_run["model"], "--vectors", str(vec), "--target",
               "tradition=+0.1", "-i", MINI, "--out", str(tmp_path / "bad"))  # fmt: skip
    assert bad.returncode == 2 and "no vector for value 'tradition'" in bad.stderr


def test_steer_resumes_its_calibration_after_a_kill(
    made: Any, tiny_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each finished measurement is kept: a rerun measures only the rest, and ends where an
    uninterrupted run ends (a rerun of a finished run asks the model nothing)."""
    vectors, path, contrast = made
    real = tiny_backend.loglikelihood
    calls: list[int] = []
    kill_after: list[int] = []

    def counted(requests: Any, progress: Any = None) -> Any:
        if kill_after and len(calls) == kill_after[0]:
            raise KeyboardInterrupt
        calls.append(len(requests))
        return real(requests, progress)

    monkeypatch.setattr(tiny_backend, "loglikelihood", counted)
    # Neutral priors kept across runs would make the first run ask more than the reruns.
    monkeypatch.setattr(valuescope.audit.scoring, "_prior_store", lambda: None)

    def run(out: Path) -> str:  # as text: NaN (an undefined CI) never equals itself
        done = steer_to_target(tiny_backend, vectors, contrast, {"power": 0.1, "benevolence": -0.2},
                               MINI, out, str(path), "likelihood", "add", 0.05)  # fmt: skip
        return json.dumps(done.steering.as_dict(), sort_keys=True)

    whole = run(tmp_path / "whole")
    n_whole = len(calls)
    calls.clear()
    assert run(tmp_path / "whole") == whole and calls == []
    kill_after.append(9)  # the plain perplexity, power's baseline, then 3.5 sweep points
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut")
    kept = (tmp_path / "cut" / "calibration" / "progress.jsonl").read_text().splitlines()
    assert len(kept) == 1 + 9  # the fingerprint, then one line per finished measurement
    calls.clear()
    kill_after.clear()
    assert run(tmp_path / "cut") == whole
    assert len(calls) == n_whole - 9


def test_the_steer_card_shows_the_result_per_target(steer_run: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    st = json.loads((steer_run["out"] / "results.json").read_text())["steering"]
    browser.get((steer_run["out"] / "card.html").as_uri())
    header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table.profile th")]
    assert header == ["value", "unsteered", "steered"]  # was "steered · steered"
    rows = browser.find_elements(By.CSS_SELECTOR, "table.steering-result tr[data-value]")
    cells = {r.get_attribute("data-value"): [c.text for c in r.find_elements(By.TAG_NAME, "td")]
             for r in rows}  # fmt: skip
    assert list(cells) == ["power", "benevolence"]
    for value, change in st["target"].items():
        measured = st["measured_shift"][value]
        low, high = measured["ci"]
        ci = f" [{low:+.3f}, {high:+.3f}]" if low is not None else ""
        assert cells[value][1:4] == [
            f"{change:+.2f}",
            f"{st['composition']['expected'][value]:+.2f}",
            f"{measured['shift']:+.3f}{ci}",
        ]
        assert cells[value][5].startswith("yes" if measured["reached"] else "no")
    listed = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "ul.conflicts li")]
    assert listed == st["composition"]["conflicts"]
