"""One measurement for every direction: extracted, trained or imported, a direction is oriented
toward upholding before its gap, midpoint and reading calibration are fitted, so a direction
given the wrong way round reads and steers exactly like the right one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.contrast import small_contrast

from valuescope.steering.operators import Steering, Term, preference
from valuescope.vectors.aggregators import AGGREGATORS, mean_diff
from valuescope.vectors.contrast import load_contrast
from valuescope.vectors.controlvector import import_directions, load_directions
from valuescope.vectors.extract import METHODS, Method, extract_vectors, read_texts
from valuescope.vectors.measure import held_out_accuracy, measure_direction, read_probability
from valuescope.vectors.optimize import TrainedDirection


def test_an_imported_direction_given_reversed_reads_and_steers_toward_upholding(
    tiny_backend: Any, tmp_path: Path
) -> None:
    from safetensors.numpy import save_file

    contrast = load_contrast(small_contrast(tmp_path))
    good = extract_vectors(tiny_backend, contrast, seed=0)["power"]
    imported = {}
    for name, sign in (("right", 1.0), ("reversed", -1.0)):
        path = tmp_path / f"{name}.safetensors"  # as steering-vectors users hand them over
        save_file({str(k): (sign * lv.unit).astype(np.float32) for k, lv in good.layers.items()},
                  str(path))  # fmt: skip
        imported[name] = import_directions(load_directions(path), "power", tiny_backend,
                                           contrast, str(path))  # fmt: skip
    right, reversed_ = imported["right"]["power"], imported["reversed"]["power"]
    # Reading: each stance read in its own pair's context; upholding texts read higher.
    pairs = contrast.of("power")
    texts = [p.uphold for p in pairs] + [p.oppose for p in pairs]
    chats = [p.chat for p in pairs] * 2
    probs = read_texts(tiny_backend, imported["reversed"], texts, chats)["power"]
    ups, downs = probs[: len(pairs)], probs[len(pairs) :]
    assert np.mean(ups) > np.mean(downs), (ups, downs)
    assert read_texts(tiny_backend, imported["right"], texts, chats)["power"] == pytest.approx(
        probs, abs=1e-9
    )
    # Steering: a positive coefficient raises the preference for upholding, a negative one
    # lowers it, whichever way round the direction came.
    layer = reversed_.best_layer
    plain = preference(tiny_backend, pairs)
    up = preference(tiny_backend, pairs, Steering(imported["reversed"], [Term("power", layer, 2)]))
    down = preference(
        tiny_backend, pairs, Steering(imported["reversed"], [Term("power", layer, -2)])
    )
    assert down < plain < up
    # The reversed direction is stored exactly as the right one, and the file says it was flipped.
    assert layer == right.best_layer
    for k, lv in reversed_.layers.items():
        assert lv.unit @ good.layers[k].unit == pytest.approx(1.0, abs=1e-6)
        assert np.array_equal(lv.vector, right.layers[k].vector)
        assert (lv.midpoint, lv.calibration) == (
            right.layers[k].midpoint,
            right.layers[k].calibration,
        )
        assert lv.accuracy == right.layers[k].accuracy
    assert imported["reversed"].extra["flipped_layers"] == sorted(good.layers)
    assert "flipped_layers" not in imported["right"].extra


def test_a_direction_and_its_negative_measure_the_same() -> None:
    rng = np.random.default_rng(0)
    d, n = 16, 40
    truth = np.zeros(d)
    truth[3] = 1.0
    topic = rng.normal(size=(n, d))
    pos = topic + 1.5 * truth + rng.normal(size=(n, d)) * 0.5
    neg = topic - 1.5 * truth + rng.normal(size=(n, d)) * 0.5
    unit = mean_diff(pos[:30], neg[:30])
    right = measure_direction(unit, pos[:30], neg[:30], pos[30:], neg[30:])
    wrong = measure_direction(-unit, pos[:30], neg[:30], pos[30:], neg[30:])
    assert not right.flipped and wrong.flipped
    assert np.array_equal(wrong.unit, right.unit) and np.array_equal(wrong.vector, right.vector)
    assert (wrong.gap, wrong.midpoint, wrong.calibration) == (
        right.gap, right.midpoint, right.calibration
    )  # fmt: skip
    assert (wrong.accuracy, wrong.separation) == (right.accuracy, right.separation)
    # oriented toward upholding: a positive gap, a rising calibration, upholding reads higher
    assert right.gap > 0 and right.calibration[0] > 0 and right.separation > 0
    assert right.accuracy >= 0.9
    assert np.allclose(right.vector, right.unit * right.gap)
    read = [read_probability(x @ right.unit, right.midpoint, right.calibration) for x in
            (pos[30:], neg[30:])]  # fmt: skip
    assert read[0].mean() > 0.5 > read[1].mean()
    # without held-out answers, it is scored on the ones it is given (an imported direction)
    alone = measure_direction(unit, pos, neg)
    assert alone.accuracy == held_out_accuracy(unit, pos, neg, pos, neg)[0]


def test_a_trained_direction_is_measured_by_the_same_rule(
    tiny_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trainer that hands back its start reversed: the file stores it toward upholding."""
    assert list(METHODS) == ["mean-diff", "pca", "logistic", "optimized"]  # --method's names
    assert [METHODS[name].aggregator for name in AGGREGATORS] == list(AGGREGATORS)

    def backwards(backend: Any, pairs: Any, layer: int, start: np.ndarray, gap: float,
                  training: Any, progress: Any, label: str) -> TrainedDirection:  # fmt: skip
        return TrainedDirection(-start)

    monkeypatch.setitem(METHODS, "backwards", Method("mean-diff", backwards))
    contrast = load_contrast(small_contrast(tmp_path))
    plain = extract_vectors(tiny_backend, contrast, "mean-diff", seed=0)
    found = extract_vectors(tiny_backend, contrast, "backwards", seed=0)
    for value in ("benevolence", "power"):
        best = found[value].best_layer
        assert best == plain[value].best_layer and found.extra["backwards"][value]["layer"] == best
        trained, start = found[value].layers[best], plain[value].layers[best]
        assert np.allclose(trained.vector, start.vector, atol=1e-9)
        assert trained.midpoint == pytest.approx(start.midpoint, abs=1e-9)
        assert trained.accuracy["backwards"] == start.accuracy["mean-diff"]
