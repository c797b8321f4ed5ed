"""``spineassist batch`` over a folder tree on local worker processes, as a user runs it: a worker
killed mid-study loses nothing, a broken study is reported while the others go on, a rerun skips
what is complete, a cancel stops at once, and the summary holds every level."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from SpineAssistLib.batch.jobs import MARK_NAME
from SpineAssistLib.export.outputs import OUTPUT_FILES

from support.batch_archive import BROKEN, GOOD
from support.cli import run_cli

ENV = {"YOLO_OFFLINE": "1"}


def _start(archive, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "SpineAssistLib.cli", "batch", str(archive), "--out", str(out),
                             "--device", "cpu", "--json-progress", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, **ENV})


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob(".spineassist*") if p.name != MARK_NAME)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def test_a_killed_worker_loses_nothing_and_a_broken_study_does_not_stop_the_batch(archive, tmp_path):
    out = tmp_path / "out"
    proc = _start(archive, out, "--workers", "2")
    events, killed = [], None
    try:
        for line in proc.stdout:
            event = json.loads(line)
            events.append(event)
            if event["event"] == "started" and killed is None and event["study"] in GOOD:
                time.sleep(0.5)                    # into its study: loading models, or assessing
                os.kill(event["pid"], signal.SIGKILL)
                killed = event["study"]
        proc.wait(timeout=300)
    finally:
        proc.kill()
    stderr = proc.stderr.read()
    assert proc.returncode == 2, stderr                       # one study failed
    lost = [e for e in events if e["event"] == "lost"]
    assert [e["study"] for e in lost] == [killed] and lost[0]["retry"] and "SIGKILL" in lost[0]["why"]
    final = {e["study"]: e for e in events if e["event"] == "study"}
    assert {k: final[k]["status"] for k in GOOD} == {k: "done" for k in GOOD}
    assert final[BROKEN]["status"] == "failed" and "sagittal" in final[BROKEN]["reason"]
    for key in GOOD:
        assert sorted(p.name for p in (out / key).iterdir() if not p.name.startswith(".")) == sorted(OUTPUT_FILES)
        assert (out / key / MARK_NAME).exists()
    assert _leftovers(out) == []                               # the killed try's staging and lock are gone
    rows = list(csv.DictReader(open(out / "summary.csv", encoding="utf-8")))
    levels = {key: len(json.loads((out / key / "findings.json").read_text())["levels"]) for key in GOOD}
    assert len(rows) == sum(levels.values()) and {r["study"] for r in rows} == set(GOOD)
    failed = list(csv.DictReader(open(out / "failed.csv", encoding="utf-8")))
    assert [f["study"] for f in failed] == [BROKEN]
    log = [json.loads(line) for line in (out / "batch-log.jsonl").read_text().splitlines()]
    assert [e["study"] for e in log if e["event"] == "lost"] == [killed]

    # a rerun: the complete studies are skipped, the broken one is tried again and fails again
    r = run_cli("batch", str(archive), "--out", str(out), "--device", "cpu", "--json-progress", env=ENV)
    assert r.returncode == 2
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[0] == {"event": "batch", "total": 4, "skipped": 3}
    assert [e["study"] for e in events if e["event"] == "started"] == [BROKEN]
    assert "0 assessed, 3 already complete, 1 failed, of 4 studies" in events[-1]["message"]


def test_a_cancel_stops_the_batch_at_once_and_the_rerun_finishes_it(archive, tmp_path):
    out = tmp_path / "out"
    proc = _start(archive, out, "--workers", "2")
    pids = []
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "started":
                pids.append(event["pid"])
                if len(pids) == 2:
                    time.sleep(0.5)
                    t0 = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
                    break
        proc.wait(timeout=60)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 130, proc.stderr.read()
    assert took < 15
    assert not [p for p in pids if _alive(p)]
    assert _leftovers(out) == []
    r = run_cli("batch", str(archive), "--out", str(out), "--device", "cpu", env=ENV)
    assert r.returncode == 2, r.stderr           # the broken study
    assert all((out / key / MARK_NAME).exists() for key in GOOD)


def test_bad_arguments_are_one_line(tmp_path, archive):
    r = run_cli("batch", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "give either a FOLDER" in r.stderr
    r = run_cli("batch", str(archive), "--out", str(tmp_path / "o"), "--store")
    assert r.returncode == 2 and "--store sends the SEG and SR back to a DICOMweb server" in r.stderr
    r = run_cli("batch", str(archive), "--out", str(archive / "siteA" / "case1" / "out"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
