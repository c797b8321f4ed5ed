"""seg.dcm and sr.dcm read back with highdicom and pydicom, validated with dciodvfy, and de-identified."""

import copy
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

from SpineAssistLib.anatomy import DISC_LABELS
from SpineAssistLib.export.deidentify import DeidentificationSettings, deidentify
from SpineAssistLib.export.dicom_seg import build_disc_seg, disc_tracking_uid, write_disc_seg
from SpineAssistLib.export.dicom_sr import build_measurement_report, write_measurement_report
from SpineAssistLib.findings import PfirrmannGrade

from support import export_case as S


def dciodvfy_errors(path):
    """Return dciodvfy's 'Error' lines for a file (dicom3tools; installed by .ci/system-packages.sh)."""
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy is missing: run `bash .ci/system-packages.sh` (apt-get install dicom3tools)")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def study():
    sag, ax = S.sagittal_series(), S.axial_series()
    mid = sorted(sag, key=lambda d: float(d.ImagePositionPatient[0]))[2]
    return sag, ax, S.assessment(axial_sop=ax[1].SOPInstanceUID, sag_sop=mid.SOPInstanceUID)


@pytest.fixture(scope="module")
def seg_path(study, tmp_path_factory):
    sag, _, a = study
    return write_disc_seg(sag, S.disc_labels(), a, tmp_path_factory.mktemp("seg") / "seg.dcm")


@pytest.fixture(scope="module")
def sr_path(study, tmp_path_factory):
    sag, ax, a = study
    return write_measurement_report(a, sag + ax, tmp_path_factory.mktemp("sr") / "sr.dcm")


# ---- SEG --------------------------------------------------------------------------------------

def test_test_images_themselves_are_valid_mr(tmp_path):
    path = tmp_path / "mr.dcm"
    pydicom.dcmwrite(path, S.sagittal_series()[0], enforce_file_format=True)
    assert dciodvfy_errors(path) == []


def test_seg_passes_dciodvfy(seg_path):
    assert dciodvfy_errors(seg_path) == []


def test_seg_reads_back_with_levels_codes_and_frames(seg_path, study):
    sag, _, a = study
    seg = hd.seg.segread(seg_path)
    assert seg.SegmentationType == "BINARY"
    labels = [d.SegmentLabel for d in seg.SegmentSequence]
    assert labels == ["L3-L4 intervertebral disc", "L4-L5 intervertebral disc", "L5-S1 intervertebral disc"]
    l45 = seg.SegmentSequence[1]
    assert (l45.SegmentedPropertyCategoryCodeSequence[0].CodeValue, l45.SegmentedPropertyTypeCodeSequence[0].CodeValue) \
        == ("91723000", "84020006")
    assert l45.AnatomicRegionSequence[0].CodeValue == "122496007"
    assert l45.SegmentAlgorithmType == "AUTOMATIC"
    assert l45.SegmentAlgorithmName == "SpineAssist"
    assert l45.TrackingUID == disc_tracking_uid(S.STUDY_UID, "L4-L5")
    # Discs lie on slices 1-3 of 5: 3 segments x 3 non-empty frames.
    assert int(seg.NumberOfFrames) == 9
    assert "not edited by a reader" in seg.ContentDescription
    referenced = {r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
    assert referenced == {d.SOPInstanceUID for d in sag}


def test_seg_voxels_round_trip(seg_path, study):
    sag, _, _ = study
    seg = hd.seg.segread(seg_path)
    ordered = sorted(sag, key=lambda d: float(d.ImagePositionPatient[0]))
    arr = seg.get_pixels_by_source_instance([d.SOPInstanceUID for d in ordered], combine_segments=True)
    labels = S.disc_labels()
    expected = np.select([labels == DISC_LABELS[n] for n in ("L3-L4", "L4-L5", "L5-S1")], [1, 2, 3], 0)
    assert np.array_equal(arr, expected)


def test_seg_records_reader_edit_and_relabel(study, tmp_path):
    sag, _, a = study
    a = S.assessment()
    a.level("L5-S1").rename("L4-S1", reader="dr.lee", note="4 lumbar vertebrae")
    seg = build_disc_seg(sag, S.disc_labels(), a, reader_edited=True, reader="dr.lee")
    item = seg.SegmentSequence[2]
    assert item.SegmentLabel == "L4-S1 intervertebral disc"
    assert item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "99SPINEASSIST"  # no CID 7604 concept
    assert "model labelled it L5-S1" in item.SegmentDescription
    assert item.SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert seg.ContentCreatorName == "dr.lee^"
    assert seg.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99SPINEASSIST"
    path = tmp_path / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []


@pytest.mark.parametrize("labels, message", [
    (np.zeros((4, 96, 96), np.uint16), "does not match the source images"),
    (np.zeros((96, 96), np.uint16), "3D label volume"),
    (np.zeros((5, 96, 96), np.uint16), "holds no disc"),
])
def test_seg_bad_label_volume_is_a_clear_error(study, labels, message):
    sag, _, a = study
    with pytest.raises(ValueError, match=message):
        build_disc_seg(sag, labels, a)


def test_seg_rejects_mixed_series_and_other_study(study):
    sag, ax, a = study
    with pytest.raises(ValueError, match="ImageOrientationPatient"):
        build_disc_seg(sag + ax, S.disc_labels(), a)
    other = S.assessment()
    other.study_instance_uid = "2.25.1"
    with pytest.raises(ValueError, match="another study"):
        build_disc_seg(sag, S.disc_labels(), other)
    with pytest.raises(ValueError, match="needs reader="):
        build_disc_seg(sag, S.disc_labels(), a, reader_edited=True)


# ---- SR ---------------------------------------------------------------------------------------

def test_sr_passes_dciodvfy(sr_path):
    assert dciodvfy_errors(sr_path) == []


def _group(sr, level):
    return next(g for g in sr.content.get_image_measurement_groups() if str(g.tracking_identifier) == level)


def test_sr_groups_per_level_with_tracking_and_finding_type(sr_path):
    sr = hd.sr.srread(sr_path)
    groups = sr.content.get_image_measurement_groups()
    assert [str(g.tracking_identifier) for g in groups] == ["L3-L4", "L4-L5", "L5-S1"]
    g = _group(sr, "L4-L5")
    assert g.tracking_uid == disc_tracking_uid(S.STUDY_UID, "L4-L5")  # the same disc as in seg.dcm
    assert g.finding_type.value == "84020006"


def test_sr_numeric_measurements_and_units(sr_path):
    g = _group(hd.sr.srread(sr_path), "L4-L5")
    got = {(m.name.value, m.method.value): (m.value, m.unit.value) for m in g.get_measurements()}
    assert got[("SLIP-PERCENT", "MODEL")] == (pytest.approx(100 * 5 / 35), "%")
    assert got[("SLIP-MM", "MODEL")] == (5.0, "mm")
    assert got[("MSU-DEPTH-RATIO", "MODEL")] == (0.8, "1")
    assert got[("SIR", "MODEL")] == (0.74, "1")
    assert got[("DHI", "MODEL")] == (0.33, "1")


def _qualitative(ds, level):
    """(concept, value, source) of every qualitative evaluation in a level's group, read with plain pydicom."""
    def code(seq):
        return seq[0].get("CodeValue") if seq else None

    out = []
    for container in ds.ContentSequence:
        for group in container.get("ContentSequence", []):
            if code(group.get("ConceptNameCodeSequence")) != "125007":  # Measurement Group
                continue
            items = group.ContentSequence
            ids = [i.TextValue for i in items if i.ValueType == "TEXT" and code(i.ConceptNameCodeSequence) == "112039"]
            if ids != [level]:
                continue
            for i in items:
                if i.ValueType != "CODE":
                    continue
                sources = [code(m.ConceptCodeSequence) for m in i.get("ContentSequence", [])
                           if code(m.ConceptNameCodeSequence) == "370129005"]  # Measurement Method
                if sources:
                    out.append((code(i.ConceptNameCodeSequence), code(i.ConceptCodeSequence), sources[0]))
    return out


def test_sr_keeps_reader_and_model_values(sr_path):
    q = _qualitative(pydicom.dcmread(sr_path), "L4-L5")
    assert ("PFIRRMANN", "PFIRRMANN-4", "READER") in q
    assert ("PFIRRMANN", "PFIRRMANN-3", "MODEL") in q
    assert ("MSU-SIZE", "MSU-SIZE-2", "MODEL") in q and ("MSU-ZONE", "MSU-ZONE-AB", "MODEL") in q
    assert ("272741003", "24028007", "MODEL") in q  # laterality: right
    assert ("MEYERDING", "MEYERDING-1", "MODEL") in q and ("LISTHESIS-DIR", "ANTEROLISTHESIS", "MODEL") in q
    # Not assessed: no herniation items at L5-S1.
    assert not [x for x in _qualitative(pydicom.dcmread(sr_path), "L5-S1") if x[0].startswith("MSU")]


PRESENT, ABSENT = "52101004", "272519000"


def test_sr_codes_the_sagittal_findings_with_model_and_reader_values(sr_path):
    q = _qualitative(pydicom.dcmread(sr_path), "L4-L5")
    # private concepts where SNOMED CT has none
    assert ("MODIC", "MODIC-1", "READER") in q and ("MODIC", "MODIC-2", "MODEL") in q
    assert ("ENDPLATE-UPPER", PRESENT, "MODEL") in q and ("ENDPLATE-LOWER", ABSENT, "MODEL") in q
    assert ("NARROWING", PRESENT, "MODEL") in q
    assert ("BULGING", ABSENT, "READER") in q and ("BULGING", PRESENT, "MODEL") in q
    assert ("STENOSIS-GRADE", "STENOSIS-REL", "READER") in q and ("STENOSIS-GRADE", "STENOSIS-ABS", "MODEL") in q
    # SNOMED CT: herniation of intervertebral disc, spinal stenosis (relative and absolute both present)
    assert ("73589001", PRESENT, "MODEL") in q
    assert ("76107001", PRESENT, "READER") in q and ("76107001", PRESENT, "MODEL") in q
    # not graded: nothing written; a level with only the sagittal herniation has only that
    assert not [x for x in _qualitative(pydicom.dcmread(sr_path), "L3-L4") if x[0] in ("MODIC", "73589001")]
    l5s1 = _qualitative(pydicom.dcmread(sr_path), "L5-S1")
    assert ("73589001", PRESENT, "MODEL") in l5s1 and not [x for x in l5s1 if x[0] in ("MODIC", "76107001")]


def test_sr_canal_ap_diameter_is_a_measurement_in_mm_of_the_vertebral_canal(sr_path, study):
    sag, _, _ = study
    mid = sorted(sag, key=lambda d: float(d.ImagePositionPatient[0]))[2]
    g = _group(hd.sr.srread(sr_path), "L4-L5")
    diameters = [m for m in g.get_measurements() if (m.name.value, m.name.scheme_designator) == ("81827009", "SCT")]
    # the reader set the grade only: their value keeps the measured 9.2 mm
    assert sorted((m.method.value, m.value, m.unit.value) for m in diameters) == [("MODEL", 9.2, "mm"),
                                                                                   ("READER", 9.2, "mm")]
    for m in diameters:
        assert [(s.value.value, s.value.scheme_designator) for s in m.finding_sites] == [("61853006", "SCT")]
        assert [r.referenced_sop_instance_uid for r in m.referenced_images] == [mid.SOPInstanceUID]
    assert not [m for m in _group(hd.sr.srread(sr_path), "L3-L4").get_measurements() if m.name.value == "81827009"]


def test_sr_references_sagittal_and_axial_images(sr_path, study):
    sag, ax, _ = study
    ds = pydicom.dcmread(sr_path)
    evidence = {i.ReferencedSOPInstanceUID for s in ds.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence == {d.SOPInstanceUID for d in sag + ax}
    g = _group(hd.sr.srread(sr_path), "L4-L5")
    assert {img.referenced_sop_instance_uid for img in g.source_images} >= {ax[1].SOPInstanceUID}
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99SPINEASSIST"


def test_sr_rejects_images_of_another_study(study):
    sag, _, a = study
    other = S.assessment()
    other.study_instance_uid = "2.25.1"
    with pytest.raises(ValueError, match="belong to the assessment's study"):
        write_measurement_report(other, sag, "/nonexistent/sr.dcm")


# ---- UIDs ---------------------------------------------------------------------------------------

def test_the_same_seg_and_sr_get_the_same_uids_and_a_correction_new_ones(study):
    """Written again with the same content (a rerun, a batch study retried), SEG and SR keep their UIDs,
    so a PACS that holds them is sent nothing twice; a reader's correction makes new objects."""
    sag, ax, a = study
    segs = [build_disc_seg(sag, S.disc_labels(), a) for _ in range(2)]
    srs = [build_measurement_report(a, sag + ax) for _ in range(2)]
    for first, second in (segs, srs):
        assert (first.SeriesInstanceUID, first.SOPInstanceUID) == (second.SeriesInstanceUID, second.SOPInstanceUID)
        assert first.SOPInstanceUID.startswith("2.25.") and first.SOPInstanceUID != first.SeriesInstanceUID
    assert segs[0].SOPInstanceUID != srs[0].SOPInstanceUID
    edited = build_disc_seg(sag, S.disc_labels(), a, reader_edited=True, reader="dr.lee")
    corrected = copy.deepcopy(a)
    corrected.levels[0].pfirrmann.correct(PfirrmannGrade(3), reader="dr.lee", time="2024-03-17T10:00:00+00:00")
    assert edited.SOPInstanceUID != segs[0].SOPInstanceUID
    assert build_measurement_report(corrected, sag + ax).SOPInstanceUID != srs[0].SOPInstanceUID


# ---- de-identification ------------------------------------------------------------------------

def test_deidentify_follows_the_basic_profile():
    src = S.sagittal_series()[0]
    src.add_new(0x00091001, "LO", "private vendor note")
    out = deidentify(src, DeidentificationSettings(patient_id="CASE-7"))
    assert src.PatientName == S.PATIENT_NAME  # the input is not changed
    assert (str(out.PatientName), out.PatientID, out.PatientBirthDate) == ("ANONYMOUS", "CASE-7", "")
    for kw in ("InstitutionName", "OperatorsName", "PatientAge", "SeriesDate", "AcquisitionDate"):
        assert kw not in out
    assert out.ReferringPhysicianName == "" and out.AccessionNumber == "" and out.StudyDate == ""
    assert 0x00091001 not in out
    assert out.PatientIdentityRemoved == "YES" and "DICOM PS3.15 Basic Profile" in out.DeidentificationMethod
    assert {c.CodeValue for c in out.DeidentificationMethodCodeSequence} == {"113100", "113110"}
    assert out.SOPInstanceUID == src.SOPInstanceUID  # Retain UIDs by default


def test_deidentify_hashes_ids_shifts_dates_and_remaps_uids_deterministically():
    src = S.sagittal_series()[0]
    settings = DeidentificationSettings(date_shift_days=-10, remap_uids=True, salt="secret")
    a, b = deidentify(src, settings), deidentify(src, settings)
    assert a.PatientID == b.PatientID != src.PatientID and len(a.PatientID) == 16
    assert a.StudyDate == "20240305" and a.LongitudinalTemporalInformationModified == "MODIFIED"
    assert a.SOPInstanceUID == b.SOPInstanceUID != src.SOPInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.SOPClassUID == src.SOPClassUID


def test_deidentify_rejects_a_fractional_date_shift():
    with pytest.raises(TypeError, match="whole number of days"):
        DeidentificationSettings(date_shift_days=1.5)  # type: ignore[arg-type]


def test_deidentified_seg_and_sr_keep_references_consistent(study, tmp_path):
    sag, ax, a = study
    settings = DeidentificationSettings(patient_id="CASE-7", date_shift_days=-3, remap_uids=True, salt="k")
    seg_path = write_disc_seg(sag, S.disc_labels(), a, tmp_path / "seg.dcm", deidentification=settings)
    sr_path = write_measurement_report(a, sag + ax, tmp_path / "sr.dcm", deidentification=settings)
    seg, sr = pydicom.dcmread(seg_path), pydicom.dcmread(sr_path)
    for ds in (seg, sr):
        assert str(ds.PatientName) == "ANONYMOUS" and ds.PatientID == "CASE-7" and ds.PatientIdentityRemoved == "YES"
        assert ds.StudyInstanceUID == settings.uid(S.STUDY_UID)
        assert S.PATIENT_NAME.encode() not in ds_bytes(ds) and b"dr.lee" not in ds_bytes(ds)
    remapped = {settings.uid(d.SOPInstanceUID) for d in sag}
    referenced = {r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
    assert referenced == remapped
    assert seg.SegmentSequence[1].TrackingUID == hd.sr.srread(sr_path).content.get_image_measurement_groups()[1].tracking_uid
    assert dciodvfy_errors(seg_path) == [] and dciodvfy_errors(sr_path) == []


def ds_bytes(ds):
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_private_code_values_fit_dicom_short_strings():
    from pydicom.sr.coding import Code

    from SpineAssistLib.export import codes

    private = [v for v in vars(codes).values() if isinstance(v, Code) and v.scheme_designator == "99SPINEASSIST"]
    private += [c for d in vars(codes).values() if isinstance(d, dict) for c in d.values()
                if isinstance(c, Code) and c.scheme_designator == "99SPINEASSIST"]
    assert len(private) > 20
    assert all(len(c.value) <= 16 and len(c.meaning) <= 64 for c in private)
