"""The detector protocol: texts in, per value a relevance and a signed score out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from valuescope.instruments.taxonomy import Taxonomy
from valuescope.progress import ProgressHook


@dataclass(frozen=True)
class Readings:
    """What a detector read from `n` texts over a taxonomy's `values`.

    `relevance[i, j]`: P(text i bears on value j, for or against), in [0, 1].
    `score[i, j]`: P(upholds) - P(opposes), in [-1, 1] (GPV's signed support).
    `threshold[j]`: the relevance above which the detector says the value is present (chosen
    on fitting data, never on validation data).
    """

    values: tuple[str, ...]
    relevance: np.ndarray
    score: np.ndarray
    threshold: np.ndarray

    def __post_init__(self) -> None:
        shape = (self.relevance.shape[0], len(self.values))
        if self.relevance.shape != shape or self.score.shape != shape:
            raise ValueError(f"readings of shape {self.relevance.shape}, {self.score.shape}")

    def __len__(self) -> int:
        return int(self.relevance.shape[0])

    def present(self) -> np.ndarray:
        """(n, values) booleans: relevance at or above each value's threshold."""
        return self.relevance >= self.threshold[None, :]

    def take(self, rows: Sequence[int] | np.ndarray) -> Readings:
        index = np.asarray(rows, dtype=int)
        return Readings(self.values, self.relevance[index], self.score[index], self.threshold)

    @classmethod
    def concat(
        cls, parts: Sequence[Readings], values: tuple[str, ...], threshold: np.ndarray
    ) -> Readings:
        if not parts:
            empty = np.zeros((0, len(values)))
            return cls(values, empty, empty.copy(), threshold)
        return cls(
            values,
            np.concatenate([p.relevance for p in parts]),
            np.concatenate([p.score for p in parts]),
            threshold,
        )


@runtime_checkable
class Detector(Protocol):
    """Reads a taxonomy's values from texts. One protocol for lexicons, embedding heads, a
    reader model's value probes and LLM judges, so audits, `detect` and rewards take any."""

    @property
    def name(self) -> str:
        """Its registry name with its argument (`embed`, `judge:smollm2`)."""
        ...

    @property
    def taxonomy(self) -> Taxonomy: ...

    def read(self, texts: Sequence[str], progress: ProgressHook | None = None) -> Readings:
        """Relevance and signed score per text and value, in text order."""
        ...
