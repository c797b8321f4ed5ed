"""findings.csv / findings.json exports and the atomic-write helper every writer uses."""

import csv
import json

import pytest

from SpineAssistLib.export.atomic import atomic_path, atomic_write
from SpineAssistLib.export.findings_csv import COLUMNS, write_findings_csv
from SpineAssistLib.export.findings_json import write_findings_json
from SpineAssistLib.findings import Assessment

from support.export_case import assessment


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_has_one_row_per_level_with_value_in_force_model_value_and_flag(tmp_path):
    rows = _rows(write_findings_csv(assessment(), tmp_path / "findings.csv"))
    assert [r["level"] for r in rows] == ["L3-L4", "L4-L5", "L5-S1"]
    l45 = rows[1]
    assert (l45["pfirrmann_grade"], l45["pfirrmann_model_grade"], l45["pfirrmann_corrected"]) == ("4", "3", "yes")
    assert l45["ldh"] == "2-AB right" and l45["ldh_corrected"] == "no"
    assert l45["meyerding_grade"] == "1" and l45["listhesis_direction"] == "antero"
    assert float(l45["slip_percent"]) == pytest.approx(100 * 5 / 35, abs=1e-3)  # 5 mm of a 35 mm endplate
    assert (l45["slip_mm"], l45["msu_depth_ratio"], l45["sir"], l45["dhi"]) == ("5", "0.8", "0.74", "0.33")
    assert l45["corrected"] == "yes" and l45["readers"] == "dr.lee"
    assert rows[0]["corrected"] == "no" and rows[0]["msu_depth_ratio"] == ""


def test_csv_shows_not_assessed_with_reason(tmp_path):
    rows = _rows(write_findings_csv(assessment(), tmp_path / "findings.csv"))
    assert rows[2]["ldh"] == ""
    assert rows[2]["ldh_status"] == "not_assessed: no axial slice through this disc"


def test_csv_has_the_sagittal_findings_with_model_values_and_corrections(tmp_path):
    rows = _rows(write_findings_csv(assessment(), tmp_path / "findings.csv"))
    l45 = rows[1]
    assert (l45["modic_type"], l45["modic_model_type"], l45["modic_corrected"], l45["modic_status"]) == \
        ("1", "2", "yes", "assessed")
    assert (l45["endplate_upper"], l45["endplate_upper_model"], l45["endplate_upper_corrected"]) == ("yes", "yes", "no")
    assert (l45["endplate_lower"], l45["narrowing"], l45["herniation_sag"]) == ("no", "yes", "yes")
    assert (l45["bulging"], l45["bulging_model"], l45["bulging_corrected"]) == ("no", "yes", "yes")
    # the reader set the grade only: the measured 9.2 mm stays beside it
    assert (l45["canal_ap_mm"], l45["canal_stenosis"], l45["canal_model_ap_mm"], l45["canal_model_stenosis"],
            l45["canal_corrected"], l45["canal_status"]) == ("9.2", "relative", "9.2", "absolute", "yes", "assessed")
    l34, l5s1 = rows[0], rows[2]
    assert (l34["modic_type"], l34["modic_status"]) == ("", "not_assessed: not graded")
    assert (l34["canal_ap_mm"], l34["canal_status"]) == ("", "not_assessed: not graded")
    assert (l5s1["herniation_sag"], l5s1["herniation_sag_status"]) == ("yes", "assessed")   # no axial slice there


def test_csv_keeps_the_columns_of_schema_1_in_their_places():
    schema_1 = ("level", "model_level", "pfirrmann_grade", "pfirrmann_model_grade", "pfirrmann_corrected",
                "pfirrmann_status", "ldh", "ldh_msu_size", "ldh_msu_zone", "ldh_side", "ldh_model", "ldh_corrected",
                "ldh_status", "meyerding_grade", "listhesis_direction", "meyerding_model_grade", "listhesis_corrected",
                "listhesis_status", "slip_percent", "slip_percent_model", "slip_mm", "msu_depth_ratio", "sir", "dhi",
                "corrected", "readers")
    assert COLUMNS[:len(schema_1)] == schema_1
    assert len(COLUMNS) == len(schema_1) + 4 + 5 * 4 + 6 and len(set(COLUMNS)) == len(COLUMNS)


def test_csv_header_is_the_documented_columns(tmp_path):
    path = write_findings_csv(assessment(), tmp_path / "findings.csv")
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)


def test_json_round_trips(tmp_path):
    a = assessment()
    path = write_findings_json(a, tmp_path / "findings.json")
    back = Assessment.from_dict(json.loads(path.read_text(encoding="utf-8")))
    assert back.to_dict() == a.to_dict()


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "report.html"
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("<html>half")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_previous_complete_file_when_interrupted(tmp_path):
    target = tmp_path / "findings.csv"
    target.write_text("old complete\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half")
            raise KeyboardInterrupt
    assert target.read_text() == "old complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["findings.csv"]


def test_atomic_write_replaces_on_success(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with atomic_write(target, "wb") as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_atomic_write_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        with atomic_write(tmp_path / "nope" / "a.csv"):
            pass
    with pytest.raises(IsADirectoryError, match="give a file name"):
        with atomic_write(tmp_path):
            pass
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_write(tmp_path / "a", "a"):
            pass
