"""Central canal AP diameter at a disc (grading.canal) on masks whose width is known by construction,
and Verbiest's grade at its boundaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from SpineAssistLib.grading.canal import (
    canal_ap_at_disc,
    canal_ap_from_corners,
    disc_axis_from_corners,
    stenosis_grade,
)

# An L4-L5 disc whose posterior margin is at (x = 36, y = 100) and centre at (23, 100): its
# antero-posterior axis runs along the rows, to the right (the canonical view, anterior left).
CORNERS = {"L4 anterior-inferior": (10.0, 95.0), "L4 posterior-inferior": (36.0, 95.0),
           "L5 anterior-superior": (10.0, 105.0), "L5 posterior-superior": (36.0, 105.0)}


def straight_canal(first_col: int = 40, width_px: int = 20, shape: tuple[int, int] = (200, 120)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[:, first_col:first_col + width_px] = True
    return m


def test_a_straight_canal_20_pixels_of_half_a_millimetre_across_is_10_mm():
    m = canal_ap_from_corners(straight_canal(), (0.5, 0.5), CORNERS, "L4-L5")
    assert m.assessed and m.level == "L4-L5" and m.reason == ""
    assert m.ap_mm == pytest.approx(10.0, abs=0.002)
    # the line runs along row 100 from the canal's anterior wall (left edge of column 40) to its
    # posterior wall (right edge of column 59)
    (xa, ya), (xp, yp) = m.endpoints
    assert (xa, ya) == pytest.approx((39.5, 100.0), abs=0.005) and (xp, yp) == pytest.approx((59.5, 100.0), abs=0.005)
    assert m.grade == "relative"             # 10 mm is relative stenosis (10-12 mm, both included)
    assert m.axis_source == "canal" and m.tilt_deg == pytest.approx(0.0, abs=1e-6)


def test_the_column_spacing_scales_a_line_along_the_rows():
    """Pixels 0.4 mm wide and 0.8 mm high: 20 columns are 8 mm, whatever the rows' spacing."""
    m = canal_ap_from_corners(straight_canal(), (0.8, 0.4), CORNERS, "L4-L5")
    assert m.ap_mm == pytest.approx(8.0, abs=0.002) and m.grade == "absolute"


def test_a_tilted_canal_is_measured_across_the_canal_not_along_the_disc():
    """A canal 10 mm wide running along (3, 4)/5 while the disc's axis is horizontal: along the disc
    it would be 10 / (4/5) = 12.5 mm across; perpendicular to the canal it is 10 mm, and the line
    is turned by atan(3/4) = 36.87 degrees from the disc's axis."""
    spacing = 0.1
    yy, xx = np.mgrid[0:600, 0:600].astype(float)
    normal = np.array([4.0, -3.0]) / 5.0                        # (x, y), perpendicular to (3, 4)
    across_px = (xx - 300) * normal[0] + (yy - 300) * normal[1]
    mask = np.abs(across_px) <= 50                              # 10 mm across, to a pixel's rounding
    p = np.array([235.0, 300.0])        # on row 300 the canal spans x = 237.5 to 362.5 (12.5 mm)
    c = p - np.array([150.0, 0.0])
    m = canal_ap_at_disc(mask, (spacing, spacing), c, p)
    assert m.ap_mm == pytest.approx(10.0, abs=0.1)
    assert m.tilt_deg == pytest.approx(math.degrees(math.atan2(3, 4)), abs=1.0)
    (xa, ya), (xp, yp) = m.endpoints
    assert np.hypot(xp - xa, yp - ya) * spacing == pytest.approx(m.ap_mm, abs=1e-6)


def test_a_canal_narrowed_at_the_disc_measures_the_narrowing():
    """A 14 mm canal (28 columns) with material from the disc filling its front 12 columns over rows
    95-105: at the disc 16 columns of canal are left, 8 mm: absolute stenosis."""
    mask = straight_canal(40, 28)
    mask[95:106, 40:52] = False
    m = canal_ap_from_corners(mask, (0.5, 0.5), CORNERS, "L4-L5")
    assert m.ap_mm == pytest.approx(8.0, abs=0.002) and m.grade == "absolute"
    assert m.endpoints[0] == pytest.approx((51.5, 100.0), abs=0.005)
    wide = canal_ap_from_corners(straight_canal(40, 28), (0.5, 0.5), CORNERS, "L4-L5")
    assert wide.ap_mm == pytest.approx(14.0, abs=0.002) and wide.grade == "none"


def test_the_disc_given_by_its_centre_and_posterior_margin():
    """The measurement starts at the disc's posterior margin P and crosses the canal wall to wall:
    P in front of the canal (a bulge between) or just inside it gives the same line."""
    mask = straight_canal()
    for p in ((30.0, 100.0), (36.0, 100.0), (42.0, 100.0)):
        m = canal_ap_at_disc(mask, (0.5, 0.5), (15.0, 100.0), p)
        assert m.ap_mm == pytest.approx(10.0, abs=0.002), p
        assert m.endpoints[0] == pytest.approx((39.5, 100.0), abs=0.005)
    centre, posterior = disc_axis_from_corners(CORNERS, "L4-L5")
    assert centre.tolist() == [23.0, 100.0] and posterior.tolist() == [36.0, 100.0]


@pytest.mark.parametrize("ap_mm, grade", [(9.999, "absolute"), (10.0, "relative"), (11.0, "relative"),
                                          (12.0, "relative"), (12.001, "none"), (4, "absolute"), (20.0, "none")])
def test_verbiest_grade_at_its_boundaries(ap_mm, grade):
    assert stenosis_grade(ap_mm) == grade
    assert stenosis_grade(np.float32(ap_mm)) == grade


@pytest.mark.parametrize("bad, error", [(0.0, ValueError), (-3.0, ValueError), (float("nan"), ValueError),
                                        (float("inf"), ValueError), ("10", TypeError), (True, TypeError),
                                        (None, TypeError)])
def test_a_diameter_that_is_not_one_is_refused(bad, error):
    with pytest.raises(error, match="ap_mm"):
        stenosis_grade(bad)


def test_no_canal_is_not_assessed_with_the_reason():
    empty = canal_ap_from_corners(np.zeros((200, 120), bool), (0.5, 0.5), CORNERS, "L4-L5")
    assert not empty.assessed and empty.ap_mm is None and empty.grade is None and empty.endpoints is None
    assert empty.reason == "no canal segmented on the slice"
    finding = empty.to_finding()
    assert finding.status == "not_assessed" and finding.reason == empty.reason and finding.value is None
    # a canal 15 mm behind the disc's margin is not the canal at this disc
    far = canal_ap_from_corners(straight_canal(66, 20), (0.5, 0.5), CORNERS, "L4-L5")
    assert not far.assessed and "no canal within 10 mm behind the disc's posterior margin" in far.reason
    missing = canal_ap_from_corners(straight_canal(), (0.5, 0.5),
                                    {k: v for k, v in CORNERS.items() if k != "L5 posterior-superior"}, "L4-L5")
    assert not missing.assessed and missing.reason == "vertebral corners not found: L5 posterior-superior"


def test_a_canal_reaching_far_in_front_of_the_disc_margin_is_not_measured():
    """Corners 10 mm behind the canal's anterior wall do not fit the canal: no number is made up."""
    m = canal_ap_at_disc(straight_canal(40, 40), (0.5, 0.5), (40.0, 100.0), (62.0, 100.0))
    assert not m.assessed and "in front of the disc's posterior margin" in m.reason


def test_the_finding_carries_the_diameter_and_the_line_in_patient_mm():
    m = canal_ap_from_corners(straight_canal(), (0.5, 0.5), CORNERS, "L4-L5")
    affine = np.diag([0.5, 0.5, 1.0, 1.0])          # "row,col,slice": LPS x = row * 0.5, y = col * 0.5
    f = m.to_finding(affine, source={"series_instance_uid": "1.2.3"})
    assert f.status == "assessed" and f.value.stenosis == "relative" and f.value.ap_mm == pytest.approx(10.0, abs=0.002)
    assert f.measurement("canal_ap_mm").unit == "mm"
    a, p = f.geometry.lines["canal AP"]
    assert a == pytest.approx((50.0, 19.75, 0.0), abs=0.003) and p == pytest.approx((50.0, 29.75, 0.0), abs=0.003)


@pytest.mark.parametrize("kwargs, words", [
    ({"canal_mask": np.zeros((2, 10, 10), bool)}, "canal_mask must be a 2D mask"),
    ({"pixel_spacing_mm": (0.0, 0.5)}, "pixel_spacing_mm must be two finite sizes above 0"),
    ({"pixel_spacing_mm": 0.5}, "pixel_spacing_mm must be two numbers"),
    ({"disc_centre_xy": (36.0, 100.0)}, "the same point"),
    ({"posterior_margin_xy": (36.0, 100.0, 0.0)}, "posterior_margin_xy must be a pixel point with 2 coordinates"),
    ({"disc_centre_xy": (float("nan"), 1.0)}, "disc_centre_xy has a non-finite coordinate"),
])
def test_bad_inputs_are_named(kwargs, words):
    args = {"canal_mask": straight_canal(), "pixel_spacing_mm": (0.5, 0.5), "disc_centre_xy": (23.0, 100.0),
            "posterior_margin_xy": (36.0, 100.0)} | kwargs
    with pytest.raises(ValueError, match=words):
        canal_ap_at_disc(**args)
