"""The panel's editors offer only valid values; each cell shows the value in force, the model's, and the mark."""

from __future__ import annotations

import pytest
from support import mrml_case as case

from SpineAssistLib.findings import MeyerdingGrade, MSUGrade, PfirrmannGrade
from SpineAssistLib.ui.panel_model import choice_index, choices, chosen_value, level_view, value_text


def test_pfirrmann_offers_grades_one_to_five():
    assert [c.text for c in choices("pfirrmann")] == ["I", "II", "III", "IV", "V"]
    assert [c.value for c in choices("pfirrmann")] == [PfirrmannGrade(g) for g in range(1, 6)]


def test_msu_offers_exactly_the_valid_size_zone_side_combinations():
    values = [c.value for c in choices("ldh")]
    assert values[:2] == [MSUGrade(0), MSUGrade(0, bulge=True)]
    # per size: A and AB with no side, left, right or bilateral (4 + 4); B, BC, C with left or right (2 + 2 + 2)
    assert len(values) == 2 + 3 * 14
    assert len(set(values)) == len(values)
    assert MSUGrade(2, "AB", "right") in values and MSUGrade(1, "A") in values
    assert not any(v.zone in ("B", "BC", "C") and v.side not in ("left", "right") for v in values)
    texts = [c.text for c in choices("ldh")]
    assert "2-AB right" in texts and "1-A central" in texts and texts[:2] == ["none", "bulge"]


def test_meyerding_offers_none_or_a_grade_with_a_direction():
    texts = [c.text for c in choices("listhesis")]
    assert texts[:3] == ["none", "I antero", "I retro"] and texts[-1] == "V retro" and len(texts) == 11


def test_choice_index_ignores_the_measured_slip_and_chosen_value_keeps_it():
    measured = MeyerdingGrade(1, 18.0, "antero")
    i = choice_index("listhesis", measured)
    assert choices("listhesis")[i].text == "I antero"
    assert chosen_value("listhesis", i, measured) == measured            # same grade: the measurement stays
    ii = choice_index("listhesis", MeyerdingGrade(2, None, "antero"))
    assert chosen_value("listhesis", ii, measured) == MeyerdingGrade(2, None, "antero")  # a new grade has no slip
    assert choice_index("pfirrmann", None) == -1
    with pytest.raises(IndexError, match="pfirrmann editor has 5 entries; got index 5"):
        chosen_value("pfirrmann", 5)
    with pytest.raises(ValueError, match="kind must be one of"):
        choices("herniation")


def test_level_view_marks_a_correction_and_shows_the_model_value_beside_it():
    a = case.assessment()
    level = a.level("L4-L5")
    view = level_view(level)
    assert (view.cells["ldh"].text, view.cells["pfirrmann"].text, view.cells["listhesis"].text) == \
        ("1-AB right", "III", "I antero")
    assert view.slip_text == "20.0" and not view.corrected
    level.ldh.correct(MSUGrade(2, "AB", "right"), reader="dr.lee")
    cell = level_view(level).cells["ldh"]
    assert cell.corrected and cell.display == "2-AB right (model: 1-AB right)"
    assert "reader's value by dr.lee; the model said 1-AB right" in cell.tooltip
    assert choices("ldh")[cell.index].value == MSUGrade(2, "AB", "right")
    level.listhesis.correct(MeyerdingGrade(2, None, "antero"), reader="dr.lee")
    assert level_view(level).slip_text == "20.0 (model)"
    other = level_view(a.level("L5-S1"))
    assert (other.cells["ldh"].text, other.cells["ldh"].index) == ("not assessed", -1)
    assert "no axial series" in other.cells["ldh"].tooltip
    assert value_text("listhesis", MeyerdingGrade(0, 0.0, None)) == "none"


def test_uncertain_levels_and_review_line():
    from SpineAssistLib.findings import Assessment, Level
    from SpineAssistLib.ui.panel_model import level_view, review_text

    sure, unsure = level_view(Level("L4-L5", confidence=0.9)), level_view(Level("L5-S1", confidence=0.2))
    assert (sure.name_text, unsure.name_text) == ("L4-L5", "L5-S1 (check)")
    assert "low confidence" in unsure.name_tooltip and "low confidence" not in sure.name_tooltip
    assert level_view(Level("L3-L4")).name_text == "L3-L4"         # no confidence recorded (older files)
    assert review_text(Assessment("1.2")) == ""
    assert review_text(Assessment("1.2", review_reasons=["a", "b"])) == "Needs review: a; b"
