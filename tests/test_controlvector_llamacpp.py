"""llama.cpp itself applies an exported control vector as valuescope's hooks do.

The embedded SmolLM2 GGUF runs in llama.cpp (llama-cpp-python) with and without the exported
vector, and in transformers (the same weights, dequantized) with and without valuescope's
additive steering; the change of the next-token logits must agree. Exporting at the wrong layer
(one off) agrees visibly less, so the test checks the layer numbering, not only the file.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from valuescope.backends.base import Chat
from valuescope.backends.embedded import embedded_gguf_path
from valuescope.steering.export import export_gguf
from valuescope.steering.operators import Steering, Term
from valuescope.vectors.contrast import load_contrast
from valuescope.vectors.controlvector import read_gguf
from valuescope.vectors.extract import extract_vectors

pytestmark = pytest.mark.slow


def _llama_logits(llm: Any, tokens: list[int], cvec: dict[int, np.ndarray] | None) -> np.ndarray:
    import llama_cpp

    n_embd, n_layer = llm.n_embd(), llama_cpp.llama_model_n_layer(llm.model)
    if cvec is None:
        llama_cpp.llama_set_adapter_cvec(llm.ctx, None, 0, n_embd, 0, 0)
    else:
        # llama.cpp's buffer holds layers 1..n_layer-1 back to back (layer 0 is never present).
        data = np.zeros((n_layer - 1) * n_embd, dtype=np.float32)
        for layer, vector in cvec.items():
            data[(layer - 1) * n_embd : layer * n_embd] = vector
        pointer = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        assert (
            llama_cpp.llama_set_adapter_cvec(llm.ctx, pointer, data.size, n_embd, 1, n_layer) == 0
        )
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[len(tokens) - 1], dtype=np.float64)


def test_llama_cpp_applies_the_exported_vector_like_the_hooks(smollm2: Any, tmp_path: Path) -> None:
    from llama_cpp import Llama

    contrast = load_contrast("schwartz")
    small = contrast.__class__(contrast.name, contrast.taxonomy, tuple(contrast.of("benevolence")),
                               contrast.sha256, contrast.source)  # fmt: skip
    layer = 10
    vectors = extract_vectors(smollm2, small, layers=[layer - 1, layer, layer + 1])
    steering = Steering(vectors, [Term("benevolence", layer, 4.0)])
    cvec = read_gguf(export_gguf(steering, tmp_path / "b.gguf"))
    assert sorted(cvec) == [layer]

    prompt = smollm2.render(Chat("A stranger drops their wallet on the bus. What do you do?"))
    ids = smollm2._encode(prompt)
    import torch

    with torch.inference_mode():
        plain = smollm2.model(input_ids=torch.tensor([ids])).logits[0, -1].double().numpy()
        with steering.apply(smollm2):
            steered = smollm2.model(input_ids=torch.tensor([ids])).logits[0, -1].double().numpy()
    hf_change = steered - plain

    llm = Llama(model_path=str(embedded_gguf_path()), n_ctx=512, logits_all=True, verbose=False,
                n_threads=2, seed=0)  # fmt: skip
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    assert tokens == ids  # the same text, the same tokens
    base = _llama_logits(llm, tokens, None)
    right = _llama_logits(llm, tokens, cvec) - base
    wrong = _llama_logits(llm, tokens, {layer + 1: cvec[layer]}) - base
    agree = float(np.corrcoef(right, hf_change)[0, 1])
    off_by_one = float(np.corrcoef(wrong, hf_change)[0, 1])
    assert np.abs(hf_change).max() > 0.5  # the vector does something
    assert agree > 0.9, agree
    assert agree > off_by_one + 0.02, (agree, off_by_one)
