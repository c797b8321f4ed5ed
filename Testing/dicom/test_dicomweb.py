"""DICOMweb in and out against a real Orthanc (fixture ``orthanc``, Testing/conftest.py) holding the phantom
study: QIDO-RS searches by date range and body part, a WADO-RS fetch that reproduces the study and resumes,
a STOW-RS store that sends nothing twice, credentials from the environment and a netrc file, and every
failure a user can meet as one line that names no secret and no patient."""

import contextlib
import copy
import http.server
import logging
import os
import socket
import threading
from dataclasses import fields
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from SpineAssistLib.dicom import dicomweb
from SpineAssistLib.dicom.dicomweb import (
    DicomwebError,
    StudyRef,
    check_uid,
    connect,
    lumbar_mr_filters,
)
from SpineAssistLib.dicom.index import index_folder, select_series
from SpineAssistLib.errors import Cancelled, StudyError

ENV_KEYS = (dicomweb.TOKEN_ENV, dicomweb.USER_ENV, dicomweb.PASSWORD_ENV, "NETRC")


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No credentials but those a test sets (an empty netrc file stands in for the user's ~/.netrc)."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "empty-netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "empty-netrc"))
    return monkeypatch


@pytest.fixture
def server(env, orthanc):
    env.setenv(dicomweb.USER_ENV, orthanc.user)
    env.setenv(dicomweb.PASSWORD_ENV, orthanc.password)
    return connect(orthanc.url, timeout_s=30)


def _source(study_dir: Path) -> dict[str, pydicom.Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p) for p in sorted(study_dir.rglob("*.dcm")))}


@pytest.fixture(scope="module")
def other_studies(orthanc, pacs_study, study_dir):
    """Two one-image MR studies beside the phantom: the lumbar spine a year earlier, and a head on the phantom's day."""
    template = pydicom.dcmread(sorted(study_dir.rglob("*.dcm"))[0])
    made = {}
    for name, date, body_part in (("earlier lumbar", "20230115", "LSPINE"), ("head", "20240610", "HEAD")):
        ds = copy.deepcopy(template)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate, ds.BodyPartExamined = date, body_part
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        orthanc.upload([buffer.getvalue()])
        made[name] = str(ds.StudyInstanceUID)
    return made


# ---- QIDO-RS -------------------------------------------------------------------------------------------

def test_lumbar_mr_studies_are_found_by_date_range_and_body_part(server, pacs_study, other_studies):
    def found(*args, **kwargs) -> set[str]:
        return {s.study_uid for s in server.find_studies(lumbar_mr_filters(*args, **kwargs))}

    earlier, head = other_studies["earlier lumbar"], other_studies["head"]
    assert found("2024-01-01", "2024-12-31") == {pacs_study}             # the head study is the same day
    assert found("20240610", "20240610") == {pacs_study}                 # both ends included
    assert found("20240611", None) == set() and found(None, "20240609") == {earlier}
    assert found("20230101", "20241231") == {pacs_study, earlier}
    assert found("20240101", "20241231", body_part=None) == {pacs_study, head}
    assert found(None, None, body_part="*SPINE*") == {pacs_study, earlier}
    phantom = next(s for s in server.find_studies(lumbar_mr_filters("20240101", "20241231")))
    assert phantom == StudyRef(pacs_study, "20240610", ("MR",), "MR LUMBAR SPINE (SYNTHETIC PHANTOM)", 2)
    assert {f.name for f in fields(StudyRef)} == {"study_uid", "study_date", "modalities", "description",
                                                  "number_of_series"}          # nothing of the patient


def test_a_query_is_read_page_by_page_and_limit_stops_it(server, pacs_study, other_studies, monkeypatch):
    everything = {s.study_uid for s in server.find_studies({})}
    assert {pacs_study, *other_studies.values()} <= everything
    monkeypatch.setattr(dicomweb, "QIDO_PAGE", 1)                   # one study per answer: every page is asked for
    assert [s.study_uid for s in server.find_studies({})] == [s.study_uid for s in server.find_studies({})]
    assert {s.study_uid for s in server.find_studies({})} == everything
    assert len(server.find_studies({}, limit=2)) == 2
    # Orthanc 1.10 asked to filter on ModalitiesInStudy loses every match after the first page
    mr = {s.study_uid for s in server.find_studies({"ModalitiesInStudy": "MR"})}
    assert {pacs_study, *other_studies.values()} <= mr
    assert server.find_studies({"ModalitiesInStudy": "CT"}) == []
    assert {s.study_uid for s in server.find_studies({"BodyPartExamined": "LSPINE", "ModalitiesInStudy": "MR"})} \
        == {pacs_study, other_studies["earlier lumbar"]}


def test_the_series_of_a_study_are_listed(server, pacs_study, study_dir):
    series = sorted(server.find_series(pacs_study), key=lambda s: s["description"])
    assert [(s["modality"], s["description"], s["number_of_instances"], s["body_part"]) for s in series] == \
        [("MR", "T2 TSE AX", 15, "LSPINE"), ("MR", "T2 TSE SAG", 15, "LSPINE")]
    assert {s["series_uid"] for s in series} == {str(ds.SeriesInstanceUID) for ds in _source(study_dir).values()}


@pytest.mark.parametrize("args, expected", [
    (("2024-13-01", None), "is not a date"),
    (("20241231", "20240101"), "ends before it starts"),
])
def test_a_bad_date_range_is_refused(args, expected):
    with pytest.raises(DicomwebError, match=expected):
        lumbar_mr_filters(*args)
    assert lumbar_mr_filters("2024-01-01", None, None) == {"ModalitiesInStudy": "MR", "StudyDate": "20240101-"}


# ---- WADO-RS -------------------------------------------------------------------------------------------

def _inodes(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob("*.dcm")}


def test_a_fetched_study_has_the_same_instances_and_pixels_and_is_read_like_a_folder(server, pacs_study, study_dir,
                                                                                     tmp_path):
    source = _source(study_dir)
    dest = server.fetch_study(pacs_study, tmp_path / "fetched")
    files = sorted(dest.rglob("*"))
    assert not [p for p in files if p.is_file() and p.suffix != ".dcm"]             # no .partial left
    fetched = {p.stem: pydicom.dcmread(p) for p in files if p.suffix == ".dcm"}
    assert fetched.keys() == source.keys()
    for uid, ds in fetched.items():
        assert ds.PixelData == source[uid].PixelData
        assert Path(dest, str(ds.SeriesInstanceUID), f"{uid}.dcm").is_file()
    choice = select_series(index_folder(dest))
    assert {choice.sagittal.series_instance_uid, choice.axial.series_instance_uid} == \
        {str(ds.SeriesInstanceUID) for ds in source.values()}

    before = _inodes(dest)
    server.fetch_study(pacs_study, dest)
    assert _inodes(dest) == before                                    # a second fetch fetches nothing
    gone = sorted(dest.rglob("*.dcm"))[3]
    gone.unlink()
    server.fetch_study(pacs_study, dest)
    after = _inodes(dest)
    assert after.keys() == before.keys() and after[gone.name] != before[gone.name]
    assert {k: v for k, v in after.items() if k != gone.name} == {k: v for k, v in before.items() if k != gone.name}


def test_a_cancelled_fetch_leaves_whole_files_and_resumes(server, pacs_study, tmp_path):
    calls = []

    def cancel_at_the_fifth_call():
        calls.append(1)
        if len(calls) == 5:
            raise Cancelled("cancelled by the test")

    dest = tmp_path / "fetched"
    with pytest.raises(Cancelled):
        server.fetch_study(pacs_study, dest, cancel=cancel_at_the_fifth_call)
    kept = list(dest.rglob("*.dcm"))
    assert 0 < len(kept) < 30 and not [p for p in dest.rglob("*") if p.is_file() and p.suffix != ".dcm"]
    for p in kept:
        pydicom.dcmread(p).pixel_array                          # every file kept is whole
    server.fetch_study(pacs_study, dest)
    assert len(list(dest.rglob("*.dcm"))) == 30


def test_a_study_the_server_does_not_hold_is_a_study_error(server, tmp_path):
    with pytest.raises(StudyError, match="has no study with StudyInstanceUID 1.2.3.4.5: check the UID"):
        server.fetch_study("1.2.3.4.5", tmp_path / "fetched")
    with pytest.raises(DicomwebError, match="is not a Study Instance UID"):
        server.fetch_study("../../etc", tmp_path / "fetched")
    assert check_uid("1.2.840.10008.1.2.1") == "1.2.840.10008.1.2.1"


def test_a_study_without_mr_series_is_a_study_error(server, other_studies, tmp_path):
    with pytest.raises(StudyError, match=r"no series of modality CT \(its series' modalities: MR\)"):
        server.fetch_study(other_studies["head"], tmp_path / "fetched", modalities=("CT",))


# ---- STOW-RS -------------------------------------------------------------------------------------------

def test_storing_twice_stores_once(server, orthanc, assessed, pacs_study):
    _, out, _ = assessed
    paths = [out / "seg.dcm", out / "sr.dcm"]
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    try:
        first = server.store(paths)
        assert first.stored == tuple(uids) and first.already_there == ()
        again = server.store(paths)
        assert again.stored == () and again.already_there == tuple(uids)
        on_server = {m["00080018"]["Value"][0] for m in orthanc.qido(f"studies/{pacs_study}/instances")}
        assert set(uids) <= on_server
    finally:
        for uid in uids:                     # the command line's tests count the SEGs and SRs in this study
            orthanc.delete(uid)


def test_a_file_that_is_not_dicom_is_not_stored(server, tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(DicomwebError, match="notes.txt cannot be stored: it is not a readable DICOM file"):
        server.store([tmp_path / "notes.txt"])


# ---- credentials ---------------------------------------------------------------------------------------

def test_credentials_come_from_the_environment_or_a_netrc_file(env, orthanc, pacs_study, tmp_path):
    env.setenv(dicomweb.USER_ENV, orthanc.user)
    env.setenv(dicomweb.PASSWORD_ENV, orthanc.password)
    assert pacs_study in {s.study_uid for s in connect(orthanc.url).find_studies({})}
    env.delenv(dicomweb.USER_ENV)
    env.delenv(dicomweb.PASSWORD_ENV)

    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1\n  login {orthanc.user}\n  password {orthanc.password}\n")
    env.setenv("NETRC", str(netrc))
    assert pacs_study in {s.study_uid for s in connect(orthanc.url).find_studies({})}
    netrc.write_text(f"machine pacs.example.org login {orthanc.user} password {orthanc.password}\n")
    with pytest.raises(DicomwebError, match="asks for credentials \\(HTTP 401\\) and none were given"):
        connect(orthanc.url).find_studies({})

    env.setenv(dicomweb.TOKEN_ENV, "not-a-token-orthanc-takes")           # Orthanc takes Basic only
    with pytest.raises(DicomwebError, match=f"refused the credentials from {dicomweb.TOKEN_ENV}"):
        connect(orthanc.url).find_studies({})
    env.delenv(dicomweb.TOKEN_ENV)
    env.setenv(dicomweb.USER_ENV, orthanc.user)
    with pytest.raises(DicomwebError, match=f"{dicomweb.PASSWORD_ENV} is not set"):
        connect(orthanc.url)


def test_a_wrong_password_is_one_line_that_names_no_secret(env, orthanc, caplog):
    secret = "Wr0ng-" + orthanc.password[::-1]
    env.setenv(dicomweb.USER_ENV, orthanc.user)
    env.setenv(dicomweb.PASSWORD_ENV, secret)
    caplog.set_level(logging.DEBUG)
    server = connect(orthanc.url)
    with pytest.raises(DicomwebError) as e:
        server.find_studies({})
    message = str(e.value)
    assert "HTTP 401" in message and f"refused the credentials from {dicomweb.USER_ENV} and {dicomweb.PASSWORD_ENV}" \
        in message and "netrc" in message and "\n" not in message
    assert e.value.__cause__ is None and e.value.__suppress_context__
    for text in (message, repr(server), caplog.text):
        assert secret not in text and orthanc.password not in text


def test_a_url_with_credentials_is_refused_without_repeating_them(env, orthanc):
    url = orthanc.url.replace("http://", f"http://{orthanc.user}:{orthanc.password}@")
    with pytest.raises(DicomwebError) as e:
        connect(url)
    assert "holds a user name or password" in str(e.value) and dicomweb.USER_ENV in str(e.value)
    assert orthanc.password not in str(e.value) and orthanc.url in str(e.value)


# ---- a server that is not there, silent, or not DICOMweb -----------------------------------------------

class _HtmlPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server calls
        body = b"<html><body>Welcome to the hospital intranet</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _unhelpful_server(kind: str, orthanc):
    if kind == "nothing listens":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        yield f"http://127.0.0.1:{port}/dicom-web"
    elif kind == "it never answers":
        with socket.socket() as s:              # the kernel accepts the connection; nobody reads the request
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            yield f"http://127.0.0.1:{s.getsockname()[1]}/dicom-web"
    elif kind == "a web page":
        httpd = http.server.HTTPServer(("127.0.0.1", 0), _HtmlPage)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_port}/dicom-web"
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
    elif kind == "a wrong path":
        yield f"{orthanc.rest}/dicomweb"
    else:                                           # Orthanc's own REST API, not its DICOMweb root
        yield orthanc.rest


@pytest.mark.parametrize("kind, expected", [
    ("nothing listens", "cannot connect to the DICOMweb server at http://127.0.0.1:"),
    ("it never answers", "did not answer within 0.5 s"),
    ("a web page", "did not answer as a DICOMweb server: check that the URL is its DICOMweb root"),
    ("a wrong path", "answered 404 (not found): check that the URL is its DICOMweb root"),
    ("the REST root", "check that the URL is its DICOMweb root"),
])
def test_a_server_that_cannot_answer_is_one_clear_line(server, orthanc, kind, expected, tmp_path):
    with _unhelpful_server(kind, orthanc) as url:
        with pytest.raises(DicomwebError) as e:
            connect(url, timeout_s=0.5).fetch_study("1.2.3", tmp_path / "fetched")
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "fetched").exists()


def test_no_log_line_holds_a_patient_name_or_id(server, pacs_study, study_dir, tmp_path, caplog):
    ds = next(iter(_source(study_dir).values()))
    caplog.set_level(logging.DEBUG)
    server.find_studies(lumbar_mr_filters("20240101", "20241231"))
    server.fetch_study(pacs_study, tmp_path / "fetched")
    assert "GET" in caplog.text                                  # the HTTP layer did log its requests
    for value in (str(ds.PatientName), str(ds.PatientID), str(ds.PatientName).split("^")[0]):
        assert value not in caplog.text
    assert os.environ[dicomweb.PASSWORD_ENV] not in caplog.text
