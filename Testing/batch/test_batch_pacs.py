"""``spineassist batch`` from a real PACS (Orthanc with DICOMweb) on Ray actors (a local Ray head with
two workers): the studies a date-range query finds are fetched, assessed and their SEG and SR stored
back once, even when a worker is killed mid-study and when the batch is run again; no password or
patient name is printed."""

import json
import os
import signal
import subprocess
import sys
import time

import pydicom
import pytest

from SpineAssistLib.batch.jobs import MARK_NAME
from SpineAssistLib.dicom.dicomweb import connect

from support.batch_archive import GOOD
from support.orthanc import orthanc_server
from support.ray_head import ray_head

ENV = {"YOLO_OFFLINE": "1"}


@pytest.fixture(scope="module")
def pacs(archive, tmp_path_factory):
    """Orthanc holding the archive's three phantom studies (and the image of no spine)."""
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        server.upload(sorted(p for p in archive.rglob("*.dcm")))
        yield server


def _uids(archive):
    return {key: pydicom.dcmread(next((archive / key.replace("__", "/")).rglob("*.dcm")),
                                 stop_before_pixels=True).StudyInstanceUID for key in GOOD}


def _count(pacs, study_uid, modality):
    return sum(int(s.get("00201209", {}).get("Value", [0])[0])
               for s in pacs.qido(f"studies/{study_uid}/series?Modality={modality}&includefield=00201209"))


def _batch(pacs, address, out, env):
    return [sys.executable, "-m", "SpineAssistLib.cli", "batch", "--dicomweb", pacs.url, "--date-from", "19000101",
            "--out", str(out), "--store", "--engine", "ray", "--workers", "2", "--address", address,
            "--device", "cpu", "--json-progress"]


def test_a_ray_batch_from_the_pacs_stores_each_seg_and_sr_once_despite_a_killed_worker(pacs, archive, tmp_path,
                                                                                       monkeypatch):
    secrets = {"SPINEASSIST_DICOMWEB_USER": pacs.user, "SPINEASSIST_DICOMWEB_PASSWORD": pacs.password}
    env = {**os.environ, **ENV, **secrets}
    out = tmp_path / "out"
    uids = _uids(archive)
    with ray_head(secrets) as address:
        proc = subprocess.Popen(_batch(pacs, address, out, env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, start_new_session=True)
        events, killed = [], None
        try:
            for line in proc.stdout:
                event = json.loads(line)
                events.append(event)
                if event["event"] == "started" and killed is None:
                    time.sleep(1.0)                     # into its study: fetching, loading models or assessing
                    os.kill(event["pid"], signal.SIGKILL)
                    killed = event["study"]
            proc.wait(timeout=400)
        finally:
            proc.kill()
        stderr = proc.stderr.read()
        assert proc.returncode == 0, stderr
        assert [e["study"] for e in events if e["event"] == "lost"] == [killed]
        done = {e["study"] for e in events if e["event"] == "study" and e["status"] == "done"}
        assert done == set(uids.values())              # the query found the three lumbar MR studies, not the knee
        for uid in uids.values():
            assert _count(pacs, uid, "SEG") == 1 and _count(pacs, uid, "SR") == 1, uid
            mark = json.loads((out / uid / MARK_NAME).read_text())
            assert mark["stored"] == ["seg.dcm", "sr.dcm"]
        assert not (out / ".spineassist-fetch").exists() or not any((out / ".spineassist-fetch").iterdir())

        # the SEG and SR in the PACS reference the series they were made from, which the PACS holds
        for name, value in secrets.items():
            monkeypatch.setenv(name, value)
        fetched = connect(pacs.url).fetch_study(uids[GOOD[0]], tmp_path / "back", modalities=("SEG",))
        seg = pydicom.dcmread(next(fetched.rglob("*.dcm")))
        sources = {item["0020000E"]["Value"][0] for item in pacs.qido(f"studies/{uids[GOOD[0]]}/series?Modality=MR")}
        referenced = {r.SeriesInstanceUID for r in seg.ReferencedSeriesSequence}
        assert referenced and referenced <= sources

        # run again: everything complete and stored; nothing is sent twice
        again = subprocess.run(_batch(pacs, address, out, env), capture_output=True, text=True, env=env, timeout=300)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout.splitlines()[0]) == {"event": "batch", "total": 3, "skipped": 3}
        for uid in uids.values():
            assert _count(pacs, uid, "SEG") == 1 and _count(pacs, uid, "SR") == 1
    printed = proc.stdout.read() + stderr + again.stdout + again.stderr + "".join(json.dumps(e) for e in events)
    assert pacs.password not in printed and "PHANTOM^SYNTHETIC" not in printed
