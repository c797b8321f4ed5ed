"""The batch's progress: rate and time left from what this run finished, a bar or JSON lines."""

import io
import json

from SpineAssistLib.batch.jobs import Job, Outcome
from SpineAssistLib.batch.progress import BatchProgress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _job(key):
    return Job(key, "1.2." + key, "folder", "/x", "/out/" + key)


def test_rate_and_time_left_count_only_this_runs_studies():
    clock, stream = Clock(), io.StringIO()
    p = BatchProgress(stream, tty=False, clock=clock)
    p.begin(total=10, skipped=4)                     # a rerun: 4 complete already
    assert p.rate_per_hour() is None and "rate: after the first study" in p.bar()
    p.started(_job("a"), "pid 1")
    clock.t += 60
    p.finished_one(_job("a"), Outcome("a", "done", seconds=60))
    clock.t += 60
    p.finished_one(_job("b"), Outcome("b", "failed", "no sagittal T2 series"))
    assert p.rate_per_hour() == 60.0                 # 2 studies in 120 s
    assert p.seconds_left() == 4 * 60.0              # 4 left at one a minute
    bar = p.bar()
    assert "6/10 studies" in bar and "4 already done" in bar and "1 failed" in bar and "60 studies/h" in bar
    assert "4 min left" in bar
    text = stream.getvalue()
    assert "failed: b: no sagittal T2 series" in text and "done: a (60.0 s" in text


def test_json_lines_carry_the_figures():
    clock, stream = Clock(), io.StringIO()
    p = BatchProgress(stream, json_lines=True, clock=clock)
    p.begin(total=2, skipped=0)
    p.started(_job("a"), "pid 7", 7)
    clock.t += 30
    p.finished_one(_job("a"), Outcome("a", "done", seconds=30, worker="pid 7"))
    p.lost(_job("b"), "worker 8 died (signal SIGKILL)", retry=True)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["batch", "started", "study", "lost"]
    assert events[1]["pid"] == 7
    assert events[2]["rate_per_hour"] == 120.0 and events[2]["seconds_left"] == 30.0
    assert events[3]["retry"] is True


def test_a_terminal_gets_one_bar_rewritten_in_place():
    clock, stream = Clock(), io.StringIO()
    p = BatchProgress(stream, tty=True, clock=clock)
    p.begin(total=1, skipped=0)
    p.started(_job("a"), "pid 1")
    clock.t += 5
    p.finished_one(_job("a"), Outcome("a", "done", seconds=5))
    p.end("1 assessed")
    out = stream.getvalue()
    assert out.count("\r\033[K") >= 2 and out.endswith("1 assessed\n")
