"""Residual-stream access through forward hooks: read and edit chosen layers' outputs.

Layer `i` is the output of decoder block `i` (Hugging Face's `hidden_states[i + 1]`). Hooks
live only inside a `with` block (or until `.remove()`), so the user's model is never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from valuescope.backends.replay import LayerReplay
from valuescope.errors import BackendCapabilityError

if TYPE_CHECKING:  # torch loads with a white-box model, not with the command line
    import torch
    from torch import nn

LayerEdit = Callable[["torch.Tensor"], "torch.Tensor"]
"""Maps a layer's output hidden states (batch, seq, hidden) to the edited ones."""

_GUESSES = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers")


def find_layers(model: nn.Module, path: str | None = None) -> nn.ModuleList:
    """The decoder blocks of `model`: guessed for common architectures, or at the dotted `path`.

    `path` may also be a template such as `model.layers.{num}` (the index part is dropped).
    """
    from torch import nn

    candidates = (path.split(".{num}")[0],) if path else _GUESSES
    for candidate in candidates:
        module: Any = model
        for part in candidate.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    where = f"at {path!r}" if path else f"at any of {', '.join(_GUESSES)}"
    raise BackendCapabilityError(
        f"found no decoder layers {where} in {type(model).__name__}; pass the layer path "
        "explicitly (e.g. layer_path='model.layers')"
    )


class HookHandle:
    """Removes its forward hooks on `.remove()` or at the end of a `with` block."""

    def __init__(self, handles: list[torch.utils.hooks.RemovableHandle]) -> None:
        self._handles = handles

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _replace_hidden(output: Any, hidden: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden


def _hidden_of(output: Any) -> torch.Tensor:
    import torch

    hidden = output[0] if isinstance(output, tuple) else output
    if not isinstance(hidden, torch.Tensor):
        raise BackendCapabilityError(
            f"a decoder layer returned {type(hidden).__name__}, not a tensor"
        )
    return hidden


class ResidualStream:
    """Read and edit the residual stream of a model at chosen layers."""

    def __init__(self, layers: Iterable[nn.Module]) -> None:
        self._layers = list(layers)
        self.replay = LayerReplay(self._layers)
        """Skips the blocks below a swept layer for passes the backend names (see replay.py)."""

    @classmethod
    def of(cls, model: nn.Module, layer_path: str | None = None) -> ResidualStream:
        return cls(find_layers(model, layer_path))

    def __len__(self) -> int:
        return len(self._layers)

    def _check(self, layers: Iterable[int]) -> list[int]:
        chosen = list(layers)
        for layer in chosen:
            if not 0 <= layer < len(self._layers):
                last = len(self._layers) - 1
                raise BackendCapabilityError(
                    f"layer {layer} is out of range; this model has layers 0..{last}"
                )
        return chosen

    @contextmanager
    def record(self, layers: Iterable[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
        """Collect each chosen layer's output (detached, one tensor per forward call).

        >>> with backend.residual.record([3]) as seen:  # doctest: +SKIP
        ...     backend.loglikelihood(requests)
        """
        chosen = self._check(layers)
        seen: dict[int, list[torch.Tensor]] = {layer: [] for layer in chosen}

        def hook_for(layer: int) -> Callable[[nn.Module, Any, Any], None]:
            def hook(_module: nn.Module, _args: Any, output: Any) -> None:
                seen[layer].append(_hidden_of(output).detach().clone())

            return hook

        handles = [self._layers[layer].register_forward_hook(hook_for(layer)) for layer in chosen]
        with HookHandle(handles):
            yield seen

    def edit(self, edits: Mapping[int, LayerEdit]) -> HookHandle:
        """Replace chosen layers' outputs by `edit(output)`; use as `with stream.edit(...):`."""
        chosen = self._check(edits)

        def hook_for(edit: LayerEdit) -> Callable[[nn.Module, Any, Any], Any]:
            def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
                return _replace_hidden(output, edit(_hidden_of(output)))

            return hook

        return HookHandle(
            [self._layers[layer].register_forward_hook(hook_for(edits[layer])) for layer in chosen]
        )

    def add(self, vectors: Mapping[int, torch.Tensor], scale: float = 1.0) -> HookHandle:
        """Add `scale * vector` at every position of each chosen layer's output."""

        def adder(vector: torch.Tensor) -> LayerEdit:
            def edit(hidden: torch.Tensor) -> torch.Tensor:
                return hidden + scale * vector.to(device=hidden.device, dtype=hidden.dtype)

            return edit

        return self.edit({layer: adder(vector) for layer, vector in vectors.items()})
