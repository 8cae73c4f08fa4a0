"""Value detectors: read a taxonomy's values from free text, each with its measured accuracy.

Every detector maps texts to, per value, a relevance in [0, 1] and a signed score in [-1, 1]
(P(upholds) - P(opposes)). See `base.Detector` for the protocol and `registry` for the names.
"""

from valuescope.detectors.api import detect
from valuescope.detectors.base import Detector, Readings
from valuescope.detectors.registry import (
    DEFAULT_DETECTOR,
    detector_names,
    get_detector,
    register_detector,
)

__all__ = [
    "DEFAULT_DETECTOR",
    "Detector",
    "Readings",
    "detect",
    "detector_names",
    "get_detector",
    "register_detector",
]
