"""A batch's studies and what is known of each: where it comes from, where its outputs go, and whether
they are complete.

A study's outputs are complete when its output folder holds the batch's mark,
``.spineassist-batch.json``, and every file the mark lists. The mark is written last (after the
outputs were committed as one set and, with ``--store``, after the SEG and SR reached the PACS), so
a study a crash cut short has no mark and is assessed again by the next run, while a study with one
is skipped. A reader's later edits of findings.json keep the study complete.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from SpineAssistLib.export.atomic import atomic_write

MARK_NAME = ".spineassist-batch.json"
PLAN_NAME = "batch-plan.json"
PLAN_SCHEMA = "spineassist.batch-plan/1"

SourceKind = Literal["folder", "dicomweb"]


@dataclass(frozen=True)
class Job:
    """One study of a batch: ``location`` is its folder (``folder``) or nothing (``dicomweb``: the
    server is the batch's); ``out`` its output folder, named by ``key``."""

    key: str
    study_uid: str
    source: SourceKind
    location: str
    out: str

    @property
    def out_dir(self) -> Path:
        return Path(self.out)


@dataclass
class Outcome:
    """What became of one try of a job."""

    key: str
    status: Literal["done", "skipped", "failed"]
    reason: str = ""
    seconds: float = 0.0
    stored: list[str] | None = None
    worker: str = ""


def safe_name(text: str, limit: int = 120) -> str:
    """Return ``text`` as one folder name: letters, digits, ``.``, ``-`` and ``_`` kept, the rest ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "study"
    return name[:limit]


def folder_jobs(studies: list[Any], root: Path, out: Path) -> list[Job]:
    """One job per study found under ``root`` (``dicom.index.StudyFolder``s); each output folder is
    named after the study's folder relative to ``root`` (a last folder called DICOM left out), with
    the study UID's tail where one folder holds several studies."""
    per_folder: dict[Path, int] = {}
    for s in studies:
        per_folder[s.folder] = per_folder.get(s.folder, 0) + 1
    jobs, used = [], set()
    for s in studies:
        folder = s.folder.parent if s.folder.name.upper() == "DICOM" and s.folder != root else s.folder
        rel = folder.relative_to(root).as_posix() if folder != root else root.name
        key = safe_name(rel.replace("/", "__"))
        if per_folder[s.folder] > 1:
            key = f"{key}__{s.study_uid.rsplit('.', 1)[-1]}"
        base, n = key, 2
        while key in used:
            key, n = f"{base}-{n}", n + 1
        used.add(key)
        jobs.append(Job(key, s.study_uid, "folder", str(s.folder), str(out / key)))
    return jobs


def dicomweb_jobs(study_uids: list[str], out: Path) -> list[Job]:
    """One job per study on the batch's DICOMweb server, its output folder named by its UID."""
    return [Job(safe_name(uid), uid, "dicomweb", "", str(out / safe_name(uid))) for uid in dict.fromkeys(study_uids)]


# ---- the plan: the study list a rerun reuses -------------------------------------------------------

def save_plan(out: Path, source: dict[str, Any], jobs: list[Job]) -> Path:
    path = out / PLAN_NAME
    with atomic_write(path, "w") as f:
        json.dump({"schema": PLAN_SCHEMA, "source": source, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "jobs": [asdict(j) for j in jobs]}, f, indent=1)
    return path


def load_plan(out: Path, source: dict[str, Any]) -> list[Job] | None:
    """Return the jobs of the plan in ``out`` when it was made for the same ``source``; else None."""
    try:
        plan = json.loads((out / PLAN_NAME).read_text(encoding="utf-8"))
        if plan.get("schema") != PLAN_SCHEMA or plan.get("source") != source:
            return None
        return [Job(**j) for j in plan["jobs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---- the mark of a complete study ----------------------------------------------------------------

def write_mark(job: Job, files: list[str], *, stored: list[str] | None, seconds: float) -> Path:
    """Mark ``job``'s outputs complete: written last, atomically."""
    path = job.out_dir / MARK_NAME
    with atomic_write(path, "w") as f:
        json.dump({"key": job.key, "study_uid": job.study_uid, "source": job.source, "files": sorted(files),
                   "stored": stored, "seconds": round(seconds, 2),
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f, indent=1)
    return path


def read_mark(out_dir: Path) -> dict[str, Any] | None:
    try:
        mark = json.loads((out_dir / MARK_NAME).read_text(encoding="utf-8"))
        return mark if isinstance(mark, dict) else None
    except (OSError, ValueError):
        return None


def is_complete(job: Job, *, store: bool) -> bool:
    """True when ``job``'s outputs are all there (and, with ``store``, were stored in the PACS)."""
    mark = read_mark(job.out_dir)
    if mark is None or mark.get("study_uid") != job.study_uid:
        return False
    if store and mark.get("stored") is None:
        return False
    files = mark.get("files")
    return isinstance(files, list) and all(os.path.isfile(job.out_dir / str(name)) for name in files)
