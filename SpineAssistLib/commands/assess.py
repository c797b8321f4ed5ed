"""``spineassist assess STUDY --out OUT``: a DICOM folder in, findings, report, DICOM SEG/SR and a Slicer scene out."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from ..errors import SpineAssistError
from ..progress import CancelToken, json_lines_printer, text_printer


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "assess", help="assess a lumbar MRI study: findings.json/.csv, report.html, seg.dcm, sr.dcm, scene.mrb",
        description="Find the sagittal and axial T2 series in STUDY (a DICOM folder), run the bundled models, "
        "grade every disc level and write the outputs into OUT. A findings.json in OUT that a reader "
        "corrected keeps its corrections. Exit status: 0 done, 2 bad input, 130 cancelled.")
    p.add_argument("study", type=Path, help="folder holding the study's DICOM files (searched recursively, never written to)")
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
    from ..pipeline import run_assessment

    cancel = CancelToken()
    previous = signal.signal(signal.SIGTERM, lambda *_: cancel.cancel("terminated (SIGTERM)"))
    progress = json_lines_printer(sys.stdout) if args.json_progress else text_printer(sys.stderr)
    try:
        done = run_assessment(args.study, args.out, device=args.device, sagittal_uid=args.sagittal,
                              axial_uid=args.axial, use_axial=not args.no_axial, progress=progress, cancel=cancel)
    except SpineAssistError as e:
        if args.json_progress:
            print(json.dumps({"event": "error", "message": str(e)}), flush=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json_progress:
        print(json.dumps({"event": "done", "out": str(done.written.out_dir),
                          "findings": str(done.written.files.get("findings.json", "")),
                          "scene": str(done.written.files.get("scene.mrb", "")),
                          "seconds": round(done.seconds, 2)}), flush=True)
    else:
        print(done.summary())
    return 0
