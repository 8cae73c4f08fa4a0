"""Models behind OpenAI-compatible servers: the backend, what it probes, how it sends."""

from valuescope.backends.server.backend import ServerBackend
from valuescope.backends.server.probe import Capabilities
from valuescope.backends.server.transport import (
    BudgetExhausted,
    RequestStats,
    ServerError,
    ServerSettings,
)

__all__ = [
    "BudgetExhausted",
    "Capabilities",
    "RequestStats",
    "ServerBackend",
    "ServerError",
    "ServerSettings",
]
