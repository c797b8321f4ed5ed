"""The slicer-core wheel gives a real MRML scene: nodes can be made, filled, saved and read back."""

import vtk


def test_segmentation_and_markups_nodes_in_a_real_scene(mrml_scene, tmp_path):
    seg = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Discs")
    seg.CreateDefaultDisplayNodes()
    segment_id = seg.GetSegmentation().AddEmptySegment("L4-L5", "L4-L5 intervertebral disc")
    assert seg.GetSegmentation().GetNumberOfSegments() == 1
    assert seg.GetSegmentation().GetSegment(segment_id).GetName() == "L4-L5 intervertebral disc"

    points = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Keypoints")
    points.AddControlPoint(vtk.vtkVector3d(3.0, 4.0, 0.0), "L4 posterior-superior")
    assert points.GetNumberOfControlPoints() == 1
    assert points.GetNthControlPointLabel(0) == "L4 posterior-superior"
    xyz = [0.0, 0.0, 0.0]
    points.GetNthControlPointPosition(0, xyz)
    assert xyz == [3.0, 4.0, 0.0]

    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == 1

    mrb = tmp_path / "scene.mrb"
    assert mrml_scene.WriteToMRB(str(mrb))
    assert mrb.stat().st_size > 1000
