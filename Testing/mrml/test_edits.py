"""Reader edits: corrections keep the model's value, relabelling moves findings with the disc, moved keypoints regrade live."""

from __future__ import annotations

import json

import pytest
from support import mrml_case as case

from SpineAssistLib import mrml
from SpineAssistLib.findings import CanalDiameter, MeyerdingGrade, ModicType, MSUGrade, PfirrmannGrade, Presence
from SpineAssistLib.mrml.state import PARAM_ASSESSMENT


def _row(nodes, level):
    return next(r for r in mrml.table_rows(nodes) if r["Level"] == level)


def _index(node, label):
    return next(i for i in range(node.GetNumberOfControlPoints()) if node.GetNthControlPointLabel(i) == label)


def test_correction_is_marked_keeps_the_model_value_and_can_be_reset(mrml_scene):
    a, nodes = case.show(mrml_scene)
    c = mrml.apply_correction(mrml_scene, nodes, a, "L4-L5", "ldh", MSUGrade(2, "AB", "right"), reader="dr.lee",
                              note="apex is deeper")
    assert (c.old, c.new["msu_size"], c.reader) == (MSUGrade(1, "AB", "right").to_dict(), 2, "dr.lee")
    finding = a.level("L4-L5").ldh
    assert finding.value == MSUGrade(2, "AB", "right") and finding.model == MSUGrade(1, "AB", "right")
    row = _row(nodes, "L4-L5")
    assert (row["Herniation (MSU)"], row["Herniation model"], row["Herniation corrected"]) == ("2-AB right", "1-AB right", "yes")
    saved = json.loads(mrml.parameter_node(mrml_scene).GetParameter(PARAM_ASSESSMENT))
    assert saved["levels"][0]["ldh"]["msu_size"] == 2 and saved["levels"][0]["ldh"]["model"]["msu_size"] == 1

    assert mrml.reset_finding(mrml_scene, nodes, a, "L4-L5", "ldh", reader="dr.lee") is not None
    row = _row(nodes, "L4-L5")
    assert (row["Herniation (MSU)"], row["Herniation corrected"]) == ("1-AB right", "")
    assert len(finding.corrections) == 2                      # the history keeps both
    assert mrml.reset_finding(mrml_scene, nodes, a, "L4-L5", "ldh", reader="dr.lee") is None
    with pytest.raises(TypeError, match="must be a PfirrmannGrade"):
        mrml.apply_correction(mrml_scene, nodes, a, "L4-L5", "pfirrmann", MeyerdingGrade(1, 10.0, "antero"), "dr.lee")
    with pytest.raises(KeyError, match="no level 'L1-L2'"):
        mrml.apply_correction(mrml_scene, nodes, a, "L1-L2", "pfirrmann", PfirrmannGrade(2), "dr.lee")


def test_sagittal_findings_are_corrected_and_reset_through_the_same_edits(mrml_scene):
    a, nodes = case.show(mrml_scene, case.assessment(sagittal_findings=True))
    mrml.apply_correction(mrml_scene, nodes, a, "L4-L5", "modic", ModicType(1), reader="dr.lee", note="oedema")
    mrml.apply_correction(mrml_scene, nodes, a, "L4-L5", "canal", CanalDiameter("relative", 9.0), reader="dr.lee")
    mrml.apply_correction(mrml_scene, nodes, a, "L5-S1", "herniation_sag", Presence(True), reader="dr.lee")
    row = _row(nodes, "L4-L5")
    assert (row["Modic"], row["Modic model"], row["Modic corrected"]) == ("Modic 1", "Modic 2", "yes")
    assert (row["Canal AP"], row["Canal AP model"]) == ("9.0 mm, relative stenosis", "9.0 mm, absolute stenosis")
    # a finding the model did not grade becomes assessed with the reader's value, and says it has no model value
    other = _row(nodes, "L5-S1")
    assert (other["Herniation (sagittal)"], other["Herniation (sagittal) model"]) == ("yes", "")
    saved = json.loads(mrml.parameter_node(mrml_scene).GetParameter(PARAM_ASSESSMENT))
    assert saved["levels"][0]["modic"]["modic_type"] == 1 and saved["levels"][0]["modic"]["model"]["modic_type"] == 2
    assert saved["levels"][0]["canal"]["stenosis"] == "relative" and saved["levels"][0]["canal"]["ap_mm"] == 9.0
    assert saved["levels"][1]["herniation_sag"]["status"] == "assessed"
    assert mrml.reset_finding(mrml_scene, nodes, a, "L4-L5", "modic", reader="dr.lee") is not None
    assert (_row(nodes, "L4-L5")["Modic"], _row(nodes, "L4-L5")["Modic corrected"]) == ("Modic 2", "")
    with pytest.raises(TypeError, match="a canal correction must be a CanalDiameter"):
        mrml.apply_correction(mrml_scene, nodes, a, "L4-L5", "canal", Presence(True), "dr.lee")


def test_relabel_moves_every_finding_and_node_with_its_disc(mrml_scene):
    a, nodes = case.show(mrml_scene)
    mrml.apply_correction(mrml_scene, nodes, a, "L5-S1", "pfirrmann", PfirrmannGrade(4), reader="dr.lee")
    records = mrml.relabel_levels(mrml_scene, nodes, a, "dr.lee", shift=-1, note="count from C2")
    assert [(c.old, c.new) for c in records] == [("L4-L5", "L3-L4"), ("L5-S1", "L4-L5")]
    assert a.level("L3-L4").pfirrmann.model == PfirrmannGrade(3)        # the former L4-L5 disc
    assert a.level("L4-L5").pfirrmann.value == PfirrmannGrade(4)        # the corrected former L5-S1 disc
    assert a.level("L4-L5").model_name == "L5-S1"
    rows = mrml.table_rows(nodes)
    assert [(r["Level"], r["Model level"], r["Pfirrmann"]) for r in rows] == [("L3-L4", "L4-L5", "3"), ("L4-L5", "L5-S1", "4")]
    seg = nodes.segmentation.GetSegmentation()
    names = {seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())}
    assert names == {"L3-L4 intervertebral disc", "L4-L5 intervertebral disc", "L4 vertebral body", "Thecal sac"}
    # the colour follows the level name from the terminology file
    disc = seg.GetSegment(seg.GetSegmentIdBySegmentName("L3-L4 intervertebral disc"))
    assert disc.GetColor() == pytest.approx(mrml.terminology_for("L3-L4 intervertebral disc").color)
    sag, axial = nodes.keypoints["sagittal"], nodes.keypoints["axial"]
    labels = [sag.GetNthControlPointLabel(i) for i in range(sag.GetNumberOfControlPoints())]
    assert labels == ["L3 posterior-inferior", "L4 posterior-superior", "L4 anterior-superior",
                      "L4 posterior-inferior", "L5 posterior-superior", "L5 anterior-superior"]
    assert sag.GetNthControlPointDescription(0) == "L3-L4" and sag.GetNthControlPointDescription(5) == "L4-L5"
    assert axial.GetNthControlPointLabel(0) == "L3-L4 left medial facet"
    assert {n.GetName() for n in nodes.lines} == {"L3-L4 listhesis: lower superior endplate", "L3-L4 listhesis: slip"}
    assert nodes.boxes[0].GetName() == "L3-L4 disc (sagittal)"


def test_relabel_errors_and_transitional_anatomy(mrml_scene):
    a, nodes = case.show(mrml_scene)
    with pytest.raises(ValueError, match="shifting L5-S1 by \\+1 leaves"):
        mrml.relabel_levels(mrml_scene, nodes, a, "dr.lee", shift=1)
    with pytest.raises(ValueError, match="two discs the name L5-S1"):
        mrml.relabel_levels(mrml_scene, nodes, a, "dr.lee", mapping={"L4-L5": "L5-S1"})
    with pytest.raises(ValueError, match="either shift"):
        mrml.relabel_levels(mrml_scene, nodes, a, "dr.lee")
    assert [lv.name for lv in a.levels] == ["L4-L5", "L5-S1"]           # nothing half-done
    mrml.relabel_levels(mrml_scene, nodes, a, "dr.lee", mapping={"L5-S1": "L5-L6"})   # six lumbar vertebrae
    sag = nodes.keypoints["sagittal"]
    assert sag.GetNthControlPointLabel(4) == "L6 posterior-superior"
    assert _row(nodes, "L5-L6")["Model level"] == "L5-S1"


def test_moving_a_corner_regrades_meyerding_live_and_records_the_reader(mrml_scene):
    a, nodes = case.show(mrml_scene)
    seen = []
    live = mrml.LiveRegrading(mrml_scene, nodes, a, reader="dr.lee", on_regrade=lambda *args: seen.append(args))
    sag = nodes.keypoints["sagittal"]
    r = _index(sag, "L4 posterior-inferior")
    # R from LPS (0, 2, 5) to (0, -10, 5): slip 20 mm of the 40 mm endplate = 50 %, grade II
    sag.SetNthControlPointPosition(r, 0.0, 10.0, 5.0)
    finding = a.level("L4-L5").listhesis
    assert finding.value == MeyerdingGrade(2, 50.0, "antero")
    assert finding.model == MeyerdingGrade(1, 20.0, "antero")
    assert [(c.reader, c.note) for c in finding.corrections] == [("dr.lee", "keypoint moved")]
    assert seen and seen[0][:2] == ("L4-L5", "listhesis")
    row = _row(nodes, "L4-L5")
    assert (row["Meyerding"], row["Slip %"], row["Meyerding model"], row["Meyerding corrected"]) == ("2", "50.0", "1", "yes")
    slip_line = next(n for n in nodes.lines if n.GetName() == "L4-L5 listhesis: slip")
    assert slip_line.GetLineLengthWorld() == pytest.approx(20.0)
    assert json.loads(mrml.parameter_node(mrml_scene).GetParameter(PARAM_ASSESSMENT))["levels"][0]["listhesis"]["meyerding"] == 2

    # a drag is many moves: one correction, from the model's value to the last
    sag.SetNthControlPointPosition(r, 0.0, 22.0, 5.0)                   # slip 32 mm = 80 %, grade IV
    assert finding.value.grade == 4 and len(finding.corrections) == 1
    assert finding.corrections[0].old == MeyerdingGrade(1, 20.0, "antero").to_dict()
    # a label change is not a move; the other level is untouched
    sag.SetNthControlPointLabel(r, "L4 posterior-inferior")
    assert len(finding.corrections) == 1 and not a.level("L5-S1").listhesis.corrected
    live.stop()
    sag.SetNthControlPointPosition(r, 0.0, -2.0, 5.0)
    assert finding.value.grade == 4                                      # stopped: no regrade


def test_moving_an_msu_point_regrades_the_herniation(mrml_scene):
    a, nodes = case.show(mrml_scene)
    live = mrml.LiveRegrading(mrml_scene, nodes, a, reader="dr.lee")
    axial = nodes.keypoints["axial"]
    apex = _index(axial, "L4-L5 herniation apex")
    # apex 17 mm behind the disc margin, h = 10 mm: r = 1.7 > 1, size 3
    axial.SetNthControlPointPosition(apex, 12.0, -37.0, 2.5)
    assert a.level("L4-L5").ldh.value.size == 3 and a.level("L4-L5").ldh.model.size == 1
    live.stop()


def test_regrade_from_keypoints_directly(mrml_scene):
    a = case.assessment()
    points = dict(case.SAGITTAL_POINTS)
    assert mrml.regrade_from_keypoints(a, "L4-L5", "listhesis", points, reader="dr.lee") is None   # unchanged grade
    points["L4 posterior-inferior"] = (0.0, -10.0, 5.0)
    c = mrml.regrade_from_keypoints(a, "L4-L5", "listhesis", points, reader="dr.lee")
    assert c.new == {"meyerding": 2, "slip_percent": 50.0, "direction": "antero"}
    with pytest.raises(ValueError, match="keypoints missing: L5 anterior-superior"):
        mrml.regrade_from_keypoints(a, "L4-L5", "listhesis", {"L5 posterior-superior": (0, 10, 0),
                                                              "L4 posterior-inferior": (0, 2, 5)}, reader="dr.lee")
    with pytest.raises(ValueError, match="pfirrmann is not graded from keypoints"):
        mrml.regrade_from_keypoints(a, "L4-L5", "pfirrmann", points, reader="dr.lee")


def test_observe_keypoints_reports_the_moved_point(mrml_scene):
    _, nodes = case.show(mrml_scene)
    sag = nodes.keypoints["sagittal"]
    calls = []
    tag = mrml.observe_keypoints(sag, lambda node, i: calls.append((node.GetID(), i)))
    sag.SetNthControlPointPosition(3, 1.0, 2.0, 3.0)
    assert calls == [(sag.GetID(), 3)]
    sag.RemoveObserver(tag)


def test_corrections_from_nodes_reads_moved_and_deleted_points(mrml_scene):
    a, nodes = case.show(mrml_scene)
    assert mrml.corrections_from_nodes(mrml_scene, nodes, a).keypoints == []
    sag = nodes.keypoints["sagittal"]
    sag.SetNthControlPointPosition(_index(sag, "L4 posterior-inferior"), 0.0, 10.0, 5.0)   # LPS (0, -10, 5): 12 mm
    nodes.keypoints["axial"].RemoveNthControlPoint(_index(nodes.keypoints["axial"], "L4-L5 posterior canal"))
    edits = mrml.corrections_from_nodes(mrml_scene, nodes, a)
    moved = {e.model_name: e for e in edits.keypoints}
    assert set(moved) == {"L4 posterior-inferior", "L4-L5 posterior canal"}
    assert moved["L4 posterior-inferior"].moved_mm == pytest.approx(12.0)
    assert moved["L4 posterior-inferior"].lps == pytest.approx((0.0, -10.0, 5.0))
    assert (moved["L4 posterior-inferior"].level, moved["L4 posterior-inferior"].kind) == ("L4-L5", "listhesis")
    assert moved["L4-L5 posterior canal"].lps is None and moved["L4-L5 posterior canal"].moved_mm is None
    assert edits.corrections == [] and not a.level("L4-L5").listhesis.corrected
    # with a reader, levels whose points moved are regraded; a herniation missing a point cannot be
    edits = mrml.corrections_from_nodes(mrml_scene, nodes, a, reader="dr.lee")
    assert [c.finding for c in edits.corrections] == ["listhesis"]
    assert edits.errors == ["L4-L5 ldh: keypoints missing: L4-L5 posterior canal"]
    assert a.level("L4-L5").listhesis.value.grade == 2 and _row(nodes, "L4-L5")["Meyerding corrected"] == "yes"
    assert a.level("L4-L5").ldh.value == MSUGrade(1, "AB", "right")


def test_a_small_facet_move_keeps_the_zone_the_mask_gave(mrml_scene):
    from SpineAssistLib.findings import Geometry

    a = case.assessment()
    # the model's mask reached from 14 mm to 4 mm right of the mid-line (zones A and B: "AB right");
    # the apex alone (12 mm right) would say zone B
    a.level("L4-L5").ldh.geometry = Geometry(lines={"herniation extent": ((-14.0, 25.0, 2.5), (-4.0, 25.0, 2.5))})
    a, nodes = case.show(mrml_scene, a)
    live = mrml.LiveRegrading(mrml_scene, nodes, a, reader="dr.lee")
    axial = nodes.keypoints["axial"]
    left = _index(axial, "L4-L5 left medial facet")
    axial.SetNthControlPointPosition(left, -20.5, -30.0, 2.5)          # RAS: 0.5 mm further left
    assert not a.level("L4-L5").ldh.corrected, a.level("L4-L5").ldh.value
    apex = _index(axial, "L4-L5 herniation apex")
    axial.SetNthControlPointPosition(apex, 12.0, -37.0, 2.5)            # deeper: size 3, extent kept
    assert a.level("L4-L5").ldh.value.size == 3 and a.level("L4-L5").ldh.value.zone == "AB"
    live.stop()
