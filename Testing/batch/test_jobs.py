"""A batch's studies: found in a folder tree, named, planned, and marked complete."""

import json
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from SpineAssistLib.batch.jobs import (
    MARK_NAME,
    Job,
    dicomweb_jobs,
    folder_jobs,
    is_complete,
    load_plan,
    safe_name,
    save_plan,
    write_mark,
)
from SpineAssistLib.dicom.index import StudyFolder, studies_under


def _dicom(path: Path, study_uid: str, modality: str = "MR") -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.StudyInstanceUID = study_uid
    ds.Modality = modality
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)


def test_studies_under_finds_each_study_once_at_its_deepest_common_folder(tmp_path):
    root = tmp_path / "archive"
    _dicom(root / "a" / "s1" / "x1.dcm", "1.2.3.1")
    _dicom(root / "a" / "s1" / "sub" / "x2.dcm", "1.2.3.1")
    _dicom(root / "b" / "y1.dcm", "1.2.3.2")
    _dicom(root / "b" / "y2.dcm", "1.2.3.3", "CT")          # two studies in one folder
    (root / "b" / "notes.txt").write_text("a report, not DICOM")
    _dicom(root / "out" / "z.dcm", "1.2.3.9")                # the batch's own output folder
    found = studies_under(root, skip=[root / "out"])
    assert [(s.study_uid, s.folder.relative_to(root).as_posix(), s.files) for s in found] == [
        ("1.2.3.1", "a/s1", 2), ("1.2.3.2", "b", 1), ("1.2.3.3", "b", 1)]
    assert found[2].modalities == ("CT",)


def test_folder_jobs_name_outputs_after_the_study_folder(tmp_path):
    root, out = tmp_path / "archive", tmp_path / "out"
    studies = [StudyFolder("1.2.3.1", root / "a" / "s 1", 2, ("MR",)),
               StudyFolder("1.2.3.2", root / "b", 1, ("MR",)), StudyFolder("1.2.3.3", root / "b", 1, ("MR",))]
    jobs = folder_jobs(studies, root, out)
    assert [j.key for j in jobs] == ["a__s_1", "b__2", "b__3"]
    assert jobs[0].out_dir == out / "a__s_1" and jobs[0].location == str(root / "a" / "s 1")
    assert safe_name("../../etc/passwd") == "etc_passwd"


def test_dicomweb_jobs_are_one_per_uid(tmp_path):
    jobs = dicomweb_jobs(["1.2.3", "1.2.4", "1.2.3"], tmp_path)
    assert [j.key for j in jobs] == ["1.2.3", "1.2.4"] and all(j.source == "dicomweb" for j in jobs)


def test_a_plan_is_reused_only_for_the_same_source(tmp_path):
    jobs = dicomweb_jobs(["1.2.3"], tmp_path)
    save_plan(tmp_path, {"folder": "/a"}, jobs)
    assert load_plan(tmp_path, {"folder": "/a"}) == jobs
    assert load_plan(tmp_path, {"folder": "/b"}) is None
    (tmp_path / "batch-plan.json").write_text("{broken")
    assert load_plan(tmp_path, {"folder": "/a"}) is None


def test_complete_means_marked_with_every_listed_file_there(tmp_path):
    job = Job("s", "1.2.3", "folder", "/x", str(tmp_path / "s"))
    assert not is_complete(job, store=False)
    job.out_dir.mkdir()
    (job.out_dir / "findings.json").write_text("{}")
    write_mark(job, ["findings.json", "seg.dcm"], stored=None, seconds=1.0)
    assert not is_complete(job, store=False)                 # seg.dcm is missing: a crash between commit and mark
    (job.out_dir / "seg.dcm").write_bytes(b"x")
    assert is_complete(job, store=False)
    assert not is_complete(job, store=True)                  # not yet stored in the PACS
    write_mark(job, ["findings.json", "seg.dcm"], stored=["seg.dcm"], seconds=1.0)
    assert is_complete(job, store=True)
    other = Job("s", "9.9.9", "folder", "/x", str(tmp_path / "s"))
    assert not is_complete(other, store=False)               # a mark for another study
    assert json.loads((job.out_dir / MARK_NAME).read_text())["files"] == ["findings.json", "seg.dcm"]
