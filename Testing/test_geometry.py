"""Index <-> patient mm conversions (SpineAssistLib.geometry): every index convention against positions
worked out by hand, round trips, LPS <-> RAS, and Slicer's own IJKToRAS for the same volume."""

from __future__ import annotations

import numpy as np
import pytest

from SpineAssistLib.geometry import (
    INDEX_CONVENTIONS,
    affine_from_dicom,
    affine_from_itk,
    affine_lps_to_ras,
    affine_ras_to_lps,
    flip_index,
    index_to_world,
    itk_geometry,
    lps_to_ras,
    orientation_normal,
    pixel_spacing,
    pixel_spacing_xy,
    project_to_xy,
    ras_to_lps,
    reorder_index,
    slice_affine,
    slice_normal,
    transpose_index,
    world_to_index,
    xy_to_world,
)

# An axial stack: rows run posterior (+y), columns to the patient's left (+x), slices 4 mm apart
# towards the head. PixelSpacing is (between rows, between columns): 0.8 mm down a column, 0.5 mm
# along a row.
AX_IPP = (-100.0, -120.0, 30.0)
AX_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
AX_SPACING = (0.8, 0.5)
AX_STEP = 4.0
# slice 2, row 10, column 20: x = -100 + 20 * 0.5, y = -120 + 10 * 0.8, z = 30 + 2 * 4
AX_VOXEL_LPS = (-90.0, -112.0, 38.0)

# A sagittal stack: rows run posterior (+y), columns run down (-z); row x column = (-1, 0, 0), so
# the slices step to the patient's right, 3.5 mm apart; 0.6 mm between rows, 0.7 mm between columns.
SAG_IPP = (20.0, -80.0, 60.0)
SAG_IOP = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
SAG_SPACING = (0.6, 0.7)
SAG_STEP = 3.5
# slice 4, row 50, column 100: x = 20 - 4 * 3.5, y = -80 + 100 * 0.7, z = 60 - 50 * 0.6
SAG_VOXEL_LPS = (6.0, -10.0, 30.0)


def _axial(convention):
    return affine_from_dicom(AX_IPP, AX_IOP, AX_SPACING, AX_STEP, convention)


# --- one position, every convention -------------------------------------------------------------

def test_axial_affine_in_each_convention_is_the_hand_written_matrix():
    assert _axial("col,row,slice").tolist() == [[0.5, 0.0, 0.0, -100.0],
                                                 [0.0, 0.8, 0.0, -120.0],
                                                 [0.0, 0.0, 4.0, 30.0],
                                                 [0.0, 0.0, 0.0, 1.0]]
    assert _axial("slice,row,col").tolist() == [[0.0, 0.0, 0.5, -100.0],
                                                 [0.0, 0.8, 0.0, -120.0],
                                                 [4.0, 0.0, 0.0, 30.0],
                                                 [0.0, 0.0, 0.0, 1.0]]
    assert _axial("row,col,slice").tolist() == [[0.0, 0.5, 0.0, -100.0],
                                                 [0.8, 0.0, 0.0, -120.0],
                                                 [0.0, 0.0, 4.0, 30.0],
                                                 [0.0, 0.0, 0.0, 1.0]]


@pytest.mark.parametrize("convention, index", [("col,row,slice", (20, 10, 2)),
                                               ("slice,row,col", (2, 10, 20)),
                                               ("row,col,slice", (10, 20, 2))])
def test_axial_voxel_is_at_the_hand_computed_position_in_every_convention(convention, index):
    A = _axial(convention)
    assert index_to_world(index, A) == pytest.approx(AX_VOXEL_LPS)
    assert world_to_index(AX_VOXEL_LPS, A) == pytest.approx(index)


@pytest.mark.parametrize("convention, index", [("col,row,slice", (100, 50, 4)),
                                               ("slice,row,col", (4, 50, 100)),
                                               ("row,col,slice", (50, 100, 4))])
def test_sagittal_voxel_is_at_the_hand_computed_position_in_every_convention(convention, index):
    A = affine_from_dicom(SAG_IPP, SAG_IOP, SAG_SPACING, SAG_STEP, convention)
    assert index_to_world(index, A) == pytest.approx(SAG_VOXEL_LPS)
    assert world_to_index(SAG_VOXEL_LPS, A) == pytest.approx(index)
    assert slice_normal(A, convention) == pytest.approx((-1.0, 0.0, 0.0))


def test_orientation_normal_is_row_cross_column():
    assert orientation_normal(AX_IOP).tolist() == [0.0, 0.0, 1.0]        # axial: towards the head
    assert orientation_normal(SAG_IOP).tolist() == [-1.0, 0.0, 0.0]      # sagittal: to the patient's right


def test_a_slice_step_vector_is_used_as_given():
    # a stack whose slices are 4 mm apart along z and shifted 1 mm along x from one to the next
    A = affine_from_dicom(AX_IPP, AX_IOP, AX_SPACING, (1.0, 0.0, 4.0), "col,row,slice")
    assert index_to_world((0, 0, 3), A) == pytest.approx((-97.0, -120.0, 42.0))


def test_pixel_spacing_in_dicom_order_and_in_x_y_order():
    for convention in INDEX_CONVENTIONS:
        assert pixel_spacing(_axial(convention), convention) == pytest.approx((0.8, 0.5))     # rows, columns
        assert pixel_spacing_xy(_axial(convention), convention) == pytest.approx((0.5, 0.8))  # x, y


# --- slices of a stack ---------------------------------------------------------------------------

@pytest.mark.parametrize("convention", ["slice,row,col", "col,row,slice"])
def test_slice_affine_puts_slice_k_at_slice_index_0(convention):
    S = slice_affine(_axial(convention), 2, convention)
    assert S[:3, 3] == pytest.approx((-100.0, -120.0, 38.0))               # (row 0, column 0) of slice 2
    assert index_to_world((10, 20, 0), S) == pytest.approx(AX_VOXEL_LPS)   # "row,col,slice"
    assert xy_to_world([[20.0, 10.0]], S)[0] == pytest.approx(AX_VOXEL_LPS)  # x = column 20, y = row 10
    assert S[:3, 2] == pytest.approx((0.0, 0.0, 4.0))                      # the slice step


def test_slice_affine_with_unit_normal_gives_the_distance_from_the_slice_in_mm():
    above = (-90.0, -112.0, 44.0)                                          # 6 mm above slice 2
    assert world_to_index(above, slice_affine(_axial("slice,row,col"), 2, "slice,row,col"))[2] == pytest.approx(1.5)
    S = slice_affine(_axial("slice,row,col"), 2, "slice,row,col", unit_normal=True)
    assert world_to_index(above, S) == pytest.approx((10.0, 20.0, 6.0))


def test_xy_points_round_trip_through_a_slice():
    S = slice_affine(affine_from_dicom(SAG_IPP, SAG_IOP, SAG_SPACING, SAG_STEP, "slice,row,col"), 4, "slice,row,col")
    xy = np.array([[100.0, 50.0], [0.0, 0.0], [12.5, 7.25]])
    lps = xy_to_world(xy, S)
    assert lps[0] == pytest.approx(SAG_VOXEL_LPS)
    assert lps[1] == pytest.approx((6.0, -80.0, 60.0))
    rc = world_to_index(lps, S)
    assert rc[:, 1] == pytest.approx(xy[:, 0]) and rc[:, 0] == pytest.approx(xy[:, 1]) and rc[:, 2] == pytest.approx(0.0)


def test_project_to_xy_drops_the_distance_from_the_plane():
    p = (-90.0, -112.0, 30.0 + 5.0)                                        # 5 mm above slice 0
    xy = project_to_xy([p], AX_IPP, AX_IOP[:3], AX_IOP[3:], AX_SPACING)
    assert xy.tolist() == [[20.0, 10.0]]


# --- reordering, flipping, transposing ------------------------------------------------------------

def test_reorder_index_between_every_pair_of_conventions():
    for a in INDEX_CONVENTIONS:
        for b in INDEX_CONVENTIONS:
            assert np.array_equal(reorder_index(_axial(a), a, b), _axial(b)), (a, b)


def test_flip_index_matches_the_reversed_array():
    A = affine_from_dicom(AX_IPP, AX_IOP, AX_SPACING, AX_STEP, "slice,row,col")
    F = flip_index(A, 0, 5)                       # 5 slices, the last one first
    assert index_to_world((0, 10, 20), F) == pytest.approx(index_to_world((4, 10, 20), A))
    assert F[:3, 3] == pytest.approx((-100.0, -120.0, 46.0))               # 30 + 4 * 4
    assert F[:3, 0] == pytest.approx((0.0, 0.0, -4.0))


def test_transpose_index_matches_the_transposed_array():
    A = affine_from_dicom(AX_IPP, AX_IOP, AX_SPACING, AX_STEP, "slice,row,col")
    T = transpose_index(A, (2, 0, 1))             # np.transpose(voxels, (2, 0, 1)): (col, slice, row)
    assert index_to_world((20, 2, 10), T) == pytest.approx(AX_VOXEL_LPS)


def test_itk_geometry_matches_simpleitk():
    sitk = pytest.importorskip("SimpleITK")
    img = sitk.Image(8, 6, 5, sitk.sitkUInt8)                         # x = 8 columns, y = 6 rows, z = 5 slices
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetSpacing((0.7, 0.9, 3.5))
    # x along LPS +y, y along -z, z along -x: a sagittal image as ITK stores it
    img.SetDirection((0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
    A = affine_from_itk(img.GetOrigin(), img.GetSpacing(), img.GetDirection(), "col,row,slice")
    # index (2, 3, 1): 10 - 1 * 3.5, -20 + 2 * 0.7, 30 - 3 * 0.9
    assert index_to_world((2, 3, 1), A) == pytest.approx((6.5, -18.6, 27.3))
    assert index_to_world((2, 3, 1), A) == pytest.approx(img.TransformIndexToPhysicalPoint((2, 3, 1)))
    N = affine_from_itk(img.GetOrigin(), img.GetSpacing(), img.GetDirection(), "slice,row,col")
    assert index_to_world((1, 3, 2), N) == pytest.approx((6.5, -18.6, 27.3))  # the numpy array's [z, y, x]
    origin, spacing, direction = itk_geometry(N, "slice,row,col")
    assert origin == pytest.approx(img.GetOrigin()) and spacing == pytest.approx(img.GetSpacing())
    assert direction == pytest.approx(img.GetDirection())


# --- LPS <-> RAS ---------------------------------------------------------------------------------

def test_lps_to_ras_negates_x_and_y_and_keeps_the_shape():
    assert lps_to_ras((1.0, 2.0, 3.0)).tolist() == [-1.0, -2.0, 3.0]
    pts = np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, -6.0]])
    assert lps_to_ras(pts).tolist() == [[-1.0, -2.0, 3.0], [4.0, -5.0, -6.0]]
    assert np.array_equal(ras_to_lps(lps_to_ras(pts)), pts)


def test_affine_lps_to_ras_maps_each_voxel_to_its_ras_point():
    A = _axial("col,row,slice")
    R = affine_lps_to_ras(A)
    assert R.tolist() == [[-0.5, 0.0, 0.0, 100.0],
                          [0.0, -0.8, 0.0, 120.0],
                          [0.0, 0.0, 4.0, 30.0],
                          [0.0, 0.0, 0.0, 1.0]]
    assert index_to_world((20, 10, 2), R) == pytest.approx((90.0, 112.0, 38.0))
    assert np.array_equal(affine_ras_to_lps(R), A)


@pytest.mark.parametrize("ipp, iop, spacing, step", [(AX_IPP, AX_IOP, AX_SPACING, AX_STEP),
                                                      (SAG_IPP, SAG_IOP, SAG_SPACING, SAG_STEP)])
def test_ras_affine_is_slicers_ijk_to_ras_for_the_same_volume(ipp, iop, spacing, step):
    """Slicer builds IJKToRAS from origin, spacing (i, j, k) and direction columns, all RAS; ours,
    from the DICOM attributes through LPS, must be the same matrix."""
    slicer = pytest.importorskip("slicer")
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    from SpineAssistLib.mrml.nodes import ijk_to_ras_matrix

    row, col = np.array(iop[:3]), np.array(iop[3:])
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetOrigin(-ipp[0], -ipp[1], ipp[2])
    node.SetSpacing(spacing[1], spacing[0], step)                    # i = column, j = row, k = slice
    flip = np.array([-1.0, -1.0, 1.0])
    normal = np.cross(row, col)
    node.SetIToRASDirection(*(row * flip))                           # along a row, as i grows
    node.SetJToRASDirection(*(col * flip))
    node.SetKToRASDirection(*(normal * flip))
    m = vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    slicer_ijk_to_ras = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])

    A = affine_from_dicom(ipp, iop, spacing, step, "col,row,slice")
    assert affine_lps_to_ras(A) == pytest.approx(slicer_ijk_to_ras)
    ours = ijk_to_ras_matrix(A)
    assert np.array([[ours.GetElement(r, c) for c in range(4)] for r in range(4)]) == pytest.approx(slicer_ijk_to_ras)


# --- the pipeline's stack uses the same conventions ------------------------------------------------

def test_image_stack_methods_agree_with_the_conventions():
    from SpineAssistLib.pipeline.result import ImageStack

    stack = ImageStack("axial", "axial", np.zeros((5, 32, 40)), _axial("col,row,slice"))
    assert stack.pixel_to_lps(2, np.array(10.0), np.array(20.0)) == pytest.approx(AX_VOXEL_LPS)
    assert stack.lps_to_index(np.array(AX_VOXEL_LPS)) == pytest.approx((20.0, 10.0, 2.0))
    assert np.array_equal(stack.numpy_affine(), _axial("slice,row,col"))
    origin, normal = stack.slice_plane(2)
    assert origin.tolist() == [-100.0, -120.0, 38.0] and normal.tolist() == [0.0, 0.0, 1.0]
    assert stack.slice_numpy_affine(2) == pytest.approx(slice_affine(_axial("slice,row,col"), 2, "slice,row,col",
                                                                     unit_normal=True))


# --- errors a caller can make --------------------------------------------------------------------

def test_an_unknown_convention_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="index_convention must be one of 'col,row,slice', 'slice,row,col', "
                                         "'row,col,slice'; got 'ijk'"):
        affine_from_dicom(AX_IPP, AX_IOP, AX_SPACING, AX_STEP, "ijk")     # type: ignore[arg-type]


def test_bad_shapes_are_refused_with_what_was_expected():
    with pytest.raises(ValueError, match=r"affine must be a 4x4 index -> mm matrix; got shape \(3, 3\)"):
        index_to_world((0, 0, 0), np.eye(3))
    with pytest.raises(ValueError, match=r"points must be 3 coordinates or an array \(\.\.\., 3\); got shape \(2,\)"):
        world_to_index((1.0, 2.0), np.eye(4))
    with pytest.raises(ValueError, match="orientation must be 6 direction cosines"):
        orientation_normal((1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="slice_step must be a number"):
        affine_from_dicom(AX_IPP, AX_IOP, AX_SPACING, (0.0, 4.0), "col,row,slice")
    with pytest.raises(ValueError, match=r"axes must be a permutation of \(0, 1, 2\)"):
        transpose_index(np.eye(4), (0, 0, 1))
    with pytest.raises(ValueError, match="axis must be 0, 1 or 2"):
        flip_index(np.eye(4), 3, 5)


def test_checked_spacing_takes_two_positive_sizes_and_names_what_is_wrong():
    from SpineAssistLib.geometry import checked_spacing

    assert checked_spacing(("0.5", 0.7)) == (0.5, 0.7)
    for bad in ((0.5,), (0.5, 0.0), (float("nan"), 1.0), "ab", None):
        with pytest.raises(ValueError, match="spacing_xy must be two"):
            checked_spacing(bad, "spacing_xy", "x", "y")
