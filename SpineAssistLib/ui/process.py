"""Run ``spineassist assess`` in a background process: its command line, its progress lines, Cancel.

The Slicer panel never runs the models in Slicer's own process: it starts the same command a
terminal user runs, with ``--json-progress``, and reads one JSON object a line from its stdout::

    {"event": "progress", "stage": "...", "fraction": 0.0-1.0, "message": "..."}
    {"event": "warning", "message": "..."}      (e.g. the reader and the new model disagree)
    {"event": "done", "study": STUDY, "out": OUT, "findings": OUT/findings.json, "scene": OUT/scene.mrb, "seconds": s,
     "disagreements": ["L4-L5 pfirrmann: reader III, model IV", ...]}
    {"event": "error", "study": STUDY, "message": "..."}

Exit status 0 done, 2 user error (message on stderr too), 130 cancelled. Cancel terminates the
process (SIGTERM); the command moves its outputs into place only when complete.

How the process is started is a ``ProcessRunner`` given to the constructor: ``SubprocessRunner``
(threads, for scripts and tests) here, a ``qt.QProcess`` runner in the panel.

Usage (a terminal, or Slicer's Python console)::

    from SpineAssistLib.ui.process import AssessProcess
    job = AssessProcess(on_progress=lambda e: print(f"{e.fraction:.0%} {e.stage}"))
    job.start("phantom-0", "phantom-0-out", device="cpu")
    result = job.wait_for_done()          # AssessOutcome(status="done", findings=Path(...), ...)
    job.cancel()                          # from a Cancel button: the child gets SIGTERM
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal, Protocol, Sequence

DEVICES = ("auto", "cuda", "cpu")
EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130
STDERR_KEEP_CHARS = 20_000  # the tail of stderr kept for the error message and the log


# ------------------------------------------------------------------------------------------------
# The command line and its output
# ------------------------------------------------------------------------------------------------

def python_executable() -> str:
    """Return the Python to run the command with: Slicer's PythonSlicer when there is one, else this one."""
    in_slicer = "slicer" in sys.modules and hasattr(sys.modules["slicer"], "app")
    if in_slicer:
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def assess_command(study_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, device: str = "auto",
                   sagittal_uid: str | None = None, axial_uid: str | None = None,
                   python: str | None = None) -> list[str]:
    """Return the argv of ``spineassist assess`` with ``--json-progress`` for one study folder."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    argv = [python or python_executable(), "-m", "SpineAssistLib.cli", "assess", str(study_dir),
            "--out", str(out_dir), "--device", device]
    if sagittal_uid:
        argv += ["--sagittal", sagittal_uid]
    if axial_uid:
        argv += ["--axial", axial_uid]
    return argv + ["--json-progress"]


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return the child's environment: this SpineAssistLib first on PYTHONPATH, unbuffered output.

    In Slicer the library lives in the extension's module folder, which PythonSlicer does not
    search by itself.
    """
    env = dict(os.environ if base is None else base)
    lib_parent = str(Path(__file__).resolve().parents[2])    # the folder holding SpineAssistLib/
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([lib_parent, *[p for p in parts if p != lib_parent]])
    env["PYTHONUNBUFFERED"] = "1"
    return env


EventKind = Literal["progress", "warning", "done", "error"]
OutcomeStatus = Literal["done", "error", "cancelled"]


@dataclass(frozen=True)
class AssessEvent:
    """One line of the command's progress protocol: ``kind`` is "progress", "warning", "done" or "error"."""

    kind: EventKind
    stage: str = ""
    fraction: float = 0.0
    message: str = ""
    out: Path | None = None
    findings: Path | None = None
    scene: Path | None = None
    disagreements: tuple[str, ...] = ()


def parse_progress_line(line: str | bytes) -> AssessEvent | None:
    """Return the event a stdout line holds, or None for anything else (log lines, garbage)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        d = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(d, dict):
        return None
    kind = d.get("event")
    if kind == "progress":
        try:
            fraction = min(max(float(d.get("fraction", 0.0)), 0.0), 1.0)
        except (TypeError, ValueError):
            fraction = 0.0
        return AssessEvent("progress", str(d.get("stage", "")), fraction, str(d.get("message", "") or ""))
    if kind == "done":
        def path(key: str) -> Path | None:
            return Path(d[key]) if d.get(key) else None

        disagreements = d.get("disagreements") if isinstance(d.get("disagreements"), list) else []
        return AssessEvent("done", "done", 1.0, "done", out=path("out"), findings=path("findings"), scene=path("scene"),
                           disagreements=tuple(str(x) for x in disagreements))
    if kind == "error":
        return AssessEvent("error", message=str(d.get("message", "") or "the assessment failed"))
    if kind == "warning" and d.get("message"):
        return AssessEvent("warning", message=str(d["message"]))
    return None


@dataclass
class AssessOutcome:
    """How a run ended: ``status`` "done", "error" or "cancelled", the outputs or the message, the exit code."""

    status: OutcomeStatus
    exit_code: int | None
    message: str = ""
    out: Path | None = None
    findings: Path | None = None
    scene: Path | None = None
    stderr: str = ""
    warnings: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)   # where the reader's value and the new model's differ

    @property
    def ok(self) -> bool:
        return self.status == "done"


def outcome_of(exit_code: int | None, events: Sequence[AssessEvent], stderr: str, cancelled: bool) -> AssessOutcome:
    """Return how a run ended from its exit code, the events it printed, its stderr and whether Cancel was pressed."""
    done = next((e for e in reversed(events) if e.kind == "done"), None)
    error = next((e for e in reversed(events) if e.kind == "error"), None)
    warnings = [e.message for e in events if e.kind == "warning"]
    if exit_code == EXIT_OK and done is not None:
        return AssessOutcome("done", exit_code, "done", done.out, done.findings, done.scene, stderr, warnings,
                             list(done.disagreements))
    if cancelled or exit_code == EXIT_CANCELLED:
        return AssessOutcome("cancelled", exit_code, "cancelled; no outputs were written", stderr=stderr)
    if error is not None:
        message = error.message
    else:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        message = lines[-1] if lines else ""
        if exit_code == EXIT_OK:
            message = message or "the assessment ended without reporting its outputs"
        else:
            message = message or f"the assessment stopped with exit status {exit_code}"
    return AssessOutcome("error", exit_code, message, stderr=stderr)


# ------------------------------------------------------------------------------------------------
# Runners: how a process is started (injected, so tests and the Qt panel can replace it)
# ------------------------------------------------------------------------------------------------

class ProcessRunner(Protocol):
    """Starts one process and reports its output; implemented with threads here and with qt.QProcess in Slicer."""

    def start(self, argv: Sequence[str], env: dict[str, str], on_stdout_line: Callable[[str], None],
              on_stderr: Callable[[str], None], on_finished: Callable[[int | None], None]) -> None: ...

    def terminate(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool:
        """Return True once the process has finished and every callback has run (False on timeout)."""
        ...


class SubprocessRunner:
    """A ``ProcessRunner`` on ``subprocess.Popen`` with reader threads; callbacks run on those threads."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self._finished = threading.Event()

    def start(self, argv: Sequence[str], env: dict[str, str], on_stdout_line: Callable[[str], None],
              on_stderr: Callable[[str], None], on_finished: Callable[[int | None], None]) -> None:
        self._finished.clear()
        self.process = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        process = self.process

        def read_stdout() -> None:
            for raw in iter(process.stdout.readline, b""):  # type: ignore[union-attr]
                on_stdout_line(raw.decode("utf-8", errors="replace"))

        def read_stderr() -> None:
            for raw in iter(process.stderr.readline, b""):  # type: ignore[union-attr]
                on_stderr(raw.decode("utf-8", errors="replace"))

        readers = [threading.Thread(target=f, daemon=True) for f in (read_stdout, read_stderr)]
        for t in readers:
            t.start()

        def watch() -> None:
            code = process.wait()
            for t in readers:
                t.join()
            try:
                on_finished(code)
            finally:
                self._finished.set()

        threading.Thread(target=watch, daemon=True).start()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)


# ------------------------------------------------------------------------------------------------
# The job
# ------------------------------------------------------------------------------------------------

class AssessProcess:
    """One background ``spineassist assess`` run: start, progress, cancel, outcome.

    Callbacks (all optional): ``on_progress(AssessEvent)``, ``on_log(str)`` for stderr text, and
    ``on_finished(AssessOutcome)``. They run on whatever thread the runner reports from (the GUI
    thread with the Qt runner).
    """

    def __init__(self, runner: ProcessRunner | None = None, *,
                 on_progress: Callable[[AssessEvent], None] | None = None,
                 on_log: Callable[[str], None] | None = None,
                 on_finished: Callable[[AssessOutcome], None] | None = None) -> None:
        self.runner = runner if runner is not None else SubprocessRunner()
        self.on_progress, self.on_log, self.on_finished = on_progress, on_log, on_finished
        self.events: list[AssessEvent] = []
        self.stderr = ""
        self.outcome: AssessOutcome | None = None
        self.argv: list[str] = []
        self._cancelled = False
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def start(self, study_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, device: str = "auto",
              sagittal_uid: str | None = None, axial_uid: str | None = None, python: str | None = None) -> list[str]:
        """Start the command for one study folder; return its argv. Raises RuntimeError if a run is going."""
        argv = assess_command(study_dir, out_dir, device=device, sagittal_uid=sagittal_uid, axial_uid=axial_uid,
                              python=python)
        return self.start_argv(argv)

    def start_argv(self, argv: Sequence[str]) -> list[str]:
        """Start any command speaking the progress protocol (tests use a tiny stand-in); return its argv."""
        if self._running:
            raise RuntimeError("an assessment is already running; cancel it or wait for it to finish")
        self.events, self.stderr, self.outcome, self._cancelled = [], "", None, False
        self.argv = list(argv)
        self._running = True
        try:
            self.runner.start(self.argv, child_environment(), self._stdout_line, self._stderr_text, self._finished)
        except OSError as e:
            self._running = False
            self.outcome = AssessOutcome("error", None, f"could not start {self.argv[0]}: {e}")
            if self.on_finished is not None:
                self.on_finished(self.outcome)
        return self.argv

    def cancel(self) -> None:
        """Ask the process to stop (SIGTERM); the outcome will be "cancelled"."""
        if self._running:
            self._cancelled = True
            self.runner.terminate()

    def wait_for_done(self, timeout: float | None = None) -> AssessOutcome:
        """Block until the run ends (scripts and self-tests); return its outcome. TimeoutError after ``timeout`` s."""
        if self.outcome is not None and not self._running:
            return self.outcome
        if not self.runner.wait(timeout):
            raise TimeoutError(f"the assessment did not finish within {timeout} s; call cancel() to stop it")
        assert self.outcome is not None
        return self.outcome

    # Runner callbacks
    def _stdout_line(self, line: str) -> None:
        event = parse_progress_line(line)
        if event is None:
            if line.strip() and self.on_log is not None:
                self.on_log(line.rstrip())
            return
        self.events.append(event)
        if event.kind == "progress" and self.on_progress is not None:
            self.on_progress(event)

    def _stderr_text(self, text: str) -> None:
        self.stderr = (self.stderr + text)[-STDERR_KEEP_CHARS:]
        if self.on_log is not None and text.strip():
            self.on_log(text.rstrip())

    def _finished(self, exit_code: int | None) -> None:
        self.outcome = outcome_of(exit_code, self.events, self.stderr, self._cancelled)
        self._running = False
        if self.on_finished is not None:
            self.on_finished(self.outcome)


# ------------------------------------------------------------------------------------------------
# The study folder the command reads
# ------------------------------------------------------------------------------------------------

def stage_dicom_files(files: Iterable[str | os.PathLike[str]], dest: str | os.PathLike[str]) -> Path:
    """Return ``dest`` holding a link (or, where links are not allowed, a copy) of each DICOM file.

    The files keep their content; names are numbered so two series with the same file names
    cannot collide. The user's folders are never written to.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, f in enumerate(dict.fromkeys(str(Path(p)) for p in files if p)):
        src = Path(f)
        if not src.is_file():
            raise FileNotFoundError(f"DICOM file {src} is missing; was it moved after it was imported into the DICOM database?")
        target = dest / f"{i:05d}-{src.name}"
        try:
            os.symlink(src.resolve(), target)
        except (OSError, NotImplementedError):
            shutil.copy2(src, target)
        count += 1
    if count == 0:
        raise ValueError("no DICOM files to assess: load the sagittal and axial series with the DICOM module first")
    return dest
