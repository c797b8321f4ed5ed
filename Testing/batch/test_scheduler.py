"""The scheduler's rules, on an engine whose workers run in this process and can be made to die:
a lost worker's study goes to another worker, a study is given up after three lost tries, a cancel
stops the workers, and every event is in the log."""

import json

import pytest

from SpineAssistLib.batch.engines import Finished, Lost
from SpineAssistLib.batch.jobs import Job, Outcome, write_mark
from SpineAssistLib.batch.progress import BatchProgress
from SpineAssistLib.batch.scheduler import LOG_NAME, run_batch
from SpineAssistLib.errors import Cancelled
from SpineAssistLib.pipeline.progress import CancelToken


class InProcessEngine:
    """Two workers that finish a job at the next wait, except the jobs named in ``dies``, whose
    worker is lost that many times first."""

    name = "test"

    def __init__(self, dies=None, on_wait=None):
        self.dies = dict(dies or {})
        self.on_wait = on_wait
        self.running = {}
        self.replaced, self.started, self.closed = [], False, None
        self.ran_on = {}

    def start(self):
        self.started = True

    def workers(self):
        return [0, 1]

    def idle(self):
        return [w for w in self.workers() if w not in self.running]

    def describe(self, w):
        return f"test worker {w}"

    def pid(self, w):
        return 1000 + w

    def submit(self, w, job):
        self.running[w] = job

    def wait(self, timeout):
        if self.on_wait:
            self.on_wait()
        events = []
        for w, job in sorted(self.running.items()):
            self.ran_on.setdefault(job.key, []).append(w)
            if self.dies.get(job.key, 0) > 0:
                self.dies[job.key] -= 1
                events.append(Lost(w, f"worker {1000 + w} died (signal SIGKILL)"))
            else:
                job.out_dir.mkdir(parents=True, exist_ok=True)
                (job.out_dir / "findings.json").write_text("{}")
                write_mark(job, ["findings.json"], stored=None, seconds=0.1)
                events.append(Finished(w, Outcome(job.key, "done", seconds=0.1, worker=f"pid {1000 + w}")))
        self.running.clear()
        return events

    def replace(self, w):
        self.replaced.append(w)

    def close(self, cancel=False):
        self.closed = "cancel" if cancel else "done"


def _jobs(tmp_path, n):
    return [Job(f"s{i}", f"1.2.{i}", "folder", f"/archive/s{i}", str(tmp_path / f"s{i}")) for i in range(n)]


def _log(tmp_path):
    return [json.loads(line) for line in (tmp_path / LOG_NAME).read_text().splitlines()]


def test_a_lost_workers_study_is_retried_and_the_rest_go_on(tmp_path):
    jobs = _jobs(tmp_path, 3)
    engine = InProcessEngine(dies={"s0": 1})
    run = run_batch(jobs, engine, tmp_path, store=False, progress=BatchProgress(tty=False))
    assert {k: o.status for k, o in run.outcomes.items()} == {"s0": "done", "s1": "done", "s2": "done"}
    assert run.lost == 1 and engine.replaced == [0] and engine.closed == "done"
    assert len(engine.ran_on["s0"]) == 2
    events = [e["event"] for e in _log(tmp_path)]
    assert events.count("lost") == 1 and events.count("done") == 3 and events[-1] == "end"


def test_a_study_that_kills_its_worker_every_time_is_given_up_after_three_tries(tmp_path):
    jobs = _jobs(tmp_path, 2)
    engine = InProcessEngine(dies={"s1": 99})
    run = run_batch(jobs, engine, tmp_path, store=False, progress=BatchProgress(tty=False))
    assert run.outcomes["s0"].status == "done"
    assert run.outcomes["s1"].status == "failed" and "given up after 3 tries" in run.outcomes["s1"].reason
    assert len(engine.ran_on["s1"]) == 3


def test_complete_studies_are_skipped_without_starting_workers(tmp_path):
    jobs = _jobs(tmp_path, 2)
    run_batch(jobs, InProcessEngine(), tmp_path, store=False, progress=BatchProgress(tty=False))
    again = InProcessEngine()
    run = run_batch(jobs, again, tmp_path, store=False, progress=BatchProgress(tty=False))
    assert {o.status for o in run.outcomes.values()} == {"skipped"} and not again.started
    # asked to store now: the same studies are not complete without a store
    engine = InProcessEngine()
    run = run_batch(jobs, engine, tmp_path, store=True, progress=BatchProgress(tty=False))
    assert engine.started and run.count("done") == 2


def test_a_cancel_stops_the_workers_and_is_logged(tmp_path):
    cancel = CancelToken()
    engine = InProcessEngine(on_wait=lambda: cancel.cancel("terminated (SIGTERM)"))
    with pytest.raises(Cancelled):
        run_batch(_jobs(tmp_path, 5), engine, tmp_path, store=False, progress=BatchProgress(tty=False), cancel=cancel)
    assert engine.closed == "cancel"
    assert _log(tmp_path)[-1]["event"] == "cancelled"
