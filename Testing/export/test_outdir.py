"""The output folder (export.outdir): checked before the models run, locked while written, its set
of files replaced as one, and what a killed run left finished or removed by the next."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from SpineAssistLib.export import outdir
from SpineAssistLib.export.outdir import OutDirError, OutLock, check_out_dir, commit, recover

NAMES = ("findings.json", "report.html", "seg.dcm")


def _set(folder, tag, names=NAMES):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(f"{tag} {name}")


def _contents(out):
    return {p.name: p.read_text() for p in out.iterdir()}


# ---- checks ------------------------------------------------------------------------------------------

def test_a_file_as_out_is_refused(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(OutDirError, match="is a file, not a folder"):
        check_out_dir(tmp_path / "out")


@pytest.mark.parametrize("inside", [".", "sub", "sub/deeper"])
def test_out_inside_the_study_folder_is_refused(tmp_path, inside):
    study = tmp_path / "study"
    study.mkdir()
    with pytest.raises(OutDirError, match="inside the study folder"):
        check_out_dir(study / inside, [study])
    assert sorted(p.name for p in study.iterdir()) == []       # nothing was made in the input


def test_a_missing_out_is_created_or_only_checked(tmp_path):
    assert check_out_dir(tmp_path / "a" / "b", create=False) == (tmp_path / "a" / "b").resolve()
    assert not (tmp_path / "a").exists()
    assert check_out_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutDirError, match="is a file"):
        check_out_dir(tmp_path / "f" / "out", create=False)


# ---- the lock ----------------------------------------------------------------------------------------

def test_a_second_writer_is_told_who_holds_the_folder(tmp_path):
    with OutLock(tmp_path, command="spineassist assess"):
        with pytest.raises(OutDirError, match=rf"being written by process {os.getpid()} .*spineassist assess"):
            OutLock(tmp_path, wait_s=0).acquire()
    assert not (tmp_path / outdir.LOCK_NAME).exists()          # a writer leaves only the outputs behind


def test_a_waiting_writer_gets_the_lock_when_the_holder_lets_go(tmp_path):
    first = OutLock(tmp_path).acquire()
    told, got = [], []

    def second():
        with OutLock(tmp_path, wait_s=10, on_wait=told.append):
            got.append(time.monotonic())

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.3)
    assert got == [] and len(told) == 1 and "being written by process" in told[0]
    released = time.monotonic()
    first.release()
    t.join(5)
    assert got and got[0] - released < 1.0


def test_waiting_for_the_lock_can_be_cancelled(tmp_path):
    from SpineAssistLib.errors import Cancelled
    from SpineAssistLib.pipeline.progress import CancelToken

    token = CancelToken()
    with OutLock(tmp_path):
        threading.Timer(0.2, token.cancel).start()
        t0 = time.monotonic()
        with pytest.raises(Cancelled):
            OutLock(tmp_path, wait_s=30, check=token.check).acquire()
        assert time.monotonic() - t0 < 1.0


def test_shared_readers_exclude_a_writer_but_not_each_other(tmp_path):
    with OutLock(tmp_path, shared=True), OutLock(tmp_path, shared=True, wait_s=0):
        with pytest.raises(OutDirError):
            OutLock(tmp_path, wait_s=0).acquire()
    with OutLock(tmp_path, wait_s=0):
        pass


def test_a_killed_holder_leaves_the_folder_free(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from SpineAssistLib.export.outdir import OutLock; "
        f"OutLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutDirError, match=f"process {holder.pid}"):
            OutLock(tmp_path, wait_s=0).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with OutLock(tmp_path, wait_s=2):      # the kernel let go with the process
            pass
    finally:
        holder.kill()


# ---- one set -----------------------------------------------------------------------------------------

def test_commit_replaces_the_whole_set_and_removes_what_the_new_one_lacks(tmp_path):
    out = tmp_path / "out"
    _set(out, "old")
    (out / "notes.txt").write_text("the reader's")
    with OutLock(out):                                          # taken first: it removes stale staging
        staging = outdir.staging_path(out)
        _set(staging, "new", NAMES[:2])                         # no SEG this time
        commit(out, staging, NAMES[:2], NAMES)
    assert _contents(out) == {"findings.json": "new findings.json", "report.html": "new report.html",
                              "notes.txt": "the reader's"}


@pytest.mark.parametrize("crash_after", range(-1, 5))
def test_a_commit_cut_off_at_any_move_is_finished_by_the_next_run(tmp_path, monkeypatch, crash_after):
    """Cut off before its journal the old set stands; after it, at any of the five moves, the next
    run that takes the lock finishes the new one."""
    out = tmp_path / "out"
    _set(out, "old")
    staging = outdir.staging_path(out)
    _set(staging, "new", NAMES[:2])
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append((src, dst))
        # the journal's own rename is the first: cut off before it, the old set stands
        if len(calls) > crash_after + 1:
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(outdir.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        commit(out, staging, NAMES[:2], NAMES)
    monkeypatch.setattr(outdir.os, "replace", real_replace)
    with OutLock(out):                                          # the next run takes the lock: it recovers
        pass
    if crash_after < 0:
        assert _contents(out) == {n: f"old {n}" for n in NAMES}
    else:
        assert _contents(out) == {"findings.json": "new findings.json", "report.html": "new report.html"}


def test_a_run_killed_before_its_journal_leaves_the_old_set_and_its_staging_is_removed(tmp_path):
    out = tmp_path / "out"
    _set(out, "old")
    staging = outdir.staging_path(out)
    _set(staging, "new")
    (out / ".findings.json.x1y2.partial").write_text("half")
    check_out_dir(out)                                          # nobody holds it: cleaned up at once
    assert _contents(out) == {n: f"old {n}" for n in NAMES}


def test_recover_reports_what_it_did_and_ignores_a_journal_that_is_not_ours(tmp_path):
    (tmp_path / outdir.JOURNAL_NAME).write_text("{not json")
    (tmp_path / f"{outdir.STAGING_PREFIX}abc").mkdir()
    done = recover(tmp_path)
    assert any("removed .spineassist-staging-abc" in d for d in done)
    assert list(tmp_path.iterdir()) == []


def test_journal_lists_the_new_files_and_those_to_remove(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _set(out, "old")
    staging = outdir.staging_path(out)
    _set(staging, "new", NAMES[:1])
    seen = {}
    real = outdir._roll_forward

    def spy(o, journal):
        seen.update(json.loads((o / outdir.JOURNAL_NAME).read_text()))
        real(o, journal)

    monkeypatch.setattr(outdir, "_roll_forward", spy)
    commit(out, staging, NAMES[:1], NAMES)
    assert seen["files"] == ["findings.json"] and seen["remove"] == ["report.html", "seg.dcm"]
    assert not (out / outdir.JOURNAL_NAME).exists()


def test_a_cancel_while_the_lock_recovers_lets_go_of_it_and_leaves_no_lock_file(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _set(out, "old")

    def cancelled(_out):
        raise KeyboardInterrupt("cancelled")

    monkeypatch.setattr(outdir, "recover", cancelled)
    with pytest.raises(KeyboardInterrupt):
        with OutLock(out):
            pass
    assert not (out / outdir.LOCK_NAME).exists()
    monkeypatch.undo()
    with OutLock(out, wait_s=0):                                # not held by the cancelled one
        pass
    assert _contents(out) == {n: f"old {n}" for n in NAMES}


def test_a_cancel_during_the_write_probe_leaves_no_probe_behind(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _set(out, "old")
    real_close = os.close

    def close(fd):
        real_close(fd)
        raise KeyboardInterrupt("cancelled")     # as a signal handler run just after the probe was made

    monkeypatch.setattr(outdir.os, "close", close)
    with pytest.raises(KeyboardInterrupt):
        check_out_dir(out)
    monkeypatch.undo()
    assert _contents(out) == {n: f"old {n}" for n in NAMES}


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, as an interactive run has it, for the test's duration (a suite
    started in the background inherits SIGINT ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_signal_taken_by_another_thread_waits_for_the_held_block(python_sigint):
    """The kernel may hand SIGINT to any thread (ONNX Runtime's): Python then runs the handler in the
    main thread at its next step. Inside ``signals_held`` that step must not be interrupted."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, args=(10,))
    other.start()
    finished = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with outdir.signals_held():
                signal.pthread_kill(other.ident, signal.SIGINT)
                time.sleep(0.05)                 # Python steps on: the handler is due by now
                finished.append(True)
        assert finished == [True]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        stop.set()
        other.join()
