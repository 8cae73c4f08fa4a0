"""GGUF files through transformers, dequantized once and cached as safetensors.

Parsing and dequantizing a GGUF is slow; the fp32 copy under the cache directory (keyed by the
file's SHA-256) loads far faster and gives identical logits.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from valuescope.cache import cache_dir, file_sha256
from valuescope.errors import ModelNotAvailableError

MARKER = "valuescope-gguf.json"


def _fingerprint_index() -> Path:
    return cache_dir() / "gguf-hashes.json"


def gguf_sha256(path: Path) -> str:
    """SHA-256 of a GGUF file, remembered by (path, size, mtime) so large files hash once."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = _fingerprint_index()
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key not in index:
        index[key] = file_sha256(path)
        tmp = index_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, index_path)
    return str(index[key])


def dequantized_dir(path: Path, quiet: bool = False) -> Path:
    """A Hugging Face model directory holding the dequantized weights and tokenizer of `path`."""
    digest = gguf_sha256(path)
    target = cache_dir() / "gguf" / digest[:24]
    if (target / MARKER).is_file():
        return target
    if not quiet:
        print(
            f"valuescope: preparing {path.name} once (dequantizing GGUF; later loads use {target})",
            file=sys.stderr,
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
    except Exception as exc:  # transformers raises many types for unreadable files
        raise ModelNotAvailableError(
            f"could not load GGUF file {str(path)!r}: {exc}. Is it a complete GGUF of an "
            "architecture transformers supports (llama, mistral, qwen2, gemma3, ...)?"
        ) from exc
    # A GGUF-loaded model refuses to serialize while it still carries the GGUF quantizer.
    setattr(model, "hf_quantizer", None)  # noqa: B010 (typed as a module attribute)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / MARKER).write_text(
            json.dumps({"source": path.name, "sha256": digest, "dtype": "float32"}, indent=1)
        )
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / MARKER).is_file():  # another process won the race only if complete
                shutil.rmtree(target, ignore_errors=True)
                os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
