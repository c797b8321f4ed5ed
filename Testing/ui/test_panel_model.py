"""The panel's editors offer only valid values; each cell shows the value in force, the model's, and the mark."""

from __future__ import annotations

import pytest
from support import mrml_case as case

from SpineAssistLib.findings import (FINDING_KINDS, CanalDiameter, MeyerdingGrade, ModicType, MSUGrade, PfirrmannGrade,
                                     Presence)
from SpineAssistLib.ui.panel_model import (COLUMNS, KIND_COLUMN, canal_with_diameter, choice_index, choices,
                                           chosen_value, level_view, value_text)


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


def test_the_sagittal_findings_offer_modic_yes_no_and_the_stenosis_grades():
    assert [c.text for c in choices("modic")] == ["none", "Modic 1", "Modic 2", "Modic 3"]
    assert [c.value for c in choices("modic")] == [ModicType(t) for t in range(4)]
    for kind in ("endplate_upper", "endplate_lower", "narrowing", "bulging", "herniation_sag"):
        assert [(c.text, c.value) for c in choices(kind)] == [("yes", Presence(True)), ("no", Presence(False))]
    assert [c.text for c in choices("canal")] == ["no stenosis", "relative stenosis", "absolute stenosis"]
    for kind in FINDING_KINDS:                       # every kind has an editor of distinct, valid values
        values = [c.value for c in choices(kind)]
        assert values and len(set(values)) == len(values)
        assert all(choice_index(kind, v) == i for i, v in enumerate(values))
    assert set(KIND_COLUMN) == set(FINDING_KINDS) and all(KIND_COLUMN[k] in COLUMNS for k in FINDING_KINDS)


def test_setting_the_canal_grade_keeps_the_measured_diameter():
    measured = CanalDiameter.measured(9.2)                       # below 10 mm: absolute
    assert choices("canal")[choice_index("canal", measured)].text == "absolute stenosis"
    relative = choice_index("canal", CanalDiameter("relative"))
    assert chosen_value("canal", relative, measured) == CanalDiameter("relative", 9.2)
    assert chosen_value("canal", relative) == CanalDiameter("relative")   # nothing measured: the grade alone
    # a diameter the reader measures is graded by Verbiest's rule: 10-12 mm relative, above none
    assert canal_with_diameter(11.0) == CanalDiameter("relative", 11.0)
    assert canal_with_diameter(12.5) == CanalDiameter("none", 12.5)
    with pytest.raises(ValueError, match="canal.ap_mm must be above 0"):
        canal_with_diameter(0.0)
    with pytest.raises(TypeError, match="canal.ap_mm must be a number"):
        canal_with_diameter("9 mm")


def test_level_view_shows_every_finding_with_the_series_it_was_read_on():
    a = case.assessment(sagittal_findings=True)
    level = a.level("L4-L5")
    level.canal.correct(CanalDiameter("relative", 9.0), reader="dr.lee")
    view = level_view(level)
    assert set(view.cells) == set(FINDING_KINDS)
    assert (view.cells["modic"].text, view.cells["herniation_sag"].text) == ("Modic 2", "yes")
    canal = view.cells["canal"]
    assert canal.display == "9.0 mm, relative stenosis (model: 9.0 mm, absolute stenosis)" and canal.ap_mm == 9.0
    assert choices("canal")[canal.index].text == "relative stenosis"
    assert (view.cells["ldh"].view, view.cells["modic"].view) == ("axial", "sagittal")
    assert view.cells["ldh"].tooltip.startswith("herniation (MSU), read on the axial series")
    assert view.cells["canal"].tooltip.startswith("canal AP, read on the sagittal series")
    assert "canal ap mm: 9 mm" in view.cells["canal"].tooltip
    other = level_view(a.level("L5-S1")).cells["modic"]
    assert (other.text, other.index, other.assessed) == ("not graded", -1, False)
    assert value_text("bulging", Presence(False)) == "no" and value_text("modic", None) == ""
