"""Reward-guided decoding: the next-token distribution tilted toward what a value's probe reads.

Activation steering (`operators`) changes the residual stream; this changes no activation. At
each position the model's next-token distribution p is tilted toward the candidates the value's
probe reads as upholding the value,

    p'(x) = p(x) exp(w (s(x) - s_bar)) / Z    for x among the K most likely tokens,
    p'(x) = p(x) / Z                          for every other token,

a proper distribution over the whole vocabulary, where s(x) is the reading of the text
continued by x (its residual stream at the probe's layer, projected on the value's unit
direction, in class gaps), s_bar the candidates' p-weighted mean reading and Z the normaliser.
Where the candidates read alike, the text is scored as before, so the fluency cost falls only
where the value is at stake. Each candidate costs a forward pass up to the probe's layer,
batched per text with a tree attention mask: about K times the work of plain scoring.

Use it to score continuations under the tilted distribution (the log-likelihood audit methods,
and `perplexity` for its fluency cost, on which the weight w is calibrated like a steering
coefficient), for instance to set it against steering at the same fluency cost. It needs a
local transformers model; generating under the tilt is not implemented and is refused.

`DECODERS` registers decoding strategies by name. They are not steering operators: an operator
edits one layer's hidden states, composes with other terms on the same forward pass and exports
to llama.cpp as a vector; a decoding strategy replaces the model's output distribution and
needs the whole backend, so it wraps one, as `SteeredBackend` does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch

from valuescope.backends.base import (
    Backend,
    Context,
    GenerationParams,
    Loglikelihood,
    LoglikelihoodRequest,
    Progress,
)
from valuescope.errors import UsageError
from valuescope.vectors.extract import LayerVector

if TYPE_CHECKING:
    from valuescope.backends.local import LocalBackend

TOP_K = 16
"""Candidates tilted at each position (the most likely ones under the plain model)."""


class Decoder(Protocol):
    """A decoding strategy: `backend` scoring under its distribution reweighted by `weight`
    times the reading of a value's direction (`reading`, in class gaps) at `layer`."""

    def __call__(
        self, backend: LocalBackend, reading: LayerVector, layer: int, weight: float
    ) -> Backend: ...


class _Reached(Exception):
    """Raised by the hook at the probe's layer: the layers above it are not needed."""


class ProbeTilted:
    """A white-box backend whose log-likelihoods are those of the probe-tilted distribution.

    Everything else is the plain model's: its activations (the tilt changes none) and, as
    under `SteeredBackend`, the neutral-prompt prior some scorers read from `prior`, so the
    tilt's whole effect shows.

    >>> vv = vectors["universalism"]  # doctest: +SKIP
    >>> tilted = ProbeTilted(backend, vv.best, vv.best_layer, weight=2.0)  # doctest: +SKIP
    >>> cost = perplexity(tilted) / perplexity(backend) - 1  # doctest: +SKIP
    """

    def __init__(
        self,
        backend: LocalBackend,
        reading: LayerVector,
        layer: int,
        weight: float,
        top_k: int = TOP_K,
    ) -> None:
        if top_k < 1:
            raise UsageError(f"top_k {top_k}: tilt at least one candidate")
        self.prior = backend
        self.spec = backend.spec
        self.unit = torch.tensor(reading.unit, dtype=torch.float32)
        self.gap = reading.gap
        self.layer = layer
        self.weight = weight
        self.top_k = top_k

    def __getattr__(self, name: str) -> Any:
        return getattr(self.prior, name)

    @property
    def name(self) -> str:
        return self.prior.name

    @torch.inference_mode()
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[Loglikelihood]:
        results = []
        for request in requests:
            results.append(self._one(request))
            if progress is not None:
                progress(1)
        return results

    def generate(
        self, prompts: Sequence[Context], params: GenerationParams, progress: Progress | None = None
    ) -> list[list[str]]:
        raise UsageError(
            "probe-tilted decoding scores continuations (log-likelihood methods); generating "
            "under it is not implemented"
        )

    def forward_scores(self, requests: Sequence[LoglikelihoodRequest]) -> Any:
        raise UsageError("probe-tilted decoding has no differentiable scores to train on")

    def _readings(self, ids: list[int], candidates: list[int], at: list[int]) -> torch.Tensor:
        """Probe reading (class gaps) of `ids[:i] + [x]` for each candidate x at position i."""
        n = len(ids)
        total = n + len(candidates)
        mask = torch.zeros((total, total), dtype=torch.bool)
        mask[:n, :n] = torch.tril(torch.ones((n, n), dtype=torch.bool))
        rows = torch.arange(n, total)
        mask[rows, rows] = True
        for row, i in enumerate(at):
            mask[n + row, :i] = True
        seen: dict[str, torch.Tensor] = {}

        def stop(hidden: torch.Tensor) -> torch.Tensor:
            seen["hidden"] = hidden
            raise _Reached

        device = self.prior.model.device
        with self.prior.residual.edit({self.layer: stop}), contextlib.suppress(_Reached):
            self.prior.model(
                input_ids=torch.tensor([ids + candidates], device=device),
                attention_mask=mask[None, None].to(device),
                position_ids=torch.tensor([list(range(n)) + at], device=device),
            )
        return (seen["hidden"][0, n:].float().cpu() @ self.unit) / self.gap

    def _one(self, request: LoglikelihoodRequest) -> Loglikelihood:
        backend = self.prior
        encoded = backend.encode_pair(backend.render(request.context), request.continuation)
        token_lps = self.token_logprobs(
            list(encoded.context) + list(encoded.continuation), len(encoded.context)
        )
        return Loglikelihood(sum(token_lps), tuple(token_lps), False)

    @torch.inference_mode()
    def token_logprobs(self, ids: list[int], start: int) -> list[float]:
        """Tilted log-probability of each of `ids[start:]` given the tokens before it."""
        model = self.prior.model
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits
        logp = torch.log_softmax(logits[0].double().cpu(), dim=-1)
        positions = range(start, len(ids))
        tops = [torch.topk(logp[i - 1], self.top_k).indices.tolist() for i in positions]
        flat = [x for top in tops for x in top]
        at = [i for i, top in zip(positions, tops, strict=True) for _ in top]
        readings = self._readings(ids, flat, at).double()
        token_lps = []
        for k, (i, top) in enumerate(zip(positions, tops, strict=True)):
            p = logp[i - 1, top].exp()
            s = readings[k * self.top_k : (k + 1) * self.top_k]
            mass = float(p.sum())
            tilt = self.weight * (s - float((p * s).sum()) / mass)
            log_z = math.log(float((p * tilt.exp()).sum()) + max(0.0, 1.0 - mass))
            lift = float(tilt[top.index(ids[i])]) if ids[i] in top else 0.0
            token_lps.append(float(logp[i - 1, ids[i]]) + lift - log_z)
        return token_lps


DECODERS: dict[str, Decoder] = {"probe-tilted": ProbeTilted}
"""Decoding strategies by name."""
