"""The findings data model: validation, corrections with provenance, JSON round trip, schema."""

import json

import pytest

from SpineAssistLib.findings import (
    SCHEMA,
    Assessment,
    Correction,
    Geometry,
    HerniationFinding,
    Level,
    ListhesisFinding,
    Measurement,
    MeyerdingGrade,
    ModelInfo,
    MSUGrade,
    PfirrmannFinding,
    PfirrmannGrade,
    carry_reader_values,
    validate_findings_json,
)

SHA = "a" * 64


def _example() -> Assessment:
    l45 = Level("L4-L5", disc_center=(1.0, 20.0, -150.0))
    l45.pfirrmann.model = PfirrmannGrade(3)
    l45.pfirrmann.measurements.append(Measurement("signal_intensity_ratio", 0.42, "1", "nucleus / CSF"))
    l45.ldh.model = MSUGrade(2, "AB", "right")
    l45.ldh.geometry = Geometry(points={"herniation apex": (-5.0, 40.0, -150.0)},
                                lines={"intra-facet line": ((-12.0, 45.0, -150.0), (12.0, 45.0, -150.0))},
                                source={"sop_instance_uid": "2.25.9"})
    l45.listhesis.model = MeyerdingGrade(1, 20.0, "antero")
    l45.listhesis.measurements.append(Measurement("slip_mm", 7.0, "mm"))
    l5s1 = Level("L5-S1")
    l5s1.pfirrmann.model = PfirrmannGrade(2)
    l5s1.ldh = HerniationFinding(status="not_assessed", reason="no axial series")
    l5s1.listhesis.model = MeyerdingGrade(0, 2.1)
    return Assessment("2.25.1", [l45, l5s1], sagittal_series_uid="2.25.2",
                      models=[ModelInfo("sag_pose", SHA, "1")])


# ---- values -------------------------------------------------------------------------------

@pytest.mark.parametrize("grade", [1, 2, 3, 4, 5])
def test_pfirrmann_accepts_grades_1_to_5(grade):
    assert PfirrmannGrade(grade).grade == grade


@pytest.mark.parametrize("bad", [0, 6, 7, -1, 2.5, "3", True])
def test_pfirrmann_rejects_out_of_range_and_names_field(bad):
    with pytest.raises(ValueError, match=r"pfirrmann\.grade must be one of 1, 2, 3, 4, 5"):
        PfirrmannGrade(bad)


def test_msu_zone_d_is_rejected_with_allowed_values():
    with pytest.raises(ValueError, match=r"ldh\.msu_zone must be one of null, 'A', 'AB', 'B', 'BC', 'C'; got 'D'"):
        MSUGrade(2, "D", "left")


def test_msu_size_4_rejected():
    with pytest.raises(ValueError, match=r"ldh\.msu_size"):
        MSUGrade(4, "A")


def test_msu_consistency_rules():
    with pytest.raises(ValueError, match="takes no zone"):
        MSUGrade(0, "A")
    with pytest.raises(ValueError, match="zone is required"):
        MSUGrade(1)
    with pytest.raises(ValueError, match="'left' or 'right' for zone B"):
        MSUGrade(1, "B")
    with pytest.raises(ValueError, match="bulge applies only"):
        MSUGrade(1, "A", bulge=True)
    with pytest.raises(ValueError, match=r"ldh\.side"):
        MSUGrade(1, "A", "up")


@pytest.mark.parametrize("grade,label", [
    (MSUGrade(2, "AB", "right"), "2-AB right"),
    (MSUGrade(1, "A"), "1-A central"),
    (MSUGrade(3, "C", "left"), "3-C left"),
    (MSUGrade(0), "none"),
    (MSUGrade(0, bulge=True), "bulge"),
])
def test_msu_label_as_radiologists_write_it(grade, label):
    assert grade.label == label


def test_meyerding_rules():
    assert MeyerdingGrade(1, 20.0, "antero").label == "anterolisthesis grade I (20 %)"
    assert MeyerdingGrade(1, -12.0, "retro").direction == "retro"
    with pytest.raises(ValueError, match="contradicts"):
        MeyerdingGrade(1, -12.0, "antero")
    with pytest.raises(ValueError, match=r"listhesis\.meyerding must be one of 0, 1, 2, 3, 4, 5"):
        MeyerdingGrade(6, 120.0, "antero")
    with pytest.raises(ValueError, match="direction must be null"):
        MeyerdingGrade(0, 2.0, "antero")
    with pytest.raises(ValueError, match="finite"):
        MeyerdingGrade(1, float("nan"), "antero")
    with pytest.raises(ValueError, match=r"listhesis\.direction"):
        MeyerdingGrade(1, 10.0, "sideways")


def test_level_name_validated():
    with pytest.raises(ValueError, match=r"level must be one of .*'L4-L5'.*got 'L9-L10'"):
        Level("L9-L10")


def test_measurement_needs_unit_and_finite_value():
    with pytest.raises(ValueError, match="needs a unit"):
        Measurement("slip_mm", 3.0, "")
    with pytest.raises(ValueError, match="finite"):
        Measurement("slip_mm", float("inf"), "mm")


def test_geometry_points_must_be_3d_and_finite():
    with pytest.raises(ValueError, match="3 coordinates"):
        Geometry(points={"P": (1.0, 2.0)})
    with pytest.raises(ValueError, match="finite"):
        Geometry(points={"P": (1.0, float("nan"), 2.0)})


def test_model_sha256_must_be_hex():
    with pytest.raises(ValueError, match="64 lowercase hex"):
        ModelInfo("m", "xyz")


def test_finding_value_type_checked():
    with pytest.raises(TypeError, match="PfirrmannGrade"):
        PfirrmannFinding(model=MSUGrade(0))


def test_duplicate_levels_rejected():
    with pytest.raises(ValueError, match="L4-L5 appears more than once"):
        Assessment("1", [Level("L4-L5"), Level("L4-L5")])


# ---- corrections -----------------------------------------------------------------------------

def test_correction_keeps_model_value_and_records_history():
    f = PfirrmannFinding(model=PfirrmannGrade(3))
    c = f.correct(PfirrmannGrade(4), reader="dr.lee", note="dark nucleus")
    assert f.value == PfirrmannGrade(4)
    assert f.model == PfirrmannGrade(3)
    assert f.corrected and f.disagrees
    assert (c.finding, c.old, c.new, c.reader, c.note) == ("pfirrmann", {"grade": 3}, {"grade": 4}, "dr.lee", "dark nucleus")
    assert f.corrections == [c]


def test_reset_restores_model_value_and_is_recorded():
    f = ListhesisFinding(model=MeyerdingGrade(1, 20.0, "antero"))
    f.correct(MeyerdingGrade(2, 30.0, "antero"), reader="r")
    c = f.reset(reader="r")
    assert f.value == MeyerdingGrade(1, 20.0, "antero")
    assert c.old["meyerding"] == 2 and c.new["meyerding"] == 1
    assert len(f.corrections) == 2
    assert f.reset(reader="r") is None


def test_correction_needs_a_reader():
    f = PfirrmannFinding(model=PfirrmannGrade(3))
    with pytest.raises(ValueError, match="who made"):
        f.correct(PfirrmannGrade(4), reader=" ")
    assert f.reader is None and f.corrections == []


def test_correcting_a_not_assessed_finding_makes_it_assessed():
    f = HerniationFinding(status="not_assessed", reason="no axial series")
    f.correct(MSUGrade(1, "B", "left"), reader="r")
    assert f.status == "assessed" and f.value.label == "1-B left" and f.model is None


def test_relabel_moves_findings_with_the_level():
    a = _example()
    lv = a.level("L4-L5")
    lv.rename("L5-L6", reader="r", note="six lumbar vertebrae")
    assert a.level("L5-L6").pfirrmann.model == PfirrmannGrade(3)
    assert lv.model_name == "L4-L5"
    assert lv.all_corrections()[0].to_dict()["from"] == "L4-L5"


# ---- JSON ----------------------------------------------------------------------------------

def test_json_round_trip_is_exact():
    a = _example()
    a.level("L4-L5").ldh.correct(MSUGrade(3, "AB", "right"), reader="dr.lee", note="larger", time="2026-01-01T00:00:00+00:00")
    a.level("L4-L5").rename("L3-L4", reader="dr.lee", note="count from C2")
    text = a.to_json()
    b = Assessment.from_json(text)
    assert b.to_json() == text
    assert b.level("L3-L4").ldh.model == MSUGrade(2, "AB", "right")
    assert b.level("L3-L4").ldh.reader == MSUGrade(3, "AB", "right")
    assert b.level("L3-L4").model_name == "L4-L5"


def test_json_has_the_contract_fields():
    d = json.loads(_example().to_json())
    assert d["schema"] == SCHEMA == "spineassist.findings/2"
    assert d["software"]["models"] == [{"name": "sag_pose", "sha256": SHA, "version": "1"}]
    lv = d["levels"][0]
    assert lv["level"] == "L4-L5"
    assert lv["pfirrmann"]["grade"] == 3
    assert (lv["ldh"]["msu_size"], lv["ldh"]["msu_zone"], lv["ldh"]["side"]) == (2, "AB", "right")
    assert (lv["listhesis"]["meyerding"], lv["listhesis"]["slip_percent"], lv["listhesis"]["direction"]) == (1, 20.0, "antero")
    assert lv["corrections"] == []
    assert d["levels"][1]["ldh"]["status"] == "not_assessed"
    assert d["levels"][1]["ldh"]["msu_size"] is None


def test_schema_validates_written_json_and_catches_bad_values():
    d = json.loads(_example().to_json())
    validate_findings_json(d)
    d["levels"][0]["pfirrmann"]["grade"] = 7
    with pytest.raises(ValueError, match="levels/0/pfirrmann/grade"):
        validate_findings_json(d)
    d = json.loads(_example().to_json())
    d["levels"][0]["level"] = "L9-L10"
    with pytest.raises(ValueError, match="levels/0/level"):
        validate_findings_json(d)


def test_wrong_schema_is_refused():
    with pytest.raises(ValueError, match="spineassist.findings/1.*spineassist.findings/2"):
        Assessment.from_dict({"schema": "other/1", "study_instance_uid": "1"})


def test_flat_values_read_as_model_values():
    # truth.json files written by hand may give only the flat value
    d = json.loads(_example().to_json())
    for key in ("model", "reader"):
        d["levels"][0]["pfirrmann"][key] = None
    a = Assessment.from_dict(d)
    assert a.level("L4-L5").pfirrmann.model == PfirrmannGrade(3)


def test_save_is_atomic_and_load_reports_bad_json(tmp_path):
    path = _example().save(tmp_path / "findings.json")
    assert [p.name for p in tmp_path.iterdir()] == ["findings.json"]
    assert Assessment.load(path).study_instance_uid == "2.25.1"
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Assessment.load(tmp_path / "broken.json")


def test_correction_from_json_routes_to_its_finding():
    d = _example().to_dict()
    d["levels"][0]["corrections"] = [Correction("listhesis", None, {"meyerding": 2, "slip_percent": 30.0,
                                                "direction": "antero"}, "r", "2026-01-01").to_dict()]
    lv = Assessment.from_dict(d).level("L4-L5")
    assert len(lv.listhesis.corrections) == 1 and lv.pfirrmann.corrections == []


# ---- reruns keep the reader's word ---------------------------------------------------------

def test_rerun_keeps_corrections_and_reports_disagreement():
    old = _example()
    old.level("L4-L5").pfirrmann.correct(PfirrmannGrade(4), reader="dr.lee")
    new = _example()
    new.level("L4-L5").pfirrmann.model = PfirrmannGrade(2)
    lines = carry_reader_values(new, old)
    lv = new.level("L4-L5")
    assert lv.pfirrmann.value == PfirrmannGrade(4)
    assert lv.pfirrmann.model == PfirrmannGrade(2)
    assert len(lv.pfirrmann.corrections) == 1
    assert lines == ["L4-L5 pfirrmann: reader Pfirrmann IV, new model Pfirrmann II"]


def test_rerun_keeps_relabel():
    old = _example()
    old.level("L5-S1").rename("L5-L6", reader="r")
    new = _example()
    carry_reader_values(new, old)
    assert [lv.name for lv in new.levels] == ["L4-L5", "L5-L6"]


def test_level_confidence_and_review_round_trip_through_findings_json():
    from SpineAssistLib.findings import Assessment, Level

    a = Assessment("1.2.3", levels=[Level("L4-L5", confidence=0.42)], review_reasons=["L4-L5 uncertain"])
    d = a.to_dict()
    assert d["review"] == {"status": "needs review", "reasons": ["L4-L5 uncertain"]}
    assert d["levels"][0]["confidence"] == 0.42
    back = Assessment.from_dict(d)
    assert back.needs_review and back.level("L4-L5").confidence == 0.42
    old = dict(d)
    del old["review"]
    assert not Assessment.from_dict(old).needs_review          # files written before the flag existed
    with pytest.raises(ValueError, match="between 0 and 1"):
        Level("L4-L5", confidence=1.5)
