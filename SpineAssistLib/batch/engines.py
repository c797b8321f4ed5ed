"""Where a batch's workers run: local processes (``local``) or Ray actors (``ray``).

Both hold one :class:`~SpineAssistLib.batch.worker.StudyWorker` per worker, which loads the models
once, and give the scheduler the same four moves: submit a job to an idle worker, wait for what
finished or was lost, replace a lost worker, close. A worker is lost when its process dies (killed,
out of memory, its node gone); the scheduler then gives its study to another worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from SpineAssistLib.batch.jobs import Job, Outcome
from SpineAssistLib.batch.worker import StudyWorker, WorkerSettings
from SpineAssistLib.errors import Cancelled, SpineAssistError
from SpineAssistLib.export.outputs import die_with_parent
from SpineAssistLib.pipeline.progress import CancelToken, cancel_on_sigterm

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 10.0      # a cancelled worker cleans up its study's staging within this


@dataclass
class Finished:
    worker: int
    outcome: Outcome


@dataclass
class Lost:
    worker: int
    why: str


class Engine(Protocol):
    name: str

    def start(self) -> None: ...
    def workers(self) -> list[int]: ...
    def idle(self) -> list[int]: ...
    def describe(self, worker: int) -> str: ...
    def pid(self, worker: int) -> int: ...
    def submit(self, worker: int, job: Job) -> None: ...
    def wait(self, timeout: float) -> list[Finished | Lost]: ...
    def replace(self, worker: int) -> None: ...
    def close(self, cancel: bool = False) -> None: ...


# ---- local worker processes ------------------------------------------------------------------------

def _local_worker_main(conn: Any, settings: WorkerSettings, models: Callable[[Any], Any] | None,
                       parent_pid: int) -> None:
    # SIGTERM from the scheduler (a cancel) ends the study in hand as the assess command's does
    die_with_parent(parent_pid, signal.SIGTERM)
    cancel = CancelToken()
    worker = StudyWorker(settings, models)
    try:
        with cancel_on_sigterm(cancel):
            while True:
                job = conn.recv()
                if job is None:
                    break
                outcome = worker.run(job, cancel)
                outcome.worker = f"pid {os.getpid()}"
                conn.send(outcome)
    except (EOFError, BrokenPipeError, Cancelled, KeyboardInterrupt):
        pass
    finally:
        worker.close()


class LocalEngine:
    """``workers`` processes on this machine, forked (Linux) so they start without re-importing."""

    name = "local"

    def __init__(self, settings: WorkerSettings, workers: int, models: Callable[[Any], Any] | None = None) -> None:
        if workers < 1:
            raise SpineAssistError(f"--workers must be 1 or more; got {workers}")
        self.settings = settings
        self.n = workers
        self.models = models
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self._ctx = multiprocessing.get_context(method)
        self._procs: dict[int, Any] = {}
        self._conns: dict[int, Any] = {}
        self._busy: set[int] = set()

    def start(self) -> None:
        for w in range(self.n):
            self._spawn(w)

    def _spawn(self, w: int) -> None:
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=_local_worker_main, args=(theirs, self.settings, self.models, os.getpid()),
                                 name=f"spineassist-worker-{w}")   # not daemonic: it forks writers
        proc.start()
        theirs.close()
        self._procs[w], self._conns[w] = proc, ours
        self._busy.discard(w)

    def workers(self) -> list[int]:
        return sorted(self._procs)

    def describe(self, worker: int) -> str:
        return f"pid {self._procs[worker].pid}"

    def pid(self, worker: int) -> int:
        return int(self._procs[worker].pid)

    def idle(self) -> list[int]:
        return [w for w in self.workers() if w not in self._busy]

    def submit(self, worker: int, job: Job) -> None:
        self._conns[worker].send(job)
        self._busy.add(worker)

    def wait(self, timeout: float) -> list[Finished | Lost]:
        from multiprocessing.connection import wait

        busy = {self._conns[w]: w for w in self._busy}
        sentinels = {self._procs[w].sentinel: w for w in self._busy}
        ready = wait(list(busy) + list(sentinels), timeout)
        events: list[Finished | Lost] = []
        done: set[int] = set()
        for r in ready:
            w = busy.get(r)
            if w is None or w in done:
                continue
            try:
                outcome = r.recv()
            except (EOFError, OSError):
                continue                         # died: its sentinel says so below
            done.add(w)
            self._busy.discard(w)
            events.append(Finished(w, outcome))
        for r in ready:
            w = sentinels.get(r)
            if w is None or w in done:
                continue
            proc = self._procs[w]
            proc.join(1)
            code = proc.exitcode
            why = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
            self._busy.discard(w)
            events.append(Lost(w, f"worker {proc.pid} died ({why})"))
        return events

    def replace(self, worker: int) -> None:
        old = self._procs.pop(worker)
        self._conns.pop(worker).close()
        if old.is_alive():
            old.kill()
        old.join(5)
        self._spawn(worker)

    def close(self, cancel: bool = False) -> None:
        """End the workers: idle ones at once; busy ones finish their study, or with ``cancel`` stop it."""
        for w, conn in self._conns.items():
            try:
                if cancel and w in self._busy:
                    self._procs[w].terminate()
                else:
                    conn.send(None)
            except (OSError, ValueError):
                pass
        for proc in self._procs.values():
            proc.join(CLOSE_WAIT_S)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for conn in self._conns.values():
            conn.close()
        self._procs.clear()
        self._conns.clear()
        self._busy.clear()


# ---- Ray actors ------------------------------------------------------------------------------------

class _RayWorker:
    """The actor: a StudyWorker in a Ray worker process."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.worker = StudyWorker(settings)

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())[:8]

    def run(self, job: Job) -> Outcome:
        outcome = self.worker.run(job)
        outcome.worker = f"pid {os.getpid()}"
        return outcome


def _ray_token_known() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or os.path.exists(os.path.expanduser("~/.ray/auth_token")))


def ray_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


class RayEngine:
    """``workers`` Ray actors on the cluster at ``address``; each asks for a GPU where the cluster has one.

    Ray is told nothing secret: a worker reads the DICOMweb credentials from its own node's
    environment or netrc. The output folder must be one every node sees (a shared file system).
    """

    name = "ray"

    def __init__(self, settings: WorkerSettings, workers: int, address: str | None, gpus: float | None = None) -> None:
        if not ray_installed():
            raise SpineAssistError("--engine ray needs Ray: pip install 'ray==2.60.0' (or `make setup`, which installs it)")
        if workers < 1:
            raise SpineAssistError(f"--workers must be 1 or more; got {workers}")
        self.settings = settings
        self.n = workers
        self.address = address
        self.gpus = gpus
        self._actors: dict[int, Any] = {}
        self._pids: dict[int, int] = {}
        self._refs: dict[Any, int] = {}

    def start(self) -> None:
        # before Ray is imported: it reads its settings then
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")     # nothing leaves the machine
        if self.address and "RAY_AUTH_MODE" not in os.environ and _ray_token_known():
            # `ray start` (2.59 and later) requires its token; a driver in token mode also
            # connects to a cluster without authentication
            os.environ["RAY_AUTH_MODE"] = "token"
        import ray

        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = self.address or "a new local Ray instance"
                raise SpineAssistError(
                    f"cannot connect to Ray at {where} ({e}); start it with `ray start --head` and give its address "
                    f"(--address HOST:PORT); a cluster with token authentication needs its token here "
                    f"(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token)") from None
        if self.gpus is None:
            self.gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        self._remote = ray.remote(num_cpus=1, num_gpus=self.gpus, max_restarts=0, max_task_retries=0)(_RayWorker)
        for w in range(self.n):
            self._spawn(w)

    def _spawn(self, w: int) -> None:
        import ray

        # a Ray worker process runs Ray's own threads: it writes its outputs itself rather than fork writers
        settings = dataclasses.replace(self.settings, writer_processes=False)
        if self.gpus and settings.device == "auto":
            settings = dataclasses.replace(settings, device="cuda")
        actor = self._remote.remote(settings)
        self._actors[w] = actor
        self._pids[w] = ray.get(actor.pid.remote(), timeout=300)

    def workers(self) -> list[int]:
        return sorted(self._actors)

    def describe(self, worker: int) -> str:
        return f"Ray actor pid {self._pids.get(worker)}"

    def pid(self, worker: int) -> int:
        return self._pids[worker]

    def idle(self) -> list[int]:
        busy = set(self._refs.values())
        return [w for w in self.workers() if w not in busy]

    def submit(self, worker: int, job: Job) -> None:
        self._refs[self._actors[worker].run.remote(job)] = worker

    def wait(self, timeout: float) -> list[Finished | Lost]:
        import ray
        from ray.exceptions import RayActorError, WorkerCrashedError

        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)
        events: list[Finished | Lost] = []
        for ref in ready:
            w = self._refs.pop(ref)
            try:
                events.append(Finished(w, ray.get(ref)))
            except (RayActorError, WorkerCrashedError) as e:
                events.append(Lost(w, f"Ray actor pid {self._pids.get(w)} died ({type(e).__name__})"))
        return events

    def replace(self, worker: int) -> None:
        import ray

        with contextlib.suppress(Exception):   # already gone
            ray.kill(self._actors.pop(worker), no_restart=True)
        self._spawn(worker)

    def close(self, cancel: bool = False) -> None:
        import ray

        for actor in self._actors.values():
            with contextlib.suppress(Exception):   # already gone
                ray.kill(actor, no_restart=True)
        self._actors.clear()
        self._refs.clear()
        if ray.is_initialized():
            ray.shutdown()
