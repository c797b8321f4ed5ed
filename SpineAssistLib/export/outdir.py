"""The output folder OUT: checked before any model runs, locked while written, its set of files replaced as one.

A reader relies on three promises about OUT:

- **One set.** findings.json, findings.csv, report.html, seg.dcm, sr.dcm and scene.mrb always come
  from one run. A new set is written into a staging folder inside OUT; when it is complete a
  journal (``.spineassist-commit.json``) naming the new files is written atomically, the previous
  files are moved aside, the new ones moved in, and only then is the journal removed and the
  previous set deleted. A run killed at any point leaves either the old set or, once the journal
  exists, a commit that the next opener of OUT finishes (``recover``): OUT never stays mixed.
  Readers that take the shared lock (``OutLock(out, shared=True)``) never see the short moment
  in which the files are being moved.
- **One writer.** ``OutLock`` is an advisory lock (``flock``) on ``OUT/.spineassist.lock``, held by
  a run while it writes its outputs and by a reader saving corrections. The kernel releases it
  when its holder dies, so a killed run never leaves OUT locked; the file records who holds it
  (process, host, command, since when) so a second run can say whom it waits for.
- **No surprises.** ``check_out_dir`` runs before the models: OUT must be a folder (or creatable),
  writable, outside the study folder (the input is never written to), and its findings.json, if
  any, readable (it may hold a reader's corrections, which are never overwritten blindly).

Staging and previous-set folders left by a killed run are removed by the next run that takes the lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from SpineAssistLib.errors import SpineAssistError

LOCK_NAME = ".spineassist.lock"
JOURNAL_NAME = ".spineassist-commit.json"
STAGING_PREFIX = ".spineassist-staging-"
PREVIOUS_PREFIX = ".spineassist-previous-"
PROBE_PREFIX = ".spineassist-probe-"
DEFAULT_LOCK_WAIT_S = 120.0     # an output stage takes seconds; a holder this slow is stuck or a reader's editor
LOCK_POLL_S = 0.05


class OutDirError(SpineAssistError):
    """OUT cannot be used (a file, read-only, inside the input, full, locked too long)."""


# ---- checks before the models run ------------------------------------------------------------------

def check_out_dir(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (), *,
                  create: bool = True) -> Path:
    """Return OUT resolved, created if missing (``create``; else only checked that it can be), after
    checking it can take an assessment's outputs.

    Raises ``OutDirError`` with what to do when OUT is a file, is inside (or is) one of ``inputs``
    (the study folders, never written to), or cannot be written. Stale staging from a killed run
    is cleaned up when no other run holds OUT.
    """
    path = Path(out).expanduser()
    resolved = path.resolve()
    for inp in inputs:
        src = Path(inp).expanduser().resolve()
        if resolved == src or src in resolved.parents:
            raise OutDirError(f"the output folder {path} is inside the study folder {inp}; SpineAssist never writes "
                              f"into its input (a rerun would also read its own SEG and SR as series): choose an "
                              f"--out folder outside {inp}")
    if resolved.exists() and not resolved.is_dir():
        raise OutDirError(f"the output folder {path} is a file, not a folder: give a folder path "
                          f"(created if missing), or move the file aside")
    if not create and not resolved.exists():
        ancestor = next(a for a in resolved.parents if a.exists())
        if not ancestor.is_dir():
            raise OutDirError(f"the output folder {path} cannot be made: {ancestor} is a file; choose another --out folder")
        _check_writable(ancestor, ancestor)
        return resolved
    try:
        resolved.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutDirError(f"the output folder {path} cannot be made: a file stands in its path; "
                          f"choose another --out folder") from None
    except OSError as e:
        raise OutDirError(f"the output folder {path} cannot be made ({_os_reason(e)}); "
                          f"choose a folder you can write to") from None
    _check_writable(resolved, path)
    if _leftovers(resolved):
        with contextlib.suppress(OutDirError):      # another run holds it: that run (or the next) cleans up
            with OutLock(resolved, wait_s=0):
                pass
    return resolved


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, then act on them; in the main thread only.

    Two layers, because blocking alone is not enough: the kernel may deliver a signal to any of the
    process's threads (ONNX Runtime's, torch's), and Python then runs the handler in the main thread
    at its next step, wherever that is. So the Python handlers are swapped for one that only notes
    the signal, and the original handler runs when the block is left. The signals are also blocked
    in this thread, so a process forked inside the block starts with them blocked (it unblocks them
    once it has its own handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous: dict[int, Any] = {}
    mask = None

    def note(signum: int, _frame: Any) -> None:
        noted.append(signum)

    try:
        for sig in HELD_SIGNALS:
            previous[sig] = signal.signal(sig, note)
        if hasattr(signal, "pthread_sigmask"):
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(HELD_SIGNALS))
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(noted):      # each held signal acted on once, as it would have been
            handler = previous.get(sig)
            if callable(handler):
                handler(sig, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(sig)


def _check_writable(resolved: Path, shown: Path) -> None:
    # a real write: permission bits say nothing for root or on a read-only mount
    try:
        # a cancel between making and removing it would leave the probe in OUT: signals are held, and a
        # handler already due when they were (Python runs it at its next step) still finds the finally,
        # which knows the name before the file exists
        probe = resolved / f"{PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        with signals_held():
            try:
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            finally:
                probe.unlink(missing_ok=True)
    except OSError as e:
        raise OutDirError(f"cannot write into the output folder {shown} ({_os_reason(e)}); "
                          f"choose a folder you can write to") from None


def _errno_of(e: BaseException) -> int | None:
    """The errno behind ``e``: libraries re-raise OSErrors as new ones that keep only the text
    (pydicom adds the tag being written), so the causes and the text are looked at too."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    match = re.search(r"\[Errno (\d+)\]", str(e))
    return int(match.group(1)) if match else None


def _os_reason(e: OSError) -> str:
    reasons = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.ENOTDIR: "a file stands in the path",
               errno.EISDIR: "a folder stands where a file is expected", errno.ENAMETOOLONG: "the name is too long"}
    code = _errno_of(e)
    if code in reasons:
        return reasons[code]
    if code:
        return os.strerror(code)
    return e.strerror or (str(e).strip().splitlines() or [type(e).__name__])[0]


def os_error_message(e: OSError, out: Path, what: str) -> str:
    """Return one line saying why writing ``what`` into ``out`` failed and what to do."""
    code = _errno_of(e)
    if code in (errno.ENOSPC, errno.EDQUOT):
        todo = "free some space or choose an --out folder on another disk"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        todo = "choose an --out folder you can write to"
    else:
        todo = "check the output folder and run again"
    return f"writing {what} into {out} failed ({_os_reason(e)}): {todo}; the outputs already in {out} are unchanged"


# ---- the lock ----------------------------------------------------------------------------------------

class OutLock:
    """An advisory lock on OUT: exclusive for a writer, shared for a reader.

    ``wait_s``: how long to wait for another holder (0: fail at once); ``on_wait`` is told once,
    with a line naming the holder, when the lock is busy; ``check`` is called while waiting (a
    cancel token's ``check``). The lock file stays in OUT: removing it would let two runs lock two
    different files of one name.
    """

    def __init__(self, out: str | os.PathLike[str], *, shared: bool = False, wait_s: float = DEFAULT_LOCK_WAIT_S,
                 on_wait: Callable[[str], None] | None = None, check: Callable[[], None] = lambda: None,
                 command: str | None = None) -> None:
        self.out = Path(out)
        self.shared = shared
        self.wait_s = wait_s
        self.on_wait = on_wait
        self.check = check
        self.command = command if command is not None else _command_line()
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.out / LOCK_NAME

    def acquire(self) -> "OutLock":
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            # signals wait while a lock file is opened and locked, so a cancel never strands one in OUT
            with signals_held():
                if self._lock_once():
                    break
            holder = holder_of(self.out)
            if time.monotonic() >= deadline:
                raise OutDirError(f"the output folder {self.out} is being written by {holder}"
                                  f"{f' (waited {self.wait_s:.0f} s)' if self.wait_s else ''}; wait for it "
                                  f"to finish, or choose another --out folder")
            if not told and self.on_wait is not None:
                self.on_wait(f"waiting for {self.out}: it is being written by {holder}")
                told = True
            self.check()
            time.sleep(LOCK_POLL_S)
        try:
            if not self.shared:
                _write_holder(self._fd, self.command)
                recover(self.out)
        except BaseException:       # a cancel during recovery: __exit__ will not run, so let go here
            self.release()
            raise
        return self

    def _lock_once(self) -> bool:
        """Try once to lock the file at the path; on success keep its descriptor in ``self._fd``."""
        fd = self._open()
        try:
            while _try_lock(fd, self.shared):
                if _same_file(fd, self.path):
                    self._fd, fd = fd, -1
                    return True
                # its holder removed the file as it let go: lock the file now at the path instead
                _unlock(fd)
                os.close(fd)
                fd = -1
                fd = self._open()
            return False
        finally:
            if fd >= 0:
                os.close(fd)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutDirError(f"cannot lock the output folder {self.out} ({_os_reason(e)}); "
                              f"choose a folder you can write to") from None

    def release(self) -> None:
        """Let go; a writer removes the lock file first, so OUT holds only the outputs afterwards
        (a waiting run then sees the file gone and locks the next one)."""
        if self._fd is None:
            return
        with signals_held():
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                if not self.shared:
                    self.path.unlink(missing_ok=True)
                _unlock(fd)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "OutLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _command_line() -> str:
    # the subcommand, never its arguments: those name folders, which may name patients
    argv = [Path(sys.argv[0]).name] + [a for a in sys.argv[1:2] if not a.startswith("-")] if sys.argv else ["python"]
    return " ".join(argv)


def _write_holder(fd: int, command: str) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with contextlib.suppress(OSError):       # who holds it is a courtesy; the lock itself is taken
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def holder_of(out: Path) -> str:
    """Return who holds OUT's lock, in words, as far as its lock file says."""
    try:
        info = json.loads((out / LOCK_NAME).read_text() or "{}")
        return (f"process {info['pid']} on {info['host']} ({info['command']}, since {info['since']})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


if sys.platform == "win32":     # pragma: no cover - Windows: one byte locked, no shared mode
    import msvcrt

    def _try_lock(fd: int, shared: bool) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int, shared: bool) -> bool:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


# ---- staging and commit --------------------------------------------------------------------------------

def staging_path(out: Path) -> Path:
    """Name a fresh staging folder inside ``out`` (the same file system, so the moves are renames).

    Only the name: the caller makes it inside the ``try`` whose ``finally`` removes it, so a cancel
    at any point between the two never leaves a folder the caller did not know about.
    """
    return out / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


def commit(out: Path, staging: Path, written: Iterable[str], managed: Iterable[str]) -> None:
    """Replace OUT's set of ``managed`` files with the ``written`` ones in ``staging``, as one set.

    Call with the lock held. A ``managed`` file not ``written`` this time (an output this result
    cannot give) is removed, so an old SEG never stands beside new findings.
    """
    written = [n for n in written]
    for name in written:
        _fsync_file(staging / name)
    _fsync_dir(staging)
    previous = Path(tempfile.mkdtemp(prefix=PREVIOUS_PREFIX, dir=out))
    journal = {"staging": staging.name, "previous": previous.name, "files": written,
               "remove": [n for n in managed if n not in written]}
    tmp = out / f".{JOURNAL_NAME}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(journal, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / JOURNAL_NAME)       # from here on the new set is committed: recovery rolls forward
    _fsync_dir(out)
    _roll_forward(out, journal)


def recover(out: Path) -> list[str]:
    """Finish a commit a killed run left (its journal), then remove stale staging and previous-set
    folders; return what was done. Call with the lock held."""
    done: list[str] = []
    journal_path = out / JOURNAL_NAME
    if journal_path.is_file():
        try:
            journal = json.loads(journal_path.read_text(encoding="utf-8"))
            _roll_forward(out, journal)
            done.append(f"finished writing the outputs of an interrupted run ({', '.join(journal['files'])})")
        except (OSError, ValueError, KeyError, TypeError):
            # a journal is written whole (rename) or not at all; one that cannot be read was not ours
            journal_path.unlink(missing_ok=True)
    for stale in _leftovers(out):
        if stale.name == JOURNAL_NAME:
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        done.append(f"removed {stale.name}, left by a run that was stopped")
    return done


def _leftovers(out: Path) -> list[Path]:
    """What a stopped run can leave in OUT: its journal, staging and previous-set folders, temporary files."""
    return sorted(p for pattern in (JOURNAL_NAME, f"{STAGING_PREFIX}*", f"{PREVIOUS_PREFIX}*", f".{JOURNAL_NAME}.*.tmp",
                                    ".*.partial", f"{PROBE_PREFIX}*") for p in out.glob(pattern))


def _roll_forward(out: Path, journal: dict[str, Any]) -> None:
    staging, previous = out / journal["staging"], out / journal["previous"]
    previous.mkdir(exist_ok=True)
    files, remove = list(journal["files"]), list(journal["remove"])
    # every move is repeatable: a run killed half way through is finished by the next with the same journal
    for name in files + remove:
        moving_in = name in files and (staging / name).exists()
        if (out / name).exists() and (moving_in or name in remove) and not (previous / name).exists():
            os.replace(out / name, previous / name)
    for name in files:
        if (staging / name).exists():
            os.replace(staging / name, out / name)
    _fsync_dir(out)
    (out / JOURNAL_NAME).unlink(missing_ok=True)
    _fsync_dir(out)
    shutil.rmtree(previous, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    if path.is_file():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":     # pragma: no cover - directories cannot be opened there
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:       # some file systems cannot sync a directory; the rename order still holds
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(out: Path, **kwargs: Any) -> Iterator[OutLock]:
    """``with locked(out): ...``: hold OUT's exclusive lock (see ``OutLock`` for the options)."""
    lock = OutLock(out, **kwargs).acquire()
    try:
        yield lock
    finally:
        lock.release()

