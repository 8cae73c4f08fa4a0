"""Sentence-level reading (GPV): split answers into sentences, read each, aggregate per answer.

An answer's relevance to a value is its most relevant sentence's; its signed score is the
relevance-weighted mean of its sentences' signed scores, so an answer of one value-laden
sentence among neutral ones reads as that sentence does rather than diluted by the rest.
The splitter is a short regular expression written here (sentence ends: . ! ? and line
breaks, not inside common abbreviations): good enough for model answers, said in the docs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from valuescope.detectors.base import Detector, Readings
from valuescope.instruments.taxonomy import Taxonomy
from valuescope.progress import ProgressHook

_ABBREVIATIONS = frozenset(["e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "st."])
_NUMBERED = "no."  # an abbreviation before a number ("No. 5"), else the word no
_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9*-])|\n+")
_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def _abbreviated(piece: str, following: str) -> bool:
    """Whether `piece` ends in an abbreviation (its last word, not a word's ending: "first."
    is no "st.") or is a numbered list's mark, so no sentence ends there."""
    words = piece.split()
    last = words[-1].lstrip("\"'([").lower() if words else ""
    if last in _ABBREVIATIONS or re.fullmatch(r"\d+[.)]", piece):  # or a list's number
        return True
    return last == _NUMBERED and following[:1].isdigit()


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (at least one: a text without an end mark is one sentence)."""
    parts: list[str] = []
    start = 0
    for match in _END.finditer(text):
        piece = text[start : match.start() + len(match.group(0).rstrip())].strip()
        if _abbreviated(piece, text[match.end() :]):
            continue
        parts.append(piece)
        start = match.end()
    parts.append(text[start:].strip())
    cleaned = [_LIST_MARK.sub("", p).strip() for p in parts]
    found = [p for p in cleaned if p]
    return found or [text.strip()]


@dataclass(frozen=True)
class SentenceReadings:
    """Per-answer readings and, for each answer, its sentences with their own readings."""

    answers: Readings
    sentences: list[list[str]]
    per_sentence: Readings
    owner: np.ndarray
    """Index of the answer each row of `per_sentence` belongs to."""


def aggregate(per_sentence: Readings, owner: np.ndarray, n: int) -> Readings:
    relevance = np.zeros((n, len(per_sentence.values)))
    score = np.zeros_like(relevance)
    for i in range(n):
        rows = owner == i
        if not rows.any():
            continue
        r = per_sentence.relevance[rows]
        s = per_sentence.score[rows]
        relevance[i] = r.max(axis=0)
        weight = r.sum(axis=0)
        score[i] = np.where(weight > 0, (r * s).sum(axis=0) / np.maximum(weight, 1e-12), 0.0)
    return Readings(per_sentence.values, relevance, score, per_sentence.threshold)


def read_by_sentence(
    detector: Detector, texts: Sequence[str], progress: ProgressHook | None = None
) -> SentenceReadings:
    sentences = [split_sentences(t) for t in texts]
    flat = [s for group in sentences for s in group]
    owner = np.array([i for i, group in enumerate(sentences) for _ in group], dtype=int)
    per_sentence = detector.read(flat, progress)
    return SentenceReadings(
        aggregate(per_sentence, owner, len(texts)), sentences, per_sentence, owner
    )


@dataclass
class BySentence:
    """A detector read sentence by sentence (`embed@sentence` style use from Python)."""

    inner: Detector

    @property
    def name(self) -> str:
        return f"{self.inner.name} (by sentence)"

    @property
    def taxonomy(self) -> Taxonomy:
        return self.inner.taxonomy

    def read(self, texts: Sequence[str], progress: ProgressHook | None = None) -> Readings:
        return read_by_sentence(self.inner, texts, progress).answers
