"""Value heads: the features a reward weighs, read from a response.

Named heads are a detector's signed scores for the taxonomy's values (the `embed` detector by
default: ten Schwartz values). Unnamed heads follow Decomposed Reward Models: the principal
directions of the differences between the chosen and the rejected responses' features (the
detector's own feature space, e.g. sentence embeddings), not centred, so the first one is the
direction most comparisons agree on. Each unnamed head is labelled by the named head it
correlates with most over the fitting responses. All heads are z-scored over those responses,
so a user's weights compare across heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from valuescope.errors import UsageError
from valuescope.progress import ProgressHook

MEMO = 100_000
"""Texts a reader keeps the readings of (a response scored again is not read again)."""


@dataclass(frozen=True)
class Readout:
    """A detector's features (`x`, texts x dims) and signed value scores (texts x values)."""

    x: np.ndarray
    scores: np.ndarray


class Reader:
    """Texts -> Readout through a feature-and-heads detector (lexicon, embed, probe), each
    distinct text read once."""

    def __init__(self, detector: str, taxonomy: str, progress: ProgressHook | None = None) -> None:
        from valuescope.detectors import get_detector

        found = get_detector(detector, taxonomy, progress=progress)
        if not hasattr(found, "features") or not hasattr(found, "heads"):
            raise UsageError(
                f"--heads {detector!r}: reward heads need a detector with features and heads "
                "(lexicon, embed or probe:<model>), not a judge"
            )
        self.detector = found
        self.name = detector
        self.values: tuple[str, ...] = found.taxonomy.ids
        self._memo: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, texts: Sequence[str], progress: ProgressHook | None = None) -> Readout:
        new = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if len(self._memo) + len(new) > MEMO:  # decoding reads many candidates once each
            self._memo.clear()
            new = list(dict.fromkeys(texts))
        if new:
            x = np.asarray(self.detector.features(new, progress), dtype=float)  # type: ignore[attr-defined]
            scores = self.detector.heads.read(x).score  # type: ignore[attr-defined]
            for i, text in enumerate(new):
                self._memo[text] = (x[i], scores[i])
        if not texts:
            return Readout(np.zeros((0, 0)), np.zeros((0, len(self.values))))
        return Readout(
            np.stack([self._memo[t][0] for t in texts]),
            np.stack([self._memo[t][1] for t in texts]),
        )


@dataclass(frozen=True)
class HeadLabel:
    """An unnamed head's closest named head and their correlation over the fitting responses."""

    value: str
    r: float


@dataclass(frozen=True)
class ValueHeads:
    """Named and unnamed heads with their standardisation; features(readout) -> (n, heads)."""

    detector: str
    taxonomy: str
    values: tuple[str, ...]
    components: np.ndarray  # (unnamed, dims)
    mean: np.ndarray  # (heads,)
    scale: np.ndarray  # (heads,)
    labels: tuple[HeadLabel, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.values, *(f"pc{i + 1}" for i in range(len(self.components))))

    def raw(self, readout: Readout) -> np.ndarray:
        unnamed = readout.x @ self.components.T if len(self.components) else np.zeros((0, 0))
        return np.hstack([readout.scores, unnamed.reshape(len(readout.scores), -1)])

    def features(self, readout: Readout) -> np.ndarray:
        out: np.ndarray = (self.raw(readout) - self.mean) / self.scale
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "taxonomy": self.taxonomy,
            "values": list(self.values),
            "components": self.components.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "labels": [{"value": h.value, "r": h.r} for h in self.labels],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValueHeads:
        components = np.asarray(d["components"], dtype=float)
        return cls(
            str(d["detector"]),
            str(d["taxonomy"]),
            tuple(d["values"]),
            components.reshape(len(components), -1),
            np.asarray(d["mean"], dtype=float),
            np.asarray(d["scale"], dtype=float),
            tuple(HeadLabel(str(h["value"]), float(h["r"])) for h in d["labels"]),
        )


def fit_value_heads(
    detector: str,
    taxonomy: str,
    values: tuple[str, ...],
    chosen: Readout,
    rejected: Readout,
    unnamed: int = 6,
) -> ValueHeads:
    """Heads for comparisons whose chosen and rejected responses read as `chosen`, `rejected`."""
    diffs = chosen.x - rejected.x
    unnamed = max(0, min(unnamed, diffs.shape[0], diffs.shape[1]))
    if unnamed:
        _, _, vt = np.linalg.svd(diffs, full_matrices=False)
        components = vt[:unnamed]
        # a component's sign is arbitrary: point it the way the chosen responses lean
        lean = np.sign(np.sum(diffs @ components.T, axis=0))
        components = components * np.where(lean == 0, 1.0, lean)[:, None]
    else:
        components = np.zeros((0, diffs.shape[1]))
    both = Readout(np.vstack([chosen.x, rejected.x]), np.vstack([chosen.scores, rejected.scores]))
    partial = ValueHeads(detector, taxonomy, values, components, np.zeros(1), np.ones(1), ())
    raw = partial.raw(both)
    mean = raw.mean(axis=0)
    scale = raw.std(axis=0)
    scale[scale < 1e-9] = 1.0
    labels = []
    for j in range(len(components)):
        column = raw[:, len(values) + j]
        rs = [_correlation(column, raw[:, v]) for v in range(len(values))]
        best = int(np.argmax(np.abs(rs)))
        labels.append(HeadLabel(values[best], float(rs[best])))
    return ValueHeads(detector, taxonomy, values, components, mean, scale, tuple(labels))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-12 or b.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
