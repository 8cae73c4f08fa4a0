"""A steering setting as a llama.cpp control vector, so it runs outside Python too.

llama.cpp's control-vector GGUF (architecture `controlvector`) holds one tensor `direction.<n>`
per layer, added to the output of block n, the same numbering as valuescope's; llama.cpp never
applies a vector at block 0. Run an exported file with `llama-cli --control-vector-scaled FILE
COEF` (or `--control-vector FILE`, coefficient 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from valuescope.errors import UsageError
from valuescope.steering.operators import Steering
from valuescope.vectors.controlvector import ARCH


def export_gguf(steering: Steering, path: Path, model_hint: str = "llama") -> Path:
    """Write the steering's vectors (coefficients applied, summed per layer) as a control
    vector GGUF that llama.cpp loads."""
    import gguf

    per_layer: dict[int, np.ndarray] = {}
    for term in steering.terms:
        if term.layer == 0:
            raise UsageError(
                f"{term.value} at layer 0: llama.cpp applies control vectors from layer 1 on; "
                "pick another layer with value@layer=coef"
            )
        vector = term.coef * steering.vectors[term.value].layers[term.layer].vector
        per_layer[term.layer] = per_layer.get(term.layer, 0) + vector
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_string(f"{ARCH}.model_hint", model_hint)
    writer.add_uint32(f"{ARCH}.layer_count", len(per_layer))
    for layer in sorted(per_layer):
        writer.add_tensor(f"direction.{layer}", per_layer[layer].astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
