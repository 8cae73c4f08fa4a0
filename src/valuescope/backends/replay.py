"""Replay: skip the decoder blocks below a steered layer when the same text is scored again.

A calibration sweep scores the same texts many times, each time with another coefficient at
one layer `L`. Blocks `0..L` see the same input every time and give the same output, so after
the first pass their output at `L` is kept and later passes start from it: the sweep's cost per
point falls by about `(L + 1) / n_layers` of the blocks' work.

The backend names each batch it scores (the key must determine the inputs of all its forward
passes) and each pass of it (`pass_of(key, part)`); a batch replays only once all its passes
were recorded (`complete`). Only named passes are recorded or replayed: generation,
activations and anything else run as usual. A replayed block keeps the KV cache's bookkeeping
(each block's cached length) with a stub of the right length, which the blocks above never
read; their own caches are real. A pass runs for real whenever a hook (a recording or another
edit) sits on a block below `L`, or a pre-hook on `L` itself, since its output would then
differ. Edits at `L` (the steering being swept) run on the replayed output.

The first replayed pass on a model is checked against a real one (`confirm`); if they differ,
as they could on an architecture whose blocks share state, replay turns itself off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import nn

Mode = Literal["real", "record", "replay"]
_CACHE_ARGS = ("cache", "past_key_values", "past_key_value")
log = logging.getLogger(__name__)


class LayerReplay:
    """Records block `L`'s output per named pass and replays it inside `below(L)`."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self._layers = layers
        self._top: int | None = None
        self._recorded: dict[tuple[str, Hashable], Any] = {}
        self._complete: set[Hashable] = set()
        self._tuple_output: dict[int, bool] = {}
        self._key: tuple[str, Hashable] | None = None
        self._mode: Mode = "real"
        self.status: Literal["unchecked", "checked", "off"] = "unchecked"
        self.replayed = 0
        """Passes that skipped blocks (for tests and benchmarks)."""

    @contextmanager
    def below(self, layer: int) -> Iterator[None]:
        """Inside the block, named passes seen before start from block `layer`'s output."""
        if self._top is not None:
            raise RuntimeError("replay is already active; it does not nest")
        if not 0 <= layer < len(self._layers):
            raise ValueError(f"layer {layer} is out of range 0..{len(self._layers) - 1}")
        patched = self._layers[: layer + 1]
        own = [module.__dict__.get("forward") for module in patched]
        for index, module in enumerate(patched):
            module.forward = self._wrap(index, module.forward)
        self._top = layer
        try:
            yield
        finally:
            for module, forward in zip(patched, own, strict=True):
                if forward is None:
                    del module.forward
                else:
                    module.forward = forward
            self._top, self._key, self._mode = None, None, "real"
            self._recorded.clear()
            self._complete.clear()

    def mode_of(self, key: Hashable | None) -> Mode:
        """How the passes of a batch named `key` would run now."""
        if self._top is None or key is None or self.status == "off" or self._hooked():
            return "real"
        return "replay" if key in self._complete else "record"

    @contextmanager
    def pass_of(self, key: Hashable | None, part: str) -> Iterator[Mode]:
        """Name one forward pass (`part`) of the batch named `key`, made inside the block
        (key None: run it for real and record nothing)."""
        self._key, self._mode = (part, key), self.mode_of(key)
        if self._mode == "replay":
            self.replayed += 1
        try:
            yield self._mode
        finally:
            self._key, self._mode = None, "real"

    def complete(self, key: Hashable | None, parts: Iterable[str]) -> None:
        """The batch named `key` made these passes; once all were recorded, it replays."""
        if key is not None and all((part, key) in self._recorded for part in parts):
            self._complete.add(key)

    def confirm(self, same: bool) -> None:
        """The first replayed pass gave the real pass's numbers (`same`), or it did not."""
        if same:
            self.status = "checked"
            return
        self.status = "off"
        log.warning(
            "replaying the blocks below a steered layer changed this model's numbers; "
            "replay is off for it (sweeps run every block, as without replay)"
        )

    def _hooked(self) -> bool:
        assert self._top is not None
        below = self._layers[: self._top]
        top = self._layers[self._top]
        return bool(top._forward_pre_hooks) or any(
            m._forward_hooks or m._forward_pre_hooks for m in below
        )

    def _wrap(self, index: int, forward: Callable[..., Any]) -> Callable[..., Any]:
        def replayed(*args: Any, **kwargs: Any) -> Any:
            if self._mode != "replay":
                out = forward(*args, **kwargs)
                self._tuple_output[index] = isinstance(out, tuple)
                if self._mode == "record" and index == self._top and self._key is not None:
                    self._recorded[self._key] = _detached(out)
                return out
            hidden = args[0] if args else kwargs["hidden_states"]
            _advance_cache(kwargs, index, hidden)
            if index == self._top:  # a copy: an edit at the top may work in place
                assert self._key is not None
                return _detached(self._recorded[self._key])
            return (hidden,) if self._tuple_output.get(index) else hidden

        return replayed


def _detached(out: Any) -> Any:
    if isinstance(out, tuple):
        return (out[0].detach().clone(), *out[1:])
    return out.detach().clone()


def _advance_cache(kwargs: dict[str, Any], index: int, hidden: Any) -> None:
    """Grow a skipped block's KV cache by the pass's length, as its attention would have: the
    model reads cached lengths (for masks and positions) from the first block."""
    cache = next((kwargs[k] for k in _CACHE_ARGS if kwargs.get(k) is not None), None)
    if cache is None or not hasattr(cache, "update"):
        return
    stub = hidden.new_zeros(hidden.shape[0], 1, hidden.shape[1], 1)
    cache.update(stub, stub, index)
