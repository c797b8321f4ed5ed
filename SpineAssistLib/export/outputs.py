"""Write every output of an assessment into a folder: findings.json/.csv, report.html, seg.dcm, sr.dcm, scene.mrb.

All files are first written into a staging folder inside OUT and replace the previous set as one
set (``outdir.commit``) only when every one of them is complete, so an interrupted run (Ctrl-C, an
error, a cancelled Slicer job, a kill) never leaves a half-written file or a mixed set. OUT is
locked while the set is written; a reader-corrected findings.json already in OUT is read under the
lock and its corrections are carried into the new findings (the reader has the last word).

With ``parallel=True`` (the command line's default) two writer processes (``WriterProcesses``)
write the report, SEG and scene, and the SR: each writer is single-threaded Python, so two
cores halve the time. The command line starts them before the models run, so they import their
libraries (slicer-core, highdicom: seconds in a new process) while the models compute.
They only write into the staging folder; nothing is moved into place until both have finished
without error.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from SpineAssistLib import mrml
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.export import outdir
from SpineAssistLib.export.key_images import key_images_of
from SpineAssistLib.findings import Assessment, carry_reader_values

if TYPE_CHECKING:
    from SpineAssistLib.pipeline.result import AssessmentResult

log = logging.getLogger(__name__)

OUTPUT_FILES = ("findings.json", "findings.csv", "report.html", "seg.dcm", "sr.dcm", "scene.mrb")
# what a PACS gets back (--store): the derived DICOM objects, never the report or scene
PACS_OUTPUTS = ("seg.dcm", "sr.dcm")


@dataclass
class WrittenOutputs:
    """Where each output went, what was skipped (with why), and where reader and new model disagree."""

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    disagreements: list[str] = field(default_factory=list)


def previous_findings(out_dir: Path) -> Assessment | None:
    """Return the findings.json already in ``out_dir`` (e.g. corrected by a reader), or None."""
    path = out_dir / "findings.json"
    if not path.exists():
        return None
    keep = ("It may hold a reader's corrections, so it is not overwritten: move it aside or choose another "
            "--out folder")
    if not path.is_file():
        raise SpineAssistError(f"{path} is not a file. {keep}")
    try:
        return Assessment.load(path)
    except OSError as e:
        raise SpineAssistError(f"{path} cannot be read ({e.strerror or e}). {keep}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        # AttributeError: valid JSON of the wrong shape ([], null, levels as a string)
        raise SpineAssistError(f"{path} exists but is not a findings file SpineAssist can read ({e}). {keep}") from None


def save_reader_findings(assessment: Assessment, out_dir: str | os.PathLike[str], **lock_options: Any) -> Path:
    """Save a reader's findings (the panel's Save) as OUT/findings.json, under OUT's lock; return the path.

    A run writing OUT finishes first. If OUT's findings.json came from a newer run than the one the
    reader corrected, the reader's corrections are carried into it (the new model values stay
    beside them) rather than the older run's values written over it.
    """
    return save_reader_session(assessment, out_dir, **lock_options)


def save_reader_session(assessment: Assessment, out_dir: str | os.PathLike[str], *,
                        scene_writer: Callable[[Path], None] | None = None, **lock_options: Any) -> Path:
    """Save a reader's findings and, with ``scene_writer``, the scene they were read in, as one set; return
    OUT/findings.json.

    ``scene_writer(path)`` writes the scene (``scene.mrb``) to ``path`` inside a staging folder;
    findings.json and scene.mrb then replace OUT's pair together (``outdir.commit``) under OUT's lock,
    so an interrupted save leaves the previous pair, never one new file beside an old one. When
    OUT's findings come from a newer run (see ``save_reader_findings``) only the findings are written:
    that run's scene stays, as the reader's older scene would contradict its findings.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with outdir.locked(out, **lock_options):
        current = previous_findings(out)
        target = assessment
        if current is not None and current.study_instance_uid == assessment.study_instance_uid \
                and current.created != assessment.created:
            for line in carry_reader_values(current, assessment):
                current.warnings.append(f"reader and new model disagree: {line}")
            target = current
        staging = outdir.staging_path(out)
        try:
            staging.mkdir()
            (staging / "findings.json").write_text(target.to_json() + "\n", encoding="utf-8")
            written = ["findings.json"]
            if scene_writer is not None and target is assessment:
                scene_writer(staging / "scene.mrb")
                written.append("scene.mrb")
            outdir.commit(out, staging, written, managed=written)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out / "findings.json"


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


MERGE_ATTEMPTS = 3   # a findings.json that changes under us this often is being rewritten by something else


def write_outputs(result: "AssessmentResult", out_dir: str | os.PathLike[str], *,
                  keep_corrections: bool = True,
                  check: Callable[[], None] = lambda: None, parallel: bool = False,
                  writers: "WriterProcesses | None" = None, lock_wait_s: float = outdir.DEFAULT_LOCK_WAIT_S,
                  on_wait: Callable[[str], None] | None = None) -> WrittenOutputs:
    """Write all outputs of ``result`` into ``out_dir`` as one set; return what was written.

    OUT is locked (``outdir.OutLock``) from the merge with the reader's findings.json to the
    swap, so a correction saved meanwhile (through the lock) waits and is not lost; a findings.json
    changed without the lock (an editor) is seen before the swap and merged in a new attempt.
    ``check`` is called between files (a cancel token's ``check``) so a cancelled run stops early
    and leaves ``out_dir`` as it was. ``writers``: started writer processes to write the report,
    SEG, SR and scene (``WriterProcesses.start``); ``parallel`` without them: fork one now for the
    report, SEG and scene while this process writes the rest (Linux with 2+ cores, else one by one in this
    process; not from inside a GUI application).
    """
    out = outdir.check_out_dir(out_dir)  # resolved: Slicer's bundle writer refuses relative paths
    pristine = copy.deepcopy(result.assessment) if keep_corrections else None
    with outdir.OutLock(out, wait_s=lock_wait_s, on_wait=on_wait, check=check):
        for attempt in range(MERGE_ATTEMPTS):
            seen = _fingerprint(out / "findings.json")
            written = WrittenOutputs(out)
            if pristine is not None:
                if attempt:
                    result.assessment = copy.deepcopy(pristine)
                written.disagreements = _merge_reader_values(result.assessment, out)
            staging = outdir.staging_path(out)
            try:
                staging.mkdir(mode=0o700)
                _write_set(result, staging, written, check, parallel, writers)
                check()
                if _fingerprint(out / "findings.json") != seen:
                    log.warning("%s changed while the outputs were written; merging it again", out / "findings.json")
                    continue
                with outdir.signals_held():        # the swap is short: a signal waits for it rather than a recovery
                    outdir.commit(out, staging, list(written.files), OUTPUT_FILES)
                return written
            except OSError as e:
                raise SpineAssistError(outdir.os_error_message(e, out, "the outputs")) from None
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    raise SpineAssistError(f"{out / 'findings.json'} kept changing while the outputs were written; close what "
                           f"is editing it and run again (the outputs in {out} are unchanged)")


def _merge_reader_values(assessment: Assessment, out: Path) -> list[str]:
    """Carry the reader's corrections of OUT's findings.json into ``assessment``; return the disagreements."""
    previous = previous_findings(out)
    if previous is None:
        return []
    if previous.study_instance_uid != assessment.study_instance_uid:
        raise SpineAssistError(
            f"{out / 'findings.json'} belongs to another study ({previous.study_instance_uid}); "
            f"choose another --out folder for study {assessment.study_instance_uid}")
    disagreements = carry_reader_values(assessment, previous)
    for line in disagreements:
        assessment.warnings.append(f"reader and new model disagree: {line}")
    return disagreements


def _write_set(result: "AssessmentResult", staging: Path, written: WrittenOutputs, check: Callable[[], None],
               parallel: bool, writers: "WriterProcesses | None") -> None:
    """Write every output of ``result`` into ``staging``; record in ``written`` what was made or skipped."""
    own = None
    try:
        if writers is None and parallel:   # forked now from this (large) process: one child, this one writes too
            writers = own = WriterProcesses.start(WRITER_GROUPS[:1])
        if writers is not None and not writers.closed:
            writers.send(result, staging)
        sent = writers is not None and not writers.closed and writers.busy
        here = [(n, w) for n, w in _writers() if not sent or n not in writers.outputs]
        outcomes = {name: _write_one(name, writer, result, staging, check) for name, writer in here}
        if sent:
            outcomes.update(writers.wait(check))
        for name, _ in _writers():
            if name not in outcomes:
                continue
            made, why = outcomes[name]
            if why is not None:
                written.skipped[name] = why
                log.info("%s not written: %s", name, why)
            elif made:
                written.files[name] = written.out_dir / name
    finally:
        if own is not None or (writers is not None and writers.busy):   # a failure here left them mid-job
            (own or writers).close()


# one process each, groups of about equal time on a 2-core CPU (the SR takes as long as the other three;
# the per-stage times in benchmarks/RESULTS.md, "Assessment")
WRITER_GROUPS = (("report.html", "seg.dcm", "scene.mrb"), ("sr.dcm",))
VOXEL_OUTPUTS = {"report.html", "seg.dcm", "scene.mrb"}    # the outputs that draw or save voxels or labels
WRITER_IMPORTS = {      # what each writer imports (and its first use loads), ahead of the work
    "report.html": ("SpineAssistLib.export.report_html", "cv2"),
    "seg.dcm": ("SpineAssistLib.export.dicom_seg", "highdicom", "highdicom.seg"),
    "sr.dcm": ("SpineAssistLib.export.dicom_sr", "highdicom", "highdicom.sr"),
    "scene.mrb": ("slicer", "SpineAssistLib.mrml", "SpineAssistLib.mrml.nodes", "vtkmodules.util.numpy_support"),
}
# imported in this process before the writers are forked: this process needs them (it reads the study)
# and every writer does, so the writers start with them instead of importing them again (pydicom imports
# requests and its pixel decoders) while the models need the cores
PARENT_IMPORTS = ("numpy", "pydicom")
WRITER_NICENESS = 10     # added to the writer processes' nice value
CHILD_TIMEOUT_S = 600.0   # writer processes that have not answered by then are stopped


def _write_one(name: str, writer: Callable[["AssessmentResult", Path], bool], result: "AssessmentResult",
               staging: Path, check: Callable[[], None] = lambda: None) -> tuple[bool, str | None]:
    """Return (written, why skipped) for one output; a file-system failure becomes one line to act on."""
    check()
    t = time.perf_counter()
    try:
        return writer(result, staging / name), None
    except _Skip as skip:
        return False, str(skip)
    except OSError as e:
        raise SpineAssistError(outdir.os_error_message(e, staging.parent, name)) from None
    finally:
        log.debug("%s: %.2f s (process %d)", name, time.perf_counter() - t, os.getpid())


def _can_fork() -> bool:
    import multiprocessing

    # Linux only: on macOS a forked child of a process that loaded system frameworks may crash
    return sys.platform.startswith("linux") and (os.cpu_count() or 1) > 1 and \
        "fork" in multiprocessing.get_all_start_methods()


class WriterProcesses:
    """Forked processes that write the report, SEG and scene, and the SR, of each result sent.

    Start them early (``start()`` before the models run: the command line does): each imports
    its writers' libraries at once, in parallel with the models, and then waits. ``send`` hands
    them a result (pickled: voxels and masks) and ``wait`` collects what
    they wrote or raises their error. One result at a time; they serve every study of a batch.
    A cancel, an error or a timeout stops them (``closed``); ``close`` ends them.
    """

    def __init__(self, groups: tuple[tuple[str, ...], ...] = WRITER_GROUPS):
        import importlib
        import multiprocessing

        for module in PARENT_IMPORTS:
            importlib.import_module(module)
        ctx = multiprocessing.get_context("fork")
        self.outputs = tuple(name for group in groups for name in group)
        self.closed = False
        self._busy = False
        self._children: list[tuple[Any, Any, tuple[str, ...]]] = []
        sys.stdout.flush()     # a forked child must not write this process's buffered output again
        sys.stderr.flush()
        with outdir.signals_held():      # a child gets a signal only once it has its own handlers (_writer_main)
            self._fork(ctx, groups)

    def _fork(self, ctx: Any, groups: tuple[tuple[str, ...], ...]) -> None:
        for group in groups:
            mine, theirs = ctx.Pipe(duplex=True)
            ours = [mine] + [c for _, c, _ in self._children]   # inherited by the child, which closes them
            proc = ctx.Process(target=_writer_main, args=(theirs, group, ours, os.getpid()), daemon=True,
                               name=f"spineassist-writer-{'+'.join(group)}")
            proc.start()
            theirs.close()
            self._children.append((proc, mine, group))

    @property
    def busy(self) -> bool:
        """Whether a result was sent and its outcomes not yet collected."""
        return self._busy

    @classmethod
    def start(cls, groups: tuple[tuple[str, ...], ...] = WRITER_GROUPS) -> "WriterProcesses | None":
        """Return started writer processes, or None where they cannot run (not Linux, one core)."""
        return cls(groups) if _can_fork() else None

    def send(self, result: "AssessmentResult", staging: Path) -> None:
        """Hand ``result`` to the writer processes (``busy`` afterwards), or close them and return
        (not ``busy``) when it cannot be pickled: the caller then writes it itself."""
        import pickle

        if self.closed or self._busy:
            raise RuntimeError("the writer processes are closed or still writing")
        messages: dict[bool, bytes] = {}     # by whether the child's outputs need the voxels
        try:
            for _, _, group in self._children:
                voxels = _needs_voxels(group)
                if voxels not in messages:
                    messages[voxels] = pickle.dumps((str(staging), _without_pixel_data(result, voxels)),
                                                    protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - not busy afterwards: the caller writes everything itself
            log.warning("the result cannot be sent to the writer processes (%s); writing in this process", e)
            self.close()
            return
        self._busy = True
        try:
            # the small message first: a pipe send waits until the child has read it all, and the SR
            # writer (no voxels, a few hundred kB) is the longest job
            for _, conn, group in sorted(self._children, key=lambda child: len(messages[_needs_voxels(child[2])])):
                conn.send_bytes(messages[_needs_voxels(group)])
        except BaseException:
            self.close()
            raise

    def wait(self, check: Callable[[], None] = lambda: None) -> dict[str, tuple[bool, str | None]]:
        """Return the outcomes of every writer process; raise the first error (and stop them)."""
        outcomes: dict[str, tuple[bool, str | None]] = {}
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        try:
            for proc, conn, group in self._children:
                message = None
                while message is None:
                    check()
                    try:
                        if conn.poll(0.05):
                            message = conn.recv()
                        elif not proc.is_alive() or time.monotonic() > deadline:
                            break
                    except EOFError:
                        break
                if message is None:
                    raise SpineAssistError(
                        f"the process writing {', '.join(group)} stopped without an answer (exit status "
                        f"{proc.exitcode}); nothing was moved into the output folder")
                kind, payload = message
                if kind != "ok":
                    error_type, text, trace = payload
                    log.debug("writer process failed:\n%s", trace)
                    if error_type == "SpineAssistError":
                        raise SpineAssistError(text)
                    raise RuntimeError(f"writing {', '.join(group)} failed: {error_type}: {text}")
                outcomes.update(payload)
        except BaseException:
            self.close()          # a half-done job leaves them out of step: they stop
            raise
        self._busy = False
        return outcomes

    def close(self) -> None:
        """End the writer processes (at once if they are writing)."""
        if not self._children:
            self.closed, self._busy = True, False
            return
        for proc, conn, _ in self._children:
            conn.close()          # an idle writer reads end-of-file and exits
            # one still importing its libraries would read it only when done, and one writing holds
            # nothing worth waiting for (it writes into staging, which is removed): end both now
            if proc.is_alive():
                proc.terminate()
        for proc, _, _ in self._children:
            proc.join(5)
            if proc.is_alive():   # pragma: no cover - a writer stuck in a library call
                proc.kill()
                proc.join(5)
        self._children = []
        self.closed = True
        self._busy = False

    def __enter__(self) -> "WriterProcesses":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _writer_main(conn: Any, outputs: tuple[str, ...], parent_ends: list[Any], parent_pid: int) -> None:
    """A writer process: import its libraries, then write each result it is sent until end-of-file."""
    import importlib
    import pickle
    import signal
    import traceback

    for end in parent_ends:      # else the parent closing its end would not reach us as end-of-file
        end.close()

    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the parent's to handle: it stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # not the parent's cancel handler: terminate ends us
    die_with_parent(parent_pid)
    if hasattr(signal, "pthread_sigmask"):          # held back by the parent across the fork
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # lower priority: the imports below then take the CPU the models leave, not the models'; while the
    # parent waits for the outputs the writers have the CPU to themselves anyway
    if hasattr(os, "nice"):
        os.nice(WRITER_NICENESS)
    for module in dict.fromkeys(m for name in outputs for m in WRITER_IMPORTS.get(name, ())):
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - the writer imports it again and reports the error
            log.debug("writer process: importing %s failed: %s", module, e)
    _warm_up(outputs)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            staging, result = pickle.loads(data)
            writers = [(n, w) for n, w in _writers() if n in outputs]
            answer: tuple[str, Any] = ("ok", {name: _write_one(name, w, result, Path(staging)) for name, w in writers})
        except BaseException as e:  # noqa: BLE001 - every failure is reported to the parent, which raises it
            answer = ("error", (type(e).__name__, str(e), traceback.format_exc()))
        try:
            conn.send(answer)
        except OSError:     # the parent is gone (killed): nobody waits for the answer, and nothing is moved
            os._exit(1)


def die_with_parent(parent_pid: int, sig: int = 9) -> None:
    """Have the kernel send ``sig`` (SIGKILL by default) to this process when its parent dies (Linux),
    so a killed run leaves no child working on; elsewhere the closed pipe ends it at its next message."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig, 0, 0, 0)      # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError) as e:
        log.debug("no parent-death signal: %s", e)
    if os.getppid() != parent_pid:                 # the parent died before the signal was asked for
        os._exit(1)


def _warm_up(outputs: tuple[str, ...]) -> None:
    """Pay the libraries' first-use costs before a result arrives: highdicom reads the DICOM
    standard's tables on its first SEG or SR."""
    if {"seg.dcm", "sr.dcm"} & set(outputs):
        try:
            from highdicom import (
                _standard_utils as standard,  # private, but only a warm-up: may change
            )

            standard.get_sop_class_iod_map()
            standard.get_iod_module_map()
            standard.get_module_attribute_map()
        except Exception as e:  # noqa: BLE001 - the first SEG/SR then reads the tables itself
            log.debug("writer process: highdicom warm-up skipped: %s", e)


class _Skip(Exception):
    """An output that this result cannot give (e.g. no SEG without a disc segmentation)."""


def _findings_json(result: "AssessmentResult", path: Path) -> bool:
    result.assessment.save(path)
    return True


def _findings_csv(result: "AssessmentResult", path: Path) -> bool:
    from SpineAssistLib.export.findings_csv import write_findings_csv

    write_findings_csv(result.assessment, path)
    return True


def _report(result: "AssessmentResult", path: Path) -> bool:
    from SpineAssistLib.export.report_html import write_report_html

    write_report_html(result.assessment, path, images=key_images_of(result))
    return True


def _seg(result: "AssessmentResult", path: Path) -> bool:
    from SpineAssistLib.export.dicom_seg import write_disc_seg

    sag = result.sagittal
    if sag is None or sag.labels is None or not sag.datasets:
        raise _Skip("no sagittal disc segmentation")
    corrected = any(lv.all_corrections() for lv in result.assessment.levels)
    write_disc_seg(sag.datasets, sag.disc_labels(), result.assessment, path, reader_edited=corrected,
                   reader=_readers(result.assessment))
    return True


def _sr(result: "AssessmentResult", path: Path) -> bool:
    from SpineAssistLib.export.dicom_sr import write_measurement_report

    # the SR references images by UID only: pass headers, so highdicom's deep copies skip the pixels
    sources = [_header_only(ds) for ds in result.source_datasets()]
    if not sources:
        raise _Skip("no source DICOM images to reference")
    write_measurement_report(result.assessment, sources, path)
    return True


def _needs_voxels(outputs: tuple[str, ...]) -> bool:
    return bool(set(outputs) & VOXEL_OUTPUTS)


def _without_pixel_data(result: "AssessmentResult", voxels: bool = True) -> "AssessmentResult":
    """Return ``result`` with header-only DICOM datasets: what the writer processes are sent. The
    writers draw and save the stacks' voxels; the SEG and SR need only the headers (the same SEG,
    UIDs and times apart). The pixel data was 40 % of the ~60 MB each writer received.
    ``voxels=False``: the stacks' voxels and label maps are left out too (what the SR needs: the
    findings and the headers; 0.3 MB instead of 38 MB for a phantom study)."""
    import copy
    import dataclasses

    def headers(stack: Any) -> Any:
        if stack is None:
            return None
        datasets = [_header_only(ds) for ds in stack.datasets]
        if voxels:
            return dataclasses.replace(stack, datasets=datasets)
        import numpy as np

        return dataclasses.replace(stack, datasets=datasets, voxels=np.empty((stack.voxels.shape[0], 0, 0), np.float32),
                                   labels=None)

    out = copy.copy(result)
    out.sagittal = headers(result.sagittal)
    out.axial = [headers(s) for s in result.axial]
    return out


def _header_only(ds: Any) -> Any:
    """Return a dataset sharing ``ds``'s elements except the pixel data."""
    import pydicom

    parent = getattr(ds, "_parent", None)  # a frame of a multi-frame image: use its file's header
    src = parent if parent is not None else ds
    header = pydicom.Dataset()
    for elem in src:
        if elem.tag.group != 0x7FE0:
            header.add(elem)
    if hasattr(src, "file_meta"):
        header.file_meta = src.file_meta
    return header


def _scene(result: "AssessmentResult", path: Path) -> bool:
    scene = mrml.new_scene()
    try:
        nodes = mrml.show_assessment(scene, result.assessment, **mrml.scene_inputs(result))
        mrml.save_state(scene, result.assessment, nodes)
        errors: list[str] = []
        if not mrml.write_mrb(scene, path, errors):
            out = path.parent.parent      # the staging folder's: OUT
            why = errors[-1] if errors else "no reason given"
            free = shutil.disk_usage(path.parent).free / 2**20
            raise SpineAssistError(f"Slicer could not write the scene {path.name} into {out} ({why}); {free:.0f} MB "
                                   f"are free there: free some space or choose an --out folder on another disk; "
                                   f"the outputs already in {out} are unchanged")
    finally:
        scene.Clear(1)
    return True


def _writers() -> list[tuple[str, Callable[["AssessmentResult", Path], bool]]]:
    return [("findings.json", _findings_json), ("findings.csv", _findings_csv), ("report.html", _report),
            ("seg.dcm", _seg), ("sr.dcm", _sr), ("scene.mrb", _scene)]


def _readers(assessment: Assessment) -> str:
    names = sorted({c.reader for lv in assessment.levels for c in lv.all_corrections()})
    return ", ".join(names)


def describe(written: WrittenOutputs) -> str:
    """Return a short human-readable list of what was written where."""
    lines = [f"outputs in {written.out_dir}:"]
    lines += [f"  {name:14s} {path}" for name, path in written.files.items()]
    lines += [f"  {name:14s} not written: {why}" for name, why in written.skipped.items()]
    return "\n".join(lines)

