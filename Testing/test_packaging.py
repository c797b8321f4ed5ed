"""Packaging can never drop a file silently: every Python file of the module and the library is in the CMake lists."""

import re
from typing import Any
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


def _ui_widgets(ui_file: Path) -> tuple[Any, dict[str, str]]:
    import xml.etree.ElementTree as ET

    root = ET.parse(ui_file).getroot()
    return root, {w.get("name"): w.get("class") for w in root.iter("widget")}


def test_the_panel_layout_is_a_designer_file_with_every_widget_the_panel_looks_up():
    from SpineAssistLib.ui.widget import UI_WIDGETS

    ui_file = REPO / "SpineAssist" / "Resources" / "UI" / "SpineAssist.ui"
    listed = _cmake_listed(REPO / "SpineAssist" / "CMakeLists.txt", "MODULE_PYTHON_RESOURCES", "")
    assert "Resources/UI/SpineAssist.ui" in listed, "the .ui file must be installed with the module"
    root, widgets = _ui_widgets(ui_file)
    assert root.tag == "ui" and root.get("version") == "4.0" and root.findtext("class") == "SpineAssist"
    top = root.find("widget")
    assert (top.get("class"), top.get("name")) == ("qMRMLWidget", "SpineAssist")   # setMRMLScene reaches the selectors
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "widget names must be unique: childWidgetVariables keeps one"
    wrong = {n: (c, widgets.get(n)) for n, c in UI_WIDGETS.items() if widgets.get(n) != c}
    assert wrong == {}, "SpineAssist.ui lacks these widgets, or has them as another class (expected, found)"
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    custom = {c for c in widgets.values() if not c.startswith("Q")}
    assert custom <= declared, "every Slicer/CTK widget the .ui uses must be declared in <customwidgets>"
    scene_receivers = {c.findtext("receiver") for c in root.iter("connection")
                       if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    selectors = {n for n, c in widgets.items() if c == "qMRMLNodeComboBox"}
    assert selectors and selectors <= scene_receivers, "each node selector needs the scene from the panel"


def test_the_slicer_panel_is_a_view_over_the_controller():
    import ast

    source = (REPO / "SpineAssistLib" / "ui" / "widget.py").read_text()
    imported = {a.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)
                for a in node.names}
    assert "PanelController" in imported
    assert "SpineAssistLogic" not in imported and "AssessProcess" not in imported, \
        "the Qt panel acts through PanelController, as the web page does, not on the logic directly"
    assert "SpineAssist.ui" in (REPO / "SpineAssist" / "SpineAssist.py").read_text()
