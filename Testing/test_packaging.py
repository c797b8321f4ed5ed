"""Packaging can never drop a file silently: every Python file of the module and the library is in the CMake lists."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cmake_listed(cmake: Path, variable: str, prefix: str) -> set[str]:
    text = cmake.read_text()
    m = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert m, f"{cmake} has no set({variable} ...)"
    entries = m.group(1).split()
    return {e.replace("${MODULE_NAME}", "SpineAssist").replace("${LIB_NAME}", "SpineAssistLib") for e in entries}


def test_every_module_python_file_is_in_the_cmake_list():
    listed = _cmake_listed(REPO / "SpineAssist" / "CMakeLists.txt", "MODULE_PYTHON_SCRIPTS", "")
    on_disk = {p.relative_to(REPO / "SpineAssist").as_posix() for p in (REPO / "SpineAssist").rglob("*.py")}
    assert on_disk - listed == set(), "add these to MODULE_PYTHON_SCRIPTS in SpineAssist/CMakeLists.txt"
    assert listed - on_disk == set(), "these are listed in SpineAssist/CMakeLists.txt but do not exist"


def test_every_library_python_file_is_in_the_cmake_list():
    listed = _cmake_listed(REPO / "SpineAssist" / "CMakeLists.txt", "LIB_PYTHON_SCRIPTS", "")
    on_disk = {p.relative_to(REPO).as_posix() for p in (REPO / "SpineAssistLib").rglob("*.py")}
    assert on_disk - listed == set(), "add these to LIB_PYTHON_SCRIPTS in SpineAssist/CMakeLists.txt"
    assert listed - on_disk == set(), "these are listed in SpineAssist/CMakeLists.txt but do not exist"


def test_module_resources_listed_in_cmake_exist():
    listed = _cmake_listed(REPO / "SpineAssist" / "CMakeLists.txt", "MODULE_PYTHON_RESOURCES", "")
    for rel in listed:
        assert (REPO / "SpineAssist" / rel).is_file(), f"{rel} is listed in MODULE_PYTHON_RESOURCES but missing"


def test_top_level_cmake_is_a_slicer_extension():
    text = (REPO / "CMakeLists.txt").read_text()
    assert "project(SpineAssist)" in text
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert re.search(rf'set\({key} "[^"]+"\)', text), f"{key} missing or empty"
    assert re.search(r"set\(EXTENSION_DEPENDS PyTorch\)", text)
    assert "add_subdirectory(SpineAssist)" in text
    assert "slicerMacroBuildScriptedModule" in (REPO / "SpineAssist" / "CMakeLists.txt").read_text()


def test_module_shell_is_thin_and_imports_no_heavy_package_at_top_level():
    import ast

    source = (REPO / "SpineAssist" / "SpineAssist.py").read_text()
    tree = ast.parse(source)
    top_imports = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_imports |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top_imports.add((node.module or "").split(".")[0])
    assert not top_imports & {"torch", "ultralytics", "monai", "SimpleITK", "highdicom"}
    assert len(source.splitlines()) < 150, "SpineAssist.py should stay a thin shell; put logic in SpineAssistLib"
    assert "none is validated for clinical use" in source  # the model disclaimer in the help text
