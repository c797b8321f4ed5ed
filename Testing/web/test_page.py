"""The page's state and actions on the server, as trame-slicer's own app tests do: no browser, the real
app (Slicer's views rendered offscreen), its handlers called as the page's buttons call them."""

from __future__ import annotations

import itertools
import json

import pytest
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from SpineAssistLib.findings import Assessment, PfirrmannGrade
from SpineAssistLib.mrml.nodes import level_center_ras
from SpineAssistLib.ui.panel_model import choice_index

_names = itertools.count()


@pytest.fixture
def app(assessed_out):
    from SpineAssistLib.web.app import SpineAssistWebApp

    # a server of its own per test: trame's default server is one per process
    a = SpineAssistWebApp(f"page-test-{next(_names)}", reader="dr.page", quiet=True)
    a.panel.open(assessed_out)
    yield a
    a.panel.close()


def _row(app, level):
    return next(r for r in app.state.levels if r["name"] == level)


def _corner(app, label):
    node = app.panel.logic.nodes.keypoints["sagittal"]
    return node, next(i for i in range(node.GetNumberOfControlPoints()) if node.GetNthControlPointLabel(i) == label)


def test_the_page_lists_the_levels_of_findings_json(app, assessed_out):
    names = [lv["level"] for lv in json.loads((assessed_out / "findings.json").read_text())["levels"]]
    assert [r["name"] for r in app.state.levels] == names and app.state.loaded
    assert app.state.out_dir == str(assessed_out) and app.state.selected is None and app.state.editor is None


def test_selecting_a_level_opens_its_editors_and_shows_its_axial_block(app):
    last = app.state.levels[-1]["name"]
    app.on_select(last)
    assert app.state.selected == last and set(app.state.editor) >= {"pfirrmann", "ldh", "listhesis", "canal"}
    ras = level_center_ras(app.panel.logic.nodes, app.panel.logic.assessment, last)
    volume = app.slicer_app.scene.GetNodeByID(app._axial_volume)     # noqa: SLF001
    ijk = [0.0] * 4
    m = vtkMatrix4x4()
    volume.GetRASToIJKMatrix(m)
    ijk = m.MultiplyPoint([*ras, 1.0])
    dims = volume.GetImageData().GetDimensions()
    assert all(-1.5 <= c <= n + 0.5 for c, n in zip(ijk[:3], dims)), (ijk, dims)    # the disc is in this block
    view, _ = app._slice_view("Red")                                 # noqa: SLF001
    assert view.get_background_volume_id() == volume.GetID()


def test_an_edit_shows_in_the_table_and_the_editor_until_saved(app, assessed_out):
    app.on_select("L4-L5")
    before = _row(app, "L4-L5")["cells"]["pfirrmann"]["text"]
    new = PfirrmannGrade(5 if before != "V" else 1)
    app.on_edit("pfirrmann", choice_index("pfirrmann", new))
    cell = _row(app, "L4-L5")["cells"]["pfirrmann"]
    assert cell["corrected"] and cell["model"] == before and app.state.editor["pfirrmann"]["corrected"]
    assert app.state.unsaved and app.state.error == ""
    app.on_save()
    l45 = Assessment.load(assessed_out / "findings.json").level("L4-L5")
    assert not app.state.unsaved and app.state.status.startswith("Saved your corrections")
    assert l45.pfirrmann.value == new and l45.pfirrmann.corrections[-1].reader == "dr.page"


def test_a_moved_keypoint_regrades_the_row_on_the_page(app):
    app.on_select("L4-L5")
    app.on_unlock(True)
    assert app.state.unlocked
    before = _row(app, "L4-L5")["slip"]
    node, i = _corner(app, "L4 posterior-inferior")
    ras = [0.0, 0.0, 0.0]
    node.GetNthControlPointPosition(i, ras)
    node.SetNthControlPointPosition(i, ras[0], ras[1] + 10.0, ras[2])   # 10 mm anterior: a slip the rule grades
    row = _row(app, "L4-L5")
    assert row["slip"] != before and row["cells"]["listhesis"]["corrected"] and app.state.unsaved
    app.on_unlock(False)
    assert not app.state.unlocked and node.GetLocked()


def test_teaching_steps_are_shown_on_the_page(app):
    app.on_select("L4-L5")
    app.state.teach_kind = "listhesis"
    app.on_teach(0)
    first = dict(app.state.teaching)
    app.on_teach(1)
    assert (first["step"], app.state.teaching["step"]) == (1, 2) and app.state.teaching["level"] == "L4-L5"
    app.on_teach_end()
    assert app.state.teaching is None


def test_a_bad_action_is_a_message_on_the_page(app):
    app.on_select("L9-S9")
    assert app.state.error.startswith("Cannot show the level") and app.state.selected is None
    app.on_edit("pfirrmann", 0)                       # no level selected: nothing to edit, nothing recorded
    assert not app.state.unsaved


def test_opening_another_folder_warns_once_about_unsaved_corrections(app, assessed, tmp_path):
    app.on_select("L4-L5")
    app.on_edit("pfirrmann", 0)
    app.state.run_out = str(assessed[1])
    app.on_open()
    assert "corrections not saved" in app.state.error and app.state.unsaved
    app.on_open()                                        # the second Open discards them
    assert app.state.error == "" and not app.state.unsaved and app.state.out_dir == str(assessed[1])


def test_locked_paths_run_only_what_the_command_named(assessed_out, tmp_path, monkeypatch):
    from SpineAssistLib.web.app import SpineAssistWebApp

    a = SpineAssistWebApp(f"page-test-{next(_names)}", locked_paths=True, quiet=True)
    a.set_paths(tmp_path / "study", assessed_out)
    runs = []
    monkeypatch.setattr(a.panel, "run", lambda study, out, **kw: runs.append((study, out)))
    a.state.study_dir, a.state.run_out = "/etc", "/tmp/elsewhere"      # what a client could write into the state
    a.on_run()
    assert runs == [(str(tmp_path / "study"), str(assessed_out))] and a.state.paths_locked
