"""``spineassist assess STUDY --out OUT``: a DICOM folder in, findings, report, DICOM SEG/SR and a Slicer scene out.

Several studies in one command (``spineassist assess A B C --out OUT``) go to ``OUT/A``, ``OUT/B``, ...:
the models are loaded once (a fresh process spends seconds on imports and loading), and a study
that cannot be read is reported and skipped while the others are assessed.

From a PACS: ``spineassist assess --dicomweb URL UID... --out OUT [--store]`` fetches each study's MR
series (WADO-RS) into a temporary folder that is removed afterwards (also on Cancel), assesses it
like a folder, and with ``--store`` sends OUT's seg.dcm and sr.dcm back (STOW-RS) once written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

from SpineAssistLib.dicom.dicomweb import DicomwebServer, check_uid, connect
from SpineAssistLib.errors import Cancelled, SpineAssistError
from SpineAssistLib.export.outdir import DEFAULT_LOCK_WAIT_S, check_out_dir
from SpineAssistLib.pipeline.progress import CancelToken, cancel_on_sigterm, json_lines_printer, text_printer

log = logging.getLogger(__name__)

FETCH_PREFIX = "spineassist-fetch-"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "assess", help="assess a lumbar MRI study: findings.json/.csv, report.html, seg.dcm, sr.dcm, scene.mrb",
        description="Find the sagittal and axial T2 series in STUDY (a DICOM folder), run the bundled models, "
        "grade every disc level and write the outputs into OUT. A findings.json in OUT that a reader "
        "corrected keeps its corrections. Exit status: 0 done, 2 bad input, 130 cancelled.")
    p.add_argument("study", type=Path, nargs="+",
                   help="folder holding the study's DICOM files (searched recursively, never written to); several "
                        "folders: each is assessed into OUT/<folder name>, the models loaded once. With --dicomweb: "
                        "Study Instance UIDs on that server (several: OUT/<UID>)")
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
    web = p.add_argument_group(
        "from a PACS", "Credentials come from SPINEASSIST_DICOMWEB_TOKEN (Bearer), or SPINEASSIST_DICOMWEB_USER and "
        "SPINEASSIST_DICOMWEB_PASSWORD, or the netrc file entry for the server's host; never from the URL.")
    web.add_argument("--dicomweb", metavar="URL",
                     help="DICOMweb root of a PACS (e.g. http://pacs:8042/dicom-web): each STUDY is a Study Instance "
                          "UID there; its MR series are fetched into a temporary folder, removed afterwards")
    web.add_argument("--store", action="store_true",
                     help="with --dicomweb: store OUT's seg.dcm and sr.dcm on the server once written (STOW-RS); "
                          "what the server holds already is not sent again")
    web.add_argument("--keep-fetched", type=Path, metavar="DIR",
                     help="with --dicomweb: fetch into DIR/<UID> and keep it there (a rerun fetches only what is "
                          "missing) instead of a temporary folder")
    p.set_defaults(func=run)


@dataclass
class _Study:
    """One study of the command: how messages name it, where its outputs go, how its DICOM folder is opened
    (a local folder as it is; a PACS study fetched, and removed at exit), and what follows its outputs (--store)."""

    label: str
    out: Path
    open: Callable[[], ContextManager[Path]]
    after: Callable[[], None] = lambda: None


def run(args: argparse.Namespace) -> int:
    cancel = CancelToken()
    with cancel_on_sigterm(cancel):
        if args.dicomweb:
            return _run_dicomweb(args, cancel)
        if args.store or args.keep_fetched is not None:
            raise SpineAssistError("--store and --keep-fetched go with --dicomweb URL (the STUDY arguments are then "
                                   "Study Instance UIDs on that server): add --dicomweb URL, or leave them out")
        studies: list[Path] = list(args.study)
        if len(studies) == 1:
            check_out_dir(args.out, studies, create=False)
            return _assess_study(args, _local(studies[0], args.out), cancel)
        outs = batch_folders(studies, args.out)
        return _assess_batch(args, [_local(s, o) for s, o in zip(studies, outs)], cancel, inputs=studies)


def _local(folder: Path, out: Path) -> _Study:
    return _Study(str(folder), out, lambda: contextlib.nullcontext(folder))


def _run_dicomweb(args: argparse.Namespace, cancel: CancelToken) -> int:
    if args.study_uid:
        raise SpineAssistError("with --dicomweb the STUDY arguments are Study Instance UIDs already: leave out --study")
    uids = list(dict.fromkeys(check_uid(str(s)) for s in args.study))
    keep = args.keep_fetched
    if keep is not None:
        out, kept = args.out.expanduser().resolve(), keep.expanduser().resolve()
        if kept == out or out in kept.parents:
            raise SpineAssistError(f"--keep-fetched {keep} is inside the output folder {args.out}: keep the fetched "
                                   f"studies in a folder of their own, outside --out")
    server = connect(args.dicomweb)
    inputs = [keep / uid for uid in uids] if keep is not None else []
    if len(uids) == 1:
        check_out_dir(args.out, inputs, create=False)
        return _assess_study(args, _from_pacs(args, server, uids[0], args.out, cancel), cancel)
    studies = [_from_pacs(args, server, uid, args.out / uid, cancel) for uid in uids]
    return _assess_batch(args, studies, cancel, inputs=inputs)


def _from_pacs(args: argparse.Namespace, server: DicomwebServer, uid: str, out: Path, cancel: CancelToken) -> _Study:
    @contextlib.contextmanager
    def fetched() -> Iterator[Path]:
        _say(args, "fetch", f"fetching study {uid} from {server.url}")
        if args.keep_fetched is not None:
            yield server.fetch_study(uid, args.keep_fetched / uid, cancel=cancel.check)
            return
        # outside OUT (never part of an output set); removed on the way out of a failure or a cancel too
        root = Path(tempfile.mkdtemp(prefix=FETCH_PREFIX))
        try:
            yield server.fetch_study(uid, root / uid, cancel=cancel.check)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def store() -> None:
        if args.store:
            _store(args, server, uid, out)

    return _Study(uid, out, fetched, store)


def _store(args: argparse.Namespace, server: DicomwebServer, uid: str, out: Path) -> None:
    from SpineAssistLib.export.outputs import PACS_OUTPUTS

    paths = [out / name for name in PACS_OUTPUTS if (out / name).is_file()]
    result = server.store(paths)
    if args.json_progress:
        print(json.dumps({"event": "stored", "study": uid, "url": server.url, "stored": list(result.stored),
                          "already_there": list(result.already_there)}), flush=True)
    else:
        names = " and ".join(p.name for p in paths) or "nothing (no seg.dcm or sr.dcm)"
        print(f"stored {names} in {server.url}: {len(result.stored)} sent, "
              f"{len(result.already_there)} there already", flush=True)


def _say(args: argparse.Namespace, stage: str, message: str) -> None:
    if args.json_progress:
        print(json.dumps({"event": "progress", "stage": stage, "fraction": 0.0, "message": message}), flush=True)
    else:
        print(message, file=sys.stderr, flush=True)


def _assess_study(args: argparse.Namespace, study: _Study, cancel: CancelToken, models=None, writers=None) -> int:
    """Open the study, assess it into its output folder, then what follows (--store); report an error as an event."""
    try:
        with study.open() as folder:
            rc = _assess_one(args, folder, study.out, cancel, models=models, writers=writers, label=study.label)
        study.after()
        return rc
    except SpineAssistError as e:
        if args.json_progress and not isinstance(e, Cancelled):
            print(json.dumps({"event": "error", "study": study.label, "message": str(e)}), flush=True)
        raise


def _assess_one(args: argparse.Namespace, study: Path, out: Path, cancel: CancelToken, models=None,
                writers=None, label: str | None = None) -> int:
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
    finally:
        if own is not None:
            own.close()
    if args.json_progress:
        # every warning, the reader/model disagreements among them, reaches the panel as a terminal user sees it
        for warning in done.result.assessment.warnings:
            print(json.dumps({"event": "warning", "message": warning}), flush=True)
        print(json.dumps({"event": "done", "study": label or str(study), "out": str(done.written.out_dir),
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


def _assess_batch(args: argparse.Namespace, studies: list[_Study], cancel: CancelToken, inputs: list[Path]) -> int:
    """Assess several studies into their output folders, the models loaded once; ``inputs``: the folders
    the studies are read from (never written to)."""
    from SpineAssistLib.export.outputs import WriterProcesses
    from SpineAssistLib.pipeline.assess import AXIAL_MODELS, SAGITTAL_MODELS, ModelSet

    if args.sagittal or args.axial or args.study_uid:
        raise SpineAssistError("--sagittal, --axial and --study name series or a study of one folder: give one STUDY with them")
    check_out_dir(args.out, inputs)        # every output folder is checked before any model runs
    for study in studies:
        check_out_dir(study.out, inputs, create=False)   # made when its study is assessed
    cache: list[ModelSet] = []

    def models(_loaded) -> ModelSet:       # loaded (and SHA-256 checked) once for the whole batch
        if not cache:
            cache.append(ModelSet.load(SAGITTAL_MODELS + AXIAL_MODELS, device=args.device))
        return cache[0]

    failed: list[tuple[str, str]] = []
    with WriterProcesses.start() or contextlib.nullcontext() as writers:   # shared by every study
        for i, study in enumerate(studies, 1):
            cancel.check()
            print(f"== study {i} of {len(studies)}: {study.label} -> {study.out}", file=sys.stderr, flush=True)
            try:
                _assess_study(args, study, cancel, models=models, writers=writers)
            except Cancelled:
                raise
            except SpineAssistError as e:
                failed.append((study.label, str(e)))
                print(f"error: {study.label}: {e}", file=sys.stderr, flush=True)
            except Exception as e:  # noqa: BLE001 - one study's unexpected failure must not cost the others
                log.exception("study %s failed", study.label)
                failed.append((study.label, f"unexpected error ({type(e).__name__}: {e}); the traceback is above"))
                if writers is not None and writers.closed:    # a failure mid-write stopped them; the rest write here
                    writers = None
    done = len(studies) - len(failed)
    print(f"{done} of {len(studies)} studies assessed into {args.out}" +
          "".join(f"\n  not assessed: {study}: {why}" for study, why in failed), file=sys.stderr, flush=True)
    return 2 if failed else 0
