"""A word-counting detector for reward tests (no model), and preferences made with it from
planted user weights."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from valuescope.detectors import Readings, register_detector
from valuescope.instruments.taxonomy import Taxonomy, load_taxonomy
from valuescope.progress import ProgressHook

WORDS = {
    "power": ["control", "wealth", "status"],
    "benevolence": ["care", "friend", "help"],
    "universalism": ["fair", "nature", "equal"],
    "achievement": ["win", "succeed", "ambition"],
    "security": ["safe", "stable", "order"],
}
FILLER = ["the", "plan", "is", "simple", "today", "maybe", "we", "could", "try", "this"]


class _Heads:
    def __init__(self, values: tuple[str, ...]) -> None:
        self.values = values

    def read(self, x: np.ndarray) -> Readings:
        score = np.tanh(x[:, : len(self.values)])
        return Readings(self.values, np.abs(score), score, np.full(len(self.values), 0.5))


class WordDetector:
    """Per value: how many of its words a text holds; then a length feature and a noise one."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.name = "words"
        self.taxonomy = taxonomy
        self.heads = _Heads(taxonomy.ids)

    def features(self, texts: Sequence[str], progress: ProgressHook | None = None) -> np.ndarray:
        out = np.zeros((len(texts), len(self.taxonomy.ids) + 2))
        for i, text in enumerate(texts):
            tokens = text.lower().split()
            for j, value in enumerate(self.taxonomy.ids):
                out[i, j] = sum(t in WORDS.get(value, ()) for t in tokens)
            out[i, -2] = len(tokens) / 10
            out[i, -1] = (sum(map(ord, text)) % 7) / 7
        return out

    def read(self, texts: Sequence[str], progress: ProgressHook | None = None) -> Readings:
        return self.heads.read(self.features(texts))


def _make(arg: str | None, taxonomy: Taxonomy, **options: Any) -> WordDetector:
    return WordDetector(taxonomy)


register_detector("words", _make)


def response(rng: np.random.Generator) -> str:
    words = list(rng.choice(FILLER, size=6))
    for value in WORDS:
        words += list(rng.choice(WORDS[value], size=int(rng.integers(0, 3))))
    rng.shuffle(words)
    return " ".join(words)


def planted_rows(
    weights: dict[str, dict[str, float]], per_user: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Comparisons whose choices follow each user's planted weights on the word counts
    (Bradley-Terry with a steep slope, so they are nearly deterministic)."""
    rng = np.random.default_rng(seed)
    values = load_taxonomy("schwartz").ids
    detector = WordDetector(load_taxonomy("schwartz"))
    rows = []
    for user, planted in weights.items():
        w = np.array([planted.get(v, 0.0) for v in values])
        for i in range(per_user):
            a, b = response(rng), response(rng)
            fa, fb = detector.features([a, b])[:, : len(values)]
            p = 1 / (1 + np.exp(-4 * float((fa - fb) @ w)))
            chosen, rejected = (a, b) if rng.random() < p else (b, a)
            rows.append(
                {"user": user, "prompt": f"q{i % 7}", "chosen": chosen, "rejected": rejected}
            )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


OPPOSED = {
    "power": {"power": 1.0, "achievement": 0.6, "benevolence": -0.4},
    "care": {"benevolence": 1.0, "universalism": 0.6, "power": -0.4},
}


def population(users: int = 12) -> dict[str, dict[str, float]]:
    """Half the users lean to power, half to care, each a little different."""
    rng = np.random.default_rng(1)
    found = {}
    for u in range(users):
        base = OPPOSED["power" if u % 2 == 0 else "care"]
        found[f"u{u:02d}"] = {v: w + 0.1 * float(rng.normal()) for v, w in base.items()}
    return found
