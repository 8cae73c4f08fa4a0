"""The backend protocol: what every way of running a model offers the scorers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from valuescope.backends.residual import ResidualStream
from valuescope.backends.spec import ModelSpec

if TYPE_CHECKING:  # torch loads with a white-box model, not with the command line
    import torch

Progress = Callable[[int], None]
"""Called with the number of requests just finished (drives progress bars)."""


@dataclass(frozen=True)
class Chat:
    """One user turn, optionally under a system prompt, rendered by the model's chat template.

    `system=None` leaves the template's own default (SmolLM2 inserts one); pass `""` for none.
    `answer_prefix` starts the assistant's answer (e.g. "I would"), so what follows is scored
    as the rest of the model's own sentence.
    """

    user: str
    system: str | None = None
    answer_prefix: str = ""


Context = Chat | str
"""A chat (rendered with the generation prompt: what follows is the model's answer) or raw text."""


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score `continuation` as the text that follows `context`."""

    context: Context
    continuation: str


@dataclass(frozen=True)
class Loglikelihood:
    """Log-probability of a continuation, with per-token detail for length-aware scoring."""

    logprob: float
    token_logprobs: tuple[float, ...]
    greedy: bool

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings. `temperature=0` is greedy; sampling is reproducible from `seed`."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.n < 1 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"invalid generation parameters: {self}")


@runtime_checkable
class Backend(Protocol):
    """Runs a model for the scorers. Black-box backends implement this much."""

    spec: ModelSpec

    @property
    def name(self) -> str:
        """A human-readable model name for reports."""
        ...

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[Loglikelihood]:
        """Log-likelihood of each request's continuation, in request order."""
        ...

    def generate(
        self, prompts: Sequence[Context], params: GenerationParams, progress: Progress | None = None
    ) -> list[list[str]]:
        """`params.n` completions per prompt (new text only), in prompt order."""
        ...


@runtime_checkable
class WhiteBoxBackend(Backend, Protocol):
    """A backend with local weights: chat rendering and residual-stream access too."""

    def render(self, context: Context) -> str:
        """The exact text the model sees for a context."""
        ...

    @property
    def residual(self) -> ResidualStream:
        """Read and add to the residual stream at chosen layers (forward hooks)."""
        ...

    @property
    def hidden_size(self) -> int: ...

    def answer_activations(
        self,
        requests: Sequence[LoglikelihoodRequest],
        layers: Sequence[int],
        progress: Progress | None = None,
    ) -> dict[int, torch.Tensor]:
        """Per request and layer, the residual stream averaged over the continuation's tokens."""
        ...

    def forward_scores(
        self, requests: Sequence[LoglikelihoodRequest]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Differentiable per-request mean continuation log-probability, and the next-token
        log-distributions over each context (for training directions; see optimize.py)."""
        ...


@runtime_checkable
class Intervention(Protocol):
    """A change to how a model runs (activation steering, decoding under a reward) that an
    audit re-measures through an instrument that did not produce it."""

    @property
    def name(self) -> str:
        """The results.json field it is recorded under (`steering` for activation steering)."""
        ...

    @property
    def flag(self) -> str:
        """The command-line flag that asks for it (`--steer`), for error messages."""
        ...

    @property
    def white_box(self) -> bool:
        """Whether it needs hidden states (a local model): checked before a model loads."""
        ...

    def wrap(self, backend: Backend) -> Backend:
        """`backend` running under the intervention (measuring its costs first if needed)."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs under it the same run (part of a run's resume fingerprint)."""
        ...

    def as_dict(self) -> dict[str, Any]:
        """Its record in results.json (the `steering` field for activation steering)."""
        ...
