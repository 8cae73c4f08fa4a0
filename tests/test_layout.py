"""The package's shape: dependencies point one way along the loop, and measuring needs no torch.

steering -> vectors -> audit -> detectors -> instruments -> backends, each layer importing only itself and
the layers below it (the shared core: errors, cache, checkpoint, folders, progress, yamlfile). Imports
inside functions count too: a lazy import still ties the layers together.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import valuescope

PACKAGE = Path(valuescope.__file__).parent
LAYERS = [
    "core",
    "backends",
    "instruments",
    "detectors",
    "audit",
    "vectors",
    "rewards",
    "steering",
    "cli",
]
CORE = {"errors", "cache", "checkpoint", "folders", "progress", "yamlfile", "__init__", "__main__"}


def layer_of(module: str) -> str:
    """`valuescope.audit.kinds` -> audit; top-level shared modules -> core."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in CORE:
        return "core"
    return parts[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every valuescope import in the file, top level or not."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "valuescope":
                found += [(node.lineno, f"valuescope.{a.name}") for a in node.names]
            elif node.module.startswith("valuescope."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: use absolute imports")
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("valuescope")]
    return found


def test_every_module_sits_in_a_known_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert layer_of(module_name(path)) in LAYERS, path


def test_dependencies_point_one_way() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        if importer == "valuescope":  # the public surface re-exports every layer, lazily
            continue
        mine = LAYERS.index(layer_of(importer))
        for line, imported in imports_of(path):
            if imported == "valuescope.__version__":
                continue
            theirs = LAYERS.index(layer_of(imported))
            if theirs > mine:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line}: {importer} imports {imported}")
    assert wrong == []


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    """The checker itself: an audit module importing steering is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from valuescope.steering.operators import Steering\n")
    assert imports_of(bad) == [(2, "valuescope.steering.operators")]
    assert LAYERS.index(layer_of("valuescope.steering.operators")) > LAYERS.index("audit")


@pytest.mark.parametrize(
    "modules",
    [
        "valuescope",
        "valuescope.cli, valuescope.audit.run, valuescope.audit.results, valuescope.audit.card",
        "valuescope.audit.dilemma, valuescope.audit.likert, valuescope.audit.pairwise",
        "valuescope.backends.server, valuescope.instruments.tables",
    ],
)
def test_measuring_does_not_import_torch(modules: str) -> None:
    """A server audit needs no torch: the measure layer and the server backend load without it
    (white-box backends import it inside their factories)."""
    probe = f"import sys, {modules}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_public_names_resolve_lazily() -> None:
    """Every name in `__all__` loads from its module; `import valuescope` alone loads none."""
    probe = (
        "import sys, valuescope; before = 'valuescope.audit.run' in sys.modules; "
        "[getattr(valuescope, n) for n in valuescope.__all__]; "
        "print(before, 'valuescope.steering.loop' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
    assert 20 <= len(valuescope.__all__) <= 35
    with pytest.raises(AttributeError, match="no attribute 'LoglikelihoodRequest'"):
        valuescope.LoglikelihoodRequest  # noqa: B018 - plumbing stays in its subpackage
