"""Run a batch: hand studies to idle workers, retry the studies of lost workers, keep a log.

Every event is appended to ``OUT/batch-log.jsonl`` as it happens (studies started, done, failed,
lost), so even a run killed outright leaves a record of how far it came; the studies' own marks
(:mod:`~SpineAssistLib.batch.jobs`) are what a rerun trusts.
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from SpineAssistLib.batch.engines import Engine, Lost
from SpineAssistLib.batch.jobs import Job, Outcome, is_complete
from SpineAssistLib.batch.progress import BatchProgress
from SpineAssistLib.pipeline.progress import CancelToken

LOG_NAME = "batch-log.jsonl"
TRIES = 3            # a study whose worker dies this often is reported, not tried on
WAIT_S = 0.5         # how often the scheduler looks at a cancel while workers run


@dataclass
class BatchRun:
    """What a run did: every job's last outcome (skipped ones included), and how long it took."""

    jobs: list[Job]
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    lost: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.status == "failed"]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes.values())


def run_batch(jobs: list[Job], engine: Engine, out: Path, *, store: bool, progress: BatchProgress,
              cancel: CancelToken | None = None, tries: int = TRIES) -> BatchRun:
    """Assess every job not complete yet on ``engine``'s workers; return what became of each."""
    t0 = time.perf_counter()
    cancel = cancel or CancelToken()
    run = BatchRun(jobs)
    todo = []
    for job in jobs:
        if is_complete(job, store=store):
            run.outcomes[job.key] = Outcome(job.key, "skipped", "outputs complete")
        else:
            todo.append(job)
    progress.begin(len(jobs), len(jobs) - len(todo))
    log = _Log(out / LOG_NAME)
    log.write("begin", total=len(jobs), todo=len(todo), engine=engine.name)
    pending = collections.deque(todo)
    running: dict[int, Job] = {}
    attempts: collections.Counter[str] = collections.Counter()
    if pending:
        engine.start()
    try:
        while pending or running:
            cancel.check()
            for w in engine.idle():
                if not pending:
                    break
                job = pending.popleft()
                engine.submit(w, job)
                running[w] = job
                attempts[job.key] += 1
                progress.started(job, engine.describe(w), engine.pid(w))
                log.write("started", study=job.key, worker=engine.describe(w), attempt=attempts[job.key])
            for event in engine.wait(WAIT_S):
                job = running.pop(event.worker)
                if isinstance(event, Lost):
                    run.lost += 1
                    retry = attempts[job.key] < tries
                    progress.lost(job, event.why, retry)
                    log.write("lost", study=job.key, why=event.why, retry=retry)
                    engine.replace(event.worker)
                    if retry:
                        pending.appendleft(job)
                        continue
                    outcome = Outcome(job.key, "failed", f"{event.why}; given up after {attempts[job.key]} tries")
                else:
                    outcome = event.outcome
                run.outcomes[job.key] = outcome
                progress.finished_one(job, outcome)
                log.write(outcome.status, study=job.key, reason=outcome.reason, seconds=round(outcome.seconds, 2),
                          worker=outcome.worker)
    except BaseException:
        engine.close(cancel=True)
        log.write("cancelled", in_flight=[j.key for j in running.values()])
        raise
    engine.close()
    run.seconds = time.perf_counter() - t0
    log.write("end", done=run.count("done"), failed=run.count("failed"), skipped=run.count("skipped"),
              seconds=round(run.seconds, 1))
    return run


class _Log:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, event: str, **facts: Any) -> None:
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event, **facts})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
