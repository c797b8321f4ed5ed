"""The batch's tables: every level of every assessed study in one table (CSV and Parquet), and the
studies that failed with their reasons.

``summary.csv`` / ``summary.parquet``: one row per disc level, the study's columns first (output
folder, Study Instance UID, where it came from, review status), then findings.csv's columns (the
value in force, the model's value and whether a reader corrected it, per finding). It is built from
each study's findings.json, so a reader's corrections made after the batch are in it when the
summary is written again (``spineassist batch ... --summary-only``). In Parquet, a column whose
values are all whole numbers is an integer, all numbers a float, otherwise text; empty cells are
nulls. ``failed.csv``: one row per study that failed, with why.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path
from typing import Any

from SpineAssistLib.batch.jobs import Job, Outcome, read_mark
from SpineAssistLib.export.atomic import atomic_path, atomic_write
from SpineAssistLib.export.findings_csv import COLUMNS, level_row
from SpineAssistLib.findings import Assessment

STUDY_COLUMNS = ("study", "study_instance_uid", "source", "review")
SUMMARY_COLUMNS = STUDY_COLUMNS + COLUMNS
FAILED_COLUMNS = ("study", "study_instance_uid", "source", "reason")


def _source(job: Job) -> str:
    return job.location if job.source == "folder" else "dicomweb"


def summary_rows(jobs: list[Job]) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the level rows of every complete study, and a note for each one whose findings cannot be read."""
    rows, problems = [], []
    for job in jobs:
        if read_mark(job.out_dir) is None:
            continue
        try:
            assessment = Assessment.load(job.out_dir / "findings.json")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            problems.append(f"{job.key}: findings.json cannot be read ({e}); it is left out of the summary")
            continue
        review = "needs review" if assessment.needs_review else "no flags"
        for level in assessment.levels:
            rows.append({"study": job.key, "study_instance_uid": assessment.study_instance_uid,
                         "source": _source(job), "review": review, **level_row(level)})
    return rows, problems


def write_summary(jobs: list[Job], outcomes: dict[str, Outcome], out: Path) -> tuple[list[Path], list[str]]:
    """Write summary.csv, summary.parquet (with pyarrow) and failed.csv into ``out``; return the paths
    written and notes for the user."""
    rows, notes = summary_rows(jobs)
    written = [_write_csv(out / "summary.csv", SUMMARY_COLUMNS, rows)]
    if importlib.util.find_spec("pyarrow") is not None:
        written.append(write_parquet(out / "summary.parquet", SUMMARY_COLUMNS, rows))
    else:
        notes.append("summary.parquet not written: pyarrow is not installed (pip install pyarrow); summary.csv has the same table")
    by_key = {j.key: j for j in jobs}
    failed = [{"study": o.key, "study_instance_uid": by_key[o.key].study_uid, "source": _source(by_key[o.key]),
               "reason": o.reason} for o in outcomes.values() if o.status == "failed"]
    failed_path = out / "failed.csv"
    if failed:
        written.append(_write_csv(failed_path, FAILED_COLUMNS, failed))
    elif failed_path.exists():
        os.unlink(failed_path)              # an earlier run's failures were all assessed this time
    return written, notes


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _typed(values: list[Any]) -> tuple[str, list[Any]]:
    present = [v for v in values if v not in ("", None)]
    for kind, convert in (("int64", int), ("float64", float)):
        try:
            converted = [convert(v) for v in present]
        except (TypeError, ValueError):
            continue
        if kind == "int64" and any(isinstance(v, str) and not v.lstrip("-").isdigit() for v in present):
            continue
        it = iter(converted)
        return kind, [None if v in ("", None) else next(it) for v in values]
    return "string", [None if v in ("", None) else str(v) for v in values]


def write_parquet(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, fields = [], []
    for name in columns:
        kind, values = _typed([r.get(name, "") for r in rows])
        arrays.append(pa.array(values, type=getattr(pa, kind)()))
        fields.append(pa.field(name, getattr(pa, kind)()))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path
