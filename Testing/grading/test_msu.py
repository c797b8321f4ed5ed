"""MSU size, zone and side from axial keypoints: hand-checkable cases, invariance, mirroring, bad input.

The reference slice (LPS mm, z = 0): medial facet margins at x = +-20, y = 30 (intra-facet line
40 mm wide, quarters of 10 mm, patient left is +x); posterior disc margin at (0, 20): h = 10 mm;
posterior canal at (0, 45). An apex at y = 25 is 5 mm deep, r = 0.5.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from support.transforms import PROPERTY_SETTINGS, mirror_left_right, similarities

from SpineAssistLib.findings import HerniationFinding
from SpineAssistLib.grading import msu_grade, msu_size, select_maximal_extrusion, voxel_centers_lps
from SpineAssistLib.grading.msu import MIN_ZONE_OVERLAP_FRACTION

LEFT, RIGHT, DISC, CANAL = (20.0, 30.0, 0.0), (-20.0, 30.0, 0.0), (0.0, 20.0, 0.0), (0.0, 45.0, 0.0)


def grade(apex=None, extent=None, **kwargs):
    """Grade the reference slice; ``extent`` (x_min, x_max) gives herniation points at y = 22."""
    points = None if extent is None else [(x, 22.0, 0.0) for x in np.linspace(extent[0], extent[1], 11)]
    return msu_grade(LEFT, RIGHT, DISC, CANAL, apex, points, **kwargs)


def apex_at(x=0.0, depth=5.0):
    return (x, 20.0 + depth, 0.0)


# ---- size --------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth_mm, ratio, size", [
    (5.0, 0.5, 1), (2.0, 0.2, 1), (5.1, 0.51, 2), (10.0, 1.0, 2), (12.0, 1.2, 3),
])
def test_size_from_depth_ratio(depth_mm, ratio, size):
    r = grade(apex_at(depth=depth_mm))
    assert r.depth_mm == pytest.approx(depth_mm)
    assert r.facet_line_distance_mm == pytest.approx(10.0)
    assert r.depth_ratio == pytest.approx(ratio)
    assert r.size == size


def test_r_equal_to_half_is_size_1():
    assert msu_size(0.5) == 1 and msu_size(1.0) == 2 and msu_size(1.0000001) == 3


@pytest.mark.parametrize("apex", [None, apex_at(depth=0.5), apex_at(depth=0.0), apex_at(depth=-3.0)])
def test_no_apex_or_a_shallow_one_is_no_herniation(apex):
    r = grade(apex)
    assert (r.size, r.zone, r.side) == (0, None, None)
    assert r.value.label == "none"


def test_size_0_with_the_bulge_flag_reads_bulge():
    assert grade(apex_at(depth=0.5), bulge=True).value.label == "bulge"


def test_minimum_depth_is_a_setting():
    assert grade(apex_at(depth=0.5), min_depth_mm=0.2).size == 1
    assert grade(apex_at(depth=2.0), min_depth_mm=3.0).size == 0


def test_depth_is_measured_perpendicular_to_the_intra_facet_line_as_a_3_4_5_triangle():
    # Apex 3 mm lateral and 4 mm deep: 5 mm from the disc margin, but only the 4 mm count.
    r = grade(apex_at(x=-3.0, depth=4.0))
    assert np.hypot(3.0, 4.0) == 5.0
    assert r.depth_mm == pytest.approx(4.0)
    assert r.depth_ratio == pytest.approx(0.4)


# ---- zone and side -----------------------------------------------------------------------------

@pytest.mark.parametrize("x, zone, side", [
    (0.0, "A", None), (2.0, "A", None), (5.0, "A", "left"), (-5.0, "A", "right"), (10.0, "A", "left"),
    (15.0, "B", "left"), (-15.0, "B", "right"), (20.0, "B", "left"), (25.0, "C", "left"), (-30.0, "C", "right"),
])
def test_zone_and_side_from_the_apex_alone(x, zone, side):
    r = grade(apex_at(x=x))
    assert (r.zone, r.side) == (zone, side)


@pytest.mark.parametrize("extent, apex_x, label", [
    ((-9.0, 9.0), 0.0, "1-A central"),
    ((-3.0, 9.0), 4.0, "1-A left"),            # centre 3 mm left: outside the middle eighth (2.5 mm)
    ((-16.0, -6.0), -12.0, "1-AB right"),
    ((-15.0, 15.0), 0.0, "1-AB bilateral"),     # reaches zone B on both sides
    ((12.0, 24.0), 18.0, "1-BC left"),
    ((12.0, 18.0), 15.0, "1-B left"),
    ((-29.0, -22.0), -25.0, "1-C right"),
    ((5.0, 25.0), 8.0, "1-AB left"),            # A, B and C: the pair holding the apex
    ((5.0, 25.0), 22.0, "1-BC left"),
    ((2.0, 25.0), 15.0, "1-AB left"),           # apex in B: A overlap 8 mm > C overlap 5 mm
    ((8.0, 29.0), 15.0, "1-BC left"),           # apex in B: A overlap 2 mm < C overlap 9 mm
    ((-9.0, 10.5), 0.0, "1-A central"),         # 0.5 mm into B is a spill, not a reach
])
def test_zone_from_the_lateral_extent_against_the_quarter_points(extent, apex_x, label):
    r = grade(apex_at(x=apex_x), extent)
    assert r.value.label == label


def test_extent_measurements_say_how_far_each_side_is_reached():
    r = grade(apex_at(x=-12.0), (-16.0, -6.0))
    assert (r.extent_right_mm, r.extent_left_mm) == (pytest.approx(16.0), pytest.approx(-6.0))
    assert r.zones_touched == ("B right", "A")


def test_a_zone_b_reach_on_both_sides_with_c_reports_the_larger_side_with_a_warning():
    r = grade(apex_at(x=22.0), (-21.0, 25.0))
    assert (r.zone, r.side) == ("BC", "left")
    assert any("both sides" in w for w in r.warnings)


def test_sides_follow_patient_x_even_when_the_facet_labels_are_swapped():
    r = msu_grade(RIGHT, LEFT, DISC, CANAL, apex_at(x=15.0))
    assert (r.zone, r.side) == ("B", "left")
    assert any("labels" in w for w in r.warnings)


def test_an_anteroposterior_intra_facet_line_falls_back_to_the_labels():
    # A slice rotated 90 degrees about z: patient x no longer tells the sides; the labels do.
    turn = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
    pts = [turn @ p for p in (LEFT, RIGHT, DISC, CANAL, apex_at(x=15.0))]
    r = msu_grade(*pts)
    assert (r.zone, r.side) == ("B", "left")
    assert any("labels" in w for w in r.warnings)


def test_zone_from_a_2d_mask_with_its_pixel_to_lps_affine():
    # 1 mm pixels: row i -> y = i, column j -> x = j - 50, on the slice z = 0.
    mask = np.zeros((60, 100), dtype=bool)
    mask[21:25, 34:45] = True                    # x from -16 to -6 mm, y 21-24 mm
    affine = np.array([[0, 1, 0, -50], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    r = msu_grade(LEFT, RIGHT, DISC, CANAL, apex_at(x=-12.0), voxel_centers_lps(mask, affine))
    assert r.value.label == "1-AB right"


def test_slice_normal_keeps_measurements_in_the_slice_plane():
    left, right = (20.0, 30.0, 2.0), (-20.0, 30.0, -2.0)
    tilted = msu_grade(left, right, DISC, CANAL, apex_at(x=15.0))
    in_plane = msu_grade(left, right, DISC, CANAL, apex_at(x=15.0), slice_normal=(0, 0, 1))
    assert tilted.intra_facet_width_mm == pytest.approx(np.hypot(40.0, 4.0))
    assert in_plane.intra_facet_width_mm == pytest.approx(40.0)
    assert in_plane.value.label == "1-B left"


def test_to_finding_carries_value_measurements_and_geometry():
    r = grade(apex_at(x=-12.0), (-16.0, -6.0), source={"sop_instance_uid": "1.2.3.4"})
    f = r.to_finding(confidence=0.8)
    assert isinstance(f, HerniationFinding)
    assert f.model.label == "1-AB right"
    assert f.measurement("depth_ratio").value == pytest.approx(0.5)
    assert f.measurement("herniation_depth_mm").unit == "mm"
    assert f.geometry.points["quarter point left"] == pytest.approx((10.0, 30.0, 0.0))
    assert f.geometry.lines["intra-facet line"] == ((-20.0, 30.0, 0.0), (20.0, 30.0, 0.0))
    assert f.geometry.lines["herniation depth"] == ((0.0, 20.0, 0.0), (0.0, 25.0, 0.0))
    assert f.geometry.lines["zone boundary A|B right"][0] == pytest.approx((-10.0, 20.0, 0.0))
    assert f.geometry.source == {"sop_instance_uid": "1.2.3.4"}
    assert f.to_dict()["msu_zone"] == "AB"


def test_no_herniation_finding_has_no_depth_lines():
    f = grade(None).to_finding()
    assert f.model.size == 0
    assert "herniation depth" not in f.geometry.lines
    assert f.measurement("depth_ratio") is None
    assert f.measurement("facet_line_distance_mm").value == pytest.approx(10.0)


def test_the_slice_of_maximal_extrusion_is_the_deepest_ratio():
    slices = [grade(None), grade(apex_at(depth=3.0)), grade(apex_at(depth=7.0)), grade(apex_at(depth=7.0))]
    assert select_maximal_extrusion(slices) is slices[2]
    assert select_maximal_extrusion([grade(None), grade(None)]).size == 0
    with pytest.raises(ValueError, match="results is empty"):
        select_maximal_extrusion([])


# ---- invariance --------------------------------------------------------------------------------

# Lateral positions and depths kept away from the zone and size boundaries, where round-off decides.
away = st.floats(-35.0, 35.0).filter(lambda x: all(abs(abs(x) - b) > 1e-3 for b in (2.5, 10.0, 20.0)))
depths = st.floats(2.0, 15.0).filter(lambda d: all(abs(d - b) > 1e-3 for b in (5.0, 10.0)))


@st.composite
def herniations(draw):
    x = draw(away)
    width = draw(st.floats(0.0, 12.0))
    lo = draw(st.floats(x - width, x))
    # zone edges (10, 20 mm: quarters of the 40 mm facet line) and, a tenth of a quarter either side,
    # where an end's overlap with the next zone crosses MIN_ZONE_OVERLAP_FRACTION
    edges = [b + d for b in (10.0, 20.0) for d in (0.0, -10.0 * MIN_ZONE_OVERLAP_FRACTION, 10.0 * MIN_ZONE_OVERLAP_FRACTION)]
    assume(all(abs(abs(e) - b) > 0.05 for e in (lo, lo + width) for b in edges))
    assume(all(abs(abs(lo + width / 2) - b) > 1e-3 for b in (2.5,)))
    return apex_at(x=x, depth=draw(depths)), (lo, lo + width)


def _inputs(apex, extent):
    points = [(x, 22.0, 0.0) for x in np.linspace(extent[0], extent[1], 7)]
    return [LEFT, RIGHT, DISC, CANAL, apex], points


@PROPERTY_SETTINGS
@given(h=herniations(), t=similarities(max_angle_deg=180.0))
def test_size_and_zone_do_not_change_under_any_rotation_translation_or_scaling(h, t):
    (kp, points) = _inputs(*h)
    before = msu_grade(*kp, points)
    after = msu_grade(*(t(p) for p in kp), t.points(points), min_depth_mm=t.scale)
    assert (after.size, after.zone) == (before.size, before.zone)
    assert after.depth_ratio == pytest.approx(before.depth_ratio)
    assert after.depth_mm == pytest.approx(before.depth_mm * t.scale)


@PROPERTY_SETTINGS
@given(h=herniations(), t=similarities(max_angle_deg=60.0))
def test_side_does_not_change_while_the_patient_keeps_left_on_the_left(h, t):
    # Up to 60 degrees the intra-facet line still points to +x (cos 60 > 0): left stays left.
    (kp, points) = _inputs(*h)
    before = msu_grade(*kp, points)
    after = msu_grade(*(t(p) for p in kp), t.points(points), min_depth_mm=t.scale)
    assert (after.size, after.zone, after.side) == (before.size, before.zone, before.side)


SWAPPED = {"left": "right", "right": "left", "bilateral": "bilateral", None: None}


@PROPERTY_SETTINGS
@given(h=herniations(), swap_labels=st.booleans())
def test_mirroring_left_right_swaps_the_side_and_keeps_size_and_zone(h, swap_labels):
    (kp, points) = _inputs(*h)
    before = msu_grade(*kp, points)
    left, right, disc, canal, apex = (mirror_left_right(p) for p in kp)
    if swap_labels:  # the mirrored patient's left facet is the original right one
        left, right = right, left
    after = msu_grade(left, right, disc, canal, apex, mirror_left_right(points))
    assert (after.size, after.zone) == (before.size, before.zone)
    assert after.side == SWAPPED[before.side]


# ---- bad input ---------------------------------------------------------------------------------

def test_coincident_facet_points_are_refused():
    with pytest.raises(ValueError, match="left_facet and right_facet.*coincide"):
        msu_grade(LEFT, LEFT, DISC, CANAL, apex_at())


def test_facets_that_coincide_in_the_slice_plane_are_refused():
    with pytest.raises(ValueError, match="left_facet and right_facet"):
        msu_grade((0, 30, 5), (0, 30, -5), DISC, CANAL, apex_at(), slice_normal=(0, 0, 1))


def test_nan_apex_is_refused_by_name():
    with pytest.raises(ValueError, match="herniation_apex.*non-finite"):
        grade((0.0, float("nan"), 0.0))


def test_canal_point_on_the_disc_margin_is_refused():
    with pytest.raises(ValueError, match="posterior_canal"):
        msu_grade(LEFT, RIGHT, DISC, DISC, apex_at())


def test_intra_facet_line_in_front_of_the_disc_margin_is_refused():
    with pytest.raises(ValueError, match="posterior_disc_margin.*anterior"):
        msu_grade(LEFT, RIGHT, (0.0, 35.0, 0.0), CANAL, apex_at())


@pytest.mark.parametrize("points, message", [
    ([], "herniation_points.*empty"),
    ([(1.0, 2.0)], "herniation_points.*shape"),
    ([(1.0, 2.0, float("inf"))], r"herniation_points\[0\].*non-finite"),
])
def test_bad_herniation_points_are_refused(points, message):
    with pytest.raises(ValueError, match=message):
        msu_grade(LEFT, RIGHT, DISC, CANAL, apex_at(), points)


def test_zero_slice_normal_is_refused():
    with pytest.raises(ValueError, match="slice_normal"):
        grade(apex_at(), slice_normal=(0, 0, 0))


def test_bulge_must_be_a_boolean():
    with pytest.raises(TypeError, match="bulge"):
        grade(None, bulge="yes")


# ---- bulge or herniation from masks (Fardon 2014: more than 25 % of the circumference is a bulge)

def _disc_and_rim(rim_from_deg, rim_to_deg, thickness_mm=2.0, radius_mm=20.0, z=0.0):
    """Return an axial disc (a 20 mm disc of points in the z = const plane) and material in a ring
    sector just outside it, angles measured from patient left (+x) towards posterior (+y)."""
    g = np.arange(-radius_mm, radius_mm + 0.5, 0.5)
    xx, yy = np.meshgrid(g, g)
    inside = xx ** 2 + yy ** 2 <= radius_mm ** 2
    disc = np.column_stack([xx[inside], yy[inside], np.full(inside.sum(), z)])
    g2 = np.arange(-radius_mm - thickness_mm, radius_mm + thickness_mm + 0.5, 0.5)
    xx, yy = np.meshgrid(g2, g2)
    r, a = np.hypot(xx, yy), np.degrees(np.arctan2(yy, xx)) % 360
    sector = (r > radius_mm) & (r <= radius_mm + thickness_mm) & (a >= rim_from_deg) & (a <= rim_to_deg)
    return disc, np.column_stack([xx[sector], yy[sector], np.full(sector.sum(), z)])


def test_material_all_round_the_disc_is_a_bulge_without_an_apex():
    from SpineAssistLib.grading import disc_material

    disc, rim = _disc_and_rim(0, 360)
    m = disc_material(disc, rim, posterior=(0, 1, 0))
    assert m.bulge and m.apex is None and m.circumference > 0.9


def test_focal_posterior_material_is_a_herniation_with_its_deepest_point_as_apex():
    from SpineAssistLib.grading import disc_material

    disc, blob = _disc_and_rim(80, 110, thickness_mm=6.0)        # 30° of the circumference, posterior
    m = disc_material(disc, blob, posterior=(0, 1, 0))
    assert not m.bulge and m.circumference < 0.25
    assert m.apex[1] == pytest.approx(blob[:, 1].max())


def test_a_herniation_on_a_bulge_keeps_only_the_focal_part():
    from SpineAssistLib.grading import disc_material

    disc, rim = _disc_and_rim(0, 360, thickness_mm=2.0)
    _, blob = _disc_and_rim(170, 190, thickness_mm=8.0)           # a focal protrusion to the patient's right
    m = disc_material(disc, np.vstack([rim, blob]), posterior=(0, 1, 0))
    assert m.bulge and m.apex is not None
    assert m.points[:, 0].max() < -15                             # only the protrusion, not the rim


def test_anterior_material_is_no_herniation_to_grade():
    """MSU measures towards the canal: an anterior protrusion (alone, or on a bulge) gives no apex,
    so no negative depth reaches the report."""
    from SpineAssistLib.grading import disc_material

    disc, front = _disc_and_rim(250, 290, thickness_mm=6.0)      # anterior (-y), 40° of the circumference
    m = disc_material(disc, front, posterior=(0, 1, 0))
    assert not m.bulge and m.apex is None and m.points is None
    _, rim = _disc_and_rim(0, 360, thickness_mm=2.0)
    m = disc_material(disc, np.vstack([rim, front]), posterior=(0, 1, 0))
    assert m.bulge and m.apex is None and m.points is None


def test_herniation_from_masks_falls_back_to_the_models_apex_without_masks():
    from SpineAssistLib.grading import herniation_from_masks

    assert herniation_from_masks(None, None, (0, 0, 0), (0, 10, 0), (1.0, 4.0, 0.0)) == ((1.0, 4.0, 0.0), None, False)
    disc, rim = _disc_and_rim(0, 360)
    # a segmented disc with nothing beyond it: no herniation, whatever apex the keypoint model placed
    assert herniation_from_masks(disc, None, (0, 20, 0), (0, 35, 0), (1.0, 24.0, 0.0)) == (None, None, False)
    apex, points, bulge = herniation_from_masks(disc, rim, (0, 20, 0), (0, 35, 0), (1.0, 4.0, 0.0))
    assert apex is None and points is None and bulge
