"""Optimised value vectors: a direction trained to move the model's own preference cheaply.

Mean-diff, PCA and probe directions come from activations alone. They tell the stances apart,
but nothing makes them the direction that moves the model's choice most for a given damage to
its text, and on the embedded model they move its choices little within a fluency budget. Here
the direction at one layer is trained, its norm held at `radius`, on the training share of a
value's contrastive pairs:

- a bidirectional preference loss (as in BiPO, Cao et al. 2024): steered by +radius*u the
  upholding answer should gain on the opposing one (per-token log-likelihood margin, relative
  to the plain model), steered by -radius*u it should lose;
- plus `kl_weight` times the KL divergence of the next-token distributions over the pair's
  shared context (the question and the situation), steered against plain: the text the pair
  does not contest should read as before.

The held-out pairs stay unseen, so held-out accuracy and the reading calibration remain
honest; the audit instruments are never seen at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from valuescope.backends.base import LoglikelihoodRequest, WhiteBoxBackend
from valuescope.errors import UsageError
from valuescope.progress import ProgressHook
from valuescope.vectors.contrast import ContrastPair

PLAIN_KEEP_BYTES = 1 << 30
"""How much of the plain model's shared-context distributions training keeps between steps
(bytes). They take context tokens x vocabulary x 4 bytes, which grows with the vocabulary and
with the number of pairs: a large vocabulary or a user's larger pair set would need gigabytes.
Batches past this are recomputed at each step instead, which gives the same direction and costs
one gradient-free forward pass per batch and step."""

PASS_PAIRS = 1
"""Pairs per forward pass in training. A batch's loss is a mean over its pairs, so its gradient
is summed over passes and the step is the same; only one pass's graph is alive at a time, so
memory holds one pair's graph rather than a whole batch's (with every answer padded to the
batch's longest). On a GPU with room to spare, more pairs per pass may be faster."""


@dataclass(frozen=True)
class Training:
    """How a direction is trained (defaults chosen on the embedded model, whose figures are in
    docs/results/steering.md)."""

    steps: int = 4
    """Passes over the training pairs (most of the gain comes in the first two or three)."""
    kl_weight: float = 1.0
    lr: float = 0.03
    beta: float = 4.0
    """Sharpness of the preference loss on the per-token margin."""
    batch_pairs: int = 7
    radius: float = 1.0
    """Norm of the trained vector, in class gaps of the direction it starts from."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UsageError(f"--train-steps {self.steps}: must be at least 1")
        if self.kl_weight < 0 or self.lr <= 0 or self.beta <= 0 or self.batch_pairs < 1:
            raise UsageError(f"invalid training settings: {self}")
        if self.radius <= 0:
            raise UsageError(f"training radius {self.radius}: must be positive")


@dataclass(frozen=True)
class TrainedDirection:
    """A unit direction and how its training went (mean loss terms per step)."""

    unit: np.ndarray
    preference_loss: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    cosine_to_start: float = 1.0


def _requests(pairs: Sequence[ContrastPair]) -> list[LoglikelihoodRequest]:
    return [LoglikelihoodRequest(p.chat, answer) for p in pairs for answer in p.answers()]


def _shared_kl(plain: Sequence[torch.Tensor], steered: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per pair, KL(plain || steered) of the next-token distributions, averaged over the
    positions of the shared context."""
    pairs = zip(plain, steered, strict=True)
    return torch.stack([(p.exp() * (p - q)).sum(-1).mean() for p, q in pairs])


@torch.no_grad()
def _plain_pass(
    backend: WhiteBoxBackend,
    requests: list[LoglikelihoodRequest],
    pass_pairs: int = PASS_PAIRS,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The plain model's margins and shared-context distributions for one batch, `pass_pairs`
    pairs per forward pass. Copied out of the passes' log-distributions: a view would keep all
    of them alive (both answers' rows, every answer position), which at a 150k-token vocabulary
    is about a gigabyte per batch."""
    margins, contexts = [], []
    for j in range(0, len(requests), 2 * pass_pairs):
        means, dists = backend.forward_scores(requests[j : j + 2 * pass_pairs])
        margins.append(means[0::2] - means[1::2])
        contexts += [c.clone() for c in dists[0::2]]
    return torch.cat(margins), contexts


def train_direction(
    backend: WhiteBoxBackend,
    pairs: Sequence[ContrastPair],
    layer: int,
    start: np.ndarray,
    radius: float,
    training: Training = Training(),
    progress: ProgressHook | None = None,
    label: str = "training",
    keep_bytes: int = PLAIN_KEEP_BYTES,
    pass_pairs: int = PASS_PAIRS,
) -> TrainedDirection:
    """Train a unit direction at `layer` from `start` (see the module docstring). Each batch's
    plain pass is kept, in batch order, while it fits in what is left of `keep_bytes`; the
    others are recomputed at every step."""
    if not pairs:
        raise UsageError("no contrastive pairs to train a direction on")
    if pass_pairs < 1:
        raise UsageError(f"pass_pairs {pass_pairs}: must be at least 1")
    batches = [
        _requests(pairs[k : k + training.batch_pairs])
        for k in range(0, len(pairs), training.batch_pairs)
    ]
    kept: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
    room = keep_bytes

    def plain(k: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        nonlocal room
        if k in kept:
            return kept[k]
        found = _plain_pass(backend, batches[k], pass_pairs)  # no edit is active here
        size = sum(c.numel() * c.element_size() for c in found[1])
        if size <= room:
            kept[k], room = found, room - size
        return found

    start_t = torch.tensor(start / np.linalg.norm(start), dtype=torch.float32)
    u = torch.nn.Parameter(start_t.clone())
    optimizer = torch.optim.Adam([u], lr=training.lr)
    sign = [1.0]
    edit = {layer: lambda h: h + (sign[0] * radius) * (u / u.norm()).to(h.device, h.dtype)}
    pref_log: list[float] = []
    kl_log: list[float] = []
    total = training.steps * len(batches)
    if progress:
        progress(label, 0, total)
    for _ in range(training.steps):
        pref_sum = kl_sum = 0.0
        for k, requests in enumerate(batches):
            margin0, contexts0 = plain(k)
            n = len(requests) // 2
            grad = torch.zeros_like(u)
            # The batch's loss is a mean over its pairs, so its gradient is the sum of each
            # pass's share: one step per batch as before, with only one pass's graph alive.
            for s in (1.0, -1.0):
                sign[0] = s
                for j in range(0, n, pass_pairs):
                    these = slice(j, j + pass_pairs)  # this pass's pairs; 2 requests each
                    with backend.residual.edit(edit):
                        means, contexts = backend.forward_scores(
                            requests[2 * these.start : 2 * these.stop]
                        )
                    margin = (means[0::2] - means[1::2]) - margin0[these]
                    pref = -torch.nn.functional.logsigmoid(s * training.beta * margin).sum() / n
                    kl = _shared_kl(contexts0[these], contexts[0::2]).sum() / n
                    # only the direction gets a gradient, never the weights
                    (share,) = torch.autograd.grad(pref + training.kl_weight * kl, [u])
                    grad += share
                    pref_sum += float(pref.detach())
                    kl_sum += float(kl.detach())
            u.grad = grad
            optimizer.step()
            if progress:
                progress(label, 1, total)
        pref_log.append(pref_sum / (2 * len(batches)))
        kl_log.append(kl_sum / (2 * len(batches)))
    unit = (u / u.norm()).detach().double().numpy()
    return TrainedDirection(unit, pref_log, kl_log, float(unit @ start_t.double().numpy()))


def optimized(
    backend: WhiteBoxBackend,
    pairs: Sequence[ContrastPair],
    layer: int,
    start: np.ndarray,
    gap: float,
    training: Training,
    progress: ProgressHook | None,
    label: str,
) -> TrainedDirection:
    """`--method optimized`'s trainer: `train_direction` from `start`, its norm held at
    `training.radius` class gaps (`gap`, the class gap of the stored direction it starts from)."""
    return train_direction(
        backend, pairs, layer, start, training.radius * gap, training, progress, label
    )
