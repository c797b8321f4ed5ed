"""The whole job: load a study folder, assess it, write every output; and the terminal's findings table.

Usage::

    from SpineAssistLib.pipeline.run import run_assessment
    done = run_assessment("study_dir", "out_dir")          # load, assess, write every output
    print(done.summary())
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from SpineAssistLib.dicom.stacks import load_stacks
from SpineAssistLib.export.outdir import DEFAULT_LOCK_WAIT_S, check_out_dir
from SpineAssistLib.export.outputs import describe, previous_findings, write_outputs
from SpineAssistLib.findings import LOW_LEVEL_CONFIDENCE, Assessment
from SpineAssistLib.pipeline.assess import AXIAL_MODELS, SAGITTAL_MODELS, STAGES, ModelSet, assess
from SpineAssistLib.pipeline.progress import CancelToken, ProgressEvent, StageReporter
from SpineAssistLib.pipeline.result import AssessmentResult
from SpineAssistLib.resources import resources_dir


@dataclass
class Done:
    """A finished run: the result, what was written where, and how long it took."""

    result: AssessmentResult
    written: Any
    seconds: float
    truth: Assessment | None = None
    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return "\n".join([findings_table(self.result.assessment), "", describe(self.written),
                          f"assessed in {self.seconds:.1f} s"] + [f"warning: {w}" for w in self.result.assessment.warnings])


# The second table's columns: the findings of schema version 2, their headings and widths.
_SAGITTAL_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("modic", "Modic", 9), ("endplate_upper", "upper EP", 9), ("endplate_lower", "lower EP", 9),
    ("narrowing", "narrowing", 9), ("bulging", "bulging", 9), ("herniation_sag", "herniation", 10),
    ("canal", "canal AP", 27),
)


def _value(f: Any) -> str:
    """A finding's value in force as the table writes it: its label, " *" when a reader corrected it, or "n/a"."""
    if f.status != "assessed" or f.value is None:
        return "n/a"
    return f.value.label + (" *" if f.corrected else "")


def _level_name(lv: Any) -> str:
    # a level found or named with low confidence is marked, as the panel marks it
    return lv.name + ("?" if lv.confidence is not None and lv.confidence < LOW_LEVEL_CONFIDENCE else "")


def findings_table(a: Assessment, truth: Assessment | None = None) -> str:
    """Return a plain-text per-level table (and the truth beside it when given); a level name ending
    in "?" was found or named with low confidence. A second table gives the other findings of the
    sagittal series (Modic, endplate defects, narrowing, bulging, herniation, canal AP diameter) when
    any of them was assessed; "*" marks a reader's value."""
    val = _value
    head = f"{'level':7s} {'herniation (MSU)':18s} {'Pfirrmann':13s} {'listhesis':32s}"
    rows = [head, "-" * len(head)]
    tl = {lv.name: lv for lv in truth.levels} if truth else {}
    for lv in a.levels:
        rows.append(f"{_level_name(lv):7s} {val(lv.ldh):18s} {val(lv.pfirrmann):13s} {val(lv.listhesis):32s}")
        if lv.name in tl:
            t = tl[lv.name]
            rows.append(f"{'  truth':7s} {val(t.ldh):18s} {val(t.pfirrmann):13s} {val(t.listhesis):32s}")
    if any(lv.finding(kind).status == "assessed"  # type: ignore[arg-type]
           for lv in a.levels for kind, _, _ in _SAGITTAL_COLUMNS):
        rows += ["", sagittal_findings_table(a, truth)]
    return "\n".join(rows)


def sagittal_findings_table(a: Assessment, truth: Assessment | None = None) -> str:
    """Return the plain-text table of the other sagittal findings per level (and the truth beside it)."""
    def line(name: str, lv: Any) -> str:
        cells = " ".join(f"{_value(lv.finding(kind)):{width}s}" for kind, _, width in _SAGITTAL_COLUMNS)
        return f"{name:7s} {cells}".rstrip()

    head = f"{'level':7s} " + " ".join(f"{title:{width}s}" for _, title, width in _SAGITTAL_COLUMNS)
    rows = [head.rstrip(), "-" * len(head.rstrip())]
    tl = {lv.name: lv for lv in truth.levels} if truth else {}
    for lv in a.levels:
        rows.append(line(_level_name(lv), lv))
        if lv.name in tl:
            rows.append(line("  truth", tl[lv.name]))
    return "\n".join(rows)


def run_assessment(study_dir: str | Path, out_dir: str | Path, *, device: str = "auto",
                   sagittal_uid: str | None = None, axial_uid: str | None = None, use_axial: bool = True,
                   progress: Callable[[ProgressEvent], None] | None = None, cancel: CancelToken | None = None,
                   settings: Mapping[str, Any] | None = None,
                   models: Callable[[Any], ModelSet] | None = None, parallel_outputs: bool = True,
                   writers: Any = None, study_uid: str | None = None,
                   lock_wait_s: float = DEFAULT_LOCK_WAIT_S, on_wait: Callable[[str], None] | None = None) -> Done:
    """Load the study in ``study_dir``, assess it and write every output into ``out_dir``; return what was done.

    ``models`` builds the ModelSet from the loaded stacks (tests inject oracle models); by default
    the bundled models are loaded and verified on ``device``. ``writers``: writer processes started
    before (``outputs.WriterProcesses``; the command line starts them first, so they import their
    libraries while the models run) write the report, SEG, SR and scene; without them
    ``parallel_outputs`` forks one now for the report, SEG and scene. The Slicer module runs this in its
    own process (the ``assess`` command), never inside Slicer.

    ``study_uid`` chooses one study of a folder holding several. OUT is checked before anything
    is loaded and locked while the outputs are written: another run writing it is waited for up to
    ``lock_wait_s`` seconds (``on_wait`` is told whom it waits for).
    """
    t0 = time.perf_counter()
    reporter = StageReporter(STAGES, progress, cancel)
    # everything about OUT that can be known before the models run is checked first: a run never
    # computes for minutes to fail on its output folder
    out = check_out_dir(out_dir, [study_dir], create=False)   # made when the outputs are written
    previous_findings(out)
    if models is None:
        resources_dir()
    reporter.stage("loading", 0.0, f"indexing {study_dir}")
    loaded = load_stacks(Path(study_dir), sagittal_uid=sagittal_uid, axial_uid=axial_uid, use_axial=use_axial,
                         study_uid=study_uid)
    reporter.stage("loading", 0.6, "loading models")
    names = SAGITTAL_MODELS + (AXIAL_MODELS if loaded.axial else ())
    model_set = models(loaded) if models is not None else ModelSet.load(names, device=device)
    result = assess(loaded.sagittal, loaded.axial, study_instance_uid=loaded.study_instance_uid, models=model_set,
                    settings=settings, reporter=reporter)
    # the series choice and the assessment may say the same thing (no axial series): say it once
    result.assessment.warnings[:0] = [w for w in loaded.warnings if w not in result.assessment.warnings]
    reporter.stage("outputs", 0.0, f"writing {out_dir}")
    written = write_outputs(result, out, check=reporter.cancel.check, parallel=parallel_outputs, writers=writers,
                            lock_wait_s=lock_wait_s, on_wait=on_wait)
    reporter.done()
    return Done(result, written, time.perf_counter() - t0)
