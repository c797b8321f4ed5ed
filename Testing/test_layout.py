"""The library's import graph: packages in data-flow order, inference apart from training, no circles,
and imports between the project's own modules at the top of each module (where a reader sees them)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "SpineAssistLib"
PKG = "SpineAssistLib"

# The inference side: what `spineassist assess` and the Slicer module run. None of it may import
# training code, the command line or the user interfaces.
INFERENCE = ("dicom", "models", "grading", "pipeline", "export", "mrml")
NOT_FROM_INFERENCE = ("training", "cli", "ui", "phantom", "batch")


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(LIB.rglob("*.py")):
        parts = list(p.relative_to(LIB.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, bool, bool]]:
    """Return (imported project module, at module top level, for type checkers only) for each import of
    the project in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    typing_only: set[int] = set()
    for n in tree.body:
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
            typing_only |= {id(m) for m in n.body}
    top |= typing_only
    found = []
    for n in ast.walk(tree):
        targets: list[str] = []
        if isinstance(n, ast.Import):
            targets = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            assert n.level == 0, f"{path}: relative import; the project imports its modules absolutely"
            mod = n.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in n.names]
        for t in targets:
            if t == PKG or t.startswith(PKG + "."):
                while t not in MODULES:
                    t = t.rsplit(".", 1)[0]
                if t != name:
                    found.append((t, id(n) in top, id(n) in typing_only))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("package", INFERENCE)
def test_inference_imports_no_training_cli_or_ui(package):
    bad = sorted({(m, t) for m, deps in GRAPH.items() if _package(m) == package
                  for t, _, _ in deps if _package(t) in NOT_FROM_INFERENCE})
    assert bad == []


def test_no_import_circles():
    # an import for type checkers only is no import at run time
    edges = {m: sorted({t for t, _, typing in deps if not typing}) for m, deps in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges.get(m, []):
            if m.startswith(t + ".") and MODULES[t].name == "__init__.py":
                continue   # a module importing its own package's __init__
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert cycles == []


# Packages whose import takes seconds or needs a GUI: a module that imports one of them at its top,
# directly or through the project's modules it imports at their top, may be imported inside the
# function that needs it, so that Slicer loads the module and `spineassist --help` starts at once.
HEAVY = {"torch", "ultralytics", "monai", "highdicom", "pydicom", "scipy", "slicer", "vtk", "qt", "ctk", "cv2",
         "matplotlib", "onnxruntime", "onnx", "SimpleITK", "skimage", "PIL", "trame", "trame_slicer", "trame_vuetify",
         "aiohttp", "playwright"}


def _top_third_party(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for n in tree.body:
        for m in ast.walk(n) if isinstance(n, (ast.If, ast.Try)) else [n]:
            if isinstance(m, ast.Import):
                out |= {a.name.split(".")[0] for a in m.names}
            elif isinstance(m, ast.ImportFrom) and m.module and not m.module.startswith(PKG):
                out.add(m.module.split(".")[0])
    return out - {"__future__"}


def _third_party_closure() -> dict[str, set[str]]:
    """Return, per module, the third-party and standard packages importing it loads."""
    out = {m: _top_third_party(p) for m, p in MODULES.items()}
    changed = True
    while changed:
        changed = False
        for m, deps in GRAPH.items():
            for t, top, typing in deps:
                if top and not typing and not out[t] <= out[m]:
                    out[m] |= out[t]
                    changed = True
    return out


def test_project_imports_are_at_the_top_of_each_module():
    loads = _third_party_closure()
    stdlib = set(sys.stdlib_module_names)

    def may_wait(m: str, t: str) -> bool:
        if loads[t] & HEAVY:
            return True
        # the command line imports every subcommand's module to build its parser; a subcommand's
        # `run` imports the library beyond the standard library when that command runs
        return m.startswith(f"{PKG}.cli.") and bool(loads[t] - stdlib)

    inner = sorted((m, t) for m, deps in GRAPH.items() for t, top, _ in deps if not top and not may_wait(m, t))
    assert inner == []


def test_light_modules_stay_light():
    """Slicer imports the module shell, the findings model and the panel model before any dependency
    is installed; the command line's parser is built on every call."""
    loads = _third_party_closure()
    for m in (PKG, f"{PKG}.findings", f"{PKG}.cli", f"{PKG}.ui.panel_model", f"{PKG}.mrml", f"{PKG}.errors"):
        assert loads[m] & HEAVY == set(), m


def test_the_cli_loads_its_subcommands_only_when_asked():
    """`spineassist --version` must start fast: the subcommands' modules are imported by name."""
    assert not [t for t, _, _ in GRAPH[f"{PKG}.cli"] if t.startswith(f"{PKG}.cli.")]
