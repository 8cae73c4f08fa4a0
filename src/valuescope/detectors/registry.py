"""Detector names: `lexicon`, `embed[:model]`, `judge:<model spec>`, `probe:<model spec>`.

Each name's module offers `make(arg, taxonomy, **options) -> Detector`, imported only when the
detector is asked for (a judge loads a model, `embed` loads an encoder). A third party adds
one with `register_detector` or the entry-point group `valuescope.detectors`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

from valuescope.detectors.base import Detector
from valuescope.errors import UsageError
from valuescope.instruments.taxonomy import Taxonomy, load_taxonomy

DetectorFactory = Callable[..., Detector]
"""(argument after the colon or None, taxonomy, **options) -> detector."""

DEFAULT_DETECTOR = "embed"
"""Chosen by measured quality on the shipped validation texts (docs/results/detectors.md):
the highest macro-F1 among the detectors that need no extra model."""

NEEDS_ARGUMENT = {"judge", "probe"}


def _builtin(module: str) -> DetectorFactory:
    def make(arg: str | None, taxonomy: Taxonomy, **options: Any) -> Detector:
        found: Detector = importlib.import_module(module).make(arg, taxonomy, **options)
        return found

    return make


_REGISTRY: dict[str, DetectorFactory] = {
    "lexicon": _builtin("valuescope.detectors.lexicon"),
    "embed": _builtin("valuescope.detectors.embed"),
    "judge": _builtin("valuescope.detectors.judge"),
    # Registered here, built where the value vectors live (a reader model's probes).
    "probe": _builtin("valuescope.vectors.detector"),
}


def register_detector(name: str, factory: DetectorFactory) -> None:
    """Make `--detector name[:arg]` build its detector through `factory(arg, taxonomy, ...)`."""
    _REGISTRY[name] = factory


def detector_names() -> list[str]:
    return list(_REGISTRY)


def split_name(name: str) -> tuple[str, str | None]:
    head, sep, arg = name.partition(":")
    return head.strip(), (arg.strip() or None) if sep else None


def check_detector_name(name: str) -> None:
    """Refuse an unknown or incomplete detector name before anything loads."""
    head, arg = split_name(name)
    if head not in _REGISTRY and not _entry_point(head):
        raise UsageError(
            f"--detector {name!r}: unknown detector; choose lexicon, embed, judge:<model spec> "
            "or probe:<model spec>"
        )
    if head in NEEDS_ARGUMENT and not arg:
        raise UsageError(
            f"--detector {head} needs a model: {head}:<model spec>, e.g. {head}:smollm2"
        )


def _entry_point(name: str) -> DetectorFactory | None:
    for entry in importlib.metadata.entry_points(group="valuescope.detectors"):
        if entry.name == name:
            factory: DetectorFactory = entry.load()
            return factory
    return None


def get_detector(
    name: str = DEFAULT_DETECTOR, taxonomy: str | Taxonomy = "schwartz", **options: Any
) -> Detector:
    """The detector `name` for `taxonomy`, its heads fitted (or read from the cache).

    Options: `labels` (a labelled YAML file to fit on instead of the built-in one),
    `progress` (a ProgressHook), `backend` (an already loaded model for judge/probe).
    """
    check_detector_name(name)
    head, arg = split_name(name)
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    factory = _REGISTRY.get(head) or _entry_point(head)
    assert factory is not None
    return factory(arg, tax, **options)
