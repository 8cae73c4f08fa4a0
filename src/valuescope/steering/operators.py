"""Steering: add value vectors to the residual stream while the model runs, and measure the cost.

A steering operator turns one layer's terms (value vectors and coefficients) into the edit of
that layer's output; `OPERATORS` registers them by the mode name `--mode` and `--steer-mode`
take. Both built-ins act on every position of the prompt and of generated tokens:

- `add`: h + coef * v at the value's layer (v in class-gap units, so coef 1 moves an
  activation by the distance between an upholding and an opposing answer);
- `gated`: only as much as needed. With unit direction u and the probe's decision midpoint m,
  the target reading is t = m + coef * gap; a position reading h.u below t gets (t - h.u) * u
  and a position already at or past t gets nothing (mirrored for negative coefficients). This
  is the minimal change that makes the probe read the target everywhere.

Reward-guided decoding, which changes no activation, is in `valuescope.steering.decoding`.

The fluency cost is the relative increase of perplexity on neutral text shipped with the
project (`data/texts/neutral.yaml`), steered against unsteered.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from valuescope.backends.base import Backend, LoglikelihoodRequest, WhiteBoxBackend
from valuescope.backends.residual import HookHandle, LayerEdit
from valuescope.cache import file_sha256
from valuescope.errors import UsageError
from valuescope.vectors.extract import VectorSet, check_model
from valuescope.yamlfile import read_yaml

Mode = Literal["add", "gated"]
NEUTRAL_CONTEXT = "Here is a short passage.\n\n"


def check_mode(mode: str, flag: str) -> Mode:
    """A steering mode from the command line, or a usage error that names the flag."""
    if mode not in OPERATORS:
        raise UsageError(f"{flag} {mode!r}: choose add (coef x vector everywhere) or gated")
    return mode  # type: ignore[return-value]


@dataclass(frozen=True)
class Term:
    """One value's vector at one layer, with its coefficient."""

    value: str
    layer: int
    coef: float


class Operator(Protocol):
    """How one layer's terms edit that layer's output (each term's layer is that layer)."""

    def __call__(self, vectors: VectorSet, terms: Sequence[Term]) -> LayerEdit: ...


def add(vectors: VectorSet, terms: Sequence[Term]) -> LayerEdit:
    """h + sum of coef * vector: the same shift at every position, whatever it reads."""
    total = sum(
        (t.coef * vectors[t.value].layers[t.layer].vector for t in terms),
        start=np.zeros(vectors.hidden_size),
    )
    added = torch.tensor(total, dtype=torch.float32)

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        return hidden + added.to(device=hidden.device, dtype=hidden.dtype)

    return edit


def gated(vectors: VectorSet, terms: Sequence[Term]) -> LayerEdit:
    """Each position moved along a value's unit direction just far enough that the probe
    reads midpoint + coef * gap, and not at all if it reads that already (or beyond it)."""
    gates = []
    for t in terms:
        lv = vectors[t.value].layers[t.layer]
        target = lv.midpoint + t.coef * lv.gap
        gates.append((torch.tensor(lv.unit, dtype=torch.float32), target, t.coef > 0))

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        out = hidden
        for unit, target, up in gates:
            u = unit.to(device=hidden.device, dtype=hidden.dtype)
            short = target - hidden @ u
            short = short.clamp(min=0) if up else short.clamp(max=0)
            out = out + short[..., None] * u
        return out

    return edit


OPERATORS: dict[str, Operator] = {"add": add, "gated": gated}
"""Steering operators by mode name (`Steering.mode`, `--mode`, `--steer-mode`)."""


@dataclass
class Steering:
    """Coefficients per value and layer on one vector file, applied with `apply(backend)`."""

    vectors: VectorSet
    terms: list[Term]
    mode: Mode = "add"
    path: str | None = None
    sha256: str | None = None
    fluency_cost: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in OPERATORS:
            raise UsageError(f"steering mode {self.mode!r}: choose add or gated")
        for term in self.terms:
            vv = self.vectors[term.value]
            if term.layer not in vv.layers:
                raise UsageError(
                    f"no {term.value} vector at layer {term.layer}; the file has layers "
                    f"{min(vv.layers)}..{max(vv.layers)}"
                )

    def edits(self) -> dict[int, LayerEdit]:
        """Per layer, the function that edits that layer's output."""
        by_layer: dict[int, list[Term]] = {}
        for term in self.terms:
            if term.coef != 0:
                by_layer.setdefault(term.layer, []).append(term)
        operator = OPERATORS[self.mode]
        return {layer: operator(self.vectors, terms) for layer, terms in by_layer.items()}

    @contextmanager
    def apply(self, backend: WhiteBoxBackend) -> Iterator[None]:
        """Steer `backend` inside the block; hooks are removed on exit, even on errors."""
        check_model(self.vectors, backend)
        handle: HookHandle = backend.residual.edit(self.edits())
        try:
            yield
        finally:
            handle.remove()

    def as_dict(self) -> dict[str, Any]:
        """The `steering` field of results.json."""
        return {
            "vectors": self.path,
            "vectors_sha256": self.sha256,
            "model": self.vectors.model,
            "method": self.vectors.method,
            "mode": self.mode,
            "values": sorted({t.value for t in self.terms}),
            "terms": [{"value": t.value, "layer": t.layer, "coef": t.coef} for t in self.terms],
            "fluency_cost": self.fluency_cost,
            **self.extra,
        }

    def fingerprint(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "mode": self.mode,
                "terms": [[t.value, t.layer, t.coef] for t in self.terms]}  # fmt: skip

    # The Intervention protocol: an audit runs under it and records it as `steering`.
    name = "steering"
    flag = "--steer"
    white_box = True

    def wrap(self, backend: Backend) -> Backend:
        """`backend` steered, its fluency cost measured first (once) if not yet known."""
        if not isinstance(backend, WhiteBoxBackend):
            raise UsageError(
                f"{self.flag} needs a local model (hidden states): smollm2, hf:<dir> or "
                f"gguf:<file>; {backend.spec.raw!r} is black-box"
            )
        if self.fluency_cost is None:
            self.fluency_cost = fluency_cost(backend, self)
        return SteeredBackend(backend, self)


class SteeredBackend:
    """A white-box backend whose every call runs steered; `prior` is the same model unsteered.

    Scorers that calibrate against a neutral prompt read the prior from `prior`, as they read
    it without the system prompt: the prior is the unmodified model's, so the steering's whole
    effect shows (a neutral prompt steered too would cancel the part of it that does not
    depend on the item).
    """

    def __init__(self, backend: WhiteBoxBackend, steering: Steering) -> None:
        check_model(steering.vectors, backend)
        self.prior = backend
        self.steering = steering

    def __getattr__(self, name: str) -> Any:
        return getattr(self.prior, name)

    def loglikelihood(self, requests: Any, progress: Any = None) -> Any:
        with self.steering.apply(self.prior):
            return self.prior.loglikelihood(requests, progress)

    def generate(self, prompts: Any, params: Any, progress: Any = None) -> Any:
        with self.steering.apply(self.prior):
            return self.prior.generate(prompts, params, progress)

    def answer_activations(self, requests: Any, layers: Any, progress: Any = None) -> Any:
        with self.steering.apply(self.prior):
            return self.prior.answer_activations(requests, layers, progress)

    def forward_scores(self, requests: Any) -> Any:
        with self.steering.apply(self.prior):
            return self.prior.forward_scores(requests)


def parse_steer(text: str, mode: Mode = "add", flag: str = "--steer") -> Steering:
    """`FILE:value=coef[,value@layer=coef...]` -> Steering (layer defaults to the value's best).

    `flag` names where the text came from in errors (`--steer`, or an argument)."""
    example = (
        "expected FILE:value=coef[,value=coef...], e.g. vectors.safetensors:benevolence=4,"
        "power=-2 (value@layer=coef picks a layer)"
    )
    path, sep, spec = text.rpartition(":")
    if not sep or not path or "=" not in spec:
        raise UsageError(f"{flag} {text!r}: {example}")
    vectors = VectorSet.load(path)
    terms: list[Term] = []
    for part in spec.split(","):
        name, eq, coef_text = part.partition("=")
        value, at, layer_text = name.strip().partition("@")
        if not eq or not value:
            raise UsageError(f"{flag}: {part!r} is not value=coef; {example}")
        try:
            coef = float(coef_text)
        except ValueError:
            raise UsageError(f"{flag}: {part!r}: the coefficient is not a number") from None
        if not math.isfinite(coef) or coef == 0:
            raise UsageError(
                f"{flag}: {part!r}: the coefficient must be a finite number other than 0 "
                "(0 steers nothing: leave the value out)"
            )
        try:
            layer = int(layer_text) if at else vectors[value].best_layer
        except ValueError:
            raise UsageError(f"{flag}: {part!r}: the layer after @ is not a whole number") from None
        except UsageError as error:  # a value the file has no vector for
            raise UsageError(f"{flag}: {error}") from None
        if any(t.value == value and t.layer == layer for t in terms):
            raise UsageError(f"{flag}: {value}@{layer} is given twice; give each once")
        terms.append(Term(value, layer, coef))
    try:
        return Steering(vectors, terms, mode, str(Path(path)), file_sha256(Path(path).expanduser()))
    except UsageError as error:  # a layer the file has no vector at
        raise UsageError(f"{flag}: {error}") from None


def neutral_texts() -> list[str]:
    path = Path(str(resources.files("valuescope") / "data" / "texts" / "neutral.yaml"))
    return [str(t) for t in read_yaml(path)["texts"]]


def perplexity(backend: Backend, texts: Sequence[str] | None = None) -> float:
    """Perplexity of the neutral texts (per token, all texts pooled)."""
    texts = list(texts) if texts is not None else neutral_texts()
    results = backend.loglikelihood([LoglikelihoodRequest(NEUTRAL_CONTEXT, t) for t in texts])
    total = sum(r.logprob for r in results)
    tokens = sum(r.n_tokens for r in results)
    return math.exp(-total / tokens)


def fluency_cost(
    backend: WhiteBoxBackend, steering: Steering, baseline: float | None = None
) -> float:
    """Relative perplexity increase on the neutral texts: ppl(steered) / ppl(plain) - 1."""
    plain = baseline if baseline is not None else perplexity(backend)
    with steering.apply(backend):
        steered = perplexity(backend)
    return steered / plain - 1.0


def preference(
    backend: WhiteBoxBackend, pairs: Sequence[Any], steering: Steering | None = None
) -> float:
    """Mean P(upholding answer) over contrastive pairs, from per-token log-likelihoods.

    This is valuescope's own calibration measure (never an audit instrument): for each pair,
    softmax of the mean token log-probabilities of the two answers to the same situation.
    """
    requests = [LoglikelihoodRequest(p.chat, answer) for p in pairs for answer in p.answers()]

    def run() -> list[Any]:
        return backend.loglikelihood(requests)

    if steering is None:
        results = run()
    else:
        with steering.apply(backend):
            results = run()
    probs = []
    for k in range(0, len(results), 2):
        up, down = results[k], results[k + 1]
        margin = up.logprob / up.n_tokens - down.logprob / down.n_tokens
        probs.append(1.0 / (1.0 + math.exp(-margin)))
    return float(np.mean(probs))
