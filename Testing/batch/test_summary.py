"""The batch's summary: every level of every complete study in one CSV and one typed Parquet table."""

import csv

import pyarrow.parquet as pq

from SpineAssistLib.batch.jobs import Job, Outcome, write_mark
from SpineAssistLib.batch.summary import SUMMARY_COLUMNS, write_summary

from support.export_case import assessment


def test_summary_has_a_row_per_level_and_typed_parquet(tmp_path):
    jobs = []
    for key in ("s1", "s2"):
        job = Job(key, f"1.2.{key[-1]}", "folder", f"/archive/{key}", str(tmp_path / key))
        job.out_dir.mkdir()
        a = assessment()
        a.study_instance_uid = job.study_uid
        a.save(job.out_dir / "findings.json")
        write_mark(job, ["findings.json"], stored=None, seconds=1.0)
        jobs.append(job)
    broken = Job("s3", "1.2.3", "folder", "/archive/s3", str(tmp_path / "s3"))
    jobs.append(broken)
    outcomes = {"s3": Outcome("s3", "failed", "no sagittal T2 series")}
    written, notes = write_summary(jobs, outcomes, tmp_path)
    assert [p.name for p in written] == ["summary.csv", "summary.parquet", "failed.csv"] and notes == []
    rows = list(csv.DictReader(open(tmp_path / "summary.csv", encoding="utf-8")))
    n_levels = len(assessment().levels)
    assert len(rows) == 2 * n_levels and list(rows[0]) == list(SUMMARY_COLUMNS)
    assert {r["study"] for r in rows} == {"s1", "s2"} and rows[0]["source"] == "/archive/s1"
    table = pq.read_table(tmp_path / "summary.parquet")
    assert table.num_rows == 2 * n_levels
    assert str(table.schema.field("pfirrmann_grade").type) == "int64"
    assert str(table.schema.field("level").type) == "string"
    assert table.column("pfirrmann_grade").to_pylist() == [int(r["pfirrmann_grade"]) if r["pfirrmann_grade"] else None
                                                           for r in rows]
    failed = list(csv.DictReader(open(tmp_path / "failed.csv", encoding="utf-8")))
    assert failed == [{"study": "s3", "study_instance_uid": "1.2.3", "source": "/archive/s3",
                       "reason": "no sagittal T2 series"}]
    # the failure assessed on a later run: failed.csv goes
    write_summary(jobs[:2], {}, tmp_path)
    assert not (tmp_path / "failed.csv").exists()
