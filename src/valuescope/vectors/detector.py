"""`probe:<model spec>`: a reader model's value vectors as a detector.

Each text is read as the model's answer to the generic question the contrastive pairs use, its
residual stream projected on every value's vector at that value's best layer; per-value heads
fitted on the labelled texts turn the projections into calibrated relevance and signed scores.
The vectors come from `vectors=<file>` when given, else they are extracted once per model and
contrastive set (mean-diff) and kept in the cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from valuescope.backends import load_white_box
from valuescope.backends.base import Chat, LoglikelihoodRequest, WhiteBoxBackend
from valuescope.cache import cache_dir
from valuescope.detectors.heads import HeadsDetector, fitted_heads
from valuescope.detectors.labelled import load_labelled
from valuescope.errors import UsageError
from valuescope.instruments.taxonomy import Taxonomy
from valuescope.progress import ProgressHook
from valuescope.vectors.contrast import QUESTIONS, builtin_contrast_path, load_contrast
from valuescope.vectors.extract import VectorSet, check_model, extract_vectors

C = 0.1


class Projections:
    """Texts -> (texts, values) projections on the value vectors at their best layers."""

    def __init__(self, backend: WhiteBoxBackend, vectors: VectorSet, values: Sequence[str]) -> None:
        missing = [v for v in values if v not in vectors.values]
        if missing:
            raise UsageError(f"the probe's vectors have no {', '.join(missing)}")
        self.backend = backend
        self.chosen = [vectors.values[v] for v in values]
        self.layers = sorted({vv.best_layer for vv in self.chosen})

    def __call__(self, texts: Sequence[str], progress: ProgressHook | None = None) -> np.ndarray:
        requests = [LoglikelihoodRequest(Chat(QUESTIONS[0]), t) for t in texts]

        def report(n: int) -> None:
            if progress:
                progress("reading texts (probe)", n, len(texts))

        acts = self.backend.answer_activations(requests, self.layers, report)
        out = np.zeros((len(texts), len(self.chosen)))
        for j, vv in enumerate(self.chosen):
            out[:, j] = acts[vv.best_layer].double().numpy() @ vv.best.unit
        return out


def cached_vectors(
    backend: WhiteBoxBackend, taxonomy: Taxonomy, progress: ProgressHook | None = None
) -> tuple[VectorSet, str]:
    """Mean-diff vectors of the taxonomy's built-in contrastive pairs, extracted once."""
    path = builtin_contrast_path(taxonomy.name)
    if not path.is_file():
        raise UsageError(
            f"the probe detector has no contrastive pairs for taxonomy {taxonomy.name!r}; "
            "make vectors with `valuescope vectors --contrast FILE` and pass them as vectors=FILE"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    key = hashlib.sha256(f"{backend.spec.raw}/{backend.name}/{digest}".encode()).hexdigest()[:24]
    file = cache_dir() / "detectors" / f"vectors-{key}.safetensors"
    if file.is_file():
        return VectorSet.load(file), key
    vectors = extract_vectors(backend, load_contrast(taxonomy.name), progress=progress)
    file.parent.mkdir(parents=True, exist_ok=True)
    vectors.save(file)
    return vectors, key


def make(arg: str | None, taxonomy: Taxonomy, **options: Any) -> HeadsDetector:
    assert arg is not None  # the registry refuses `probe` without a model
    backend = options.get("backend") or load_white_box(arg)
    progress = options.get("progress")
    given = options.get("vectors")
    if given:
        vectors = VectorSet.load(Path(given))
        check_model(vectors, backend)
        key = hashlib.sha256(Path(given).read_bytes()).hexdigest()[:24]
    else:
        vectors, key = cached_vectors(backend, taxonomy, progress)
    features = Projections(backend, vectors, taxonomy.ids)
    labelled = load_labelled(options.get("labels") or taxonomy.name, taxonomy)
    heads = fitted_heads(features, f"probe/{key}", labelled, C, progress)
    return HeadsDetector(f"probe:{arg}", taxonomy, features, heads)
