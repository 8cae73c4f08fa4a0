"""valuescope: measure, explain and steer the human values of language models."""

from __future__ import annotations

from .backends import (
    Backend,
    Chat,
    GenerationParams,
    Loglikelihood,
    LoglikelihoodRequest,
    WhiteBoxBackend,
    load_backend,
    load_white_box,
    register_backend,
)
from .errors import ModelNotAvailableError, ModelSpecError, UsageError, ValuescopeError
from .modelspec import ModelSpec, parse_spec
from .residual import ResidualStream

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "Chat",
    "GenerationParams",
    "Loglikelihood",
    "LoglikelihoodRequest",
    "ModelNotAvailableError",
    "ModelSpec",
    "ModelSpecError",
    "ResidualStream",
    "UsageError",
    "ValuescopeError",
    "WhiteBoxBackend",
    "__version__",
    "load_backend",
    "load_white_box",
    "parse_spec",
    "register_backend",
]
