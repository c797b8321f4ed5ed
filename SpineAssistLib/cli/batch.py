"""``spineassist batch``: many studies, from a folder tree or a DICOMweb server, on local workers or Ray.

Each study is assessed into ``OUT/<study>/`` as ``spineassist assess`` would; a rerun skips the
studies whose outputs are complete; a study that fails is reported with its reason and the others
go on; at the end ``OUT/summary.csv`` and ``OUT/summary.parquet`` hold every level of every study.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from SpineAssistLib.batch.jobs import Job, dicomweb_jobs, folder_jobs, load_plan, save_plan
from SpineAssistLib.batch.progress import BatchProgress
from SpineAssistLib.dicom import dicomweb
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.export.outdir import check_out_dir
from SpineAssistLib.pipeline.progress import CancelToken, cancel_on_sigterm


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch", help="assess many studies (a folder tree or a DICOMweb query), resumable, with one summary table",
        description="Assess every study under FOLDER, or every study a DICOMweb query finds, into OUT/<study>/, "
        "on local worker processes or Ray actors that each load the models once. A rerun skips the studies "
        "whose outputs are complete; a study that fails is reported and the batch goes on. OUT/summary.csv and "
        "OUT/summary.parquet hold every level of every assessed study; OUT/failed.csv the failures; "
        "OUT/batch-log.jsonl what happened when. Exit status: 0 all assessed, 2 some failed or bad input, "
        "130 cancelled.")
    p.add_argument("folder", type=Path, nargs="?", help="folder tree holding the studies' DICOM files (read only)")
    p.add_argument("--out", type=Path, required=True, help="output folder: one subfolder per study, and the tables")
    web = p.add_argument_group("DICOMweb (instead of FOLDER)")
    web.add_argument("--dicomweb", metavar="URL", help="the server's DICOMweb root, e.g. http://pacs:8042/dicom-web; "
                     "credentials from SPINEASSIST_DICOMWEB_USER/_PASSWORD or _TOKEN, or a netrc file, never the URL")
    web.add_argument("--study", dest="study_uids", metavar="UID", action="append",
                     help="a Study Instance UID to assess (repeat); without it, the query below")
    web.add_argument("--date-from", metavar="YYYYMMDD", help="studies on or after this date")
    web.add_argument("--date-to", metavar="YYYYMMDD", help="studies on or before this date")
    web.add_argument("--body-part", default="LSPINE",
                     help="series BodyPartExamined to look for (default LSPINE; 'any' for every MR study)")
    web.add_argument("--limit", type=int, metavar="N", help="at most N studies from the query")
    web.add_argument("--store", action="store_true", help="store each study's SEG and SR back on the server (STOW-RS)")
    run = p.add_argument_group("engine")
    run.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: worker processes on this machine (default); ray: Ray actors on a cluster")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="workers (default: local one per CPU core, at most 8; ray 2)")
    run.add_argument("--threads", type=int, default=None, metavar="N",
                     help="CPU threads per worker's models (default: the cores shared out among the local workers)")
    run.add_argument("--address", metavar="HOST:PORT",
                     help="the Ray cluster (`ray start --head` prints it; 'auto' finds a local one); without it Ray "
                          "starts on this machine for the run")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="where the models run")
    p.add_argument("--no-axial", action="store_true", help="assess the sagittal series only")
    p.add_argument("--rescan", action="store_true", help="search FOLDER again instead of reusing OUT/batch-plan.json")
    p.add_argument("--summary-only", action="store_true",
                   help="only write the summary tables again from the studies assessed so far")
    p.add_argument("--json-progress", action="store_true", help="progress as JSON lines on stdout")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from SpineAssistLib.batch.engines import LocalEngine, RayEngine
    from SpineAssistLib.batch.scheduler import run_batch
    from SpineAssistLib.batch.worker import WorkerSettings

    if (args.folder is None) == (args.dicomweb is None):
        raise SpineAssistError("give either a FOLDER of studies or --dicomweb URL (with --study UID or a date range)")
    if args.store and not args.dicomweb:
        raise SpineAssistError("--store sends the SEG and SR back to a DICOMweb server: give --dicomweb URL")
    out = check_out_dir(args.out, [args.folder] if args.folder else [])
    progress = BatchProgress(json_lines=args.json_progress)
    cancel = CancelToken()
    # stdout carries the progress lines alone: what libraries print there (Ray reports a lost worker
    # on stdout) goes to stderr
    with cancel_on_sigterm(cancel), contextlib.redirect_stdout(sys.stderr):
        jobs = _plan(args, out, cancel)
        if args.summary_only:
            return _finish(out, jobs, {}, progress, args)
        if not jobs:
            progress.end(f"no studies found; nothing to do ({_where(args)})")
            return 0
        settings = WorkerSettings(batch_out=str(out), device=args.device, use_axial=not args.no_axial,
                                  store=args.store, dicomweb_url=args.dicomweb, threads=_threads(args))
        engine = (RayEngine(settings, args.workers or 2, args.address) if args.engine == "ray"
                  else LocalEngine(settings, _local_workers(args)))
        run = run_batch(jobs, engine, out, store=args.store, progress=progress, cancel=cancel)
        return _finish(out, jobs, run.outcomes, progress, args, run.seconds)


def _where(args: argparse.Namespace) -> str:
    return str(args.folder) if args.folder else "the DICOMweb query"


# one worker per core (each its models on one thread) gave the highest rate on a 2-core machine
# (benchmarks/RESULTS.md, "Batch"); a worker with its writer processes holds about 0.7 GB, hence the cap
MAX_DEFAULT_WORKERS = 8


def _local_workers(args: argparse.Namespace) -> int:
    return args.workers or max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def _threads(args: argparse.Namespace) -> int | None:
    if args.threads is not None:
        if args.threads < 1:
            raise SpineAssistError(f"--threads must be 1 or more; got {args.threads}")
        return args.threads
    if args.engine == "local":
        return max(1, (os.cpu_count() or 1) // _local_workers(args))
    return 1          # a Ray actor asks for one CPU


def _plan(args: argparse.Namespace, out: Path, cancel: CancelToken) -> list[Job]:
    from SpineAssistLib.dicom.index import studies_under

    if args.folder is not None:
        root = args.folder.resolve()
        source = {"folder": str(root), "no_axial": bool(args.no_axial)}
        jobs = None if args.rescan else load_plan(out, source)
        if jobs is None:
            print(f"searching {args.folder} for studies ...", file=sys.stderr, flush=True)
            jobs = folder_jobs(studies_under(root, skip=[out], cancel=cancel.check), root, out)
            save_plan(out, source, jobs)
        else:
            print(f"{len(jobs)} studies from {out / 'batch-plan.json'} (--rescan to search {args.folder} again)",
                  file=sys.stderr, flush=True)
        return jobs
    # a DICOMweb query is asked again each run: new studies in the range are found, done ones skipped
    server = dicomweb.connect(args.dicomweb)
    if args.study_uids:
        uids = list(args.study_uids)
    else:
        body_part = None if args.body_part.lower() == "any" else args.body_part
        filters = dicomweb.lumbar_mr_filters(args.date_from, args.date_to, body_part)
        uids = [s.study_uid for s in server.find_studies(filters, limit=args.limit)]
    jobs = dicomweb_jobs(uids, out)
    save_plan(out, {"dicomweb": args.dicomweb, "studies": uids}, jobs)
    return jobs


def _finish(out: Path, jobs: list[Job], outcomes: dict, progress: BatchProgress, args: argparse.Namespace,
            seconds: float | None = None) -> int:
    from SpineAssistLib.batch.scheduler import LOG_NAME
    from SpineAssistLib.batch.summary import write_summary

    written, notes = write_summary(jobs, outcomes, out)
    failed = [o for o in outcomes.values() if o.status == "failed"]
    done = sum(o.status == "done" for o in outcomes.values())
    skipped = sum(o.status == "skipped" for o in outcomes.values())
    lines = []
    if outcomes:
        lines.append(f"{done} assessed, {skipped} already complete, {len(failed)} failed, of {len(jobs)} studies"
                     + (f" in {seconds:.0f} s" if seconds is not None else ""))
    lines += [f"  failed: {o.key}: {o.reason}" for o in failed]
    lines += [f"note: {n}" for n in notes]
    lines.append("tables: " + ", ".join(str(p) for p in written) + f"; log: {out / LOG_NAME}")
    progress.end("\n".join(lines))
    return 2 if failed else 0
