"""``spineassist assess --dicomweb URL UID --out OUT --store`` against a real Orthanc holding the phantom study
(fixtures ``orthanc`` and ``pacs_study``, Testing/conftest.py): the study is fetched into a temporary folder
that is gone afterwards (also after a SIGTERM), the outputs are written, the SEG and SR that arrive in Orthanc
pass dciodvfy and point at the series Orthanc holds, a rerun stores nothing twice, and nothing the command
prints holds the password or the patient's name."""

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from support.cli import run_cli

from SpineAssistLib.cli.assess import FETCH_PREFIX
from SpineAssistLib.export.outputs import OUTPUT_FILES

STARTED_WITHIN_S = 120
CANCELLED_WITHIN_S = 30


def _env(orthanc, tmp_path, password=None) -> dict[str, str]:
    """Credentials for ``orthanc`` and a private TMPDIR, where the fetched study must not stay."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    (tmp_path / "empty-netrc").write_text("")
    return {"SPINEASSIST_DICOMWEB_USER": orthanc.user, "SPINEASSIST_DICOMWEB_PASSWORD": password or orthanc.password,
            "SPINEASSIST_DICOMWEB_TOKEN": "", "NETRC": str(tmp_path / "empty-netrc"), "TMPDIR": str(tmp_path / "tmp"),
            "YOLO_OFFLINE": "1"}


@pytest.fixture(autouse=True)
def _pacs_study_as_uploaded(orthanc, pacs_study):
    """The session's PACS study is shared with other test modules: what a test stored in it (SEG, SR)
    is removed again, so each module finds the study as uploaded."""
    yield
    for s in orthanc.qido(f"studies/{pacs_study}/series?includefield=00080060"):
        if s.get("00080060", {}).get("Value", [""])[0] != "MR":
            orthanc.delete(s["0020000E"]["Value"][0])


def _fetch_folders(tmp_path) -> list[str]:
    return [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith(FETCH_PREFIX)]


def _count(orthanc, study_uid: str, modality: str) -> int:
    return len(orthanc.qido(f"studies/{study_uid}/instances?Modality={modality}"))


def _series_on_server(orthanc, study_uid: str) -> dict[str, tuple[str, set[str]]]:
    """Series description -> (series UID, its SOP Instance UIDs), as Orthanc holds them."""
    out = {}
    for s in orthanc.qido(f"studies/{study_uid}/series?includefield=SeriesDescription"):
        uid = s["0020000E"]["Value"][0]
        sops = {i["00080018"]["Value"][0] for i in orthanc.qido(f"studies/{study_uid}/series/{uid}/instances")}
        out[s["0008103E"]["Value"][0]] = (uid, sops)
    return out


def _dciodvfy_errors(path) -> list[str]:
    """dciodvfy's 'Error' lines for a file, as Testing/export/test_dicom.py judges them."""
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy is missing: run `bash .ci/system-packages.sh` (apt-get install dicom3tools)")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def test_assess_from_a_pacs_stores_a_valid_seg_and_sr_once(orthanc, pacs_study, study_dir, tmp_path):
    env, out = _env(orthanc, tmp_path), tmp_path / "out"
    args = ("assess", "--dicomweb", orthanc.url, pacs_study, "--out", str(out), "--store", "--device", "cpu")
    before = {m: _count(orthanc, pacs_study, m) for m in ("SEG", "SR")}

    r = run_cli(*args, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert "stored seg.dcm and sr.dcm in " + orthanc.url + ": 2 sent, 0 there already" in r.stdout
    assert _fetch_folders(tmp_path) == []
    assert {m: _count(orthanc, pacs_study, m) for m in ("SEG", "SR")} == {m: n + 1 for m, n in before.items()}

    # what arrived in Orthanc, read back with WADO-RS
    session = requests.Session()
    session.auth = (orthanc.user, orthanc.password)
    client = DICOMwebClient(orthanc.url, session=session)
    series = _series_on_server(orthanc, pacs_study)
    sag_uid, sag_sops = series["T2 TSE SAG"]
    ax_uid, ax_sops = series["T2 TSE AX"]
    stored = {}
    for name in ("seg.dcm", "sr.dcm"):
        local = pydicom.dcmread(out / name, stop_before_pixels=True)
        ds = client.retrieve_instance(pacs_study, str(local.SeriesInstanceUID), str(local.SOPInstanceUID))
        ds.save_as(tmp_path / f"from-orthanc-{name}", enforce_file_format=True)
        assert _dciodvfy_errors(tmp_path / f"from-orthanc-{name}") == [], name
        stored[name] = ds
    seg, sr = stored["seg.dcm"], stored["sr.dcm"]
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == pacs_study
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [sag_uid]
    assert {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} <= sag_sops
    sources = {src.ReferencedSOPInstanceUID for frame in seg.PerFrameFunctionalGroupsSequence
               for derivation in frame.DerivationImageSequence for src in derivation.SourceImageSequence}
    assert sources and sources <= sag_sops
    evidence = {s.SeriesInstanceUID: {i.ReferencedSOPInstanceUID for i in s.ReferencedSOPSequence}
                for e in sr.CurrentRequestedProcedureEvidenceSequence for s in e.ReferencedSeriesSequence}
    assert sr.Modality == "SR" and evidence.keys() == {sag_uid, ax_uid}
    assert evidence[sag_uid] <= sag_sops and evidence[ax_uid] <= ax_sops and evidence[sag_uid]

    # a second run assesses again, finds the same SEG and SR in Orthanc and sends nothing
    again = run_cli(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert ": 0 sent, 2 there already" in again.stdout
    assert {m: _count(orthanc, pacs_study, m) for m in ("SEG", "SR")} == {m: n + 1 for m, n in before.items()}
    assert _fetch_folders(tmp_path) == []

    source = pydicom.dcmread(next(study_dir.rglob("*.dcm")), stop_before_pixels=True)
    for text in (r.stdout, r.stderr, again.stdout, again.stderr):
        assert orthanc.password not in text
        assert str(source.PatientName) not in text and str(source.PatientID) not in text


@pytest.mark.parametrize("case, expected", [
    ("wrong password", "asks for credentials (HTTP 401) and refused the credentials from SPINEASSIST_DICOMWEB_USER"),
    ("unknown study", "has no study with StudyInstanceUID 1.2.3.4.5.6: check the UID"),
    ("not a UID", "'case1' is not a Study Instance UID"),
    ("--store alone", "--store and --keep-fetched go with --dicomweb URL"),
    ("credentials in the URL", "holds a user name or password"),
    ("fetched copies kept in OUT", "is inside the output folder"),
])
def test_a_pacs_problem_is_one_line_and_exit_2(orthanc, pacs_study, tmp_path, case, expected):
    secret = "Wr0ng-" + orthanc.password[::-1]
    env = _env(orthanc, tmp_path, password=secret if case == "wrong password" else None)
    url = orthanc.url.replace("http://", f"http://{orthanc.user}:{orthanc.password}@") \
        if case == "credentials in the URL" else orthanc.url
    study = {"unknown study": "1.2.3.4.5.6", "not a UID": "case1"}.get(case, pacs_study)
    web = [] if case == "--store alone" else ["--dicomweb", url]
    if case == "fetched copies kept in OUT":
        web += ["--keep-fetched", str(tmp_path / "out" / "fetched")]
    r = run_cli("assess", *web, study, "--out", str(tmp_path / "out"), "--store", "--device", "cpu", env=env)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr and lines[-1].startswith("spineassist: error: ") and expected in lines[-1]
    assert secret not in r.stderr + r.stdout and orthanc.password not in r.stderr + r.stdout
    assert not (tmp_path / "out").exists() and _fetch_folders(tmp_path) == []


def test_keep_fetched_keeps_the_study_for_the_next_run(orthanc, pacs_study, tmp_path):
    # a sagittal series the study does not hold stops the run after the fetch, before any model loads
    kept = tmp_path / "kept"
    r = run_cli("assess", "--dicomweb", orthanc.url, pacs_study, "--out", str(tmp_path / "out"), "--keep-fetched",
                str(kept), "--sagittal", "1.2.3.4", "--device", "cpu", env=_env(orthanc, tmp_path))
    assert r.returncode == 2 and "1.2.3.4" in r.stderr.strip().splitlines()[-1], r.stderr
    assert len(list((kept / pacs_study).rglob("*.dcm"))) == 30 and _fetch_folders(tmp_path) == []


def test_sigterm_while_assessing_a_fetched_study_removes_the_fetched_copy(orthanc, pacs_study, tmp_path):
    env = {**os.environ, **_env(orthanc, tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "SpineAssistLib.cli", "assess", "--dicomweb", orthanc.url,
                             pacs_study, "--out", str(tmp_path / "out"), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stderr], daemon=True).start()
    deadline, seen = time.monotonic() + STARTED_WITHIN_S, []
    try:
        while not any("sagittal models" in ln for ln in seen):        # fetched, and the models are running
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        assert _fetch_folders(tmp_path)                                # the fetched copy is there while it runs
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=CANCELLED_WITHIN_S) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert _fetch_folders(tmp_path) == []
    assert not (tmp_path / "out" / "findings.json").exists()
