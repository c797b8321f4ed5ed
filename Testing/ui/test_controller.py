"""The panel's controller (the model both the Slicer panel and the web page show) on a real MRML scene."""

from __future__ import annotations

import json
import sys

import pytest
from support import mrml_case as case

from SpineAssistLib import mrml
from SpineAssistLib.export import outdir
from SpineAssistLib.findings import Assessment, MSUGrade, PfirrmannGrade
from SpineAssistLib.ui import controller as controller_module
from SpineAssistLib.ui import process
from SpineAssistLib.ui.controller import PanelController
from SpineAssistLib.ui.panel_model import choice_index


@pytest.fixture
def out_dir(tmp_path):
    return case.write_out_dir(tmp_path / "out")


@pytest.fixture
def panel(mrml_scene, out_dir):
    p = PanelController(mrml_scene, reader="dr.lee")
    p.changes = []
    p.subscribe(lambda c: p.changes.append(c.status))
    p.open(out_dir)
    yield p
    p.close()


def _move(panel, label, ras):
    node = panel.logic.nodes.keypoints["sagittal"]
    i = next(i for i in range(node.GetNumberOfControlPoints()) if node.GetNthControlPointLabel(i) == label)
    node.SetNthControlPointPosition(i, *ras)


def test_opening_shows_the_levels_and_tells_the_views(panel, out_dir):
    assert [v.name for v in panel.views()] == ["L4-L5", "L5-S1"]
    assert panel.loaded and not panel.dirty and panel.out_dir == out_dir
    assert panel.changes and panel.status == f"Showing {out_dir}"


def test_an_edit_is_the_readers_value_beside_the_models_and_marks_the_session_unsaved(panel):
    panel.edit("L4-L5", "pfirrmann", choice_index("pfirrmann", PfirrmannGrade(4)))
    cell = panel.views()[0].cells["pfirrmann"]
    assert cell.display == "IV (model: III)" and panel.dirty and panel.selected == "L4-L5"
    panel.reset("L4-L5")
    assert panel.views()[0].cells["pfirrmann"].display == "III"


def test_a_failed_action_is_one_line_for_the_reader_not_an_exception(panel):
    assert panel.attempt(lambda: panel.edit("L9-L10", "pfirrmann", 0), "Cannot record the correction") is None
    assert panel.error.startswith("Cannot record the correction:") and "L9-L10" in panel.error
    panel.attempt(lambda: panel.select("L4-L5"), "Cannot show the level")
    assert panel.error == ""


def test_a_dragged_keypoint_regrades_its_level_and_marks_it(panel):
    panel.unlock(True)
    assert panel.unlocked and not panel.logic.nodes.keypoints["sagittal"].GetLocked()
    _move(panel, "L4 posterior-inferior", (0.0, 10.0, 5.0))      # RAS of LPS (0, -10, 5): 20 mm of 40, grade II
    assert panel.views()[0].cells["listhesis"].display == "II antero (model: I antero)"
    assert panel.dirty and panel.selected == "L4-L5"
    panel.unlock(False)
    assert not panel.unlocked and panel.logic.nodes.keypoints["sagittal"].GetLocked()


def test_save_writes_findings_and_scene_as_one_set_with_the_corrections_provenance(panel, out_dir):
    panel.edit("L4-L5", "ldh", choice_index("ldh", MSUGrade(2, "AB", "right")))
    panel.unlock(True)
    _move(panel, "L4 posterior-inferior", (0.0, 10.0, 5.0))
    saved = panel.save()
    assert saved == out_dir / "findings.json" and not panel.dirty
    on_disk = Assessment.load(saved)
    l45 = on_disk.level("L4-L5")
    assert l45.ldh.value == MSUGrade(2, "AB", "right") and l45.ldh.model == MSUGrade(1, "AB", "right")
    assert l45.listhesis.value.grade == 2 and l45.listhesis.corrections[-1].reader == "dr.lee"
    # the scene beside it holds the same reading: reopened, it shows the corrections and the moved corner
    again = PanelController(mrml.new_scene(), reader="dr.kim")
    again.open(out_dir)
    assert again.views()[0].cells["ldh"].display == "2-AB right (model: 1-AB right)"
    assert again.views()[0].cells["listhesis"].display == "II antero (model: I antero)"
    assert not list(outdir._leftovers(out_dir))        # noqa: SLF001 - no staging or journal left behind


def test_a_save_that_cannot_write_the_scene_leaves_the_previous_pair(panel, out_dir, monkeypatch):
    before = {n: (out_dir / n).read_bytes() for n in ("findings.json", "scene.mrb")}
    panel.edit("L4-L5", "pfirrmann", choice_index("pfirrmann", PfirrmannGrade(5)))
    monkeypatch.setattr(controller_module, "write_mrb", lambda scene, path, errors: errors.append("disk full") or False)
    assert panel.attempt(panel.save, "Cannot save") is None
    assert panel.error == "Cannot save: Slicer could not write the scene: disk full" and panel.dirty
    assert {n: (out_dir / n).read_bytes() for n in before} == before
    assert not list(outdir._leftovers(out_dir))        # noqa: SLF001


def test_a_newer_run_in_out_keeps_its_scene_and_takes_the_corrections(panel, out_dir):
    newer = Assessment.load(out_dir / "findings.json")
    newer.created = "2099-01-01T00:00:00+00:00"       # a run that finished after this page opened OUT
    (out_dir / "findings.json").write_text(newer.to_json() + "\n", encoding="utf-8")
    scene_before = (out_dir / "scene.mrb").read_bytes()
    panel.edit("L4-L5", "pfirrmann", choice_index("pfirrmann", PfirrmannGrade(4)))
    panel.save()
    on_disk = Assessment.load(out_dir / "findings.json")
    assert on_disk.created == newer.created and on_disk.level("L4-L5").pfirrmann.value == PfirrmannGrade(4)
    assert (out_dir / "scene.mrb").read_bytes() == scene_before


def test_teaching_walks_the_steps_and_ends(panel, mrml_scene):
    first = panel.teach("L4-L5", "listhesis", 0)
    assert (first.index, first.level) == (0, "L4-L5") and first.count >= 2
    second = panel.teach("L4-L5", "listhesis", 1)
    assert second.index == 1 and second.title != first.title
    last = panel.teach("L4-L5", "listhesis", 99)
    assert last.index == last.count - 1
    assert mrml_scene.GetFirstNodeByName("SpineAssist teaching points") is not None
    panel.stop_teaching()
    assert panel.teaching is None and mrml_scene.GetFirstNodeByName("SpineAssist teaching points") is None


STAND_IN = r"""
import json, sys, time
out = sys.argv[sys.argv.index("--out") + 1]
for i, stage in enumerate(["load", "detect", "grade"]):
    print(json.dumps({"event": "progress", "stage": stage, "fraction": (i + 1) / 4, "message": ""}), flush=True)
if "--sleep" in sys.argv[1:2]:
    time.sleep(60)
print(json.dumps({"event": "done", "out": out, "findings": out + "/findings.json", "scene": out + "/scene.mrb"}),
      flush=True)
"""


def _stand_in(monkeypatch, *first):
    # the real command line with the stand-in in place of the CLI (the real assessment is tested in the web tests)
    def command(study, out, **_):
        return [sys.executable, "-c", STAND_IN, *first, str(study), "--out", str(out)]
    monkeypatch.setattr(process, "assess_command", command)


def test_a_run_reports_progress_then_shows_its_outputs(mrml_scene, out_dir, tmp_path, monkeypatch):
    _stand_in(monkeypatch)
    panel = PanelController(mrml_scene, reader="dr.lee")
    seen = []
    panel.subscribe(lambda c: seen.append((round(c.progress, 2), c.running)))
    with pytest.raises(ValueError, match="give the study's DICOM folder"):
        panel.run("", out_dir)
    panel.run(tmp_path / "study", out_dir)
    panel.job.wait_for_done(timeout=30)
    assert (0.25, True) in seen and (0.75, True) in seen
    assert panel.loaded and panel.status == f"Done. Outputs in {out_dir}" and panel.progress == 1.0
    assert [v.name for v in panel.views()] == ["L4-L5", "L5-S1"]


def test_cancel_stops_the_run_and_shows_nothing_new(mrml_scene, out_dir, tmp_path, monkeypatch):
    _stand_in(monkeypatch, "--sleep")
    panel = PanelController(mrml_scene)
    panel.run(tmp_path / "study", out_dir)
    for _ in range(300):
        if panel.progress >= 0.75:
            break
        panel.job.runner.wait(0.05)
    panel.cancel()
    outcome = panel.job.wait_for_done(timeout=10)
    assert outcome.status == "cancelled" and not panel.loaded
    assert panel.status.startswith("Cancelled")


def test_findings_json_keeps_its_format(panel, out_dir):
    panel.edit("L4-L5", "pfirrmann", choice_index("pfirrmann", PfirrmannGrade(4)))
    panel.save()
    data = json.loads((out_dir / "findings.json").read_text(encoding="utf-8"))
    assert data["study_instance_uid"] == case.STUDY_UID and "levels" in data


def test_opening_another_study_replaces_the_one_shown_and_guards_unsaved_corrections(panel, mrml_scene, out_dir,
                                                                                      tmp_path):
    other = case.write_out_dir(tmp_path / "other", sagittal_findings=True)
    alone = mrml.new_scene()
    PanelController(alone).open(other)
    count = alone.GetNumberOfNodes()        # the other study shown in a scene of its own
    panel.edit("L4-L5", "pfirrmann", choice_index("pfirrmann", PfirrmannGrade(4)))
    with pytest.raises(RuntimeError, match="corrections not saved: Save them first"):
        panel.open(other)
    with pytest.raises(RuntimeError, match="Save them first"):
        panel.run(tmp_path / "study", other)
    panel.open(other, discard=True)
    assert panel.out_dir == other and not panel.dirty
    assert panel.views()[0].cells["canal"].assessed          # the other study's schema-2 findings
    assert mrml_scene.GetNumberOfNodes() == count             # the first study's nodes are gone, not drawn under it
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1


def test_a_scene_opened_in_slicer_is_adopted_with_its_corrections(panel, out_dir):
    panel.edit("L4-L5", "pfirrmann", choice_index("pfirrmann", PfirrmannGrade(4)))
    panel.save()
    scene = mrml.new_scene()
    mrml.read_mrb(out_dir / "scene.mrb", scene)          # as File > Load scene does in Slicer
    adopted = PanelController(scene, reader="dr.kim")
    assert adopted.adopt_scene() and adopted.loaded and not adopted.dirty
    assert adopted.views()[0].cells["pfirrmann"].display == "IV (model: III)"
    assert adopted.out_dir is None                        # no output folder until the study is run again
    assert not PanelController(mrml.new_scene()).adopt_scene()


def test_training_export_and_a_views_news_reach_the_status(panel, tmp_path):
    panel.edit("L4-L5", "pfirrmann", choice_index("pfirrmann", PfirrmannGrade(4)))
    result = panel.export_training_data(tmp_path / "train")
    assert result.counts["sag_disc_unet"] == 3 and panel.status == result.summary()
    assert str(tmp_path / "train") in panel.status
    panel.inform("Added seg.dcm to the DICOM database.")
    assert panel.changes[-1] == "Added seg.dcm to the DICOM database."


def test_the_slicer_panels_status_label_escapes_what_it_shows(panel):
    from SpineAssistLib.ui.widget import status_html

    panel.attempt(lambda: panel.open(panel.out_dir / "<missing>"), "Cannot open")
    text = status_html(panel)
    assert "&lt;missing&gt;" in text and "<missing>" not in text
    assert '<span style="color:#b00020">Cannot open: ' in text
