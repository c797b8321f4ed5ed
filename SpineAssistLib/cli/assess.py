"""``spineassist assess STUDY --out OUT``: a DICOM folder in, findings, report, DICOM SEG/SR and a Slicer scene out.

Several studies in one command (``spineassist assess A B C --out OUT``) go to ``OUT/A``, ``OUT/B``, ...:
the models are loaded once (a fresh process spends seconds on imports and loading), and a study
that cannot be read is reported and skipped while the others are assessed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from pathlib import Path

from SpineAssistLib.errors import Cancelled, SpineAssistError
from SpineAssistLib.pipeline.progress import CancelToken, json_lines_printer, text_printer


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
    p.add_argument("--no-axial", action="store_true", help="assess the sagittal series only")
    p.add_argument("--json-progress", action="store_true",
                   help="print progress as JSON lines on stdout (for the Slicer module and scripts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    studies: list[Path] = list(args.study)
    cancel = CancelToken()
    previous = signal.signal(signal.SIGTERM, lambda *_: cancel.cancel("terminated (SIGTERM)"))
    try:
        if len(studies) == 1:
            return _assess_one(args, studies[0], args.out, cancel)
        return _assess_batch(args, studies, cancel)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _assess_one(args: argparse.Namespace, study: Path, out: Path, cancel: CancelToken, models=None,
                writers=None) -> int:
    from SpineAssistLib.export.outputs import WriterProcesses
    from SpineAssistLib.pipeline.run import run_assessment

    progress = json_lines_printer(sys.stdout) if args.json_progress else text_printer(sys.stderr)
    # the writer processes start first, so they import their libraries while the models run (a batch passes its own)
    own = WriterProcesses.start() if writers is None else None
    try:
        done = run_assessment(study, out, device=args.device, sagittal_uid=args.sagittal,
                              axial_uid=args.axial, use_axial=not args.no_axial, progress=progress, cancel=cancel,
                              models=models, writers=writers or own)
    except SpineAssistError as e:
        if args.json_progress:
            print(json.dumps({"event": "error", "study": str(study), "message": str(e)}), flush=True)
        raise
    finally:
        if own is not None:
            own.close()
    if args.json_progress:
        print(json.dumps({"event": "done", "study": str(study), "out": str(done.written.out_dir),
                          "findings": str(done.written.files.get("findings.json", "")),
                          "scene": str(done.written.files.get("scene.mrb", "")),
                          "seconds": round(done.seconds, 2)}), flush=True)
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

    if args.sagittal or args.axial:
        raise SpineAssistError("--sagittal and --axial name series of one study: give one STUDY with them")
    cache: list[ModelSet] = []

    def models(_loaded) -> ModelSet:       # loaded (and SHA-256 checked) once for the whole batch
        if not cache:
            cache.append(ModelSet.load(SAGITTAL_MODELS + AXIAL_MODELS, device=args.device))
        return cache[0]

    failed: list[tuple[Path, str]] = []
    with WriterProcesses.start() or contextlib.nullcontext() as writers:   # shared by every study
        for i, (study, out) in enumerate(zip(studies, batch_folders(studies, args.out)), 1):
            cancel.check()
            print(f"== study {i} of {len(studies)}: {study} -> {out}", file=sys.stderr, flush=True)
            try:
                _assess_one(args, study, out, cancel, models=models, writers=writers)
            except Cancelled:
                raise
            except SpineAssistError as e:
                failed.append((study, str(e)))
                print(f"error: {study}: {e}", file=sys.stderr, flush=True)
    done = len(studies) - len(failed)
    print(f"{done} of {len(studies)} studies assessed into {args.out}" +
          "".join(f"\n  not assessed: {study}: {why}" for study, why in failed), file=sys.stderr, flush=True)
    return 2 if failed else 0
