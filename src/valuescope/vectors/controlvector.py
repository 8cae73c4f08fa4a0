"""Vectors in other tools' formats: llama.cpp control-vector GGUF, repeng and
`steering-vectors` files in (`valuescope.steering.export` writes llama.cpp's format out).

llama.cpp's control-vector GGUF (architecture `controlvector`, which repeng's `export_gguf`
also writes) holds one tensor `direction.<n>` per layer, added to the output of block n, the
same layer numbering as valuescope's (block outputs, 0-based); llama.cpp never applies a
vector at block 0, so a value whose best layer is 0 cannot be exported. Run an exported file
with `llama-cli --control-vector-scaled FILE COEF` (or `--control-vector FILE`, coefficient 1).

Imported directions come without valuescope's reading data, so they are measured on its own
contrastive pairs of the named value (`measure_direction`, as every direction valuescope makes):
each layer's direction is oriented so that upholding answers project higher than opposing ones
(a direction given the other way round is flipped, and the file's `extra` names those layers),
put in class-gap units (coefficient 1 moves an activation by the gap between upholding and
opposing answers), and gets its accuracy, midpoint and reading calibration from all of those
pairs (none of them was used to make it). `steering-vectors` keeps vectors as Python objects; save
`{str(layer): tensor}` of its `layer_activations` with safetensors and import that file
(valuescope never unpickles files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from valuescope.backends.base import WhiteBoxBackend
from valuescope.errors import UsageError
from valuescope.vectors.aggregators import unit_of
from valuescope.vectors.contrast import ContrastSet
from valuescope.vectors.extract import (
    LayerVector,
    ValueVectors,
    VectorSet,
    check_model,
    contrast_requests,
)
from valuescope.vectors.measure import measure_direction

ARCH = "controlvector"


def read_gguf(path: Path) -> dict[int, np.ndarray]:
    """The `direction.<n>` tensors of a control-vector GGUF (valuescope, repeng, llama.cpp)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError and struct errors on foreign files
        raise UsageError(f"{path}: not a GGUF file ({exc})") from None
    field = reader.get_field("general.architecture")
    arch = bytes(field.parts[-1]).decode("utf-8", "replace") if field and field.parts else None
    if arch != ARCH:
        raise UsageError(f"{path}: architecture {arch!r}, not a control vector ({ARCH!r})")
    found: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        if not tensor.name.startswith("direction."):
            continue
        try:
            layer = int(tensor.name.split(".", 1)[1])
        except ValueError:
            raise UsageError(f"{path}: tensor {tensor.name!r} is not direction.<layer>") from None
        found[layer] = np.array(tensor.data, dtype=np.float64).reshape(-1)
    if not found:
        raise UsageError(f"{path}: no direction.<layer> tensors")
    return found


def read_layer_tensors(path: Path) -> dict[int, np.ndarray]:
    """A safetensors file of `{layer: vector}` (e.g. a steering-vectors SteeringVector's
    `layer_activations` saved with safetensors)."""
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise UsageError(f"{path}: not a safetensors file ({exc})") from None
    found = {}
    for name, tensor in tensors.items():
        if not name.isdigit():
            raise UsageError(f"{path}: tensor {name!r}: expected layer numbers as names")
        found[int(name)] = np.asarray(tensor, dtype=np.float64).reshape(-1)
    if not found:
        raise UsageError(f"{path}: no tensors; expected one vector per layer, named by its number")
    return found


def load_directions(path: str | Path) -> dict[int, np.ndarray]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"no such file {str(path)!r}")
    if path.suffix.lower() == ".gguf":
        return read_gguf(path)
    if path.suffix.lower() == ".safetensors":
        return read_layer_tensors(path)
    raise UsageError(f"{path}: import .gguf (llama.cpp, repeng) or .safetensors (layer: vector)")


def check_import_value(contrast: ContrastSet, value: str) -> None:
    """An imported vector is measured on its value's pairs: the value must have some."""
    if value not in contrast.values:
        raise UsageError(
            f"no contrastive pairs for {value!r} to measure the imported vector on; "
            f"{contrast.name} has {', '.join(contrast.values)}"
        )


def import_directions(
    directions: dict[int, Any],
    value: str,
    backend: WhiteBoxBackend,
    contrast: ContrastSet,
    source: str,
) -> VectorSet:
    """Directions from another tool as a one-value VectorSet, measured on valuescope's pairs."""
    check_import_value(contrast, value)
    layers = sorted(directions)
    for layer in layers:
        if not 0 <= layer < len(backend.residual):
            raise UsageError(
                f"{source}: layer {layer} is outside the model's 0..{len(backend.residual) - 1}"
            )
        shape = np.asarray(directions[layer]).shape
        if shape != (backend.hidden_size,):
            raise UsageError(
                f"{source}: layer {layer} has shape {shape}; the model's hidden size is "
                f"{backend.hidden_size}"
            )
    pairs = contrast.of(value)
    subset = ContrastSet(
        contrast.name, contrast.taxonomy, tuple(pairs), contrast.sha256, contrast.source
    )
    acts = backend.answer_activations(contrast_requests(subset), layers)
    layer_vectors = {}
    flipped = []
    for layer in layers:
        a = acts[layer].double().numpy()
        pos, neg = a[0::2], a[1::2]
        unit = unit_of(np.asarray(directions[layer], dtype=np.float64))
        measured = measure_direction(unit, pos, neg)  # none of these pairs made it: all score
        layer_vectors[layer] = LayerVector(
            measured.vector,
            {"imported": measured.accuracy},
            measured.midpoint,
            measured.calibration,
            measured.separation,
        )
        if measured.flipped:
            flipped.append(layer)
    best = max(
        layers, key=lambda k: (layer_vectors[k].probe_accuracy, layer_vectors[k].separation, -k)
    )
    found = VectorSet(
        model=backend.name,
        spec=backend.spec.raw,
        hidden_size=backend.hidden_size,
        num_layers=len(backend.residual),
        method="imported",
        taxonomy=contrast.taxonomy.name,
        contrast={"name": contrast.name, "sha256": contrast.sha256, "pairs": len(pairs)},
        values={value: ValueVectors(value, layer_vectors, best, 0, len(pairs))},
        extra={"imported_from": source, **({"flipped_layers": flipped} if flipped else {})},
    )
    check_model(found, backend)
    return found
