"""`lexicon`: the Schwartz value dictionaries of PyPI `pyvalues` (MIT, ValueEval), counted per
value with negation in view, then calibrated by per-value heads on the labelled texts.

The dictionaries only say which words bear on a value, not for or against, so a word within
three tokens after a negation ("not", "never", "without", ...) counts apart: the heads learn
what a negated mention means. Schwartz only: no equally licensed moral-foundations lexicon is
on the package registry (moralstrength is LGPL, eMFD GPL), so none ships.
"""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from valuescope.detectors.heads import HeadsDetector, fitted_heads
from valuescope.detectors.labelled import load_labelled
from valuescope.errors import ModelNotAvailableError, UsageError
from valuescope.instruments.taxonomy import Taxonomy
from valuescope.progress import ProgressHook

DICTIONARY = ("assets", "dictionaries", "20221007", "en.json")
NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "without",
        "nor",
        "neither",
        "cannot",
        "can't",
        "won't",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "shouldn't",
        "wouldn't",
        "stop",
        "stopped",
        "quit",
        "refuse",
        "refused",
        "against",
        "avoid",
        "instead",
    ]
)
SCOPE = 3
C = 0.03
"""Chosen by `heads.choose_c` (cross-validated log-loss on the fitting texts)."""
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _name(value: str) -> str:
    return re.sub(r"[^a-z]", "", value.lower())


@lru_cache(maxsize=1)
def dictionaries() -> dict[str, frozenset[str]]:
    """pyvalues' English dictionaries by value name, read without importing pyvalues (its
    import wants packages valuescope does not need)."""
    spec = importlib.util.find_spec("pyvalues")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            "the lexicon detector needs the package pyvalues (MIT) for its dictionaries: "
            "pip install --no-deps pyvalues==0.11.1"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*DICTIONARY)
    data = json.loads(path.read_text(encoding="utf-8"))
    return {_name(value): frozenset(w.lower() for w in words) for value, words in data.items()}


def tokens(text: str) -> list[str]:
    folded = "".join(c for c in unicodedata.normalize("NFKC", text.lower().replace("’", "'")))
    return _WORD.findall(folded)


class LexiconFeatures:
    """Per value: log(1 + mentions), log(1 + negated mentions); then log(1 + words)."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        found = dictionaries()
        missing = [v for v in taxonomy.ids if _name(v) not in found]
        if missing:
            raise UsageError(
                f"the lexicon detector has no dictionary for {', '.join(missing)} (taxonomy "
                f"{taxonomy.name!r}); it reads the Schwartz values only: use --detector embed"
            )
        self.words = [found[_name(v)] for v in taxonomy.ids]

    def __call__(self, texts: Sequence[str], progress: ProgressHook | None = None) -> np.ndarray:
        out = np.zeros((len(texts), 2 * len(self.words) + 1))
        for i, text in enumerate(texts):
            toks = tokens(text)
            negated = [
                any(t in NEGATIONS for t in toks[max(0, k - SCOPE) : k]) for k in range(len(toks))
            ]
            for j, words in enumerate(self.words):
                hits = [k for k, t in enumerate(toks) if t in words]
                out[i, 2 * j] = np.log1p(sum(not negated[k] for k in hits))
                out[i, 2 * j + 1] = np.log1p(sum(negated[k] for k in hits))
            out[i, -1] = np.log1p(len(toks))
        if progress:
            progress("reading texts (lexicon)", len(texts), len(texts))
        return out


def make(arg: str | None, taxonomy: Taxonomy, **options: Any) -> HeadsDetector:
    if arg:
        raise UsageError(f"--detector lexicon takes no argument (got lexicon:{arg})")
    features = LexiconFeatures(taxonomy)
    labelled = load_labelled(options.get("labels") or taxonomy.name, taxonomy)
    heads = fitted_heads(features, f"lexicon/pyvalues-20221007/{SCOPE}", labelled, C)
    return HeadsDetector("lexicon", taxonomy, features, heads)
