"""Per-value heads over text features, fitted with scikit-learn and kept as plain JSON.

A head is a three-class logistic regression (opposes, neither, upholds) on standardized
features, so relevance = 1 - P(neither) and score = P(upholds) - P(opposes) are calibrated
probabilities. The relevance threshold maximises F1 on cross-validated predictions over the
fitting texts; validation texts are never seen. Stored as JSON (never pickle): weights are
applied with numpy, so loading a detector needs no scikit-learn objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from valuescope.cache import cache_dir
from valuescope.detectors.base import Readings
from valuescope.detectors.labelled import LabelledSet
from valuescope.instruments.taxonomy import Taxonomy
from valuescope.progress import ProgressHook

HEADS_VERSION = 1
CLASSES = (-1, 0, 1)

Features = Callable[[Sequence[str], "ProgressHook | None"], np.ndarray]
"""Texts -> (texts, dims) feature matrix."""


@dataclass(frozen=True)
class Head:
    """One value's head: standardisation, 3-class weights, and its presence threshold.

    `columns` restricts the features it reads (None: all), for detectors whose features are
    per value (a judge's own answers about the value)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (3, dims) for classes CLASSES
    intercept: np.ndarray  # (3,)
    threshold: float
    columns: tuple[int, ...] | None = None

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        x = features if self.columns is None else features[:, list(self.columns)]
        z = (x - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        out: np.ndarray = p / p.sum(axis=1, keepdims=True)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "threshold": self.threshold,
            "columns": list(self.columns) if self.columns is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Head:
        columns = d.get("columns")
        return cls(
            np.asarray(d["mean"]),
            np.asarray(d["scale"]),
            np.asarray(d["coef"]),
            np.asarray(d["intercept"]),
            float(d["threshold"]),
            tuple(columns) if columns is not None else None,
        )


def _full_classes(model: Any, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights for all three classes even when a class was absent from the fitting labels."""
    coef = np.zeros((3, dims))
    intercept = np.full(3, -30.0)
    for row, cls in enumerate(model.classes_):
        k = CLASSES.index(int(cls))
        if len(model.classes_) == 2:  # binary: sklearn keeps one row for the second class
            coef[k] = model.coef_[0] if row == 1 else 0.0
            intercept[k] = model.intercept_[0] if row == 1 else 0.0
        else:
            coef[k] = model.coef_[row]
            intercept[k] = model.intercept_[row]
    return coef, intercept


def best_f1_threshold(present: np.ndarray, relevance: np.ndarray) -> float:
    """The relevance (to 3 decimals) at or above which saying "present" has the highest F1;
    the lowest such on ties. All candidates at once: F1 = 2tp / (2tp + fp + fn)."""
    candidates = np.unique(np.round(relevance, 3))
    said = relevance[None, :] >= candidates[:, None]
    tp = (said & present[None, :]).sum(axis=1)
    wrong = (said != present[None, :]).sum(axis=1)  # fp + fn
    f1 = np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)
    return float(candidates[int(np.argmax(f1))])


def fit_head(
    x: np.ndarray, y: np.ndarray, c: float, seed: int = 0, columns: tuple[int, ...] | None = None
) -> Head:
    """A head for one value from features `x` and labels `y` in {-1, 0, 1}."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    sub = x if columns is None else x[:, list(columns)]
    mean = sub.mean(axis=0)
    scale = sub.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (sub - mean) / scale
    found = np.unique(y)
    if len(found) < 2:  # a value no fitting text bears on (or every one): a constant head
        intercept = np.full(3, -30.0)
        intercept[CLASSES.index(int(found[0]) if len(found) else 0)] = 0.0
        return Head(mean, scale, np.zeros((3, z.shape[1])), intercept, 0.5, columns)
    model = LogisticRegression(C=c, max_iter=3000)
    smallest = int(min(np.sum(y == k) for k in found))
    threshold = 0.5  # when a class has too few labelled texts to cross-validate
    if smallest >= 2 and 0 in found:
        folds = StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=seed)
        held = cross_val_predict(model, z, y, cv=folds, method="predict_proba")
        relevance = 1.0 - held[:, list(found).index(0)]
        threshold = best_f1_threshold(y != 0, relevance)
    model.fit(z, y)
    coef, intercept = _full_classes(model, z.shape[1])
    return Head(mean, scale, coef, intercept, threshold, columns)


@dataclass(frozen=True)
class Heads:
    """One head per value of a taxonomy."""

    values: tuple[str, ...]
    heads: tuple[Head, ...]

    def read(self, features: np.ndarray) -> Readings:
        relevance = np.zeros((features.shape[0], len(self.values)))
        score = np.zeros_like(relevance)
        for j, head in enumerate(self.heads):
            p = head.probabilities(features)
            relevance[:, j] = 1.0 - p[:, 1]
            score[:, j] = p[:, 2] - p[:, 0]
        threshold = np.array([h.threshold for h in self.heads])
        return Readings(self.values, relevance, score, threshold)

    def save(self, path: Path) -> None:
        doc = {
            "version": HEADS_VERSION,
            "values": list(self.values),
            "heads": [h.as_dict() for h in self.heads],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Heads | None:
        """The heads in `path`, or None when absent, unreadable or of another version."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("version") != HEADS_VERSION:
                return None
            return cls(tuple(doc["values"]), tuple(Head.from_dict(h) for h in doc["heads"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def choose_c(
    x: np.ndarray,
    labels: np.ndarray,
    grid: Sequence[float] = C_GRID,
    per_value_columns: Sequence[tuple[int, ...]] | None = None,
) -> float:
    """The regularisation with the lowest cross-validated log-loss over all values' heads, on
    the fitting texts only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.preprocessing import StandardScaler

    folds = KFold(n_splits=5, shuffle=True, random_state=0)
    losses = []
    for c in grid:
        loss = 0.0
        for j in range(labels.shape[1]):
            sub = x if per_value_columns is None else x[:, list(per_value_columns[j])]
            z = StandardScaler().fit_transform(sub)
            y = labels[:, j]
            if len(np.unique(y)) < 2:  # a constant head: nothing to choose
                continue
            p = cross_val_predict(
                LogisticRegression(C=c, max_iter=3000), z, y, cv=folds, method="predict_proba"
            )
            truth = np.searchsorted(np.unique(y), y)
            loss -= float(np.mean(np.log(np.clip(p[np.arange(len(y)), truth], 1e-12, 1.0))))
        losses.append(loss)
    return float(grid[int(np.argmin(losses))])


def fit_heads(
    x: np.ndarray,
    labels: np.ndarray,
    taxonomy: Taxonomy,
    c: float | None = None,
    per_value_columns: Sequence[tuple[int, ...]] | None = None,
) -> Heads:
    """Heads for every value; `c=None` chooses the regularisation by cross-validation."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    # Small problems: BLAS threads only contend (a fit took 25x longer on 2 busy cores).
    with threadpool_limits(1):
        if c is None:
            c = choose_c(x, labels, per_value_columns=per_value_columns)
        heads = tuple(
            fit_head(
                x, labels[:, j], c, columns=per_value_columns[j] if per_value_columns else None
            )
            for j in range(len(taxonomy.ids))
        )
    return Heads(taxonomy.ids, heads)


def fitted_heads(
    features: Features,
    features_key: str,
    labelled: LabelledSet,
    c: float | None = None,
    progress: ProgressHook | None = None,
    per_value_columns: Sequence[tuple[int, ...]] | None = None,
) -> Heads:
    """Heads fitted on the labelled set's fitting part, cached by what makes them: the
    features' identity, the labelled file's hash, the regularisation and this code's version."""
    key = hashlib.sha256(
        f"{HEADS_VERSION}/{features_key}/{labelled.sha256}/{c}/{per_value_columns}".encode()
    ).hexdigest()[:24]
    path = cache_dir() / "detectors" / f"heads-{key}.json"
    found = Heads.load(path)
    if found is not None and found.values == labelled.taxonomy.ids:
        return found
    fit = labelled.part("fit")
    x = features(fit.strings(), progress)
    heads = fit_heads(x, fit.labels(), labelled.taxonomy, c, per_value_columns)
    heads.save(path)
    return heads


@dataclass
class HeadsDetector:
    """A detector made of features and fitted heads (lexicon, embed, probe)."""

    name: str
    taxonomy: Taxonomy
    features: Features
    heads: Heads
    batch: int = 256

    def read(self, texts: Sequence[str], progress: ProgressHook | None = None) -> Readings:
        x = self.features(list(texts), progress)
        return self.heads.read(x)
