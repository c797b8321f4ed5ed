"""The parameter node holds the state: a saved and reopened scene (.mrb) gives the same findings, corrections and nodes."""

from __future__ import annotations

import pytest
from support import mrml_case as case

from SpineAssistLib import mrml
from SpineAssistLib.findings import CanalDiameter, ModicType, PfirrmannGrade, Presence


def _ras(node, i):
    xyz = [0.0, 0.0, 0.0]
    node.GetNthControlPointPosition(i, xyz)
    return tuple(xyz)


def test_parameter_node_round_trip_in_the_same_scene(mrml_scene):
    a, nodes = case.show(mrml_scene)
    param = mrml.save_state(mrml_scene, a, nodes)
    assert param.GetSingletonTag() == "SpineAssist" and param.GetModuleName() == "SpineAssist"
    assert mrml.parameter_node(mrml_scene) is param                 # one per scene
    b, again = mrml.load_state(mrml_scene)
    assert b.to_json() == a.to_json()
    assert again.table is nodes.table and again.segmentation is nodes.segmentation
    assert again.keypoints == nodes.keypoints and again.volumes == nodes.volumes
    assert again.lines == nodes.lines and again.boxes == nodes.boxes
    assert again.study_item == nodes.study_item and again.layer_items == nodes.layer_items


def test_saved_mrb_reopens_with_the_same_assessment_corrections_and_nodes(mrml_scene, tmp_path):
    a, nodes = case.show(mrml_scene)
    mrml.apply_correction(mrml_scene, nodes, a, "L4-L5", "pfirrmann", PfirrmannGrade(4), reader="dr.lee", note="dark nucleus")
    mrml.relabel_levels(mrml_scene, nodes, a, "dr.lee", shift=-1)
    path = tmp_path / "case.mrb"
    assert mrml_scene.WriteToMRB(str(path))

    scene = mrml.read_mrb(path)
    try:
        b, reopened = mrml.load_state(scene)
        assert b.to_json() == a.to_json()
        level = b.level("L3-L4")
        assert level.model_name == "L4-L5"
        assert level.pfirrmann.value == PfirrmannGrade(4) and level.pfirrmann.model == PfirrmannGrade(3)
        assert sorted(c.note for c in level.all_corrections()) == ["", "dark nucleus"]  # relabel + correction
        assert mrml.table_rows(reopened) == mrml.table_rows(nodes)
        segments = reopened.segmentation.GetSegmentation()
        names = sorted(segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments()))
        assert names == ["L3-L4 intervertebral disc", "L4 vertebral body", "L4-L5 intervertebral disc", "Thecal sac"]
        colour = segments.GetSegment(segments.GetSegmentIdBySegmentName("L3-L4 intervertebral disc")).GetColor()
        assert colour == pytest.approx(tuple(c / 255 for c in mrml.terminology_types()["L3-L4 intervertebral disc"].rgb))
        sag = reopened.keypoints["sagittal"]
        assert sag.GetLocked() == 1
        assert [sag.GetNthControlPointLabel(i) for i in range(sag.GetNumberOfControlPoints())][:3] == \
            ["L3 posterior-inferior", "L4 posterior-superior", "L4 anterior-superior"]
        assert _ras(sag, 0) == pytest.approx((0.0, -2.0, 5.0))
        assert set(reopened.keypoints) == {"sagittal", "axial"} and set(reopened.volumes) == {"sagittal"}
        assert len(reopened.lines) == 2 and len(reopened.boxes) == 1
        assert reopened.volumes["sagittal"].GetImageData().GetDimensions() == (40, 80, 5)
        import slicer

        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        assert sh.GetItemLevel(reopened.study_item) == "Study"
        assert sh.GetItemName(reopened.layer_items["keypoints"]) == "Keypoints"
        mrml.set_layer_visible(scene, reopened, "boxes", False)
        assert not mrml.layer_visible(reopened, "boxes")
    finally:
        scene.Clear(1)


def test_sagittal_findings_and_their_corrections_round_trip_through_the_mrb(mrml_scene, tmp_path):
    a, nodes = case.show(mrml_scene, case.assessment(sagittal_findings=True))
    mrml.apply_correction(mrml_scene, nodes, a, "L4-L5", "modic", ModicType(1), reader="dr.lee", note="oedema")
    mrml.apply_correction(mrml_scene, nodes, a, "L4-L5", "canal", CanalDiameter("relative", 9.0), reader="dr.lee")
    mrml.apply_correction(mrml_scene, nodes, a, "L4-L5", "bulging", Presence(True), reader="dr.lee")
    path = tmp_path / "case.mrb"
    assert mrml_scene.WriteToMRB(str(path))

    scene = mrml.read_mrb(path)
    try:
        b, reopened = mrml.load_state(scene)
        assert b.to_json() == a.to_json()
        level = b.level("L4-L5")
        assert (level.modic.value, level.modic.model) == (ModicType(1), ModicType(2))
        assert (level.canal.value, level.canal.model) == (CanalDiameter("relative", 9.0), CanalDiameter("absolute", 9.0))
        assert level.bulging.value == Presence(True) and level.bulging.model == Presence(False)
        assert sorted(c.finding for c in level.all_corrections()) == ["bulging", "canal", "modic"]
        assert b.level("L5-S1").modic.status == "not_assessed" and b.level("L5-S1").modic.reason == "not graded"
        assert mrml.table_rows(reopened) == mrml.table_rows(nodes)
        assert "L4-L5 canal: canal AP" in {n.GetName() for n in reopened.lines}
        assert len(reopened.lines) == 3
    finally:
        scene.Clear(1)


def test_a_scene_without_an_assessment_says_so(mrml_scene, tmp_path):
    with pytest.raises(ValueError, match="no SpineAssist assessment"):
        mrml.load_state(mrml_scene)
    with pytest.raises(FileNotFoundError, match="no scene bundle"):
        mrml.read_mrb(tmp_path / "missing.mrb")
    bad = tmp_path / "bad.mrb"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="could not be read"):
        mrml.read_mrb(bad)


def test_write_mrb_stores_the_mr_volume_raw_as_integers_and_the_masks_compressed(mrml_scene, tmp_path):
    """The bundle holds the MR voxels as int16 in an uncompressed NRRD (gzip made noisy MR only a
    fifth smaller, for most of the bundle's time) and the segmentation gzipped; both read back equal."""
    import zipfile

    import numpy as np
    import vtk
    from vtkmodules.util import numpy_support

    def _array(m):
        return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])

    a = case.assessment()
    voxels = case.volume().astype(np.float32)                     # as a study is loaded: float32 after the rescale
    nodes = mrml.show_assessment(mrml_scene, a, volumes={"sagittal": (voxels, case.AFFINE)},
                                 label_maps={"sagittal": (case.label_map(), case.AFFINE)})
    mrml.save_state(mrml_scene, a, nodes)
    path = tmp_path / "case.mrb"
    assert mrml.write_mrb(mrml_scene, path)
    with zipfile.ZipFile(path) as z:
        headers = {n: z.read(n)[:400].decode("latin-1") for n in z.namelist() if n.endswith(".nrrd")}
    volume = [h for n, h in headers.items() if not n.endswith(".seg.nrrd")]
    segmentation = [h for n, h in headers.items() if n.endswith(".seg.nrrd")]
    assert len(volume) == 1 and "encoding: raw" in volume[0] and "type: short" in volume[0]
    assert len(segmentation) == 1 and "encoding: gzip" in segmentation[0]
    scene = mrml.read_mrb(path)
    try:
        _, reopened = mrml.load_state(scene)
        node = reopened.volumes["sagittal"]
        got = numpy_support.vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).reshape(voxels.shape)
        # Slicer may store the slices in the other order (a flipped IJK to RAS): compare voxel by voxel
        # at the same place in the patient
        before, after = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        nodes.volumes["sagittal"].GetIJKToRASMatrix(before)
        node.GetIJKToRASMatrix(after)
        to_new = np.linalg.inv(_array(after)) @ _array(before)
        k, j, i = np.indices(voxels.shape)
        ijk = np.rint(to_new @ np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])).astype(int)
        np.testing.assert_array_equal(got[ijk[2], ijk[1], ijk[0]], voxels.ravel())
    finally:
        scene.Clear(1)


def test_integer_voxels_only_where_every_value_survives():
    import numpy as np

    from SpineAssistLib.mrml.nodes import integer_voxels

    whole = np.array([[[0.0, 512.0, -7.0]]], np.float32)
    assert integer_voxels(whole).dtype == np.int16 and (integer_voxels(whole) == whole).all()
    assert integer_voxels(np.array([[[0.0, 40000.0]]], np.float32)).dtype == np.uint16
    for kept in (np.array([[[0.5, 1.0]]], np.float32), np.array([[[-1.0, 40000.0]]], np.float32),
                 np.array([[[1e6]]], np.float32)):
        assert integer_voxels(kept) is kept                         # a fraction, or out of range: unchanged
    labels = np.ones((1, 2, 2), np.uint8)
    assert integer_voxels(labels) is labels
