"""The review panel's state and actions, without any GUI: one model that every view of the panel shows.

The Slicer panel (Qt, ``ui/widget.py``) and the browser page (trame, ``SpineAssistLib.web``) are thin
views over one ``PanelController``: a button calls an action, and after every action the controller
tells its listeners to redraw from its state. So a correction, a dragged keypoint, a run or a teaching
step behaves the same in both, and is tested once, here, with Slicer's real MRML scene.

Usage::

    from SpineAssistLib.ui.controller import PanelController
    panel = PanelController(scene, reader="dr.lee")
    panel.subscribe(lambda p: print(p.status))
    panel.open(out_dir)                          # an assessed study: OUT/scene.mrb and findings.json
    panel.edit("L4-L5", "pfirrmann", 3)          # the editor's entry 3: Pfirrmann IV
    panel.unlock(True)                           # drag a keypoint: its level is regraded at once
    panel.save()                                 # findings.json and scene.mrb, as one set
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.findings import FindingKind
from SpineAssistLib.mrml import LAYERS
from SpineAssistLib.mrml.scene import write_mrb
from SpineAssistLib.ui.logic import SpineAssistLogic
from SpineAssistLib.ui.panel_model import LevelView, review_text
from SpineAssistLib.ui.process import AssessEvent, AssessOutcome, AssessProcess, ProcessRunner

IDLE_STATUS = "Choose a study, then Run."
# What an action may raise that the reader should read as one line (anything else is a bug: let it show).
USER_ERRORS = (SpineAssistError, ValueError, RuntimeError, KeyError, OSError, IndexError)


@dataclass(frozen=True)
class TeachingView:
    """The teaching step on show: which finding of which level, step ``index`` of ``count``."""

    level: str
    kind: str
    index: int
    count: int
    title: str
    text: str


class PanelController:
    """One review session: the scene's assessment, a background run, the reader's edits, teaching.

    ``runner`` starts the background ``spineassist assess`` (the Qt panel passes a QProcess runner, the
    web page the subprocess one); ``call_soon`` moves the run's callbacks onto the view's thread (the
    web page's event loop); by default they run where the runner reports them.
    """

    def __init__(self, scene: Any, *, reader: str | None = None, runner: ProcessRunner | None = None,
                 call_soon: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.logic = SpineAssistLogic(scene, reader)
        self._call_soon = call_soon or (lambda fn: fn())
        self.job = AssessProcess(runner, on_progress=lambda e: self._call_soon(lambda: self._on_progress(e)),
                                 on_finished=lambda o: self._call_soon(lambda: self._on_finished(o)))
        self.study_dir: Path | None = None
        self.status = IDLE_STATUS
        self.error = ""                     # the last action's failure, one line; "" when it worked
        self.progress = 0.0                 # 0..1 of the running assessment
        self.selected: str | None = None
        self.unlocked = False
        self.dirty = False                  # corrections not yet saved to OUT
        self.teaching: TeachingView | None = None
        self.layers = {layer: True for layer in LAYERS}
        self.messages: list[str] = []       # warnings and reader/model disagreements of the last run
        self._listeners: list[Callable[["PanelController"], None]] = []
        self._purpose = "assess"

    # ------------------------------------------------------------------ observing
    def subscribe(self, listener: Callable[["PanelController"], None]) -> None:
        """Call ``listener(self)`` after every change of state (an action, progress, a regrade)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener(self)

    def attempt(self, action: Callable[[], Any], what: str) -> Any:
        """Run an action; a failure a reader can act on becomes ``error`` ("what: why"), not an exception."""
        self.error = ""
        try:
            return action()
        except USER_ERRORS as e:
            self.error = f"{what}: {e}"
            return None
        finally:
            self._changed()

    # ------------------------------------------------------------------ state read by the views
    @property
    def loaded(self) -> bool:
        return self.logic.loaded

    @property
    def running(self) -> bool:
        return self.job.running

    @property
    def out_dir(self) -> Path | None:
        return self.logic.out_dir

    def views(self) -> list[LevelView]:
        return self.logic.views()

    @property
    def review(self) -> str:
        return review_text(self.logic.assessment) if self.logic.assessment is not None else ""

    # ------------------------------------------------------------------ opening and running
    def open(self, out_dir: str | os.PathLike[str], *, discard: bool = False) -> None:
        """Show an assessed study: OUT's scene.mrb (with the reader's corrections it holds), in place of the one
        shown. Raises RuntimeError while the one shown has unsaved corrections, unless ``discard``."""
        if self.dirty and not discard:
            raise RuntimeError(f"{self.logic.out_dir} has corrections not saved: Save them first, or open again "
                               f"to discard them")
        self.stop_teaching()
        self.unlock(False)
        self.logic.load_results(out_dir)
        self.selected = None
        self.dirty = False
        self.status = f"Showing {self.logic.out_dir}"
        self._changed()

    def adopt_scene(self) -> bool:
        """Show an assessment the scene already holds (a scene.mrb the reader opened in Slicer); True if
        there was one. It has no output folder until the reader runs the study again."""
        if not self.logic.adopt_scene():
            return False
        self.selected = None
        self.dirty = False
        self.status = "Showing the assessment in this scene"
        self._changed()
        return True

    def run(self, study_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, device: str = "auto",
            sagittal_uid: str | None = None, axial_uid: str | None = None) -> None:
        """Assess ``study_dir`` into ``out_dir`` in a background process; its results are shown when it ends."""
        if not str(study_dir).strip() or not str(out_dir).strip():
            raise ValueError("give the study's DICOM folder and the output folder")
        if self.dirty:
            raise RuntimeError("the study shown has corrections not saved: Save them first (a run into the same "
                               "folder keeps saved corrections)")
        self.study_dir = Path(study_dir)
        self._start("assess", Path(out_dir), device, sagittal_uid, axial_uid)

    def rewrite_outputs(self, device: str = "auto") -> None:
        """Save the corrections, then rerun the assessment into OUT: report, SEG and SR carry them."""
        if self.study_dir is None:
            raise RuntimeError("run the assessment in this session first: no study folder is known")
        self.save()
        self._start("export", self.logic.out_dir, device, None, None)

    def _start(self, purpose: str, out_dir: Path | None, device: str, sagittal_uid: str | None,
               axial_uid: str | None) -> None:
        if out_dir is None:
            raise RuntimeError("no output folder")
        self._purpose = purpose
        self.progress = 0.0
        self.messages = []
        self.status = "Starting..."
        self.job.start(self.study_dir, out_dir, device=device, sagittal_uid=sagittal_uid, axial_uid=axial_uid)
        self._changed()

    def cancel(self) -> None:
        """Stop the running assessment (OUT keeps its previous outputs)."""
        self.job.cancel()
        self.status = "Cancelling..."
        self._changed()

    def _on_progress(self, event: AssessEvent) -> None:
        self.progress = event.fraction
        self.status = f"{event.stage}: {event.message}" if event.message else event.stage
        self._changed()

    def _on_finished(self, outcome: AssessOutcome) -> None:
        self.messages = [*outcome.warnings,
                         *(f"reader and new model disagree: {d}" for d in outcome.disagreements)]
        if outcome.status == "cancelled":
            self.status = "Cancelled; the output folder keeps what it had."
        elif not outcome.ok:
            self.status = "Failed."
            self.error = f"The assessment failed: {outcome.message}"
        else:
            self.progress = 1.0
            if self._purpose == "assess" and outcome.out is not None:
                # the reader's unsaved corrections of the study shown were carried into OUT only if saved
                self.attempt(lambda: self.open(outcome.out, discard=True), "Cannot show the results")
                self.status = f"Done. Outputs in {outcome.out}"
            else:
                self.status = f"Report, SEG and SR rewritten with your corrections in {outcome.out}"
        self._changed()

    # ------------------------------------------------------------------ the reader's edits
    def _edited(self, records: Any) -> Any:
        if records:
            self.dirty = True
        return records

    def edit(self, level: str, kind: FindingKind, index: int) -> None:
        """Set a finding to the editor's entry ``index`` (``panel_model.choices(kind)``) as the reader's value."""
        self._edited(self.logic.correct(level, kind, index))
        self.select(level)

    def set_canal_diameter(self, level: str, ap_mm: float) -> None:
        """Record the canal diameter the reader measured (mm); its grade follows Verbiest's rule."""
        self._edited(self.logic.correct_canal_diameter(level, ap_mm))
        self._changed()

    def reset(self, level: str, kind: FindingKind | None = None) -> None:
        """Put the model's values back at one level (or for one of its findings)."""
        self._edited(self.logic.reset(level, kind))
        self._changed()

    def relabel(self, shift: int) -> None:
        """Rename every level one disc caudally (+1) or cranially (-1)."""
        self._edited(self.logic.relabel(shift))
        self.selected = None
        self._changed()

    def select(self, level: str) -> None:
        """Make ``level`` the current one and centre the slice views on its disc."""
        self.selected = level
        self.logic.center(level)
        self._changed()

    def set_layer(self, layer: str, visible: bool) -> None:
        self.logic.set_layer_visible(layer, visible)
        self.layers[layer] = visible
        self._changed()

    def unlock(self, on: bool) -> None:
        """Unlock the keypoints: dragging one regrades its level at once, recorded as the reader's value."""
        if on:
            self.logic.start_live(on_regrade=self._regraded)
        else:
            self.logic.stop_live()
        self.unlocked = bool(on) and self.logic.live is not None
        self._changed()

    def _regraded(self, level: str, _kind: str, _correction: Any) -> None:
        self.dirty = True
        self.selected = level
        self._changed()

    def save(self) -> Path:
        """Write findings.json and scene.mrb into OUT as one set, with every correction's provenance."""
        self.stop_teaching()   # the teaching points are not part of the reading
        saved = self.logic.save_findings(scene_writer=self._write_scene)
        self.dirty = False
        self.status = f"Saved your corrections in {saved}"
        self._changed()
        return saved

    def _write_scene(self, path: Path) -> None:
        errors: list[str] = []
        if not write_mrb(self.logic.scene, path, errors) or not path.is_file():
            raise OSError(f"Slicer could not write the scene: {'; '.join(errors) or 'no reason given'}")

    def export_training_data(self, dest: str | os.PathLike[str]) -> Any:
        """Add this case, as the reader left it, to the training sets under ``dest``; the status says what
        was added and what was left out. Returns the ``TrainingExport``."""
        result = self.logic.export_training_data(Path(dest))
        self.status = result.summary()
        self._changed()
        return result

    def inform(self, text: str) -> None:
        """Show a view's own news (a file it opened, a database it filled) in the status line."""
        self.status = text
        self._changed()

    # ------------------------------------------------------------------ teaching
    def teach(self, level: str, kind: FindingKind, delta: int = 1) -> TeachingView:
        """Show the next (``delta`` 1), previous (-1) or first (0) step of how ``kind`` is graded at ``level``."""
        current = self.teaching
        same = current is not None and (current.level, current.kind) == (level, kind)
        index = current.index + delta if same and current is not None else 0
        count = len(self.logic.teaching_steps(level, kind))
        index = max(0, min(index, count - 1))
        step = self.logic.show_teaching_step(level, kind, index)
        self.teaching = TeachingView(level, kind, index, count, step.title, step.text)
        self.select(level)
        return self.teaching

    def stop_teaching(self) -> None:
        if self.teaching is not None:
            self.logic.end_teaching()
            self.teaching = None
            self._changed()

    def close(self) -> None:
        """Stop the run and the live regrading (the view is going away)."""
        self.job.cancel()
        self.logic.stop_live()


__all__ = ["IDLE_STATUS", "PanelController", "TeachingView"]
