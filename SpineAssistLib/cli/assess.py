"""``spineassist assess STUDY --out OUT``: a DICOM folder in, findings, report, DICOM SEG/SR and a Slicer scene out.

Several studies in one command (``spineassist assess A B C --out OUT``) go to ``OUT/A``, ``OUT/B``, ...:
the models are loaded once (a fresh process spends seconds on imports and loading), and a study
that cannot be read is reported and skipped while the others are assessed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Iterator

from SpineAssistLib.errors import Cancelled, SpineAssistError
from SpineAssistLib.export.outdir import DEFAULT_LOCK_WAIT_S, check_out_dir
from SpineAssistLib.pipeline.progress import CancelToken, json_lines_printer, text_printer

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "assess", help="assess a lumbar MRI study: findings.json/.csv, report.html, seg.dcm, sr.dcm, scene.mrb",
        description="Find the sagittal and axial T2 series in STUDY (a DICOM folder), run the bundled models, "
        "grade every disc level and write the outputs into OUT. A findings.json in OUT that a reader "
        "corrected keeps its corrections. Exit status: 0 done, 2 bad input, 130 cancelled.")
    p.add_argument("study", type=Path, nargs="+",
                   help="folder holding the study's DICOM files (searched recursively, never written to); several "
                        "folders: each is assessed into OUT/<folder name>, the models loaded once")
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="where the models run: auto = CUDA, then MPS, then CPU (default auto)")
    p.add_argument("--sagittal", metavar="UID", help="SeriesInstanceUID of the sagittal T2 series (default: picked)")
    p.add_argument("--axial", metavar="UID", help="SeriesInstanceUID of the axial T2 series (default: picked)")
    p.add_argument("--study", dest="study_uid", metavar="UID",
                   help="StudyInstanceUID of the study to assess when STUDY holds several (`spineassist series` lists them)")
    p.add_argument("--no-axial", action="store_true", help="assess the sagittal series only")
    p.add_argument("--lock-wait", type=float, default=DEFAULT_LOCK_WAIT_S, metavar="SECONDS",
                   help="how long to wait for another run writing the same OUT (default %(default).0f s)")
    p.add_argument("--json-progress", action="store_true",
                   help="print progress as JSON lines on stdout (for the Slicer module and scripts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    studies: list[Path] = list(args.study)
    cancel = CancelToken()
    with _cancel_on_sigterm(cancel):
        if len(studies) == 1:
            check_out_dir(args.out, studies, create=False)
            return _assess_one(args, studies[0], args.out, cancel)
        return _assess_batch(args, studies, cancel)


@contextlib.contextmanager
def _cancel_on_sigterm(cancel: CancelToken) -> Iterator[None]:
    """SIGTERM (the Slicer panel's Cancel, a batch scheduler) cancels the run at once: the handler
    raises ``Cancelled`` wherever the main thread is (importing, loading models, between model
    calls), and the staging folder, lock and writer processes are cleaned up on the way out. The
    few milliseconds in which a finished output set is swapped in hold the signal back."""
    pid = os.getpid()

    def on_term(*_: object) -> None:
        if os.getpid() != pid:      # a writer process forked before it set its own handler: just end
            os._exit(128 + signal.SIGTERM)
        if cancel.cancelled:        # already on the way out: let the cleanup finish
            return
        cancel.cancel("terminated (SIGTERM)")
        raise Cancelled(cancel.reason)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _assess_one(args: argparse.Namespace, study: Path, out: Path, cancel: CancelToken, models=None,
                writers=None) -> int:
    from SpineAssistLib.export.outputs import WriterProcesses
    from SpineAssistLib.pipeline.run import run_assessment

    progress = json_lines_printer(sys.stdout) if args.json_progress else text_printer(sys.stderr)

    def on_wait(message: str) -> None:
        if args.json_progress:
            print(json.dumps({"event": "progress", "stage": "outputs", "fraction": 0.95, "message": message}),
                  flush=True)
        else:
            print(message, file=sys.stderr, flush=True)

    # the writer processes start first, so they import their libraries while the models run (a batch passes its own)
    own = WriterProcesses.start() if writers is None else None
    try:
        done = run_assessment(study, out, device=args.device, sagittal_uid=args.sagittal, axial_uid=args.axial,
                              study_uid=args.study_uid, use_axial=not args.no_axial, progress=progress,
                              cancel=cancel, models=models, writers=writers or own, lock_wait_s=args.lock_wait,
                              on_wait=on_wait)
    except SpineAssistError as e:
        if args.json_progress and not isinstance(e, Cancelled):
            print(json.dumps({"event": "error", "study": str(study), "message": str(e)}), flush=True)
        raise
    finally:
        if own is not None:
            own.close()
    if args.json_progress:
        # every warning, the reader/model disagreements among them, reaches the panel as a terminal user sees it
        for warning in done.result.assessment.warnings:
            print(json.dumps({"event": "warning", "message": warning}), flush=True)
        print(json.dumps({"event": "done", "study": str(study), "out": str(done.written.out_dir),
                          "findings": str(done.written.files.get("findings.json", "")),
                          "scene": str(done.written.files.get("scene.mrb", "")),
                          "seconds": round(done.seconds, 2), "disagreements": done.written.disagreements}),
              flush=True)
    else:
        print(done.summary())
    return 0


def batch_folders(studies: list[Path], out: Path) -> list[Path]:
    """Return one output folder per study under ``out``: the study folder's name, made unique."""
    used: set[str] = set()
    folders = []
    for study in studies:
        base = study.resolve().name or "study"
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        folders.append(out / name)
    return folders


def _assess_batch(args: argparse.Namespace, studies: list[Path], cancel: CancelToken) -> int:
    from SpineAssistLib.export.outputs import WriterProcesses
    from SpineAssistLib.pipeline.assess import AXIAL_MODELS, SAGITTAL_MODELS, ModelSet

    if args.sagittal or args.axial or args.study_uid:
        raise SpineAssistError("--sagittal, --axial and --study name series or a study of one folder: give one STUDY with them")
    outs = batch_folders(studies, args.out)
    check_out_dir(args.out, studies)        # every output folder is checked before any model runs
    for study, out in zip(studies, outs):
        check_out_dir(out, [study], create=False)   # made when its study is assessed
    cache: list[ModelSet] = []

    def models(_loaded) -> ModelSet:       # loaded (and SHA-256 checked) once for the whole batch
        if not cache:
            cache.append(ModelSet.load(SAGITTAL_MODELS + AXIAL_MODELS, device=args.device))
        return cache[0]

    failed: list[tuple[Path, str]] = []
    with WriterProcesses.start() or contextlib.nullcontext() as writers:   # shared by every study
        for i, (study, out) in enumerate(zip(studies, outs), 1):
            cancel.check()
            print(f"== study {i} of {len(studies)}: {study} -> {out}", file=sys.stderr, flush=True)
            try:
                _assess_one(args, study, out, cancel, models=models, writers=writers)
            except Cancelled:
                raise
            except SpineAssistError as e:
                failed.append((study, str(e)))
                print(f"error: {study}: {e}", file=sys.stderr, flush=True)
            except Exception as e:  # noqa: BLE001 - one study's unexpected failure must not cost the others
                log.exception("study %s failed", study)
                failed.append((study, f"unexpected error ({type(e).__name__}: {e}); the traceback is above"))
                if writers is not None and writers.closed:    # a failure mid-write stopped them; the rest write here
                    writers = None
    done = len(studies) - len(failed)
    print(f"{done} of {len(studies)} studies assessed into {args.out}" +
          "".join(f"\n  not assessed: {study}: {why}" for study, why in failed), file=sys.stderr, flush=True)
    return 2 if failed else 0
