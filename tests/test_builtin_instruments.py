"""The shipped instruments keep the design promises the audit's validity rests on."""

from __future__ import annotations

import itertools
from collections import Counter
from importlib import resources

import pytest
import yaml

from valuescope.instruments.dilemma import load_dilemmas
from valuescope.instruments.personas import load_personas

SPECS = [("schwartz-dilemmas", 180, 4), ("moral-foundations-dilemmas", 90, 6)]


@pytest.mark.parametrize(("name", "minimum", "per_pair"), SPECS)
def test_every_value_pair_is_contested_with_balanced_positions(
    name: str, minimum: int, per_pair: int
) -> None:
    inst = load_dilemmas(name)
    assert len(inst.items) >= minimum
    assert inst.has_paraphrases
    first: Counter[tuple[str, str]] = Counter()
    for item in inst.items:
        assert len(item.options) == 2
        a, b = (o.values for o in item.options)
        assert len(a) == 1 and len(b) == 1 and a != b, item.id
        first[(a[0], b[0])] += 1
    for x, y in itertools.combinations(inst.taxonomy.ids, 2):
        assert first[(x, y)] + first[(y, x)] >= per_pair, (x, y)
        assert first[(x, y)] == first[(y, x)], (
            f"{x} vs {y}: first {first[(x, y)]} vs {first[(y, x)]}"
        )


@pytest.mark.parametrize(("name", "minimum", "per_pair"), SPECS)
def test_options_have_similar_length(name: str, minimum: int, per_pair: int) -> None:
    for item in load_dilemmas(name).items:
        for wording in (item.original, item.paraphrase):
            assert wording is not None
            lengths = [len(o.split()) for o in wording.options]
            assert max(lengths) <= 1.5 * min(lengths), (item.id, lengths)


def test_texts_are_unique() -> None:
    texts = [i.text for name, _, _ in SPECS for i in load_dilemmas(name).items]
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize("name", ["schwartz-dilemmas", "moral-foundations-dilemmas"])
def test_every_value_has_a_persona(name: str) -> None:
    taxonomy = load_dilemmas(name).taxonomy
    personas = load_personas(taxonomy)
    assert set(personas) == set(taxonomy.ids)
    assert len(set(personas.values())) == len(personas)


def test_neutral_texts() -> None:
    source = resources.files("valuescope") / "data" / "texts" / "neutral.yaml"
    texts = yaml.safe_load(source.read_text())["texts"]
    assert len(texts) >= 50 and len(set(texts)) == len(texts)
