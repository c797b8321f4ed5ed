"""One batch worker: it loads the models once and assesses study after study.

The same class runs in a local worker process and in a Ray actor. For each study it fetches the
files (a DICOMweb study; a folder is read where it is), runs the whole assessment into the study's
output folder, stores the SEG and SR in the PACS when asked, and marks the study complete last.
The order makes a retry safe: the outputs are committed, then marked (not yet stored), then stored,
then marked stored. A worker killed after the PACS took the files leaves a mark that says the
outputs are complete, so the retry only stores them again, which the server already holds: the
store sends nothing twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from SpineAssistLib.batch.jobs import Job, Outcome, is_complete, read_mark, write_mark
from SpineAssistLib.dicom import dicomweb
from SpineAssistLib.errors import Cancelled, SpineAssistError
from SpineAssistLib.export.outputs import PACS_OUTPUTS, WriterProcesses
from SpineAssistLib.models.runtime import THREADS_ENV
from SpineAssistLib.pipeline.assess import AXIAL_MODELS, SAGITTAL_MODELS, ModelSet
from SpineAssistLib.pipeline.progress import CancelToken
from SpineAssistLib.pipeline.run import run_assessment

log = logging.getLogger(__name__)

FETCH_FOLDER = ".spineassist-fetch"


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker of a batch is told; nothing secret (credentials are read where the worker runs)."""

    batch_out: str
    device: str = "auto"
    use_axial: bool = True
    store: bool = False
    dicomweb_url: str | None = None
    threads: int | None = None          # CPU threads for each model; None: the runtime's choice
    writer_processes: bool = True       # fork writer processes (not inside a Ray actor)
    lock_wait_s: float = 600.0


class StudyWorker:
    """Holds the models (loaded on the first study, SHA-256 checked once) and assesses jobs."""

    def __init__(self, settings: WorkerSettings, models: Any = None) -> None:
        self.settings = settings
        self._models: ModelSet | None = None
        self._model_factory = models          # tests pass oracle models
        self._server: Any = None
        self._writers: Any = None
        if settings.threads:
            os.environ[THREADS_ENV] = str(settings.threads)
            os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))

    def models(self, loaded: Any) -> ModelSet:
        if self._model_factory is not None:
            return self._model_factory(loaded)
        if self._models is None:
            self._models = ModelSet.load(SAGITTAL_MODELS + AXIAL_MODELS, device=self.settings.device)
            if self.settings.threads and "torch" in sys.modules:    # the torch runtime: its share too
                sys.modules["torch"].set_num_threads(self.settings.threads)
        return self._models

    def server(self) -> Any:
        if self._server is None:
            if not self.settings.dicomweb_url:
                raise SpineAssistError("--store needs a DICOMweb server (--dicomweb URL)")
            self._server = dicomweb.connect(self.settings.dicomweb_url)
        return self._server

    def run(self, job: Job, cancel: CancelToken | None = None) -> Outcome:
        """Assess ``job`` (or only store it, when its outputs are complete but not yet stored)."""
        t0 = time.perf_counter()
        store = self.settings.store
        if is_complete(job, store=store):
            return Outcome(job.key, "skipped", "outputs complete")
        fetched: Path | None = None
        try:
            mark = read_mark(job.out_dir)
            if mark is not None and is_complete(job, store=False):
                files = list(mark["files"])             # assessed before; only the store is left
            else:
                if job.source == "dicomweb":
                    fetched = Path(self.settings.batch_out) / FETCH_FOLDER / job.key
                    study_dir = self.server().fetch_study(job.study_uid, fetched,
                                                          cancel=cancel.check if cancel else None)
                else:
                    study_dir = Path(job.location)
                done = run_assessment(study_dir, job.out_dir, device=self.settings.device, study_uid=job.study_uid,
                                      use_axial=self.settings.use_axial, cancel=cancel, models=self.models,
                                      parallel_outputs=self.settings.writer_processes, writers=self._writer_pool(),
                                      lock_wait_s=self.settings.lock_wait_s)
                files = sorted(done.written.files)
                write_mark(job, files, stored=None, seconds=time.perf_counter() - t0)
            stored = None
            if store:
                stored = self._store(job, files)
                write_mark(job, files, stored=stored, seconds=time.perf_counter() - t0)
            return Outcome(job.key, "done", seconds=time.perf_counter() - t0, stored=stored)
        except (Cancelled, KeyboardInterrupt):
            raise
        except SpineAssistError as e:
            return Outcome(job.key, "failed", str(e), seconds=time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - one study's unexpected failure must not cost the batch
            log.exception("study %s failed", job.key)
            return Outcome(job.key, "failed", f"unexpected error ({type(e).__name__}: {e})",
                           seconds=time.perf_counter() - t0)
        finally:
            if fetched is not None:
                shutil.rmtree(fetched, ignore_errors=True)

    def _store(self, job: Job, files: list[str]) -> list[str]:
        paths = [job.out_dir / name for name in PACS_OUTPUTS if name in files]
        if paths:
            self.server().store(paths)
        return [p.name for p in paths]

    def _writer_pool(self) -> Any:
        if not self.settings.writer_processes:
            return None
        if self._writers is None or self._writers.closed:
            self._writers = WriterProcesses.start()
        return self._writers

    def close(self) -> None:
        if self._writers is not None:
            self._writers.close()
            self._writers = None
