"""Teaching mode: each grade is built step by step from the lines and numbers the grading rules wrote."""

from __future__ import annotations

import pytest
from support import mrml_case as case

from SpineAssistLib.findings import SAGITTAL_GRADING_KINDS, CanalDiameter, Level, PfirrmannGrade, Presence
from SpineAssistLib.grading import meyerding_grade, msu_grade, pfirrmann_grade
from SpineAssistLib.ui.teaching import teaching_steps


def graded_level() -> Level:
    """L4-L5 graded by the rules: a 20 % anterolisthesis, a 1-AB right herniation, a bright healthy disc."""
    level = Level("L4-L5")
    level.listhesis = meyerding_grade(p=(0, 10, 0), q=(0, -30, 0), r=(0, 2, 5)).to_finding()
    level.ldh = msu_grade(left_facet=(20, 30, 0), right_facet=(-20, 30, 0), posterior_disc_margin=(0, 20, 0),
                          posterior_canal=(0, 45, 0), herniation_apex=(-12, 25, 0),
                          herniation_points=[(-16, 22, 0), (-6, 22, 0)]).to_finding()
    level.pfirrmann = pfirrmann_grade(
        nucleus_signal=[900, 1000, 1100], annulus_signal=[300], csf_signal=[1000],
        disc_heights=[((0, 0, 0), (0, 0, 10)), ((0, 10, 0), (0, 10, 11)), ((0, 20, 0), (0, 20, 9))],
        upper_body_heights=[25, 24, 26], lower_body_heights=[25]).to_finding()
    return level


def test_herniation_steps_build_line_quarters_extent_ratio():
    steps = teaching_steps(graded_level(), "ldh")
    assert [s.title for s in steps] == ["Intra-facet line", "Quarters: zones A, B, C", "Herniation extent: zone and side",
                                        "Depth ratio: size", "Result at L4-L5"]
    assert steps[0].lines == ("intra-facet line",) and steps[0].points == ("left medial facet", "right medial facet")
    assert "40.0 mm long" in steps[0].text
    assert "zone boundary A|B left" in steps[1].lines and "intra-facet line" in steps[1].lines  # cumulative
    assert "herniation extent" in steps[2].lines and "zone AB, right" in steps[2].text
    # h = 10 mm (disc margin y 20 -> facet line y 30), depth 5 mm: ratio 0.5, size 1
    assert "5.0 mm / 10.0 mm = 0.50" in steps[3].text and steps[3].measurement == "depth_ratio"
    assert {"facet line distance", "herniation depth"} <= set(steps[3].lines)
    assert "Model's value: 1-AB right" in steps[4].text


def test_meyerding_steps_build_corners_slip_line_percentage():
    steps = teaching_steps(graded_level(), "listhesis")
    assert [s.title for s in steps][:3] == ["Corners", "Slip line", "Percentage: Meyerding grade"]
    assert steps[0].points == ("P", "Q", "R") and "posterior-superior corner of L5" in steps[0].text
    assert set(steps[1].lines) == {"lower superior endplate", "R perpendicular", "slip"}
    assert "8.0 mm on a 40.0 mm endplate" in steps[1].text and "Here 20.0 %" in steps[2].text


def test_pfirrmann_steps_explain_signal_then_height_then_the_rule():
    level = graded_level()
    steps = teaching_steps(level, "pfirrmann")
    assert [s.measurement for s in steps[:4]] == ["signal_intensity_ratio", "nucleus_annulus_contrast",
                                                   "disc_height_index", "rule_grade"]
    assert "nucleus / CSF = 1.00" in steps[0].text
    assert steps[2].lines == ("disc height anterior", "disc height middle", "disc height posterior")
    assert steps[3].text.startswith("rule: Pfirrmann I")
    level.pfirrmann.correct(PfirrmannGrade(2), reader="dr.lee")
    assert "Reader's value: II; the model said I" in teaching_steps(level, "pfirrmann")[-1].text


def test_a_finding_without_geometry_still_teaches_and_a_bad_kind_is_refused():
    bare = Level("L5-S1")
    steps = teaching_steps(bare, "ldh")
    assert len(steps) == 5 and all(s.lines == () and s.points == () for s in steps)
    assert steps[-1].text == "No value: the model gave none and no reader has set one."
    bare.ldh.status, bare.ldh.reason = "not_assessed", "no axial series at this level"
    assert teaching_steps(bare, "ldh")[-1].text == "Not assessed: no axial series at this level."
    with pytest.raises(ValueError, match="kind must be one of pfirrmann, ldh, listhesis, .*; got 'msu'"):
        teaching_steps(bare, "msu")


def test_canal_steps_show_the_ap_line_then_verbiests_thresholds():
    level = case.assessment(sagittal_findings=True).level("L4-L5")
    steps = teaching_steps(level, "canal")
    assert [s.title for s in steps] == ["Canal AP line", "Verbiest's rule: stenosis grade", "Result at L4-L5"]
    assert steps[0].lines == ("canal AP",) and steps[0].measurement == "canal_ap_mm"
    assert "Here the line is 9.0 mm long." in steps[0].text
    assert "below 10 mm absolute stenosis, 10 to 12 mm relative stenosis, above 12 mm no stenosis" in steps[1].text
    assert steps[1].text.endswith("Here 9.0 mm: absolute stenosis.") and steps[1].lines == ("canal AP",)
    assert steps[0].points == ("canal anterior wall", "canal posterior wall")
    assert steps[2].text.startswith("Model's value: 9.0 mm, absolute stenosis.")
    level.canal.correct(CanalDiameter("relative", 9.0), reader="dr.lee")
    assert "Reader's value: 9.0 mm, relative stenosis; the model said 9.0 mm, absolute stenosis" in \
        teaching_steps(level, "canal")[-1].text
    # the rule's step still explains the measured diameter, and a level without one says so
    assert teaching_steps(level, "canal")[1].text.endswith("Here 9.0 mm: absolute stenosis.")
    bare = teaching_steps(Level("L5-S1"), "canal")
    assert "No diameter was measured at this level." in bare[0].text and bare[0].lines == ()
    assert bare[-1].text == "Not assessed: not graded."


@pytest.mark.parametrize("kind", SAGITTAL_GRADING_KINDS)
def test_classification_steps_say_what_the_grade_means_and_how_it_was_graded(kind):
    level = case.assessment(sagittal_findings=True).level("L4-L5")
    meaning, result = teaching_steps(level, kind)
    assert meaning.title.endswith(": what it means") and meaning.lines == () and meaning.points == ()
    assert "Graded by the model from the disc crop" in meaning.text
    assert result.title == "Result at L4-L5" and result.text.startswith("Model's value: ")
    ungraded = teaching_steps(Level("L4-L5"), kind)
    assert "Graded by the model" not in ungraded[0].text and ungraded[1].text == "Not assessed: not graded."


def test_a_reader_value_of_a_classification_is_the_result():
    level = case.assessment(sagittal_findings=True).level("L4-L5")
    level.bulging.correct(Presence(True), reader="dr.lee")
    assert teaching_steps(level, "bulging")[-1].text.startswith("Reader's value: yes; the model said no.")
    assert "Modic changes are signal changes" in teaching_steps(level, "modic")[0].text
