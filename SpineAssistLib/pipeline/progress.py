"""Progress reporting and cancellation for long jobs (assessment, training, export).

A job calls ``reporter.stage(name, fraction, message)`` as it goes and ``cancel.check()`` between
steps; the Slicer panel and ``--json-progress`` read the same events.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, TextIO

from SpineAssistLib.errors import Cancelled


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report: the stage running, the job's overall fraction done (0-1), a short message."""

    stage: str
    fraction: float
    message: str = ""

    def to_json(self) -> str:
        return json.dumps({"event": "progress", "stage": self.stage, "fraction": round(self.fraction, 4),
                           "message": self.message})


class ProgressCallback(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


class CancelToken:
    """Set from any thread (a Cancel button, SIGTERM); the job stops at its next ``check()``."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled by the user"

    def cancel(self, reason: str = "cancelled by the user") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` if cancellation was asked for."""
        if self._event.is_set():
            raise Cancelled(self.reason)


class StageReporter:
    """Turns per-stage fractions into the job's overall fraction, from fixed stage weights."""

    def __init__(self, weights: dict[str, float], callback: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> None:
        total = sum(weights.values())
        if total <= 0:
            raise ValueError("stage weights must add up to more than 0")
        self._start: dict[str, float] = {}
        acc = 0.0
        for name, w in weights.items():
            self._start[name] = acc / total
            acc += w
        self._width = {name: w / total for name, w in weights.items()}
        self._callback = callback
        self.cancel = cancel or CancelToken()

    def stage(self, name: str, within: float = 0.0, message: str = "") -> None:
        """Report progress ``within`` (0-1) the stage ``name``; check for cancellation first."""
        self.cancel.check()
        if name not in self._start:
            raise KeyError(f"unknown stage {name!r}; stages are {', '.join(self._start)}")
        within = min(max(within, 0.0), 1.0)
        if self._callback is not None:
            self._callback(ProgressEvent(name, self._start[name] + within * self._width[name], message))

    def done(self, message: str = "done") -> None:
        if self._callback is not None:
            self._callback(ProgressEvent("done", 1.0, message))


def json_lines_printer(stream: TextIO = sys.stdout) -> Callable[[ProgressEvent], None]:
    """Return a callback printing each event as one JSON line (the ``--json-progress`` protocol)."""

    def emit(event: ProgressEvent) -> None:
        stream.write(event.to_json() + "\n")
        stream.flush()

    return emit


def text_printer(stream: TextIO = sys.stderr) -> Callable[[ProgressEvent], None]:
    """Return a callback printing a human-readable line per stage change."""
    last = {"stage": None}

    def emit(event: ProgressEvent) -> None:
        if event.stage != last["stage"]:
            last["stage"] = event.stage
            stream.write(f"[{event.fraction * 100:5.1f} %] {event.stage}{': ' + event.message if event.message else ''}\n")
            stream.flush()

    return emit


@contextlib.contextmanager
def cancel_on_sigterm(cancel: CancelToken) -> Iterator[None]:
    """SIGTERM (the Slicer panel's Cancel, a batch scheduler) cancels the run at once: the handler
    raises ``Cancelled`` wherever the main thread is (importing, loading models, between model
    calls), and the staging folder, lock and writer processes are cleaned up on the way out. The
    few milliseconds in which a finished output set is swapped in hold the signal back."""
    pid = os.getpid()

    def on_term(*_: object) -> None:
        if os.getpid() != pid:      # a writer process forked before it set its own handler: just end
            os._exit(128 + signal.SIGTERM)
        if cancel.cancelled:        # already on the way out: let the cleanup finish
            return
        cancel.cancel("terminated (SIGTERM)")
        raise Cancelled(cancel.reason)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
