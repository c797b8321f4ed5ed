"""Assessment -> nodes in a real MRML scene (slicer-core): volumes, segments, keypoints, boxes, lines, table, layers."""

from __future__ import annotations

import numpy as np
import pytest
from support import mrml_case as case

from SpineAssistLib import mrml
from SpineAssistLib.mrml.nodes import ATTR_MODEL_LEVEL, segment_tag
from SpineAssistLib.resources import resource_path


def _segments(seg_node):
    s = seg_node.GetSegmentation()
    return [s.GetNthSegment(i) for i in range(s.GetNumberOfSegments())]


def _ras(node, i):
    xyz = [0.0, 0.0, 0.0]
    node.GetNthControlPointPosition(i, xyz)
    return tuple(xyz)


def test_terminology_file_loads_in_slicer_and_codes_each_disc_level():
    import slicer

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    assert logic.LoadTerminologyFromFile(str(resource_path("SpineAssist.term.json"))) == "SpineAssist"
    entry = slicer.vtkSlicerTerminologyEntry()
    assert logic.FindTypeInTerminologyBy3dSlicerLabel("SpineAssist", "L4-L5 intervertebral disc", entry)
    assert entry.GetTypeObject().GetCodeValue() == "84020006"           # SNOMED CT "L4/L5 disc" (DICOM CID 7604)
    assert entry.GetTypeObject().GetCodingSchemeDesignator() == "SCT"
    types = mrml.terminology_types()
    assert types["L4-L5 intervertebral disc"].rgb == tuple(entry.GetTypeObject().GetRecommendedDisplayRGBValue())
    assert types["disc herniation"].code == ("SCT", "73589001", "Herniation of intervertebral disc")
    disc_colours = [t.rgb for name, t in types.items() if name.endswith(" intervertebral disc")]
    assert len(disc_colours) == 10 and len(set(disc_colours)) == 10  # one colour per level, all different


def test_show_assessment_creates_every_layer(mrml_scene):
    a, nodes = case.show(mrml_scene)
    count = mrml_scene.GetNumberOfNodesByClass
    assert count("vtkMRMLScalarVolumeNode") == 1
    assert count("vtkMRMLLabelMapVolumeNode") == 0          # the import's temporary node is gone
    assert count("vtkMRMLSegmentationNode") == 1
    assert count("vtkMRMLMarkupsFiducialNode") == 2         # sagittal + axial keypoints
    assert count("vtkMRMLMarkupsROINode") == 1
    assert count("vtkMRMLMarkupsLineNode") == 2             # the two L4-L5 listhesis lines
    assert count("vtkMRMLTableNode") == 1
    assert len(nodes.all_nodes()) == 1 + 1 + 2 + 1 + 2 + 1


def test_volume_geometry_is_the_lps_affine_flipped_to_ras(mrml_scene):
    _, nodes = case.show(mrml_scene)
    import vtk

    m = vtk.vtkMatrix4x4()
    nodes.volumes["sagittal"].GetIJKToRASMatrix(m)
    ijk = (4, 10, 2)
    lps = case.AFFINE @ np.array([*ijk, 1.0])          # (-6 + 3*2, -20 + 4, 40 - 10) = (0, -16, 30)
    ras = m.MultiplyPoint((*map(float, ijk), 1.0))
    assert ras[:3] == pytest.approx((0.0, 16.0, 30.0))
    assert ras[:3] == pytest.approx((-lps[0], -lps[1], lps[2]))
    assert nodes.volumes["sagittal"].GetImageData().GetDimensions() == (40, 80, 5)


def test_one_segment_per_disc_named_by_level_coloured_from_the_terminology(mrml_scene):
    _, nodes = case.show(mrml_scene)
    segments = {s.GetName(): s for s in _segments(nodes.segmentation)}
    assert set(segments) == {"L4-L5 intervertebral disc", "L5-S1 intervertebral disc", "L5 vertebral body", "Thecal sac"}
    types = mrml.terminology_types()
    for name in ("L4-L5 intervertebral disc", "L5-S1 intervertebral disc"):
        assert segments[name].GetColor() == pytest.approx(tuple(c / 255 for c in types[name].rgb))
    assert segments["L5 vertebral body"].GetColor() == pytest.approx((241 / 255, 214 / 255, 145 / 255))
    entry = segment_tag(segments["L4-L5 intervertebral disc"], "TerminologyEntry")
    assert entry == "SpineAssist~SCT^123037004^Anatomical Structure~SCT^84020006^L4/L5 disc~^^~~^^~^^"
    assert segment_tag(segments["L5-S1 intervertebral disc"], "TerminologyEntry").split("~")[2] == "SCT^715056000^L5/S1 disc"
    # the L4-L5 disc occupies 3 x 5 x 23 voxels of the label map (segments share one labelmap layer)
    from vtk.util import numpy_support

    disc = segments["L4-L5 intervertebral disc"]
    voxels = numpy_support.vtk_to_numpy(disc.GetRepresentation("Binary labelmap").GetPointData().GetScalars())
    assert int((voxels == disc.GetLabelValue()).sum()) == 3 * 5 * 23


def test_keypoints_are_labelled_locked_ras_points_tied_to_their_level(mrml_scene):
    _, nodes = case.show(mrml_scene)
    sag = nodes.keypoints["sagittal"]
    assert sag.GetLocked() == 1
    labels = [sag.GetNthControlPointLabel(i) for i in range(sag.GetNumberOfControlPoints())]
    assert labels == list(case.SAGITTAL_POINTS)
    for i, (x, y, z) in enumerate(case.SAGITTAL_POINTS.values()):
        assert _ras(sag, i) == pytest.approx((-x, -y, z))
    levels = {sag.GetNthControlPointLabel(i): sag.GetNthControlPointDescription(i) for i in range(len(labels))}
    assert levels == {"L4 posterior-inferior": "L4-L5", "L5 posterior-superior": "L4-L5", "L5 anterior-superior": "L4-L5",
                      "L5 posterior-inferior": "L5-S1", "S1 posterior-superior": "L5-S1", "S1 anterior-superior": "L5-S1"}
    axial = nodes.keypoints["axial"]
    assert {axial.GetNthControlPointDescription(i) for i in range(axial.GetNumberOfControlPoints())} == {"L4-L5"}
    mrml.set_keypoints_locked(nodes, False)
    assert sag.GetLocked() == 0 and axial.GetLocked() == 0


def test_box_and_lines_are_in_ras(mrml_scene):
    _, nodes = case.show(mrml_scene)
    roi = nodes.boxes[0]
    center = [0.0, 0.0, 0.0]
    roi.GetCenter(center)
    assert center == pytest.approx((0.0, 4.0, 4.0))      # LPS centre (0, -4, 4)
    assert list(roi.GetSize()) == pytest.approx((6.0, 22.0, 4.0))
    assert roi.GetAttribute(ATTR_MODEL_LEVEL) == "L4-L5"
    endplate = next(n for n in nodes.lines if n.GetName() == "L4-L5 listhesis: lower superior endplate")
    assert _ras(endplate, 0) == pytest.approx((0.0, -10.0, 0.0)) and _ras(endplate, 1) == pytest.approx((0.0, 30.0, 0.0))
    assert endplate.GetLineLengthWorld() == pytest.approx(40.0)


def test_table_has_one_row_per_level_with_model_values(mrml_scene):
    _, nodes = case.show(mrml_scene)
    rows = mrml.table_rows(nodes)
    assert [r["Level"] for r in rows] == ["L4-L5", "L5-S1"]
    assert rows[0]["Pfirrmann"] == "3" and rows[0]["Herniation (MSU)"] == "1-AB right"
    assert rows[0]["Meyerding"] == "1" and rows[0]["Slip %"] == "20.0" and rows[0]["Meyerding corrected"] == ""
    assert rows[1]["Herniation (MSU)"] == "not assessed"
    assert list(rows[0]) == list(mrml.TABLE_COLUMNS)
    assert nodes.table.GetLocked() == 1      # read-only in Slicer's table view: corrections go through the panel


def test_sagittal_findings_are_table_columns_and_the_canal_line_is_a_measurement_line(mrml_scene):
    from SpineAssistLib.mrml.nodes import ATTR_FINDING, ATTR_LINE

    _, nodes = case.show(mrml_scene, case.assessment(sagittal_findings=True))
    l45, l5s1 = mrml.table_rows(nodes)
    assert (l45["Modic"], l45["Modic model"], l45["Modic corrected"]) == ("Modic 2", "Modic 2", "")
    assert (l45["Upper endplate defect"], l45["Lower endplate defect"], l45["Disc narrowing"], l45["Disc bulging"],
            l45["Herniation (sagittal)"]) == ("yes", "no", "yes", "no", "yes")
    assert l45["Canal AP"] == "9.0 mm, absolute stenosis"
    assert (l5s1["Modic"], l5s1["Canal AP"], l5s1["Canal AP model"]) == ("not assessed", "not assessed", "")
    assert list(l45) == list(mrml.TABLE_COLUMNS) and len(mrml.TABLE_COLUMNS) == 12 + 7 * 3
    canal = next(n for n in nodes.lines if n.GetAttribute(ATTR_FINDING) == "canal")
    assert canal.GetName() == "L4-L5 canal: canal AP" and canal.GetAttribute(ATTR_LINE) == "canal AP"
    assert canal.GetAttribute(ATTR_MODEL_LEVEL) == "L4-L5" and canal.GetLocked() == 1
    assert _ras(canal, 0) == pytest.approx((0.0, -6.0, 4.0)) and _ras(canal, 1) == pytest.approx((0.0, -15.0, 4.0))
    assert canal.GetLineLengthWorld() == pytest.approx(9.0)
    assert canal in nodes.layer_nodes("measurements")


def test_every_node_is_under_the_study_in_a_folder_per_layer(mrml_scene):
    import slicer

    a, nodes = case.show(mrml_scene)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_scene)
    assert sh.GetItemLevel(nodes.study_item) == "Study"
    assert sh.GetItemUID(nodes.study_item, "DICOM") == case.STUDY_UID
    for node in nodes.all_nodes():
        item = sh.GetItemByDataNode(node)
        assert item, f"{node.GetName()} is not in the subject hierarchy"
        assert sh.IsItemLevel(sh.GetItemParent(item), "Folder") or sh.GetItemParent(item) == nodes.study_item
        assert sh.GetItemAncestorAtLevel(item, "Study") == nodes.study_item
    assert sh.GetItemName(sh.GetItemParent(sh.GetItemByDataNode(nodes.keypoints["axial"]))) == "Keypoints"


def test_study_loaded_from_dicom_is_reused(mrml_scene):
    import slicer

    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Anonymous")
    study = sh.CreateStudyItem(patient, "MR lumbar spine")
    sh.SetItemUID(study, "DICOM", case.STUDY_UID)
    _, nodes = case.show(mrml_scene)
    assert nodes.study_item == study


def test_layers_can_be_hidden_and_shown(mrml_scene):
    _, nodes = case.show(mrml_scene)
    for layer in mrml.LAYERS:
        assert mrml.layer_visible(nodes, layer)
    mrml.set_layer_visible(mrml_scene, nodes, "keypoints", False)
    assert not mrml.layer_visible(nodes, "keypoints")
    assert nodes.keypoints["sagittal"].GetDisplayNode().GetVisibility() == 0
    assert mrml.layer_visible(nodes, "segmentation") and mrml.layer_visible(nodes, "measurements")
    mrml.set_layer_visible(mrml_scene, nodes, "keypoints", True)
    assert mrml.layer_visible(nodes, "keypoints")
    with pytest.raises(ValueError, match="layer must be one of images, segmentation"):
        mrml.set_layer_visible(mrml_scene, nodes, "findings", False)


def test_selecting_a_level_centres_the_slice_views_on_its_disc(mrml_scene):
    import slicer

    a, nodes = case.show(mrml_scene)
    slice_node = mrml_scene.AddNewNodeByClass("vtkMRMLSliceNode")
    slice_node.SetLayoutName("Red")
    slice_node.SetOrientationToAxial()
    ras = mrml.center_views_on_level(mrml_scene, nodes, a, "L4-L5")
    # the L4-L5 disc segment: k 1..3 (x 6..-6 -> RAS 0), j 34..38 (z 6..2), i 5..27 (y -15..7 -> RAS 4)
    assert ras == pytest.approx((0.0, 4.0, 4.0), abs=0.6)
    m = slice_node.GetSliceToRAS()
    assert (m.GetElement(0, 3), m.GetElement(1, 3), m.GetElement(2, 3)) == pytest.approx(ras)
    a.level("L5-S1").disc_center = (1.0, 2.0, -27.0)
    assert mrml.level_center_ras(nodes, a, "L5-S1") == (-1.0, -2.0, -27.0)
    assert isinstance(slicer.vtkMRMLSliceNode.CenteredJumpSlice, int)


def test_bad_inputs_give_clear_errors(mrml_scene):
    a = case.assessment()
    with pytest.raises(ValueError, match=r"volumes\['sagittal'\]: voxels must be a 3D array"):
        mrml.show_assessment(mrml_scene, a, volumes={"sagittal": (np.zeros((4, 4)), case.AFFINE)})
    with pytest.raises(ValueError, match="singular"):
        mrml.show_assessment(mrml_scene, a, volumes={"sagittal": (case.volume(), np.eye(4) * 0)})
    with pytest.raises(ValueError, match="give one label map"):
        mrml.show_assessment(mrml_scene, a, label_maps={"sagittal": (case.label_map(), case.AFFINE),
                                                        "axial": (case.label_map(), case.AFFINE)})
    with pytest.raises(TypeError, match="corner_a_lps and corner_b_lps"):
        mrml.show_assessment(mrml_scene, a, boxes={"sagittal": [{"label": "disc", "center": (0, 0, 0)}]})
    with pytest.raises(TypeError, match="findings.Assessment"):
        mrml.show_assessment(mrml_scene, a.to_dict())
    with pytest.raises(ValueError, match="3 coordinates"):
        mrml.show_assessment(mrml_scene, a, keypoints={"sagittal": {"L5 posterior-superior": (1, 2)}})


def test_keypoint_level_follows_the_corner_rule():
    levels = ["L3-L4", "L4-L5", "L5-S1"]
    assert mrml.keypoint_level("L5 posterior-superior", levels) == "L4-L5"
    assert mrml.keypoint_level("L5 anterior-inferior", levels) == "L5-S1"
    assert mrml.keypoint_level("L4-L5 herniation apex", levels) == "L4-L5"
    assert mrml.keypoint_level("L1 posterior-superior", levels) is None
    assert mrml.keypoint_level("spinous process", levels) is None
