"""Meyerding grade from corners P, Q, R: hand-checkable slips, boundaries, invariance, bad input."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from support.transforms import PROPERTY_SETTINGS, mirror_left_right, similarities

from SpineAssistLib.findings import ListhesisFinding
from SpineAssistLib.grading import meyerding_from_percent, meyerding_grade

# Lower body's superior endplate along LPS -y (posterior P at y=10 -> anterior Q at y=-30): 40 mm.
P, Q = (0.0, 10.0, 0.0), (0.0, -30.0, 0.0)


def upper_corner(slip_mm: float, height: float = 5.0):
    """R, ``slip_mm`` anterior of P (+) or posterior (-), ``height`` mm above the endplate."""
    return (0.0, 10.0 - slip_mm, height)


def test_a_20_percent_slip_is_anterolisthesis_grade_I():
    r = meyerding_grade(P, Q, upper_corner(8.0))
    assert (r.grade, r.direction) == (1, "antero")
    assert r.slip_mm == pytest.approx(8.0)
    assert r.slip_percent == pytest.approx(20.0)
    assert r.endplate_mm == pytest.approx(40.0)


def test_a_posterior_slip_is_retrolisthesis_with_a_negative_sign():
    r = meyerding_grade(P, Q, upper_corner(-6.0))
    assert (r.grade, r.direction, r.slip_mm, r.slip_percent) == (1, "retro", pytest.approx(-6.0), pytest.approx(-15.0))


@pytest.mark.parametrize("slip_mm, grade", [
    (0.0, 0), (1.96, 0), (2.0, 1), (10.0, 1), (10.04, 2), (20.0, 2), (30.0, 3), (40.0, 4), (40.4, 5), (60.0, 5),
])
def test_grade_boundaries_are_inclusive(slip_mm, grade):
    # On a 40 mm endplate: 2 mm = 5 % (no-listhesis threshold), 10 mm = 25.0 % is still grade I.
    assert meyerding_grade(P, Q, upper_corner(slip_mm)).grade == grade


def test_a_3_4_5_triangle_slip_is_3_mm_and_R_lies_4_mm_off_the_endplate():
    r = meyerding_grade((0, 0, 0), (0, -40, 0), (0, -3, 4))
    assert r.slip_mm == pytest.approx(3.0)
    assert r.slip_percent == pytest.approx(7.5)
    foot = np.array(r.geometry.points["R on endplate line"])
    assert foot.tolist() == pytest.approx([0, -3, 0])
    assert math.dist(foot, r.geometry.points["R"]) == pytest.approx(4.0)


def test_an_oblique_endplate_gives_the_same_25_percent_as_a_level_one():
    # Endplate along (0, -0.6, -0.8) (a 3-4-5 direction), 40 mm; R is 10 mm along it and 5 mm off it.
    r = meyerding_grade((0, 0, 0), (0, -24, -32), (0, -2, -11))
    assert r.slip_mm == pytest.approx(10.0)
    assert (r.grade, r.slip_percent) == (1, pytest.approx(25.0))


def test_no_listhesis_threshold_is_a_setting():
    three_percent = upper_corner(1.2)
    assert meyerding_grade(P, Q, three_percent).grade == 0
    assert meyerding_grade(P, Q, three_percent).direction is None
    assert meyerding_grade(P, Q, three_percent, no_listhesis_percent=0.0).grade == 1
    assert meyerding_grade(P, Q, upper_corner(3.2), no_listhesis_percent=10.0).grade == 0  # 8 %


def test_grade_from_percent_ignores_sign():
    assert [meyerding_from_percent(p) for p in (-30.0, 4.99, 5.0, 100.0, 100.01)] == [2, 0, 1, 4, 5]


def test_to_finding_carries_value_measurements_and_lines():
    f = meyerding_grade(P, Q, upper_corner(8.0), source={"sop_instance_uid": "1.2.3"}).to_finding(confidence=0.9)
    assert isinstance(f, ListhesisFinding)
    assert (f.model.grade, f.model.slip_percent, f.model.direction) == (1, pytest.approx(20.0), "antero")
    assert f.measurement("slip_mm").value == pytest.approx(8.0)
    assert f.measurement("slip_mm").unit == "mm"
    assert f.measurement("slip_percent").unit == "%"
    assert set(f.geometry.lines) == {"lower superior endplate", "slip", "R perpendicular"}
    assert f.geometry.lines["slip"][1] == pytest.approx((0, 2, 0))
    assert f.geometry.source == {"sop_instance_uid": "1.2.3"}
    assert f.confidence == 0.9
    assert f.to_dict()["meyerding"] == 1


def test_grade_0_finding_has_no_direction():
    f = meyerding_grade(P, Q, upper_corner(0.4)).to_finding()
    assert (f.model.grade, f.model.slip_percent, f.model.direction) == (0, pytest.approx(1.0), None)
    assert f.model.label == "none"


# ---- invariance --------------------------------------------------------------------------------

slips = st.floats(-50.0, 50.0).filter(
    lambda s: all(abs(abs(s) * 100 / 40 - b) > 1e-6 for b in (5.0, 25.0, 50.0, 75.0, 100.0)))


@PROPERTY_SETTINGS
@given(slip=slips, height=st.floats(-20, 20), t=similarities())
def test_grade_does_not_change_under_rotation_translation_and_scaling(slip, height, t):
    before = meyerding_grade(P, Q, upper_corner(slip, height))
    after = meyerding_grade(t(P), t(Q), t(upper_corner(slip, height)))
    assert (after.grade, after.direction) == (before.grade, before.direction)
    assert after.slip_percent == pytest.approx(before.slip_percent, abs=1e-9)
    assert after.slip_mm == pytest.approx(before.slip_mm * t.scale, abs=1e-9)


@PROPERTY_SETTINGS
@given(slip=slips)
def test_mirroring_left_right_does_not_change_a_sagittal_slip(slip):
    assume(abs(slip) > 0)
    before = meyerding_grade(P, Q, upper_corner(slip))
    after = meyerding_grade(*(mirror_left_right(p) for p in (P, Q, upper_corner(slip))))
    assert (after.grade, after.direction, after.slip_percent) == (before.grade, before.direction,
                                                                  pytest.approx(before.slip_percent))


# ---- bad input ---------------------------------------------------------------------------------

def test_coincident_endplate_corners_are_refused():
    with pytest.raises(ValueError, match="q and p.*coincide"):
        meyerding_grade(P, P, upper_corner(8.0))


def test_nan_coordinate_names_the_corner():
    with pytest.raises(ValueError, match=r"r \(upper body's posterior-inferior corner\).*non-finite"):
        meyerding_grade(P, Q, (0.0, float("nan"), 5.0))


def test_a_2d_point_is_refused():
    with pytest.raises(ValueError, match=r"p \(lower body's posterior-superior corner\).*3 coordinates"):
        meyerding_grade((0.0, 10.0), Q, upper_corner(8.0))


def test_missing_corner_is_refused():
    with pytest.raises(ValueError, match="q .*missing"):
        meyerding_grade(P, None, upper_corner(8.0))


@pytest.mark.parametrize("threshold", [-1.0, 30.0, float("nan")])
def test_threshold_outside_0_to_25_percent_is_refused(threshold):
    with pytest.raises(ValueError, match="no_listhesis_percent"):
        meyerding_grade(P, Q, upper_corner(8.0), no_listhesis_percent=threshold)
