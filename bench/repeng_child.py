"""Child of bench/steering_bench.py, run inside bench/.venv-repeng: repeng's vector for one value.

    python bench/repeng_child.py VALUE LAYER OUT.gguf

Trains `repeng.ControlVector.train` (PCA of paired differences of last-token hidden states) on
the same training pairs valuescope's extraction uses (same rendering: the chat up to and
including the situation, then the stance), at one layer, and writes it with repeng's own
`export_gguf`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from repeng import ControlVector, DatasetEntry

from valuescope import load_backend
from valuescope.vectors.contrast import load_contrast


def main() -> None:
    value, layer, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    backend = load_backend("smollm2")
    train, _ = load_contrast("schwartz").split(value, 0.3, 0)
    dataset = []
    for pair in train:
        prompt = backend.render(pair.chat)  # type: ignore[attr-defined]
        up, down = pair.answers()
        dataset.append(DatasetEntry(positive=prompt + up, negative=prompt + down))
    tokenizer = backend.tokenizer  # type: ignore[attr-defined]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    vector = ControlVector.train(
        backend.model,  # type: ignore[attr-defined]
        tokenizer,
        dataset,
        hidden_layers=[layer],
        method="pca_diff",
    )
    vector.export_gguf(str(out))
    print(f"repeng vector for {value} at layer {layer}: {out}")


if __name__ == "__main__":
    main()
