"""Detector quality on labelled text no detector was fitted on: per value AUC, F1 at the
detector's own threshold, expected calibration error, sign accuracy; macro averages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from valuescope.detectors.base import Detector, Readings
from valuescope.detectors.labelled import LabelledSet
from valuescope.progress import ProgressHook

ECE_BINS = 10


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.sum() * abs(float(y[inside].mean()) - float(p[inside].mean()))
    return total / max(len(p), 1)


@dataclass(frozen=True)
class Quality:
    """One detector's measured quality on one labelled part."""

    detector: str
    per_value: dict[str, dict[str, float | None]]
    texts: int
    texts_per_second: float

    def macro(self, measure: str) -> float | None:
        found = [x for v in self.per_value.values() if (x := v[measure]) is not None]
        return float(np.mean(found)) if found else None

    def as_dict(self) -> dict[str, Any]:
        measures = ("auc", "f1", "ece", "sign_accuracy")
        return {
            "detector": self.detector,
            "texts": self.texts,
            "texts_per_second": round(self.texts_per_second, 2),
            "macro": {m: _round(self.macro(m)) for m in measures},
            "values": {v: {m: _round(x) for m, x in d.items()} for v, d in self.per_value.items()},
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def score_readings(readings: Readings, labels: np.ndarray) -> dict[str, dict[str, float | None]]:
    from sklearn.metrics import f1_score, roc_auc_score

    out: dict[str, dict[str, float | None]] = {}
    present = readings.present()
    for j, value in enumerate(readings.values):
        y = labels[:, j] != 0
        rel = readings.relevance[:, j]
        auc = float(roc_auc_score(y, rel)) if 0 < y.sum() < len(y) else None
        f1 = float(f1_score(y, present[:, j], zero_division=0))
        signed = labels[:, j] != 0
        sign = (
            float(np.mean((readings.score[signed, j] > 0) == (labels[signed, j] > 0)))
            if signed.any()
            else None
        )
        out[value] = {
            "auc": auc,
            "f1": f1,
            "ece": expected_calibration_error(y, rel),
            "sign_accuracy": sign,
        }
    return out


def measure_quality(
    detector: Detector,
    labelled: LabelledSet,
    split: str = "validation",
    progress: ProgressHook | None = None,
) -> Quality:
    part = labelled.part(split)
    started = time.perf_counter()
    readings = detector.read(part.strings(), progress)
    seconds = time.perf_counter() - started
    return Quality(
        detector.name,
        score_readings(readings, part.labels()),
        len(part.texts),
        len(part.texts) / max(seconds, 1e-9),
    )
