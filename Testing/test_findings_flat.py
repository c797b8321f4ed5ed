"""A value in force edited by hand in findings.json: kept as a reader correction, warned, never dropped."""

import csv
import json
import os

import pytest

from SpineAssistLib.export.findings_csv import write_findings_csv
from SpineAssistLib.export.report_html import render_report_html
from SpineAssistLib.findings import (
    FLAT_EDIT_READER,
    UNKNOWN_TIME,
    Assessment,
    Level,
    MeyerdingGrade,
    MSUGrade,
    PfirrmannGrade,
    carry_reader_values,
)

# 2026-01-02T03:04:05Z, set as the edited file's modification time
EDIT_EPOCH = 1767323045
EDIT_TIME = "2026-01-02T03:04:05+00:00"


def _model_assessment() -> Assessment:
    l45 = Level("L4-L5")
    l45.pfirrmann.model = PfirrmannGrade(3)
    l45.ldh.model = MSUGrade(2, "AB", "right")
    l45.listhesis.model = MeyerdingGrade(1, 20.0, "antero")
    l5s1 = Level("L5-S1")
    l5s1.pfirrmann.model = PfirrmannGrade(2)
    return Assessment("2.25.1", [l45, l5s1])


def _edit_flat(path, level, kind, **flat):
    """Change only the value in force of one finding in a saved findings.json, as a person with an editor would."""
    data = json.loads(path.read_text(encoding="utf-8"))
    lv = next(lv for lv in data["levels"] if lv["level"] == level)
    lv[kind].update(flat)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.utime(path, (EDIT_EPOCH, EDIT_EPOCH))
    return path


@pytest.fixture
def edited(tmp_path):
    """A findings.json whose L4-L5 Pfirrmann grade in force was edited from 3 to 4 (model and reader fields untouched)."""
    path = _model_assessment().save(tmp_path / "findings.json")
    return _edit_flat(path, "L4-L5", "pfirrmann", grade=4)


def test_edited_value_in_force_is_kept_as_a_correction_with_provenance(edited):
    a = Assessment.load(edited)
    p = a.level("L4-L5").pfirrmann
    assert p.value == PfirrmannGrade(4)
    assert p.model == PfirrmannGrade(3)                     # the model's value is kept beside it
    [c] = p.corrections
    assert (c.old, c.new, c.reader, c.time) == ({"grade": 3}, {"grade": 4}, FLAT_EDIT_READER, EDIT_TIME)
    assert "modification" in c.note
    assert a.warnings == [
        "L4-L5 pfirrmann: the value in force in findings.json was edited to Pfirrmann IV (model Pfirrmann III, "
        "reader not set); it is kept as a reader correction by 'findings.json edit': confirm or change it in "
        "SpineAssist to record who made it"]
    assert [e.line() for e in a.flat_edits] == ["L4-L5 pfirrmann: value in force Pfirrmann IV, model Pfirrmann III, "
                                                "reader not set"]
    # the other findings were not touched
    assert a.level("L4-L5").ldh.corrections == [] and a.level("L5-S1").pfirrmann.corrections == []


def test_from_dict_without_a_file_says_the_time_is_unknown(edited):
    a = Assessment.from_dict(json.loads(edited.read_text(encoding="utf-8")))
    [c] = a.level("L4-L5").pfirrmann.corrections
    assert c.time == UNKNOWN_TIME and "time unknown" in c.note


def test_edit_over_a_reader_correction_replaces_the_readers_value(tmp_path):
    a = _model_assessment()
    a.level("L4-L5").pfirrmann.correct(PfirrmannGrade(4), reader="dr.lee", time="2025-12-01T00:00:00+00:00")
    path = _edit_flat(a.save(tmp_path / "findings.json"), "L4-L5", "pfirrmann", grade=5)
    p = Assessment.load(path).level("L4-L5").pfirrmann
    assert (p.model, p.reader) == (PfirrmannGrade(3), PfirrmannGrade(5))
    assert [(c.reader, c.new) for c in p.corrections] == [("dr.lee", {"grade": 4}), (FLAT_EDIT_READER, {"grade": 5})]


def test_save_and_load_keep_the_edit_and_warn_once(edited):
    first = Assessment.load(edited)
    first.save(edited)
    again = Assessment.load(edited)
    p = again.level("L4-L5").pfirrmann
    assert (p.value, p.model) == (PfirrmannGrade(4), PfirrmannGrade(3))
    assert [c.reader for c in p.corrections] == [FLAT_EDIT_READER]
    assert again.flat_edits == []                            # the saved file is consistent again
    assert again.warnings == first.warnings and len(again.warnings) == 1
    assert json.loads(edited.read_text(encoding="utf-8"))["levels"][0]["pfirrmann"]["reader"] == {"grade": 4}


def test_a_rerun_carries_the_edit_and_its_warning(edited):
    previous = Assessment.load(edited)
    rerun = _model_assessment()
    lines = carry_reader_values(rerun, previous)
    p = rerun.level("L4-L5").pfirrmann
    assert (p.value, p.model) == (PfirrmannGrade(4), PfirrmannGrade(3))
    assert [c.reader for c in p.corrections] == [FLAT_EDIT_READER]
    assert lines == ["L4-L5 pfirrmann: reader Pfirrmann IV, new model Pfirrmann III"]
    assert rerun.warnings == previous.warnings


def test_csv_and_report_show_the_edited_value(edited, tmp_path):
    a = Assessment.load(edited)
    with open(write_findings_csv(a, tmp_path / "findings.csv"), newline="", encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["level"] == "L4-L5")
    assert (row["pfirrmann_grade"], row["pfirrmann_model_grade"], row["pfirrmann_corrected"]) == ("4", "3", "yes")
    assert row["readers"] == FLAT_EDIT_READER
    html = render_report_html(a)
    assert FLAT_EDIT_READER in html and "was edited to Pfirrmann IV" in html


def test_edited_herniation_and_listhesis_values_are_kept(tmp_path):
    path = _model_assessment().save(tmp_path / "findings.json")
    _edit_flat(path, "L4-L5", "ldh", msu_size=3)
    _edit_flat(path, "L4-L5", "listhesis", meyerding=2, slip_percent=30.0)
    lv = Assessment.load(path).level("L4-L5")
    assert lv.ldh.value == MSUGrade(3, "AB", "right") and lv.ldh.model == MSUGrade(2, "AB", "right")
    assert lv.listhesis.value == MeyerdingGrade(2, 30.0, "antero")


def test_emptied_value_in_force_is_warned_about_and_the_model_value_stays(tmp_path):
    path = _edit_flat(_model_assessment().save(tmp_path / "findings.json"), "L5-S1", "pfirrmann", grade=None)
    a = Assessment.load(path)
    p = a.level("L5-S1").pfirrmann
    assert p.value == PfirrmannGrade(2) and p.corrections == []
    [w] = a.warnings
    assert w.startswith("L5-S1 pfirrmann: the value in force in findings.json was emptied (model Pfirrmann II")
    assert "Pfirrmann II stays in force" in w


def test_value_in_force_on_a_not_assessed_finding_becomes_a_correction(tmp_path):
    a = _model_assessment()
    a.level("L5-S1").ldh.status, a.level("L5-S1").ldh.reason = "not_assessed", "no axial series"
    path = _edit_flat(a.save(tmp_path / "findings.json"), "L5-S1", "ldh", msu_size=1, msu_zone="A", bulge=False)
    h = Assessment.load(path).level("L5-S1").ldh
    assert (h.value, h.model, h.status) == (MSUGrade(1, "A"), None, "assessed")


@pytest.mark.parametrize("kind, flat, says", [
    ("pfirrmann", {"grade": 7}, r"L4-L5 pfirrmann: .*not valid \(pfirrmann\.grade must be one of 1, 2, 3, 4, 5; got 7\)"),
    ("pfirrmann", {"grade": "4"}, r"L4-L5 pfirrmann: .*must be one of 1, 2, 3, 4, 5"),
    ("ldh", {"msu_zone": "D"}, r"L4-L5 ldh: .*msu_zone must be one of null, 'A', 'AB', 'B', 'BC', 'C'; got 'D'"),
    ("listhesis", {"meyerding": 9}, r"L4-L5 listhesis: .*meyerding must be one of 0, 1, 2, 3, 4, 5; got 9"),
    ("listhesis", {"slip_percent": "a lot"}, r"L4-L5 listhesis: .*slip_percent must be a number"),
])
def test_invalid_value_in_force_is_a_value_error_naming_level_and_finding(tmp_path, kind, flat, says):
    path = _edit_flat(_model_assessment().save(tmp_path / "findings.json"), "L4-L5", kind, **flat)
    with pytest.raises(ValueError, match=says):
        Assessment.load(path)


def test_files_without_flat_values_read_as_before(tmp_path):
    # a hand-written truth.json may give only the model's value, or only the flat value
    d = _model_assessment().to_dict()
    del d["levels"][0]["pfirrmann"]["grade"]
    d["levels"][1]["pfirrmann"].update(model=None, reader=None)
    a = Assessment.from_dict(d)
    assert a.level("L4-L5").pfirrmann.value == PfirrmannGrade(3)
    assert a.level("L5-S1").pfirrmann.model == PfirrmannGrade(2)
    assert a.flat_edits == [] and a.warnings == [] and a.level("L5-S1").pfirrmann.corrections == []


@pytest.mark.parametrize("content, says", [
    ("[]", "must hold a JSON object; this one holds a list"),
    ("null", "must hold a JSON object; this one holds null"),
])
def test_wrong_shaped_file_is_a_value_error(tmp_path, content, says):
    (tmp_path / "findings.json").write_text(content)
    with pytest.raises(ValueError, match=says):
        Assessment.load(tmp_path / "findings.json")


def test_levels_as_a_string_is_a_value_error_without_the_string(tmp_path):
    d = _model_assessment().to_dict()
    d["levels"] = "Jane Doe"
    with pytest.raises(ValueError, match="levels must be a list of level objects; got a string") as e:
        Assessment.from_dict(d)
    assert "Jane" not in str(e.value)
