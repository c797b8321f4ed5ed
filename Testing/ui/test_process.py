"""The background assess process: its command line, its progress lines, a real child process, and Cancel."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from SpineAssistLib.ui.process import (AssessEvent, AssessProcess, SubprocessRunner, assess_command, child_environment,
                                    outcome_of, parse_progress_line, stage_dicom_files)


def test_command_line_runs_the_cli_with_json_progress():
    argv = assess_command("/data/study", "/data/out", device="cpu", sagittal_uid="1.2.3", axial_uid="1.2.4",
                          python="/slicer/bin/PythonSlicer")
    assert argv == ["/slicer/bin/PythonSlicer", "-m", "SpineAssistLib.cli", "assess", "/data/study", "--out",
                    "/data/out", "--device", "cpu", "--sagittal", "1.2.3", "--axial", "1.2.4", "--json-progress"]
    assert "--sagittal" not in assess_command("s", "o")
    assert assess_command("s", "o")[0] == sys.executable  # outside Slicer: this Python
    with pytest.raises(ValueError, match="device must be one of auto, cuda, cpu; got 'gpu'"):
        assess_command("s", "o", device="gpu")


def test_child_finds_this_library_first():
    env = child_environment({"PYTHONPATH": "/elsewhere"})
    lib_parent = str(Path(__file__).resolve().parents[2])
    assert env["PYTHONPATH"].split(os.pathsep) == [lib_parent, "/elsewhere"]
    assert env["PYTHONUNBUFFERED"] == "1"


def test_progress_lines_are_parsed_and_anything_else_is_ignored():
    e = parse_progress_line('{"event": "progress", "stage": "detect", "fraction": 0.25, "message": "sagittal"}\n')
    assert e == AssessEvent("progress", "detect", 0.25, "sagittal")
    assert parse_progress_line(b'{"event": "progress", "stage": "x", "fraction": 7}').fraction == 1.0  # clamped
    assert parse_progress_line('{"event": "progress", "stage": "x", "fraction": "half"}').fraction == 0.0
    done = parse_progress_line('{"event": "done", "out": "/o", "findings": "/o/findings.json", "scene": "/o/scene.mrb"}')
    assert (done.kind, done.out, done.findings, done.scene) == ("done", Path("/o"), Path("/o/findings.json"),
                                                                Path("/o/scene.mrb"))
    assert parse_progress_line('{"event": "error", "message": "no sagittal T2 series"}').message == "no sagittal T2 series"
    for garbage in ("", "WARNING ultralytics: something", "{not json", "[1, 2]", '{"event": "other"}', b"\xff\xfe"):
        assert parse_progress_line(garbage) is None


def test_outcome_from_exit_code_events_and_stderr():
    done = AssessEvent("done", out=Path("/o"), findings=Path("/o/findings.json"), scene=Path("/o/scene.mrb"))
    assert outcome_of(0, [done], "", False).ok
    assert outcome_of(130, [], "", False).status == "cancelled"
    assert outcome_of(-15, [], "", True).status == "cancelled"
    err = outcome_of(2, [AssessEvent("error", message="no axial series")], "spineassist: error: no axial series\n", False)
    assert (err.status, err.message) == ("error", "no axial series")
    assert outcome_of(1, [], "Traceback ...\nValueError: bad\n", False).message == "ValueError: bad"
    assert outcome_of(1, [], "", False).message == "the assessment stopped with exit status 1"
    assert outcome_of(0, [], "", False).message == "the assessment ended without reporting its outputs"


FAKE_ASSESS = r"""
import json, sys
for i, stage in enumerate(["load", "detect", "grade"]):
    print(json.dumps({"event": "progress", "stage": stage, "fraction": (i + 1) / 4, "message": stage}), flush=True)
print("a log line from a library", flush=True)
print("warning on stderr", file=sys.stderr, flush=True)
print(json.dumps({"event": "done", "out": sys.argv[1], "findings": sys.argv[1] + "/findings.json",
                  "scene": sys.argv[1] + "/scene.mrb"}), flush=True)
"""


def test_a_real_child_process_reports_progress_and_its_outputs(tmp_path):
    seen, logs, finished = [], [], []
    job = AssessProcess(on_progress=seen.append, on_log=logs.append, on_finished=finished.append)
    job.start_argv([sys.executable, "-c", FAKE_ASSESS, str(tmp_path)])
    outcome = job.wait_for_done(timeout=20)
    assert outcome.ok and outcome.findings == tmp_path / "findings.json" and outcome.scene == tmp_path / "scene.mrb"
    assert [e.fraction for e in seen] == [0.25, 0.5, 0.75] and [e.stage for e in seen] == ["load", "detect", "grade"]
    assert "a log line from a library" in logs and "warning on stderr" in job.stderr
    assert finished == [outcome] and not job.running


def test_a_user_error_shows_its_message(tmp_path):
    script = ("import json, sys; print(json.dumps({'event': 'error', 'message': 'no sagittal T2 series in STUDY'}));"
              "print('spineassist: error: no sagittal T2 series in STUDY', file=sys.stderr); sys.exit(2)")
    job = AssessProcess()
    job.start_argv([sys.executable, "-c", script])
    outcome = job.wait_for_done(timeout=20)
    assert (outcome.status, outcome.exit_code, outcome.message) == ("error", 2, "no sagittal T2 series in STUDY")


SLEEPER = r"""
import json, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
print(json.dumps({"event": "progress", "stage": "detect", "fraction": 0.1, "message": ""}), flush=True)
time.sleep(60)
"""


def test_cancel_terminates_a_running_child_quickly():
    started = []
    job = AssessProcess(on_progress=started.append)
    job.start_argv([sys.executable, "-c", SLEEPER])
    deadline = time.monotonic() + 15
    while not started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.running
    with pytest.raises(RuntimeError, match="already running"):
        job.start_argv([sys.executable, "-c", "pass"])
    t0 = time.monotonic()
    job.cancel()
    outcome = job.wait_for_done(timeout=10)
    assert outcome.status == "cancelled" and outcome.exit_code == 130 and time.monotonic() - t0 < 5


def test_wait_for_done_times_out_and_a_missing_program_is_an_error(tmp_path):
    job = AssessProcess()
    job.start_argv([sys.executable, "-c", "import time; time.sleep(30)"])
    with pytest.raises(TimeoutError, match="call cancel"):
        job.wait_for_done(timeout=0.2)
    job.cancel()
    assert job.wait_for_done(timeout=10).status == "cancelled"
    missing = AssessProcess(SubprocessRunner())
    missing.start_argv([str(tmp_path / "no-such-python")])
    outcome = missing.wait_for_done(timeout=1)
    assert outcome.status == "error" and "could not start" in outcome.message


def test_staging_links_the_files_into_a_new_folder_and_never_writes_the_source(tmp_path):
    src = tmp_path / "user" / "SAG"
    src.mkdir(parents=True)
    files = []
    for i in range(3):
        f = src / f"IM{i}"
        f.write_bytes(b"DICM" + bytes([i]))
        files.append(f)
    before = sorted(p.name for p in src.iterdir())
    staged = stage_dicom_files([*files, files[0]], tmp_path / "study")   # a duplicate is staged once
    names = sorted(p.name for p in staged.iterdir())
    assert names == ["00000-IM0", "00001-IM1", "00002-IM2"]
    assert (staged / "00001-IM1").read_bytes() == b"DICM\x01"
    assert sorted(p.name for p in src.iterdir()) == before
    with pytest.raises(FileNotFoundError, match="was it moved"):
        stage_dicom_files([src / "gone"], tmp_path / "s2")
    with pytest.raises(ValueError, match="no DICOM files"):
        stage_dicom_files([], tmp_path / "s3")
