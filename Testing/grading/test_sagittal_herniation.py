"""Posterior disc protrusion beyond the posterior vertebral line (grading.sagittal_herniation) on
synthetic sagittal disc masks whose protrusion is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from SpineAssistLib.findings import Presence, SagittalHerniationFinding
from SpineAssistLib.grading.sagittal_herniation import (
    DEFAULT_THRESHOLD_MM,
    posterior_corner_names,
    protrusion_from_points,
    sagittal_protrusion,
    to_finding,
)

SPACING = (0.5, 0.5)           # x = between columns, y = between rows (mm)
# An L4-L5 disc space: rows 90-110, the posterior vertebral line at column 60 (anterior on the left).
CORNERS = {"L4 anterior-inferior": (10.0, 90.0), "L4 posterior-inferior": (60.0, 90.0),
           "L5 anterior-superior": (10.0, 110.0), "L5 posterior-superior": (60.0, 110.0)}


def flush_disc(shape: tuple[int, int] = (200, 120)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[90:111, 10:61] = True            # posterior edge pixels (column 60) on the line
    return m


def bumped_disc(bump_px: int = 8) -> np.ndarray:
    m = flush_disc()
    m[96:104, 61:61 + bump_px] = True  # a focal posterior bump bump_px pixels deep
    return m


def test_corner_names_are_the_pipelines():
    assert posterior_corner_names("L4-L5") == ("L4 posterior-inferior", "L5 posterior-superior")
    assert posterior_corner_names("L5-S1") == ("L5 posterior-inferior", "S1 posterior-superior")


def test_a_disc_flush_with_the_posterior_line_protrudes_0_mm_and_is_not_herniated():
    m = sagittal_protrusion(flush_disc(), SPACING, CORNERS, "L4-L5")
    assert m.assessed and m.reason == "" and m.level == "L4-L5"
    assert m.depth_mm == pytest.approx(0.0, abs=1e-9)
    assert m.present is False
    assert m.apex_xy[0] == pytest.approx(60.0) and m.apex_xy == pytest.approx(m.foot_xy)


def test_a_disc_in_front_of_the_line_measures_0_not_a_negative_depth():
    m = sagittal_protrusion(flush_disc(), SPACING, {k: (x + 5, y) for k, (x, y) in CORNERS.items()}, "L4-L5")
    assert m.depth_mm == 0.0 and m.present is False


def test_a_posterior_bump_measures_its_depth_and_is_herniated_above_the_threshold():
    m = sagittal_protrusion(bumped_disc(8), SPACING, CORNERS, "L4-L5", threshold_mm=3.0)
    assert m.depth_mm == pytest.approx(8 * 0.5, abs=0.5)      # 4 mm, within a pixel
    assert m.present is True
    assert m.apex_xy == pytest.approx((68.0, 99.5), abs=0.6)  # the bump's tip, near its middle row
    assert m.foot_xy == pytest.approx((60.0, m.apex_xy[1]), abs=1e-6)
    assert 3.0 <= m.extent_mm <= 4.0                          # rows 96-103 (8 pixels of 0.5 mm), centres 3.5 mm apart
    small = sagittal_protrusion(bumped_disc(4), SPACING, CORNERS, "L4-L5", threshold_mm=3.0)
    assert small.depth_mm == pytest.approx(2.0, abs=0.5) and small.present is False


def test_anisotropic_pixels_scale_each_axis():
    m = sagittal_protrusion(bumped_disc(8), (0.8, 0.4), CORNERS, "L4-L5")
    assert m.depth_mm == pytest.approx(8 * 0.8, abs=0.8)


def test_material_above_or_below_the_disc_space_is_not_measured():
    m = flush_disc()
    m[80:86, 61:75] = True              # above the upper body's posterior-inferior corner
    assert sagittal_protrusion(m, SPACING, CORNERS, "L4-L5").depth_mm == pytest.approx(0.0, abs=1e-9)


def _rotated(mask: np.ndarray, corners: dict, angle_deg: float, centre=(60.0, 100.0)):
    """Rotate a mask (nearest neighbour) and corners about ``centre`` (x, y) in pixels (square pixels)."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = np.array(centre)
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    out_xy = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(float)
    src = (out_xy - c) @ rot + c                        # inverse rotation of each output pixel
    sx, sy = np.round(src[:, 0]).astype(int), np.round(src[:, 1]).astype(int)
    ok = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    out = np.zeros(h * w, bool)
    out[ok] = mask[sy[ok], sx[ok]]
    new = {k: tuple((rot @ (np.array(v) - c)) + c) for k, v in corners.items()}
    return out.reshape(h, w), new


@pytest.mark.parametrize("angle", [-25.0, 15.0, 35.0])
def test_a_tilted_spine_gives_the_same_depth(angle):
    straight = sagittal_protrusion(bumped_disc(8), SPACING, CORNERS, "L4-L5")
    mask, corners = _rotated(bumped_disc(8), CORNERS, angle)
    tilted = sagittal_protrusion(mask, SPACING, corners, "L4-L5")
    assert tilted.depth_mm == pytest.approx(straight.depth_mm, abs=0.5)      # within a pixel
    assert tilted.present == straight.present


def test_missing_corners_give_a_measure_that_is_not_assessed_naming_them():
    corners = {k: v for k, v in CORNERS.items() if k != "L5 posterior-superior"}
    m = sagittal_protrusion(flush_disc(), SPACING, corners, "L4-L5")
    assert not m.assessed and m.present is None and m.depth_mm is None
    assert "L5 posterior-superior" in m.reason
    f = m.to_finding()
    assert isinstance(f, SagittalHerniationFinding)
    assert f.status == "not_assessed" and "L5 posterior-superior" in f.reason and f.model is None


def test_bad_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="disc_mask"):
        sagittal_protrusion(np.zeros((3, 4, 5), bool), SPACING, CORNERS, "L4-L5")
    with pytest.raises(ValueError, match="spacing_xy"):
        sagittal_protrusion(flush_disc(), (0.5, -1.0), CORNERS, "L4-L5")
    with pytest.raises(ValueError, match="UPPER-LOWER"):
        sagittal_protrusion(flush_disc(), SPACING, CORNERS, "L4")
    with pytest.raises(ValueError, match="upper_posterior_xy"):
        protrusion_from_points(flush_disc(), SPACING, (1.0, 2.0, 3.0), (60.0, 110.0))
    with pytest.raises(ValueError, match="threshold_mm"):
        sagittal_protrusion(flush_disc(), SPACING, CORNERS, "L4-L5", threshold_mm=float("nan"))


def test_an_empty_mask_or_coincident_corners_are_not_assessed_with_a_reason():
    m = sagittal_protrusion(np.zeros((200, 120), bool), SPACING, CORNERS, "L4-L5")
    assert not m.assessed and "no disc" in m.reason
    same = dict(CORNERS, **{"L5 posterior-superior": (60.0, 90.5)})
    m = sagittal_protrusion(flush_disc(), SPACING, same, "L4-L5")
    assert not m.assessed and "apart" in m.reason


def test_the_finding_carries_the_measurement_and_its_line_in_lps():
    from SpineAssistLib.geometry import xy_to_world

    m = sagittal_protrusion(bumped_disc(8), SPACING, CORNERS, "L4-L5")
    A = np.eye(4)
    A[:3, 0] = (0.0, 0.0, -0.5)         # rows run to the feet
    A[:3, 1] = (0.0, 0.5, 0.0)          # columns run back
    A[:3, 2] = (1.0, 0.0, 0.0)
    f = m.to_finding(A, source={"series_instance_uid": "1.2"})
    assert isinstance(f, SagittalHerniationFinding) and f.status == "assessed"
    assert f.model == Presence(True) and f.value == Presence(True)
    meas = f.measurement("posterior_protrusion_mm")
    assert meas.unit == "mm" and meas.value == pytest.approx(m.depth_mm)
    apex, foot = f.geometry.points["protrusion apex"], f.geometry.points["posterior line foot"]
    assert f.geometry.lines["protrusion"] == (foot, apex)
    # the apex-foot distance in LPS is the depth (square pixels), the apex behind the foot (+y posterior)
    assert math.dist(apex, foot) == pytest.approx(m.depth_mm, abs=1e-6) and apex[1] > foot[1]
    assert apex == pytest.approx(tuple(xy_to_world(np.array([m.apex_xy]), A)[0]))
    assert f.geometry.source == {"series_instance_uid": "1.2"}
    # a callable gives the same points; the module-level to_finding is the method
    g = to_finding(m, pixel_to_lps=lambda xy: xy_to_world(xy, A))
    assert g.geometry.points == f.geometry.points
    assert f.to_dict()["present"] is True


def test_the_default_threshold_is_the_chosen_one():
    assert sagittal_protrusion(flush_disc(), SPACING, CORNERS, "L4-L5").threshold_mm == DEFAULT_THRESHOLD_MM
