"""`detect`: the values in any texts, by any detector, in one call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from valuescope.detectors.base import Detector, Readings
from valuescope.detectors.registry import DEFAULT_DETECTOR, get_detector
from valuescope.detectors.sentences import BySentence
from valuescope.instruments.taxonomy import Taxonomy
from valuescope.progress import ProgressHook


def detect(
    texts: str | Sequence[str],
    detector: str | Detector = DEFAULT_DETECTOR,
    taxonomy: str | Taxonomy = "schwartz",
    by_sentence: bool = False,
    progress: ProgressHook | None = None,
    **options: Any,
) -> Readings:
    """Per text and value: relevance in [0, 1] and signed score in [-1, 1] (P(upholds) -
    P(opposes)).

    Args:
        texts: the texts (one string is read as one text).
        detector: a registry name (`embed`, `lexicon`, `probe:<model spec>`,
            `judge:<model spec>`) or a detector already made with `get_detector`; making one
            fits or loads its heads, so keep it when reading several batches.
        by_sentence: read each sentence and aggregate per text (GPV): a text's relevance is
            its most relevant sentence's, its score the relevance-weighted mean.
        options: for `get_detector`, e.g. `labels=` a labelled YAML file to fit the heads on.

    >>> from valuescope import detect
    >>> found = detect(["Always help your neighbours, whatever it costs you."])
    >>> found.values[8], bool(found.score[0, 8] > 0)  # benevolence, upheld
    ('benevolence', True)
    """
    made = (
        detector
        if not isinstance(detector, str)
        else get_detector(detector, taxonomy, progress=progress, **options)
    )
    reader = BySentence(made) if by_sentence else made
    return reader.read([texts] if isinstance(texts, str) else list(texts), progress)
