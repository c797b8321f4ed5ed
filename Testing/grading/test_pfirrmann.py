"""Pfirrmann measurements (SIR, contrast, homogeneity, DHI) and the rule-based grade."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.transforms import PROPERTY_SETTINGS, similarities

from SpineAssistLib.findings import PfirrmannFinding, PfirrmannGrade
from SpineAssistLib.grading import pfirrmann_grade, rule_based_pfirrmann
from SpineAssistLib.grading import pfirrmann as rule

BODY = [25.0, 25.0, 25.0]  # adjacent vertebral body heights, mm


def disc(nucleus, annulus=300.0, csf=1000.0, heights=(10.0, 10.0, 10.0)):
    return pfirrmann_grade(np.atleast_1d(nucleus), [annulus], [csf], list(heights), BODY, BODY)


def test_a_bright_homogeneous_disc_is_grade_I_with_hand_checked_numbers():
    r = pfirrmann_grade([900, 1000, 1100], [300, 300], [1000, 1000], [10, 11, 9], [25, 24, 26], [25])
    assert r.grade == 1
    assert r.sir == pytest.approx(1.0)                       # 1000 / 1000
    assert r.contrast == pytest.approx(700 / 1300)           # (1000 - 300) / (1000 + 300)
    assert r.homogeneity_cv == pytest.approx(np.sqrt(2 / 3) * 100 / 1000)
    assert r.dhi == pytest.approx(10 / 25)                   # mean disc 10 mm / mean body 25 mm
    assert r.disc_height_mm == pytest.approx(10.0)
    assert r.vertebral_height_mm == pytest.approx(25.0)


def test_horizontal_bands_make_a_bright_disc_grade_II():
    assert disc([600, 1000, 1400]).grade == 2                # CV 0.33


def test_intermediate_signal_is_grade_III():
    r = disc(500.0, annulus=250.0)                           # SIR 0.5, contrast 0.33
    assert r.grade == 3
    assert any("intermediate" in reason for reason in r.reasons)


def test_a_bright_disc_that_lost_height_is_grade_III():
    assert disc(1000.0, heights=(5.0, 5.0, 5.0)).grade == 3   # DHI 0.2


def test_a_hypointense_disc_is_grade_IV():
    assert disc(300.0, annulus=150.0).grade == 4             # SIR 0.3


def test_lost_nucleus_annulus_distinction_is_grade_IV():
    r = disc(500.0, annulus=480.0)                           # contrast 20 / 980 = 0.02
    assert r.grade == 4
    assert "distinction lost" in r.explanation


def test_a_black_collapsed_disc_is_grade_V():
    assert disc(200.0, annulus=180.0, heights=(2.5, 2.5, 2.5)).grade == 5   # SIR 0.2, DHI 0.1


def test_a_collapsed_disc_that_is_not_black_is_grade_IV():
    assert disc(800.0, heights=(2.5, 2.5, 2.5)).grade == 4


def test_a_zero_height_disc_is_collapsed():
    assert disc(100.0, annulus=100.0, heights=(0.0, 0.0, 0.0)).grade == 5


@pytest.mark.parametrize("sir, contrast, cv, dhi, grade", [
    (rule.SIR_HYPERINTENSE, rule.CONTRAST_CLEAR, rule.HOMOGENEOUS_CV_MAX, rule.DHI_DECREASED, 1),  # boundaries in
    (rule.SIR_HYPERINTENSE - 0.01, 0.5, 0.0, 0.4, 3),
    (0.9, rule.CONTRAST_CLEAR - 0.01, 0.0, 0.4, 3),
    (0.9, 0.5, rule.HOMOGENEOUS_CV_MAX + 0.01, 0.4, 2),
    (rule.SIR_HYPOINTENSE, rule.CONTRAST_LOST, 0.3, rule.DHI_COLLAPSED, 3),
    (rule.SIR_HYPOINTENSE - 0.01, 0.5, 0.0, 0.4, 4),
    (0.9, rule.CONTRAST_LOST - 0.01, 0.0, 0.4, 4),
    (rule.SIR_HYPOINTENSE - 0.01, 0.5, 0.0, rule.DHI_COLLAPSED - 0.01, 5),
])
def test_rule_thresholds(sir, contrast, cv, dhi, grade):
    assert rule_based_pfirrmann(sir, contrast, cv, dhi)[0] == grade


def test_heights_as_point_pairs_are_measured_and_kept_as_lines():
    # Each disc height a 3-4-5 triangle's hypotenuse: 5 mm; bodies 25 mm.
    pair = ((0.0, 0.0, 0.0), (0.0, 3.0, 4.0))
    r = pfirrmann_grade([1000], [300], [1000], [pair, pair, pair], [((0, 0, 0), (0, 0, 25))] * 3, None)
    assert r.disc_height_mm == pytest.approx(5.0)
    assert r.dhi == pytest.approx(0.2)
    assert set(r.geometry.lines) == {"disc height anterior", "disc height middle", "disc height posterior",
                                     "upper body height anterior", "upper body height middle",
                                     "upper body height posterior"}


def test_to_finding_uses_the_rule_grade_without_a_classifier():
    f = disc([900, 1000, 1100]).to_finding()
    assert isinstance(f, PfirrmannFinding)
    assert f.model == PfirrmannGrade(1)
    assert f.measurement("signal_intensity_ratio").value == pytest.approx(1.0)
    assert f.measurement("disc_height_index").unit == "1"
    assert f.measurement("disc_height_mm").unit == "mm"


def test_to_finding_keeps_a_classifier_grade_and_explains_it_with_the_rule():
    f = disc(500.0, annulus=250.0).to_finding(model_grade=4, confidence=0.7)
    assert f.model == PfirrmannGrade(4)
    assert f.measurement("rule_grade").value == 3
    assert f.measurement("rule_grade").description.startswith("rule: Pfirrmann III")
    assert f.confidence == 0.7


# ---- invariance --------------------------------------------------------------------------------

nuclei = st.lists(st.floats(50.0, 2000.0), min_size=1, max_size=20)


@PROPERTY_SETTINGS
@given(nucleus=nuclei, annulus=st.floats(50.0, 2000.0), k=st.floats(0.01, 100.0))
def test_grade_does_not_change_when_the_image_is_scaled_in_intensity(nucleus, annulus, k):
    before = disc(nucleus, annulus)
    after = disc(np.asarray(nucleus) * k, annulus * k, csf=1000.0 * k)
    assert after.sir == pytest.approx(before.sir)
    assert after.contrast == pytest.approx(before.contrast, abs=1e-12)
    assert after.homogeneity_cv == pytest.approx(before.homogeneity_cv, abs=1e-12)
    on_a_boundary = min(abs(before.sir - b) for b in (rule.SIR_HYPERINTENSE, rule.SIR_HYPOINTENSE)) < 1e-9 or \
        min(abs(before.contrast - b) for b in (rule.CONTRAST_CLEAR, rule.CONTRAST_LOST)) < 1e-9 or \
        abs(before.homogeneity_cv - rule.HOMOGENEOUS_CV_MAX) < 1e-9
    if not on_a_boundary:  # exactly on a threshold, round-off may decide either way
        assert after.grade == before.grade


@PROPERTY_SETTINGS
@given(t=similarities(), height=st.floats(1.0, 20.0))
def test_dhi_does_not_change_under_rotation_translation_and_scaling(t, height):
    def pairs(h):
        return [((x, 0.0, 0.0), (x, 0.0, h)) for x in (0.0, 10.0, 20.0)]

    def moved(ps):
        return [(t(a), t(b)) for a, b in ps]

    before = pfirrmann_grade([1000], [300], [1000], pairs(height), pairs(25.0), pairs(27.0))
    after = pfirrmann_grade([1000], [300], [1000], moved(pairs(height)), moved(pairs(25.0)), moved(pairs(27.0)))
    assert after.dhi == pytest.approx(before.dhi)
    assert after.disc_height_mm == pytest.approx(before.disc_height_mm * t.scale)


# ---- bad input ---------------------------------------------------------------------------------

def test_a_zero_height_vertebra_is_refused_by_name():
    with pytest.raises(ValueError, match=r"upper_body_heights\[1\] must be finite and > 0 mm"):
        pfirrmann_grade([1000], [300], [1000], [10, 10, 10], [25, 0, 25], BODY)


def test_a_vertebra_whose_height_points_coincide_is_refused():
    p = (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match=r"lower_body_heights\[0\]"):
        pfirrmann_grade([1000], [300], [1000], [10], BODY, [(p, p)])


def test_nan_height_point_is_refused_by_name():
    with pytest.raises(ValueError, match=r"disc_heights\[2\]\[1\].*non-finite"):
        pfirrmann_grade([1000], [300], [1000], [10, 10, ((0, 0, 0), (0, float("nan"), 10))], BODY, BODY)


@pytest.mark.parametrize("nucleus, message", [
    ([], "nucleus_signal is empty"),
    ([1000, float("nan")], "nucleus_signal contains NaN"),
    ([1000, -5], "nucleus_signal has negative values"),
])
def test_bad_signal_is_refused_by_name(nucleus, message):
    with pytest.raises(ValueError, match=message):
        pfirrmann_grade(nucleus, [300], [1000], [10], BODY, BODY)


def test_black_csf_is_refused():
    with pytest.raises(ValueError, match="csf_signal has mean 0"):
        pfirrmann_grade([1000], [300], [0, 0], [10], BODY, BODY)


def test_a_dhi_needs_at_least_one_adjacent_body():
    with pytest.raises(ValueError, match="upper_body_heights and lower_body_heights are both missing"):
        pfirrmann_grade([1000], [300], [1000], [10], None, None)


def test_empty_heights_are_refused():
    with pytest.raises(ValueError, match="disc_heights is empty"):
        pfirrmann_grade([1000], [300], [1000], [], BODY, BODY)


def test_a_text_height_is_refused():
    with pytest.raises(TypeError, match=r"disc_heights\[0\]"):
        pfirrmann_grade([1000], [300], [1000], ["10 mm"], BODY, BODY)


def test_rule_refuses_nan():
    with pytest.raises(ValueError, match="dhi must be a finite number"):
        rule_based_pfirrmann(0.9, 0.5, 0.0, float("nan"))
