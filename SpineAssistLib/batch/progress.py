"""A batch's progress for a person (a bar with rate and time left) or a program (JSON lines).

The rate counts the studies this run finished (assessed or failed), not the ones a rerun skipped,
over the time since the first study was handed out; the time left is the remaining studies at that
rate. A terminal gets one bar rewritten in place; a log file or pipe gets a line per study.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable, TextIO

from SpineAssistLib.batch.jobs import Job, Outcome

BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class BatchProgress:
    def __init__(self, stream: TextIO | None = None, *, json_lines: bool = False, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else (sys.stdout if json_lines else sys.stderr)
        self.json_lines = json_lines
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.total = self.skipped = self.done = self.failed = 0
        self.t0: float | None = None
        self._bar_shown = False

    # ---- figures ----
    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.finished

    def rate_per_hour(self) -> float | None:
        if self.t0 is None or self.finished == 0:
            return None
        elapsed = self.clock() - self.t0
        return self.finished / elapsed * 3600 if elapsed > 0 else None

    def seconds_left(self) -> float | None:
        rate = self.rate_per_hour()
        return None if rate is None else self.remaining / rate * 3600

    def bar(self) -> str:
        todo = self.total - self.skipped
        filled = int(round(BAR_WIDTH * self.finished / todo)) if todo else BAR_WIDTH
        rate, left = self.rate_per_hour(), self.seconds_left()
        parts = [f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.finished + self.skipped}/{self.total} studies"]
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.failed:
            parts.append(f"{self.failed} failed")
        parts.append(f"{rate:.0f} studies/h" if rate is not None else "rate: after the first study")
        if left is not None and self.remaining:
            parts.append(f"{_duration(left)} left")
        return " | ".join(parts)

    # ---- events ----
    def begin(self, total: int, skipped: int) -> None:
        self.total, self.skipped = total, skipped
        self._emit({"event": "batch", "total": total, "skipped": skipped},
                   f"{total} studies, {skipped} with complete outputs already (skipped), {total - skipped} to do")

    def started(self, job: Job, worker: str, pid: int | None = None) -> None:
        if self.t0 is None:
            self.t0 = self.clock()
        self._emit({"event": "started", "study": job.key, "worker": worker, "pid": pid}, None)

    def finished_one(self, job: Job, outcome: Outcome) -> None:
        if outcome.status == "failed":
            self.failed += 1
        else:
            self.done += 1
        text = (f"failed: {job.key}: {outcome.reason}" if outcome.status == "failed"
                else f"done: {job.key} ({outcome.seconds:.1f} s, {outcome.worker})")
        self._emit({"event": "study", "study": job.key, "status": outcome.status, "reason": outcome.reason,
                    "seconds": round(outcome.seconds, 2), "worker": outcome.worker, **self._figures()}, text)

    def lost(self, job: Job, why: str, retry: bool) -> None:
        self._emit({"event": "lost", "study": job.key, "why": why, "retry": retry},
                   f"{why} while assessing {job.key}; " + ("it is given to another worker" if retry else "no tries left"))

    def end(self, message: str) -> None:
        self._emit({"event": "end", "message": message, **self._figures()}, message, final=True)

    def _figures(self) -> dict[str, object]:
        rate, left = self.rate_per_hour(), self.seconds_left()
        return {"total": self.total, "skipped": self.skipped, "done": self.done, "failed": self.failed,
                "rate_per_hour": None if rate is None else round(rate, 1),
                "seconds_left": None if left is None else round(left, 1)}

    def _emit(self, event: dict[str, object], text: str | None, final: bool = False) -> None:
        if self.json_lines:
            print(json.dumps(event), file=self.stream, flush=True)
            return
        if self.tty:
            # the bar stays on the last line; messages are printed above it
            clear = "\r\033[K" if self._bar_shown else ""
            lines = (text + "\n") if text else ""
            bar = "" if final else self.bar()
            self.stream.write(clear + lines + bar)
            self._bar_shown = bool(bar)
        elif text:
            self.stream.write(text + ("" if final or event["event"] != "study" else f"  {self.bar()}") + "\n")
        self.stream.flush()
