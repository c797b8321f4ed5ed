"""Write every output of an assessment into a folder: findings.json/.csv, report.html, seg.dcm, sr.dcm, scene.mrb.

All files are first written into a staging folder inside OUT and moved into place only when every
one of them is complete, so an interrupted run (Ctrl-C, an error, a cancelled Slicer job) never
leaves a half-written file under a final name. A reader-corrected findings.json already in OUT is
read first and its corrections are carried into the new findings (the reader has the last word).

With ``parallel=True`` (the command line's default) the report and the SEG are written by a forked
child process while this one writes the SR and the scene: each is single-threaded Python, so two
cores halve the time. The child only writes into the staging folder; nothing is moved into place
until both have finished without error.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import SpineAssistError
from .findings import Assessment, carry_reader_values

if TYPE_CHECKING:
    from .pipeline import AssessmentResult

log = logging.getLogger(__name__)

OUTPUT_FILES = ("findings.json", "findings.csv", "report.html", "seg.dcm", "sr.dcm", "scene.mrb")


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
    if not path.is_file():
        return None
    try:
        return Assessment.load(path)
    except (ValueError, KeyError, TypeError) as e:
        raise SpineAssistError(
            f"{path} exists but cannot be read ({e}). It may hold a reader's corrections, so it is not "
            f"overwritten: move it aside or choose another --out folder") from None


def write_outputs(result: "AssessmentResult", out_dir: str | os.PathLike[str], *,
                  keep_corrections: bool = True,
                  check: Callable[[], None] = lambda: None, parallel: bool = False) -> WrittenOutputs:
    """Write all outputs of ``result`` into ``out_dir``; return what was written.

    ``check`` is called between files (a cancel token's ``check``) so a cancelled run stops early
    and leaves ``out_dir`` as it was. ``parallel``: write the report and SEG in a forked child
    process meanwhile (Linux with 2+ cores, else one by one; not from inside a GUI application).
    """
    out = Path(out_dir).resolve()  # Slicer's bundle writer refuses relative paths
    out.mkdir(parents=True, exist_ok=True)
    written = WrittenOutputs(out)
    assessment = result.assessment
    if keep_corrections:
        previous = previous_findings(out)
        if previous is not None:
            if previous.study_instance_uid != assessment.study_instance_uid:
                raise SpineAssistError(
                    f"{out / 'findings.json'} belongs to another study ({previous.study_instance_uid}); "
                    f"choose another --out folder for study {assessment.study_instance_uid}")
            written.disagreements = carry_reader_values(assessment, previous)
            for line in written.disagreements:
                assessment.warnings.append(f"reader and new model disagree: {line}")

    staging = Path(tempfile.mkdtemp(prefix=".spineassist-staging-", dir=out))
    child = None
    try:
        writers = _writers()
        if parallel and _can_fork():
            child = _ChildWriters(result, staging, [(n, w) for n, w in writers if n in CHILD_OUTPUTS])
            writers = [(n, w) for n, w in writers if n not in CHILD_OUTPUTS]
        outcomes = {name: _write_one(name, writer, result, staging, check) for name, writer in writers}
        if child is not None:
            outcomes.update(child.wait())
        for name, _ in _writers():
            if name not in outcomes:
                continue
            made, why = outcomes[name]
            if why is not None:
                written.skipped[name] = why
                log.info("%s not written: %s", name, why)
            elif made:
                written.files[name] = out / name
        check()
        for name in written.files:
            os.replace(staging / name, out / name)
    finally:
        if child is not None:
            child.stop()
        shutil.rmtree(staging, ignore_errors=True)
    return written


CHILD_OUTPUTS = ("report.html", "seg.dcm")    # written by the child process (about half the time)
CHILD_TIMEOUT_S = 600.0                        # a child that has not answered by then is stopped


def _write_one(name: str, writer: Callable[["AssessmentResult", Path], bool], result: "AssessmentResult",
               staging: Path, check: Callable[[], None] = lambda: None) -> tuple[bool, str | None]:
    """Return (written, why skipped) for one output."""
    check()
    try:
        return writer(result, staging / name), None
    except _Skip as skip:
        return False, str(skip)


def _can_fork() -> bool:
    import multiprocessing

    # Linux only: on macOS a forked child of a process that loaded system frameworks may crash
    return sys.platform.startswith("linux") and (os.cpu_count() or 1) > 1 and \
        "fork" in multiprocessing.get_all_start_methods()


class _ChildWriters:
    """Some writers run in a forked child; ``wait`` returns their outcomes or raises their error."""

    def __init__(self, result: "AssessmentResult", staging: Path,
                 writers: list[tuple[str, Callable[["AssessmentResult", Path], bool]]]):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child_main, args=(result, staging, writers, send), daemon=True,
                                 name="spineassist-outputs")
        self._proc.start()
        send.close()

    def wait(self) -> dict[str, tuple[bool, str | None]]:
        message = None
        try:
            if self._recv.poll(CHILD_TIMEOUT_S):
                message = self._recv.recv()
        except EOFError:
            pass
        if message is None and self._proc.is_alive():
            self._proc.terminate()
        self._proc.join()
        if message is None:
            raise SpineAssistError(f"the process writing {', '.join(CHILD_OUTPUTS)} stopped without an answer (exit "
                                   f"status {self._proc.exitcode}); nothing was moved into the output folder")
        kind, payload = message
        if kind == "ok":
            return payload
        error_type, text, trace = payload
        log.debug("output child failed:\n%s", trace)
        if error_type == "SpineAssistError":
            raise SpineAssistError(text)
        raise RuntimeError(f"writing {', '.join(CHILD_OUTPUTS)} failed: {error_type}: {text}")

    def stop(self) -> None:
        if self._proc.is_alive():       # this process stopped early (cancel, error): the child goes too
            self._proc.terminate()
            self._proc.join(5)
        self._recv.close()


def _child_main(result: "AssessmentResult", staging: Path,
                writers: list[tuple[str, Callable[["AssessmentResult", Path], bool]]], send: Any) -> None:
    import traceback

    try:
        send.send(("ok", {name: _write_one(name, writer, result, staging) for name, writer in writers}))
    except BaseException as e:  # noqa: BLE001 - every failure is reported to the parent, which raises it
        send.send(("error", (type(e).__name__, str(e), traceback.format_exc())))
    finally:
        send.close()


class _Skip(Exception):
    """An output that this result cannot give (e.g. no SEG without a disc segmentation)."""


def _findings_json(result: "AssessmentResult", path: Path) -> bool:
    result.assessment.save(path)
    return True


def _findings_csv(result: "AssessmentResult", path: Path) -> bool:
    from .export.findings_csv import write_findings_csv

    write_findings_csv(result.assessment, path)
    return True


def _report(result: "AssessmentResult", path: Path) -> bool:
    from .export.report_html import write_report_html

    write_report_html(result.assessment, path, images=result.key_images())
    return True


def _seg(result: "AssessmentResult", path: Path) -> bool:
    from .export.dicom_seg import write_disc_seg

    sag = result.sagittal
    if sag is None or sag.labels is None or not sag.datasets:
        raise _Skip("no sagittal disc segmentation")
    corrected = any(lv.all_corrections() for lv in result.assessment.levels)
    write_disc_seg(sag.datasets, sag.disc_labels(), result.assessment, path, reader_edited=corrected,
                   reader=_readers(result.assessment))
    return True


def _sr(result: "AssessmentResult", path: Path) -> bool:
    from .export.dicom_sr import write_measurement_report

    # the SR references images by UID only: pass headers, so highdicom's deep copies skip the pixels
    sources = [_header_only(ds) for ds in result.source_datasets()]
    if not sources:
        raise _Skip("no source DICOM images to reference")
    write_measurement_report(result.assessment, sources, path)
    return True


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
    from . import mrml

    scene = mrml.new_scene()
    try:
        nodes = mrml.show_assessment(scene, result.assessment, **result.scene_inputs())
        mrml.save_state(scene, result.assessment, nodes)
        if not scene.WriteToMRB(str(path.resolve())):
            raise SpineAssistError(f"Slicer could not write the scene {path} (see the messages above); check that "
                                   f"the output folder is writable and has free space")
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

