"""Sagittal -> axial mapping: which disc each axial slice's plane cuts, through LPS geometry."""

import numpy as np
import pytest
from hypothesis import given
from support.transforms import PROPERTY_SETTINGS, similarities

from SpineAssistLib.anatomy import DISC_LABELS
from SpineAssistLib.grading import SlicePlane, disc_point_clouds, map_axial_slices

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # ImageOrientationPatient of a true axial: normal +z


def slab(z_low, z_high, step=1.0):
    """Points of a 20 x 20 mm disc between two heights (LPS mm), on a 1 mm grid."""
    g = np.arange(-10.0, 10.0 + 1e-9, step)
    zs = np.arange(z_low, z_high + 1e-9, step)
    return np.array([(x, y, z) for x in g for y in g for z in zs])


DISCS = {"L4-L5": slab(-5.0, 5.0), "L5-S1": slab(-45.0, -35.0)}


def axial(z):
    return SlicePlane.from_dicom((-100.0, -100.0, z), AXIAL)


def test_axial_slices_are_assigned_to_the_disc_they_cut():
    m = map_axial_slices([axial(z) for z in (0.0, -20.0, -40.0, 5.0, 20.0)], DISCS)
    assert [s.level for s in m.slices] == ["L4-L5", None, "L5-S1", "L4-L5", None]
    assert [s.status for s in m.slices] == ["assigned", "between discs", "assigned", "assigned", "between discs"]
    assert m.slices_of("L4-L5") == (0, 3)
    assert m.between_discs == (1, 4)
    assert m.by_level == {"L4-L5": (0, 3), "L5-S1": (2,)}
    assert m.slices[3].center_offset_mm == {"L4-L5": pytest.approx(-5.0)}  # the disc's centre is 5 mm below


def test_an_oblique_slice_through_two_discs_is_ambiguous():
    # Tilted 45 degrees about x through z = -20 it runs between the discs; tilted ~80 degrees it
    # spans 100 mm of height across the 20 mm of disc depth and nicks both.
    tilted = SlicePlane((0.0, 0.0, -20.0), (0.0, -1.0, 1.0))
    steep = SlicePlane((0.0, 0.0, -20.0), (0.0, -1.0, 0.2))
    m = map_axial_slices([tilted, steep], DISCS)
    assert m.slices[0].level is None and m.slices[0].discs_cut == ()
    assert m.slices[1].status == "ambiguous"
    assert set(m.slices[1].discs_cut) == {"L4-L5", "L5-S1"}
    assert m.ambiguous == (1,)


def test_normal_from_dicom_orientation_is_row_cross_column():
    plane = SlicePlane.from_dicom((1.0, 2.0, 3.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0))  # a sagittal slice
    assert plane.normal == pytest.approx((-1.0, 0.0, 0.0))
    assert plane.origin == (1.0, 2.0, 3.0)


def test_a_label_mask_counts_a_plane_through_a_voxel_even_off_its_centre():
    # 2 mm voxels along k (z), 1 mm in-plane; L4-L5 occupies k = 2..4, voxel centres z = 4..8 mm.
    mask = np.zeros((10, 10, 10), dtype=np.uint16)
    mask[2:8, 2:8, 2:5] = DISC_LABELS["L4-L5"]
    mask[2:8, 2:8, 0] = 1  # not a disc label: ignored
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    m = map_axial_slices([axial(z) for z in (8.9, 9.1, 3.1, 2.9)], label_mask=mask, index_to_lps=affine)
    assert [s.level for s in m.slices] == ["L4-L5", None, "L4-L5", None]  # half a 2 mm voxel: +-1 mm
    clouds = disc_point_clouds(mask, affine)
    assert set(clouds) == {"L4-L5"} and clouds["L4-L5"].shape == (6 * 6 * 3, 3)


def test_tolerance_is_a_setting():
    assert map_axial_slices([axial(5.5)], DISCS).slices[0].level is None
    assert map_axial_slices([axial(5.5)], DISCS, tolerance_mm=0.5).slices[0].level == "L4-L5"


def test_custom_label_values():
    mask = np.zeros((4, 4, 4), dtype=np.uint8)
    mask[1, 1, 1] = 7
    m = map_axial_slices([axial(1.0)], label_mask=mask, index_to_lps=np.eye(4), labels={7: "L3-L4"})
    assert m.slices[0].level == "L3-L4"


@PROPERTY_SETTINGS
@given(t=similarities(scale=False))
def test_assignment_does_not_change_under_rotation_and_translation(t):
    planes = [axial(z) for z in (0.0, -20.0, -40.0, 4.5, -36.5)]
    moved_planes = [SlicePlane(tuple(t(p.origin)), tuple(t.vector(p.normal))) for p in planes]
    moved_discs = {name: t.points(pts) for name, pts in DISCS.items()}
    before = map_axial_slices(planes, DISCS)
    after = map_axial_slices(moved_planes, moved_discs)
    assert [s.level for s in after.slices] == [s.level for s in before.slices]


# ---- bad input ---------------------------------------------------------------------------------

def test_discs_must_be_given_one_way():
    with pytest.raises(ValueError, match="either as discs"):
        map_axial_slices([axial(0.0)])
    with pytest.raises(ValueError, match="label_mask needs index_to_lps"):
        map_axial_slices([axial(0.0)], label_mask=np.zeros((2, 2, 2)))


def test_nan_disc_point_is_refused_by_name():
    pts = slab(-1.0, 1.0)
    pts[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"discs\['L4-L5'\]\[3\].*non-finite"):
        map_axial_slices([axial(0.0)], {"L4-L5": pts})


def test_unknown_level_name_is_refused():
    with pytest.raises(ValueError, match="level must be one of"):
        map_axial_slices([axial(0.0)], {"L9-L10": slab(-1.0, 1.0)})


def test_bad_planes_are_refused():
    with pytest.raises(ValueError, match="slice normal is a zero vector"):
        SlicePlane((0, 0, 0), (0, 0, 0))
    with pytest.raises(ValueError, match="image_orientation_patient: row and column directions are parallel"):
        SlicePlane.from_dicom((0, 0, 0), (1, 0, 0, 1, 0, 0))
    with pytest.raises(ValueError, match="image_orientation_patient must be 6"):
        SlicePlane.from_dicom((0, 0, 0), (1, 0, 0))
    with pytest.raises(TypeError, match=r"planes\[0\] must be a SlicePlane"):
        map_axial_slices([(0, 0, 1)], DISCS)


def test_a_singular_affine_is_refused():
    with pytest.raises(ValueError, match="index_to_lps is singular"):
        map_axial_slices([axial(0.0)], label_mask=np.ones((2, 2, 2)), index_to_lps=np.diag([1.0, 0.0, 1.0, 1.0]))


def _disc_cloud(centre_z: float, tilt_deg: float, radius: float = 20.0, half_height: float = 4.0) -> np.ndarray:
    """Return points filling a flat cylinder (a disc) about LPS z = centre_z, tilted about x."""
    g = np.mgrid[-radius:radius + 1:2.0, -radius:radius + 1:2.0, -half_height:half_height + 1:2.0].reshape(3, -1).T
    g = g[np.hypot(g[:, 0], g[:, 1]) <= radius]
    t = np.deg2rad(tilt_deg)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return g @ rot.T + [0.0, 0.0, centre_z]


def test_a_slice_grazing_a_neighbouring_discs_rim_is_not_mapped_to_it():
    from SpineAssistLib.grading import SlicePlane, map_axial_slices

    # L4-L5 flat about z = 0; the other disc centred 14 mm away, tilted 30 degrees so its rim reaches z = 0
    discs = {"L4-L5": _disc_cloud(0.0, 0.0), "L5-S1": _disc_cloud(14.0, 30.0)}
    plane = SlicePlane((0.0, 0.0, 3.0), (0.0, 0.0, 1.0))
    whole = map_axial_slices([plane], discs)
    assert whole.slices[0].discs_cut == ("L4-L5", "L5-S1")           # the rim of L5-S1 reaches z = 3
    core = map_axial_slices([plane], discs, core_radius_mm=10.0)
    assert core.slices[0].level == "L4-L5" and core.slices[0].discs_cut == ("L4-L5",)
    # a slice through L5-S1's middle is still mapped to it
    through = map_axial_slices([SlicePlane((0.0, 0.0, 14.0), (0.0, 0.0, 1.0))], discs, core_radius_mm=10.0)
    assert through.slices[0].level == "L5-S1"
    with pytest.raises(ValueError, match="core_radius_mm"):
        map_axial_slices([plane], discs, core_radius_mm=0.0)
