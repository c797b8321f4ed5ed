"""The panel's logic on a real MRML scene (slicer-core): results imported from scene.mrb, edits, teaching, inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import mrml_case as case

from SpineAssistLib import mrml
from SpineAssistLib.findings import Assessment, CanalDiameter, ModicType, MSUGrade, PfirrmannGrade, Presence
from SpineAssistLib.ui.logic import (SpineAssistLogic, default_series, dicom_files_for_volume, plane_of_direction,
                                  volume_plane)
from SpineAssistLib.ui.panel_model import choice_index


@pytest.fixture
def out_dir(tmp_path):
    """An assess output folder holding the hand-built case's scene.mrb (what `spineassist assess` writes)."""
    return case.write_out_dir(tmp_path / "out")


def loaded(scene, out_dir):
    # the scene already holds a volume, as when the study was loaded with the DICOM module
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "DICOM-loaded sagittal T2")
    logic = SpineAssistLogic(scene, reader="dr.lee")
    logic.load_results(out_dir)
    return logic


def test_results_are_imported_into_a_scene_that_already_has_nodes(mrml_scene, out_dir):
    logic = loaded(mrml_scene, out_dir)
    assert [v.name for v in logic.views()] == ["L4-L5", "L5-S1"]
    seg = logic.nodes.segmentation.GetSegmentation()
    discs = [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())
             if "disc" in seg.GetNthSegment(i).GetName().lower()]
    assert len(discs) == 2
    assert mrml_scene.GetFirstNodeByName("DICOM-loaded sagittal T2") is not None
    assert [r["Level"] for r in mrml.table_rows(logic.nodes)] == ["L4-L5", "L5-S1"]
    with pytest.raises(FileNotFoundError, match="did not write its Slicer scene"):
        SpineAssistLogic(mrml_scene).load_results(out_dir.parent)


def test_a_correction_keeps_the_model_value_and_reset_brings_it_back(mrml_scene, out_dir):
    logic = loaded(mrml_scene, out_dir)
    c = logic.correct("L4-L5", "ldh", choice_index("ldh", MSUGrade(2, "AB", "right")), note="apex deeper")
    assert c is not None and c.reader == "dr.lee"
    cell = logic.views()[0].cells["ldh"]
    assert cell.display == "2-AB right (model: 1-AB right)"
    assert logic.assessment.level("L4-L5").ldh.model == MSUGrade(1, "AB", "right")
    assert logic.correct("L4-L5", "ldh", cell.index) is None          # choosing the value in force records nothing
    saved = logic.save_findings()
    assert Assessment.load(saved).level("L4-L5").ldh.model == MSUGrade(1, "AB", "right")
    assert json.loads(saved.read_text())["levels"][0]["ldh"]["msu_size"] == 2
    assert [r.finding for r in logic.reset("L4-L5")] == ["ldh"]
    assert not logic.views()[0].cells["ldh"].corrected


@pytest.fixture
def sagittal_out_dir(tmp_path):
    """As ``out_dir``, with every schema-2 finding graded by the model at L4-L5 (canal 9 mm, absolute)."""
    scene = mrml.new_scene()
    a, nodes = case.show(scene, case.assessment(sagittal_findings=True))
    mrml.save_state(scene, a, nodes)
    out = tmp_path / "out"
    out.mkdir()
    assert scene.WriteToMRB(str(out / "scene.mrb"))
    a.save(out / "findings.json")
    scene.Clear(1)
    return out


def test_every_sagittal_finding_is_corrected_and_reset_from_the_panel(mrml_scene, sagittal_out_dir):
    logic = loaded(mrml_scene, sagittal_out_dir)
    assert logic.correct("L4-L5", "modic", choice_index("modic", ModicType(1))).new == {"modic_type": 1}
    assert logic.correct("L4-L5", "bulging", choice_index("bulging", Presence(True))) is not None
    # the reader grades the measured canal: the 9 mm stays
    logic.correct("L4-L5", "canal", choice_index("canal", CanalDiameter("relative")))
    canal = logic.assessment.level("L4-L5").canal
    assert (canal.value, canal.model) == (CanalDiameter("relative", 9.0), CanalDiameter("absolute", 9.0))
    assert logic.correct_canal_diameter("L4-L5", 9.0) is None       # the diameter in force: the reader's grade stays
    logic.correct_canal_diameter("L4-L5", 12.5, note="measured again")
    assert canal.value == CanalDiameter("none", 12.5)                # a new diameter is graded by the rule
    cells = logic.views()[0].cells
    assert cells["modic"].display == "Modic 1 (model: Modic 2)" and cells["bulging"].display == "yes (model: no)"
    row = mrml.table_rows(logic.nodes)[0]
    assert (row["Canal AP"], row["Canal AP corrected"]) == ("12.5 mm, no stenosis", "yes")
    saved = Assessment.load(logic.save_findings())
    assert saved.level("L4-L5").canal.value == CanalDiameter("none", 12.5)
    assert saved.level("L4-L5").modic.model == ModicType(2)
    assert sorted(c.finding for c in logic.reset("L4-L5")) == ["bulging", "canal", "modic"]
    assert not any(c.corrected for c in logic.views()[0].cells.values())
    with pytest.raises(ValueError, match="canal.ap_mm must be above 0"):
        logic.correct_canal_diameter("L4-L5", -1.0)


def test_teaching_the_canal_shows_its_ap_line_only(mrml_scene, sagittal_out_dir):
    logic = loaded(mrml_scene, sagittal_out_dir)
    step = logic.show_teaching_step("L4-L5", "canal", 0)
    assert step.title == "Canal AP line"
    visible = {ln.GetName() for ln in logic.nodes.lines if ln.GetDisplayNode().GetVisibility()}
    assert visible == {"L4-L5 canal: canal AP"}
    points = mrml_scene.GetFirstNodeByName("SpineAssist teaching points")
    assert [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())] == \
        ["canal anterior wall", "canal posterior wall"]
    assert logic.show_teaching_step("L4-L5", "modic", 0).lines == ()
    assert not any(ln.GetDisplayNode().GetVisibility() for ln in logic.nodes.lines)
    logic.end_teaching()


def test_relabel_renames_rows_and_segments(mrml_scene, out_dir):
    logic = loaded(mrml_scene, out_dir)
    logic.relabel(-1)
    assert [v.name for v in logic.views()] == ["L3-L4", "L4-L5"] and logic.views()[0].corrected
    assert [r["Level"] for r in mrml.table_rows(logic.nodes)] == ["L3-L4", "L4-L5"]


def test_unlocked_keypoints_regrade_live_and_lock_again(mrml_scene, out_dir):
    logic = loaded(mrml_scene, out_dir)
    seen = []
    logic.start_live(on_regrade=lambda level, kind, c: seen.append((level, kind)))
    node = logic.nodes.keypoints["sagittal"]
    assert not node.GetLocked()
    i = next(i for i in range(node.GetNumberOfControlPoints()) if node.GetNthControlPointLabel(i) == "L4 posterior-inferior")
    node.SetNthControlPointPosition(i, 0.0, 10.0, 5.0)       # RAS of LPS (0, -10, 5): a 20 mm slip, 50 %, grade II
    assert seen == [("L4-L5", "listhesis")]
    assert logic.views()[0].cells["listhesis"].display == "II antero (model: I antero)"
    logic.stop_live()
    assert node.GetLocked()


def test_teaching_shows_only_the_steps_lines_and_its_points(mrml_scene, out_dir):
    logic = loaded(mrml_scene, out_dir)
    steps = logic.teaching_steps("L4-L5", "listhesis")
    first = logic.show_teaching_step("L4-L5", "listhesis", 0)
    assert first is steps[0] or first == steps[0]
    visible = {ln.GetName() for ln in logic.nodes.lines if ln.GetDisplayNode().GetVisibility()}
    assert visible == set()
    points = mrml_scene.GetFirstNodeByName("SpineAssist teaching points")
    assert [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())] == ["P", "Q", "R"]
    logic.show_teaching_step("L4-L5", "listhesis", 1)
    visible = {ln.GetName() for ln in logic.nodes.lines if ln.GetDisplayNode().GetVisibility()}
    assert visible == {"L4-L5 listhesis: lower superior endplate", "L4-L5 listhesis: slip"}
    logic.end_teaching()
    assert mrml_scene.GetFirstNodeByName("SpineAssist teaching points") is None
    assert all(ln.GetDisplayNode().GetVisibility() for ln in logic.nodes.lines)


def test_layers_hide_and_show(mrml_scene, out_dir):
    logic = loaded(mrml_scene, out_dir)
    logic.set_layer_visible("keypoints", False)
    assert not mrml.layer_visible(logic.nodes, "keypoints")
    logic.set_layer_visible("keypoints", True)
    assert mrml.layer_visible(logic.nodes, "keypoints")


def test_no_assessment_is_a_clear_error(mrml_scene):
    logic = SpineAssistLogic(mrml_scene)
    assert not logic.adopt_scene() and logic.views() == []
    with pytest.raises(RuntimeError, match="no assessment is loaded"):
        logic.correct("L4-L5", "pfirrmann", 0)


def test_planes_from_geometry_and_default_series():
    sagittal = np.array([[0, 0, -3.0], [-1, 0, 0], [0, -1, 0]])   # K along R: slices are sagittal
    axial = np.array([[1, 0, 0], [0, 0.94, -0.34], [0, 0.34, 0.94]])  # an axial stack angled 20 degrees
    assert plane_of_direction(sagittal) == "sagittal" and plane_of_direction(axial) == "axial"
    assert plane_of_direction(np.eye(4)) == "axial"
    with pytest.raises(ValueError, match="K axis is zero"):
        plane_of_direction(np.zeros((3, 3)))
    picks = default_series([("3: Sag T2", "sagittal"), ("4: Sag STIR", "sagittal"), ("5: Ax T2", "axial"),
                            ("6: Cor T1", "coronal")])
    assert picks == {"sagittal": "3: Sag T2", "axial": "5: Ax T2"}
    assert default_series([("a", "coronal")]) == {"sagittal": None, "axial": None}


def test_volume_plane_reads_the_node(mrml_scene):
    a, nodes = case.show(mrml_scene)
    assert volume_plane(nodes.volumes["sagittal"]) == "sagittal"


class FakeDatabase:
    def __init__(self, files):
        self.files = files

    def fileForInstance(self, uid):
        return self.files.get(uid, "")

    def instanceValue(self, uid, tag):
        return "1.2.3.4" if tag.lower() == "0020,000e" else ""


def test_dicom_files_come_from_the_volumes_instance_uids(mrml_scene):
    volume = mrml_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Sag T2")
    with pytest.raises(ValueError, match="was not loaded from DICOM"):
        dicom_files_for_volume(volume, FakeDatabase({}))
    volume.SetAttribute("DICOM.instanceUIDs", "1.1 1.2")
    files, series = dicom_files_for_volume(volume, FakeDatabase({"1.1": "/db/a.dcm", "1.2": "/db/b.dcm"}))
    assert files == ["/db/a.dcm", "/db/b.dcm"] and series == "1.2.3.4"
    with pytest.raises(ValueError, match="import the study again"):
        dicom_files_for_volume(volume, FakeDatabase({}))


def test_training_export_from_the_panel_uses_the_readers_grade_and_says_what_it_left_out(mrml_scene, out_dir, tmp_path):
    logic = loaded(mrml_scene, out_dir)
    logic.correct("L4-L5", "pfirrmann", choice_index("pfirrmann", PfirrmannGrade(4)), note="dark nucleus")
    result = logic.export_training_data(tmp_path / "train", salt="s")
    crops = {p.parent.name for p in (tmp_path / "train" / "sag_pfirrmann_cls").rglob("*_L4-L5.png")}
    assert crops == {"grade4"}                                    # the reader's grade, not the model's III
    assert {p.parent.name for p in (tmp_path / "train" / "sag_pfirrmann_cls").rglob("*_L5-S1.png")} == {"grade2"}
    assert result.counts["sag_disc_unet"] == 3                    # the three slices holding disc segments
    assert result.counts["ax_msu_pose"] == 0
    assert any("L4-L5" in n and "no axial slice" in n for n in result.notes)   # this case has no axial volume
    with pytest.raises(RuntimeError, match="no assessment is loaded"):
        SpineAssistLogic(mrml_scene).export_training_data(tmp_path / "other")
