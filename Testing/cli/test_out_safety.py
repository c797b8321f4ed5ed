"""``spineassist assess`` as a hostile user tries it: OUT problems found before any model runs (one
line, exit 2), signals at every stage (exit 130 at once, the previous outputs untouched), a killed
run (no orphan writers; the next run cleans up), a full or read-only disk (real tmpfs mounts in a
private mount namespace), two runs into one OUT, and reader/model disagreements in --json-progress.

The previous outputs are the oracle pipeline's (fixture ``assessed``): a complete set of the same study.
"""

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli import run_cli

from SpineAssistLib.export.outputs import OUTPUT_FILES
from SpineAssistLib.findings import Assessment, PfirrmannGrade

ENV = {"YOLO_OFFLINE": "1"}
CANCEL_WITHIN_S = 0.5


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _one_line_error(r, exit_code=2) -> str:
    assert r.returncode == exit_code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("spineassist: "), r.stderr
    return lines[-1]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _previous_set(assessed, folder: Path) -> Path:
    shutil.copytree(assessed[1], folder)
    return folder


# ---- OUT problems: found before the models run --------------------------------------------------------

def _bad_findings(kind):
    def make(out: Path):
        out.mkdir()
        if kind == "folder":
            (out / "findings.json").mkdir()
        else:
            (out / "findings.json").write_text({"list": "[]", "null": "null",
                                                "levels": '{"schema_version": 2, "levels": "L4-L5"}'}[kind])
    return make


@pytest.mark.parametrize("case, expected", [
    ("a file", "is a file, not a folder"),
    ("inside the study", "inside the study folder"),
    ("findings []", "not a findings file"),
    ("findings null", "not a findings file"),
    ("findings levels a string", "not a findings file"),
    ("findings a folder", "is not a file"),
    ("no resources", "SPINEASSIST_RESOURCES"),
])
def test_out_problems_are_one_line_and_exit_2_before_any_model_runs(study_dir, tmp_path, case, expected):
    out, env = tmp_path / "out", dict(ENV)
    if case == "a file":
        out.write_text("a file")
    elif case == "inside the study":
        out = study_dir / "out"
    elif case == "no resources":
        env["SPINEASSIST_RESOURCES"] = str(tmp_path / "missing")
    else:
        _bad_findings({"findings []": "list", "findings null": "null", "findings levels a string": "levels",
                       "findings a folder": "folder"}[case])(out)
    before = sorted(p.name for p in study_dir.iterdir())
    r = run_cli("assess", str(study_dir), "--out", str(out), "--device", "cpu", "--json-progress", env=env)
    assert expected in _one_line_error(r)
    stages = {e.get("stage") for e in _events(r.stdout) if e["event"] == "progress"}
    assert not stages & {"sagittal models", "levels", "axial models", "outputs"}, stages
    assert sorted(p.name for p in study_dir.iterdir()) == before       # the input was not written to


# ---- a real full or read-only disk ---------------------------------------------------------------------

def _in_mount_namespace(mount_script: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run ``spineassist *args`` after ``mount_script`` in a private user and mount namespace: the
    mounts vanish with the process, whatever happens."""
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "SpineAssistLib.cli", *args])
    return subprocess.run(["unshare", "-rm", "sh", "-ec", f"{mount_script}\nexec {command}"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **ENV})


def test_a_read_only_out_is_refused_before_any_model_runs(study_dir, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for out in (mnt, mnt / "new"):                      # OUT itself read-only; OUT to be made in a read-only folder
        r = _in_mount_namespace(f"mount -t tmpfs -o size=1m tmpfs {mnt}\nmount -o remount,ro {mnt}",
                                ["assess", str(study_dir), "--out", str(out), "--device", "cpu", "--json-progress"])
        assert "read-only file system" in _one_line_error(r)
        assert not [e for e in _events(r.stdout) if e.get("stage") == "sagittal models"]


def test_a_full_disk_leaves_the_previous_outputs_as_they_were(study_dir, assessed, tmp_path):
    """The outputs do not fit beside the previous set: one line, exit 2, the previous set intact."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    previous = _previous_set(assessed, tmp_path / "previous")
    size_kb = sum(p.stat().st_size for p in previous.iterdir()) // 1024 + 2048
    script = (f"mount -t tmpfs -o size={size_kb}k tmpfs {mnt}\ncp -a {previous}/. {mnt}/\n"
              f"{shlex.quote(sys.executable)} -m SpineAssistLib.cli assess {study_dir} --out {mnt} --device cpu "
              f"|| echo rc=$? >&2\n"
              f"sha256sum {mnt}/* > {tmp_path}/after.txt\nls -A {mnt} > {tmp_path}/listing.txt")
    r = subprocess.run(["unshare", "-rm", "sh", "-ec", script], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **ENV})
    assert "no space left on the device" in r.stderr and "Traceback" not in r.stderr and "rc=2" in r.stderr, r.stderr
    listing = (tmp_path / "listing.txt").read_text().split()
    assert sorted(listing) == sorted(OUTPUT_FILES)      # no staging, no lock file left
    after = {Path(line.split()[1]).name: line.split()[0] for line in (tmp_path / "after.txt").read_text().splitlines()}
    assert after == _digest(previous)


@pytest.mark.parametrize("size, expected", [
    ("32k", "writing findings.json into .* failed \\(no space left on the device\\)"),   # not even findings.json
    ("4m", "Slicer could not write the scene .* MB are free there: free some space"),    # all but the scene
])
def test_a_disk_too_small_is_one_line_without_slicer_log_lines(study_dir, tmp_path, size, expected):
    import re

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = _in_mount_namespace(f"mount -t tmpfs -o size={size} tmpfs {mnt}",
                            ["assess", str(study_dir), "--out", str(mnt), "--device", "cpu"])
    assert re.search(expected, _one_line_error(r)), r.stderr
    assert "\x1b[" not in r.stderr and "ERR|" not in r.stderr            # VTK's coloured log stays out of sight


# ---- signals -------------------------------------------------------------------------------------------

def _default_sigint() -> None:
    # A suite started in the background (``make test &``, nohup) inherits SIGINT ignored, and Python
    # keeps an ignored SIGINT ignored: the run under test gets Ctrl-C as a terminal would send it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(study_dir, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "SpineAssistLib.cli", "assess", str(study_dir), "--out", str(out),
                             "--device", "cpu", "--json-progress", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, **ENV},
                            preexec_fn=_default_sigint)


def _wait_for_stage(proc, stage: str) -> None:
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line).get("stage") == stage:
            return
    raise AssertionError(f"the run ended before stage {stage!r}: {proc.stderr.read()}")


def _writer_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in children.read_text().split()] if children.exists() else []


@pytest.mark.parametrize("stage, sig", [
    ("loading", signal.SIGTERM), ("sagittal models", signal.SIGTERM), ("levels", signal.SIGINT),
    ("axial models", signal.SIGTERM), ("outputs", signal.SIGTERM), ("outputs", signal.SIGINT),
])
def test_a_signal_at_any_stage_stops_the_run_at_once_and_keeps_the_previous_outputs(study_dir, assessed, tmp_path,
                                                                                     stage, sig):
    """Sent to the whole process group, as a terminal's Ctrl-C or a scheduler's kill does."""
    out = _previous_set(assessed, tmp_path / "out")
    before = _digest(out)
    proc = _start(study_dir, out)
    _wait_for_stage(proc, stage)
    writers = _writer_pids(proc.pid)
    sent = time.monotonic()
    os.killpg(proc.pid, sig)
    proc.wait(30)
    took = time.monotonic() - sent
    stderr = proc.stderr.read()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert took < CANCEL_WITHIN_S, f"stopped {took:.2f} s after the signal"
    assert _digest(out) == before                      # the previous set, and nothing else
    assert not [p for p in writers if Path(f"/proc/{p}").exists() and "zombie" not in _state(p)]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_a_killed_run_leaves_no_writers_and_the_next_run_cleans_up(study_dir, assessed, tmp_path):
    out = _previous_set(assessed, tmp_path / "out")
    proc = _start(study_dir, out)
    _wait_for_stage(proc, "outputs")
    time.sleep(0.3)                                     # the writers are at work in the staging folder
    writers = _writer_pids(proc.pid)
    assert writers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in writers):
        time.sleep(0.05)
    assert not [p for p in writers if Path(f"/proc/{p}").exists() and "zombie" not in _state(p)]
    assert "Traceback" not in proc.stderr.read()
    r = run_cli("assess", str(study_dir), "--out", str(out), "--device", "cpu", env=ENV)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)


# ---- two runs, one OUT ---------------------------------------------------------------------------------

def test_two_runs_into_one_out_write_one_after_the_other(study_dir, tmp_path):
    out = tmp_path / "out"
    first, second = _start(study_dir, out), _start(study_dir, out)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, [e for _, e in outs]
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    done = [_events(o)[-1] for o, _ in outs]
    assert all(d["event"] == "done" for d in done)
    kept = Assessment.load(out / "findings.json")
    # the set in OUT is one run's: its findings.json and the SR written beside it carry the same time
    import pydicom
    sr = pydicom.dcmread(out / "sr.dcm")
    assert kept.created[:10].replace("-", "") == sr.ContentDate


# ---- what the Slicer panel is told ---------------------------------------------------------------------

def test_json_progress_reports_where_the_reader_and_the_new_model_disagree(study_dir, assessed, tmp_path):
    out = _previous_set(assessed, tmp_path / "out")
    a = Assessment.load(out / "findings.json")
    level = next(lv for lv in a.levels if lv.pfirrmann.model is not None)
    model = level.pfirrmann.model.grade
    level.pfirrmann.correct(PfirrmannGrade(1 if model >= 3 else 5), reader="dr.test")
    a.save(out / "findings.json")
    r = run_cli("assess", str(study_dir), "--out", str(out), "--device", "cpu", "--json-progress", env=ENV)
    assert r.returncode == 0, r.stderr
    events = _events(r.stdout)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    done = events[-1]
    assert done["event"] == "done" and any(level.name in d for d in done["disagreements"]), done
    assert any("reader and new model disagree" in w and level.name in w for w in warnings), warnings
    kept = Assessment.load(out / "findings.json").level(level.name).pfirrmann
    assert kept.corrected and kept.value.grade == (1 if model >= 3 else 5)


def test_series_into_a_closed_pipe_is_quiet(study_dir):
    command = f"{shlex.quote(sys.executable)} -m SpineAssistLib.cli series {shlex.quote(str(study_dir))} | true"
    r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, env={**os.environ, **ENV})
    assert r.returncode == 0 and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
