"""One patient per assessment: a folder holding several studies or patients never mixes their series."""

import shutil
import subprocess
import sys

import pydicom
import pytest
from support.dicom_fixtures import AX_IOP, make_series

from SpineAssistLib.dicom.index import index_folder, select_series, series_table
from SpineAssistLib.dicom.stacks import load_stacks
from SpineAssistLib.errors import StudyError

STUDY_A, STUDY_B = "2.25.1001", "2.25.2002"
NAME_A, NAME_B = "DOE^JANE", "ROE^RICHARD"
ID_A, ID_B = "PAT-A-7731", "PAT-B-9912"


def _set_patient(folder, *, patient_id, patient_name, study_date="", study_description=""):
    """Rewrite the fixture's fixed patient and study fields, as two real patients' exports would differ."""
    for p in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(p)
        ds.PatientID, ds.PatientName = patient_id, patient_name
        ds.StudyDate, ds.StudyDescription = study_date, study_description
        ds.save_as(p)


def _write_patient(folder, study_uid, n_axial):
    return {"sag": make_series(folder / "sag", 5, study_uid=study_uid, description="T2 TSE SAG", rows=16, cols=16),
            "ax": make_series(folder / "ax", n_axial, iop=AX_IOP, step=(0.0, 0.0, 4.0), study_uid=study_uid,
                              description="T2 TSE AX", rows=16, cols=16)}


@pytest.fixture
def two_patients(tmp_path):
    """Patients A and B in one folder, each one study; B's axial has more slices, so a choice that
    ignored the study would take B's axial for A's sagittal."""
    root = tmp_path / "export"
    a = _write_patient(root / "a", STUDY_A, 4)
    b = _write_patient(root / "b", STUDY_B, 6)
    _set_patient(root / "a", patient_id=ID_A, patient_name=NAME_A, study_date="20230105", study_description="LWS A")
    _set_patient(root / "b", patient_id=ID_B, patient_name=NAME_B, study_date="20240211", study_description="LWS B")
    return root, a, b


def _no_patient_data(text):
    for secret in (NAME_A, NAME_B, "DOE", "ROE", ID_A, ID_B):
        assert secret not in text


def test_two_patients_without_a_choice_list_both_studies_without_patient_data(two_patients):
    root, _, _ = two_patients
    with pytest.raises(StudyError) as err:
        select_series(index_folder(root))
    msg = str(err.value)
    assert "holds 2 studies" in msg
    assert f"{STUDY_A}  2023-01-05  \"LWS A\"  (2 series)" in msg
    assert f"{STUDY_B}  2024-02-11  \"LWS B\"  (2 series)" in msg
    assert "--study UID" in msg and f"spineassist series {root}" in msg
    _no_patient_data(msg)
    with pytest.raises(StudyError, match="holds 2 studies"):
        load_stacks(root, use_axial=False)


def test_study_uid_picks_only_that_studys_series(two_patients):
    root, a, b = two_patients
    index = index_folder(root)
    for study_uid, uids in ((STUDY_A, a), (STUDY_B, b)):
        choice = select_series(index, study_uid=study_uid)
        assert choice.sagittal.series_instance_uid == uids["sag"]
        assert choice.axial.series_instance_uid == uids["ax"]
        assert choice.study.study_instance_uid == study_uid
        assert any(f"holds 2 studies; only study {study_uid}" in n for n in choice.notes)
    loaded = load_stacks(root, study_uid=STUDY_A)
    assert loaded.study_instance_uid == STUDY_A
    assert [st.voxels.shape[0] for st in loaded.axial] == [4]          # A's axial has 4 slices, B's 6
    with pytest.raises(StudyError, match="no study with StudyInstanceUID 9.9.9 .*spineassist series"):
        select_series(index, study_uid="9.9.9")


def test_sagittal_of_a_takes_as_axial_never_bs(two_patients):
    root, a, b = two_patients
    index = index_folder(root)
    choice = select_series(index, sagittal_uid=a["sag"])
    assert choice.axial.series_instance_uid == a["ax"]
    choice = select_series(index, axial_uid=b["ax"])
    assert choice.sagittal.series_instance_uid == b["sag"]


def test_axial_of_another_patient_is_a_clear_error(two_patients):
    root, a, b = two_patients
    index = index_folder(root)
    with pytest.raises(StudyError) as err:
        select_series(index, sagittal_uid=a["sag"], axial_uid=b["ax"])
    msg = str(err.value)
    assert f"the sagittal series {a['sag']} (T2 TSE SAG) and the axial series {b['ax']} (T2 TSE AX)" in msg
    assert f"different studies ({STUDY_A} and {STUDY_B}) of different patients (different patient IDs)" in msg
    _no_patient_data(msg)
    with pytest.raises(StudyError, match=f"the sagittal series {a['sag']} .* belongs to study {STUDY_A}, not to the "
                                         f"chosen study {STUDY_B}"):
        select_series(index, sagittal_uid=a["sag"], study_uid=STUDY_B)


def test_axial_of_another_study_of_the_same_patient_is_an_error_too(tmp_path):
    a = _write_patient(tmp_path / "visit1", STUDY_A, 4)
    b = _write_patient(tmp_path / "visit2", STUDY_B, 4)
    _set_patient(tmp_path, patient_id=ID_A, patient_name=NAME_A)
    with pytest.raises(StudyError, match=r"belong to different studies \(2.25.1001 and 2.25.2002\); an assessment") as err:
        select_series(index_folder(tmp_path), sagittal_uid=a["sag"], axial_uid=b["ax"])
    assert "different patients" not in str(err.value)


def test_one_study_uid_with_two_patient_ids_is_an_error(tmp_path):
    uids = _write_patient(tmp_path, STUDY_A, 4)
    _set_patient(tmp_path / "sag", patient_id=ID_A, patient_name=NAME_A)
    _set_patient(tmp_path / "ax", patient_id=ID_B, patient_name=NAME_B)
    index = index_folder(tmp_path)
    for kw in ({}, {"sagittal_uid": uids["sag"]}, {"study_uid": STUDY_A}):
        with pytest.raises(StudyError, match=f"study {STUDY_A} in .* holds series with different patient IDs") as err:
            select_series(index, **kw)
        _no_patient_data(str(err.value))


def test_one_series_with_two_patient_ids_is_an_error(tmp_path):
    uids = _write_patient(tmp_path, STUDY_A, 4)
    _set_patient(tmp_path, patient_id=ID_A, patient_name=NAME_A)
    victim = sorted((tmp_path / "sag").glob("*.dcm"))[2]
    ds = pydicom.dcmread(victim)
    ds.PatientID = ID_B
    ds.save_as(victim)
    with pytest.raises(StudyError, match=f"series {uids['sag']} \\(T2 TSE SAG\\) carries more than one"):
        select_series(index_folder(tmp_path))


def test_series_without_patient_id_do_not_count_as_another_patient(tmp_path):
    uids = _write_patient(tmp_path, STUDY_A, 4)
    _set_patient(tmp_path / "sag", patient_id=ID_A, patient_name=NAME_A)
    _set_patient(tmp_path / "ax", patient_id="", patient_name="")
    assert select_series(index_folder(tmp_path)).axial.series_instance_uid == uids["ax"]


def test_series_table_lists_both_studies_with_their_series(two_patients):
    root, a, b = two_patients
    index = index_folder(root)
    table = series_table(index)
    lines = table.splitlines()
    head_a = lines.index(f"study {STUDY_A}  2023-01-05  \"LWS A\"  (2 series)")
    head_b = lines.index(f"study {STUDY_B}  2024-02-11  \"LWS B\"  (2 series)")
    assert head_a < head_b
    assert all(any(uid in line for line in lines[head_a:head_b]) for uid in a.values())
    assert all(any(uid in line for line in lines[head_b:]) for uid in b.values())
    assert not any(line.startswith(("SAG", "AX")) for line in lines)
    _no_patient_data(table)
    marked = series_table(index, select_series(index, study_uid=STUDY_B)).splitlines()
    assert f"study {STUDY_B}  2024-02-11  \"LWS B\"  (2 series)  <- assessed" in marked
    assert sum(line.startswith(("SAG ", "AX ")) for line in marked) == 2


def test_single_study_table_has_no_study_lines(tmp_path):
    _write_patient(tmp_path, STUDY_A, 4)
    assert not any(line.startswith("study ") for line in series_table(index_folder(tmp_path)).splitlines())


def test_cli_series_lists_several_studies_and_says_how_to_choose(two_patients):
    root, a, _ = two_patients

    def series(*args):
        return subprocess.run([sys.executable, "-m", "SpineAssistLib.cli", "series", str(root), *args],
                              capture_output=True, text=True, timeout=120)

    r = series()
    assert r.returncode == 0, r.stderr
    assert f"study {STUDY_A}" in r.stdout and f"study {STUDY_B}" in r.stdout
    assert "holds 2 studies" in r.stdout and "--study UID" in r.stdout
    assert "<- assessed" not in r.stdout
    _no_patient_data(r.stdout + r.stderr)
    r = series("--study", STUDY_A)
    assert r.returncode == 0, r.stderr
    assert f"study {STUDY_A}  2023-01-05  \"LWS A\"  (2 series)  <- assessed" in r.stdout
    assert sorted(line.split()[0] for line in r.stdout.splitlines() if line.startswith(("SAG ", "AX "))) == ["AX", "SAG"]
    r = series("--sagittal", a["sag"], "--axial", "2.25.404")
    assert r.returncode == 2 and "no series with SeriesInstanceUID 2.25.404" in r.stderr and "Traceback" not in r.stderr


def test_cli_series_single_study_without_sagittal_fails_as_before(tmp_path):
    make_series(tmp_path, 5, iop=AX_IOP, step=(0, 0, 4), description="T2 TSE AX", rows=16, cols=16)
    r = subprocess.run([sys.executable, "-m", "SpineAssistLib.cli", "series", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no sagittal MR series in" in r.stderr and "Traceback" not in r.stderr


def test_duplicate_slices_are_counted_and_a_few_named(tmp_path):
    uid = make_series(tmp_path / "orig", 6, rows=16, cols=16)
    shutil.copytree(tmp_path / "orig", tmp_path / "copy")              # the whole series copied twice
    s = index_folder(tmp_path).get(uid)
    assert s.n_slices == 6
    (dup,) = [p for p in s.problems if "duplicate" in p]
    assert dup.startswith("6 duplicate slices (one copy of each kept): ") and dup.endswith(" and 3 more")
    assert sum(r.sop_instance_uid in dup for r in s.slices) == 3        # three UIDs named, not six
