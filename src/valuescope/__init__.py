"""valuescope: measure, explain and steer the human values of language models.

The loop, in the names this module exports: load a taxonomy and an instrument, `run_audit` a
model on it for a `Profile` with its validity (`run_validation` for persona recovery); with a
local model, `extract_vectors` from contrastive pairs, `read_texts` with them, `calibrate` and
`compose` a `Steering`, and re-measure its effect with `measured_shifts` (`steer_to_target` does
all of it). Everything else lives in the subpackages (`instruments`, `audit`, `vectors`,
`steering`, `backends`); names load on first use, so `import valuescope` stays light.

>>> from valuescope import RunSpec, run_audit
>>> result = run_audit("schwartz-dilemmas", RunSpec(limit=20))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # instruments: what is asked
    "load_taxonomy": "valuescope.instruments.taxonomy",
    "load_instrument": "valuescope.audit.kinds",
    "register_kind": "valuescope.audit.kinds",
    "Instrument": "valuescope.instruments.document",
    "InstrumentKind": "valuescope.audit.kinds",
    # audit: measuring
    "RunSpec": "valuescope.audit.kinds",
    "RunResult": "valuescope.audit.kinds",
    "run_audit": "valuescope.audit.run",
    "write_results": "valuescope.audit.results",
    "Profile": "valuescope.audit.profile",
    "run_validation": "valuescope.audit.recovery",
    "measured_shifts": "valuescope.audit.shifts",
    # detectors: values in free text
    "detect": "valuescope.detectors.api",
    # models
    "load_backend": "valuescope.backends",
    "load_white_box": "valuescope.backends",
    "register_backend": "valuescope.backends",
    "Backend": "valuescope.backends.base",
    "Chat": "valuescope.backends.base",
    "GenerationParams": "valuescope.backends.base",
    # vectors: white-box reading
    "load_contrast": "valuescope.vectors.contrast",
    "extract_vectors": "valuescope.vectors.extract",
    "VectorSet": "valuescope.vectors.extract",
    "read_texts": "valuescope.vectors.extract",
    # steering: intervening, then re-measuring
    "Steering": "valuescope.steering.operators",
    "Term": "valuescope.steering.operators",
    "calibrate": "valuescope.steering.calibration",
    "compose": "valuescope.steering.composition",
    "steer_to_target": "valuescope.steering.loop",
    "Alignment": "valuescope.steering.alignment",
    "best_of_n": "valuescope.steering.strategies",
    # rewards: personalized value rewards
    "Reward": "valuescope.rewards.reward",
    # long runs and errors
    "progress_bar": "valuescope.progress",
    "UsageError": "valuescope.errors",
    "ValuescopeError": "valuescope.errors",
}

__all__ = [
    "Alignment",
    "Backend",
    "Chat",
    "GenerationParams",
    "Instrument",
    "InstrumentKind",
    "Profile",
    "Reward",
    "RunResult",
    "RunSpec",
    "Steering",
    "Term",
    "UsageError",
    "ValuescopeError",
    "VectorSet",
    "__version__",
    "best_of_n",
    "calibrate",
    "compose",
    "detect",
    "extract_vectors",
    "load_backend",
    "load_contrast",
    "load_instrument",
    "load_taxonomy",
    "load_white_box",
    "measured_shifts",
    "progress_bar",
    "read_texts",
    "register_backend",
    "register_kind",
    "run_audit",
    "run_validation",
    "steer_to_target",
    "write_results",
]


def __getattr__(name: str) -> Any:
    """Load an exported name's module on first use (torch only with the white-box names)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'valuescope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from valuescope.audit.kinds import (
        InstrumentKind,
        RunResult,
        RunSpec,
        load_instrument,
        register_kind,
    )
    from valuescope.audit.profile import Profile
    from valuescope.audit.recovery import run_validation
    from valuescope.audit.results import write_results
    from valuescope.audit.run import run_audit
    from valuescope.audit.shifts import measured_shifts
    from valuescope.backends import load_backend, load_white_box, register_backend
    from valuescope.backends.base import Backend, Chat, GenerationParams
    from valuescope.detectors.api import detect
    from valuescope.errors import UsageError, ValuescopeError
    from valuescope.instruments.document import Instrument
    from valuescope.instruments.taxonomy import load_taxonomy
    from valuescope.progress import progress_bar
    from valuescope.rewards.reward import Reward
    from valuescope.steering.alignment import Alignment
    from valuescope.steering.calibration import calibrate
    from valuescope.steering.composition import compose
    from valuescope.steering.loop import steer_to_target
    from valuescope.steering.operators import Steering, Term
    from valuescope.steering.strategies import best_of_n
    from valuescope.vectors.contrast import load_contrast
    from valuescope.vectors.extract import VectorSet, extract_vectors, read_texts
