"""The SpineAssist side panel (Qt). Imported only inside 3D Slicer, by SpineAssist.py's widget.

Thin by design: every handler is a few lines calling ``SpineAssistLib.ui.logic`` (scene, edits,
teaching), ``SpineAssistLib.ui.process`` (the background ``spineassist assess``) and
``SpineAssistLib.ui.panel_model`` (what each cell shows, which values an editor offers); those are tested
with pytest outside Slicer.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from SpineAssistLib.mrml import LAYERS
from SpineAssistLib.ui import dependencies
from SpineAssistLib.ui.logic import (
    SpineAssistLogic,
    default_series,
    dicom_files_for_volume,
    new_work_folder,
    volume_plane,
)
from SpineAssistLib.ui.panel_model import COLUMNS, KIND_COLUMN, KIND_TITLES, choices, review_text
from SpineAssistLib.ui.process import DEVICES, AssessOutcome, AssessProcess, stage_dicom_files

RESET_COLUMN = len(COLUMNS)


class QtProcessRunner:
    """A ``process.ProcessRunner`` on qt.QProcess: output arrives on the GUI thread, so Slicer never freezes."""

    def __init__(self) -> None:
        self.process: Any = None
        self._buffer = b""
        self._done = True

    def start(self, argv: Sequence[str], env: dict[str, str], on_stdout_line: Callable[[str], None],
              on_stderr: Callable[[str], None], on_finished: Callable[[int | None], None]) -> None:
        import qt

        p = qt.QProcess()
        penv = qt.QProcessEnvironment()
        for key, value in env.items():
            penv.insert(key, value)
        p.setProcessEnvironment(penv)
        p.setProgram(argv[0])
        p.setArguments(list(argv[1:]))
        self._buffer, self._done = b"", False

        def read_stdout() -> None:
            self._buffer += bytes(p.readAllStandardOutput().data())
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                on_stdout_line(line.decode("utf-8", errors="replace"))

        def finished(code: int, status: Any) -> None:
            read_stdout()
            if self._buffer:
                on_stdout_line(self._buffer.decode("utf-8", errors="replace"))
                self._buffer = b""
            self._done = True
            on_finished(code if status == qt.QProcess.NormalExit else None)

        p.connect("readyReadStandardOutput()", read_stdout)
        p.connect("readyReadStandardError()",
                  lambda: on_stderr(bytes(p.readAllStandardError().data()).decode("utf-8", errors="replace")))
        p.connect("finished(int,QProcess::ExitStatus)", finished)
        self.process = p
        p.start()
        if not p.waitForStarted(10000):
            self._done = True
            raise OSError(p.errorString())

    def terminate(self) -> None:
        if self.process is not None and not self._done:
            self.process.terminate()

    def wait(self, timeout: float | None = None) -> bool:
        import slicer

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done:
            if deadline is not None and time.monotonic() > deadline:
                return False
            slicer.app.processEvents()
            time.sleep(0.02)
        return True


class SpineAssistPanel:
    """The side panel: inputs and Run, the level table, layers, live regrading, export, teaching."""

    def __init__(self, layout: Any) -> None:
        import slicer

        self.logic = SpineAssistLogic(slicer.mrmlScene)
        self.job = AssessProcess(QtProcessRunner(), on_progress=self._on_progress, on_log=self._log,
                                 on_finished=self._on_finished)
        self.study_dir: Path | None = None
        self.folder: Path | None = None
        self._purpose = "assess"
        self._deps_checked = False
        self._updating = False
        self._teaching: tuple[str, str, int] | None = None
        self._build(layout)
        self._observer = slicer.mrmlScene.AddObserver(slicer.mrmlScene.EndCloseEvent, lambda *_: self._scene_closed())
        if self.logic.adopt_scene():
            self.refresh()

    # ------------------------------------------------------------------ building the panel
    def _section(self, layout: Any, title: str, collapsed: bool = False) -> Any:
        import ctk
        import qt

        box = ctk.ctkCollapsibleButton()
        box.text = title
        box.collapsed = collapsed
        layout.addWidget(box)
        return qt.QFormLayout(box)

    def _button(self, text: str, handler: Callable[[], None], tooltip: str = "") -> Any:
        import qt

        b = qt.QPushButton(text)
        b.toolTip = tooltip
        b.connect("clicked()", handler)
        return b

    def _build(self, layout: Any) -> None:
        import qt

        form = self._section(layout, "Inputs")
        self.sagittal = self._volume_selector("Sagittal T2 series (loaded with the DICOM module)")
        self.axial = self._volume_selector("Axial T2 series; none: herniation is not assessed")
        form.addRow("Sagittal T2:", self.sagittal)
        form.addRow("Axial T2:", self.axial)
        self.folder_label = qt.QLabel("")
        row = qt.QHBoxLayout()
        row.addWidget(self._button("DICOM folder...", self.on_choose_folder, "Assess a DICOM folder without loading it"))
        row.addWidget(self.folder_label, 1)
        form.addRow(row)
        self.device = qt.QComboBox()
        self.device.addItems(list(DEVICES))
        self.device.toolTip = "auto: the GPU when there is one, else the CPU"
        form.addRow("Device:", self.device)
        run_row = qt.QHBoxLayout()
        self.run_button = self._button("Run", self.on_run, "Assess the study in a background process")
        self.cancel_button = self._button("Cancel", self.job.cancel)
        self.cancel_button.enabled = False
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        form.addRow(run_row)
        self.progress = qt.QProgressBar()
        self.progress.setRange(0, 100)
        self.status = qt.QLabel("Choose the series, then Run.")
        self.status.wordWrap = True
        form.addRow(self.progress)
        form.addRow(self.status)
        self._select_default_series()
        for selector in (self.sagittal, self.axial):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", lambda *_: self._clear_folder())

        form = self._section(layout, "Levels")
        self.table = qt.QTableWidget(0, len(COLUMNS) + 1)
        self.table.setHorizontalHeaderLabels([*COLUMNS, ""])
        self.table.verticalHeader().visible = False
        self.table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(qt.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(qt.QHeaderView.ResizeToContents)
        self.table.connect("cellClicked(int,int)", lambda r, _c: self.on_row_selected(r))
        form.addRow(self.table)
        relabel = qt.QHBoxLayout()
        relabel.addWidget(qt.QLabel("Relabel all levels:"))
        relabel.addWidget(self._button("\u2191 one level up", lambda: self.on_relabel(-1), "e.g. L4-L5 becomes L3-L4"))
        relabel.addWidget(self._button("\u2193 one level down", lambda: self.on_relabel(1), "e.g. L4-L5 becomes L5-S1"))
        form.addRow(relabel)
        layers = qt.QHBoxLayout()
        self.layer_boxes = {}
        for layer in LAYERS:
            box = qt.QCheckBox(layer.capitalize())
            box.checked = True
            box.connect("toggled(bool)", lambda on, name=layer: self._safe(lambda: self.logic.set_layer_visible(name, on)))
            layers.addWidget(box)
            self.layer_boxes[layer] = box
        form.addRow("Show:", layers)
        self.unlock = qt.QPushButton("Unlock keypoints (regrade live)")
        self.unlock.checkable = True
        self.unlock.toolTip = "Drag a corner or an axial point: its level is regraded at once and recorded as yours"
        self.unlock.connect("toggled(bool)", self.on_unlock)
        form.addRow(self.unlock)

        form = self._section(layout, "Export", collapsed=True)
        self.export_buttons = [
            self._button("Save corrections and rewrite report, SEG, SR", self.on_rewrite_outputs,
                         "Writes findings.json with your corrections and reruns the assessment into the same folder, "
                         "which keeps them"),
            self._button("Open report", self.on_open_report),
            self._button("Add SEG and SR to the DICOM database", self.on_import_dicom),
            self._button("Export training data...", self.on_export_training,
                         "De-identified images and your corrected labels in YOLO and MONAI formats"),
        ]
        for b in self.export_buttons:
            form.addRow(b)

        form = self._section(layout, "Teaching mode", collapsed=True)
        self.teach_level = qt.QComboBox()
        self.teach_kind = qt.QComboBox()
        for kind, title in KIND_TITLES.items():
            self.teach_kind.addItem(title, kind)
        form.addRow("Level:", self.teach_level)
        form.addRow("Finding:", self.teach_kind)
        steps = qt.QHBoxLayout()
        steps.addWidget(self._button("< Previous", lambda: self.on_teach_step(-1)))
        steps.addWidget(self._button("Next >", lambda: self.on_teach_step(1)))
        steps.addWidget(self._button("End", self.on_teach_end))
        form.addRow(steps)
        self.teach_text = qt.QLabel("Choose a level and a finding, then Next.")
        self.teach_text.wordWrap = True
        form.addRow(self.teach_text)
        layout.addStretch(1)
        self._enable()

    def _volume_selector(self, tooltip: str) -> Any:
        import slicer

        s = slicer.qMRMLNodeComboBox()
        s.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        s.noneEnabled = True
        s.addEnabled = False
        s.removeEnabled = False
        s.toolTip = tooltip
        s.setMRMLScene(slicer.mrmlScene)
        return s

    def _select_default_series(self) -> None:
        import slicer

        volumes = []
        for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            try:
                volumes.append((node.GetName(), volume_plane(node)))
            except ValueError:
                continue
        picks = default_series(volumes)
        for selector, plane in ((self.sagittal, "sagittal"), (self.axial, "axial")):
            if picks[plane] and selector.currentNode() is None:
                selector.setCurrentNode(slicer.mrmlScene.GetFirstNodeByName(picks[plane]))

    # ------------------------------------------------------------------ running
    def _safe(self, action: Callable[[], Any], message: str = "SpineAssist") -> Any:
        import slicer

        try:
            return action()
        except (ValueError, RuntimeError, KeyError, OSError) as e:
            slicer.util.errorDisplay(f"{message}: {e}")
            return None

    def on_choose_folder(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(None, "DICOM folder of a lumbar MRI study")
        if folder:
            self.folder = Path(folder)
            self.folder_label.text = str(self.folder)

    def _clear_folder(self) -> None:
        self.folder = None
        self.folder_label.text = ""

    def _ensure_dependencies(self) -> bool:
        if self._deps_checked:
            return True
        if dependencies.missing_requirements():
            if self._safe(dependencies.install_in_slicer, "Installing dependencies failed") is None:
                return False
            if dependencies.missing_requirements():
                return False
        self._deps_checked = True
        return True

    def _stage_inputs(self) -> tuple[Path, str | None, str | None]:
        import slicer

        if self.folder is not None:
            return self.folder, None, None
        sagittal, axial = self.sagittal.currentNode(), self.axial.currentNode()
        if sagittal is None:
            raise ValueError("choose the sagittal T2 series (load the study with the DICOM module), or a DICOM folder")
        files, sag_uid = dicom_files_for_volume(sagittal, slicer.dicomDatabase)
        ax_uid = None
        if axial is not None:
            ax_files, ax_uid = dicom_files_for_volume(axial, slicer.dicomDatabase)
            files += ax_files
        return stage_dicom_files(files, new_work_folder("study")), sag_uid, ax_uid

    def on_run(self) -> None:
        if not self._ensure_dependencies():
            return
        staged = self._safe(self._stage_inputs, "Cannot run")
        if staged is None:
            return
        self.study_dir, sag_uid, ax_uid = staged
        self._start("assess", new_work_folder("out"), sag_uid, ax_uid)

    def _start(self, purpose: str, out_dir: Path, sagittal_uid: str | None = None, axial_uid: str | None = None) -> None:
        self._purpose = purpose
        self.progress.value = 0
        self.status.text = "Starting..."
        self.job.start(self.study_dir, out_dir, device=self.device.currentText, sagittal_uid=sagittal_uid,
                       axial_uid=axial_uid)
        self._enable()

    def _on_progress(self, event: Any) -> None:
        self.progress.value = int(round(event.fraction * 100))
        self.status.text = f"{event.stage}: {event.message}" if event.message else event.stage

    def _log(self, text: str) -> None:
        import logging

        logging.info("spineassist: %s", text)

    def _on_finished(self, outcome: AssessOutcome) -> None:
        import slicer

        self._enable()
        if outcome.status == "cancelled":
            self.status.text = "Cancelled."
            return
        if not outcome.ok:
            self.status.text = "Failed."
            slicer.util.errorDisplay(f"The assessment failed: {outcome.message}", detailedText=outcome.stderr)
            return
        self.progress.value = 100
        if self._purpose == "assess":
            if self._safe(lambda: self.logic.load_results(outcome.out), "Cannot show the results") is not None:
                self.refresh()
            review = review_text(self.logic.assessment)
            self.status.text = f"Done. Outputs in {outcome.out}" + (f"<br><b>{review}</b>" if review else "")
            for warning in outcome.warnings:
                self._log(f"warning: {warning}")
            if outcome.disagreements:   # the reader's value stays in force; the model now says otherwise
                self.status.text += "<br>Reader and new model disagree:<br>" + "<br>".join(outcome.disagreements)
        else:
            self.status.text = f"Report, SEG and SR rewritten with your corrections in {outcome.out}"

    def _enable(self) -> None:
        running = self.job.running
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        has_out = self.logic.loaded and self.logic.out_dir is not None
        for b in self.export_buttons:
            b.enabled = has_out and not running
        self.export_buttons[-1].enabled = self.logic.loaded and not running
        self.unlock.enabled = self.logic.loaded

    # ------------------------------------------------------------------ the table
    def refresh(self) -> None:
        import qt

        self._updating = True
        try:
            views = self.logic.views()
            self.table.setRowCount(len(views))
            for r, view in enumerate(views):
                item = qt.QTableWidgetItem(view.name_text)
                item.setToolTip(view.name_tooltip)
                self.table.setItem(r, 0, item)
                for kind, column in KIND_COLUMN.items():
                    self.table.setCellWidget(r, COLUMNS.index(column), self._editor(view.name, view.cells[kind]))
                self.table.setItem(r, COLUMNS.index("Slip %"), qt.QTableWidgetItem(view.slip_text))
                self.table.setCellWidget(r, RESET_COLUMN, self._button(
                    "Reset", lambda name=view.name: self.on_reset(name), "Put the model's values back at this level"))
            current = self.teach_level.currentText
            self.teach_level.clear()
            self.teach_level.addItems([v.name for v in views])
            if current:
                self.teach_level.setCurrentText(current)
        finally:
            self._updating = False
        self._enable()

    def _editor(self, level: str, cell: Any) -> Any:
        import qt

        box = qt.QWidget()
        row = qt.QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        combo = qt.QComboBox()
        combo.addItems([c.text for c in choices(cell.kind)])
        combo.setCurrentIndex(cell.index)  # -1 (blank) when not assessed: the reader may still set a value
        combo.toolTip = cell.tooltip
        if cell.corrected:
            font = combo.font
            font.setBold(True)
            combo.font = font
            row.addWidget(combo)
            row.addWidget(qt.QLabel(f"(model: {cell.model_text or 'none'})"))
        else:
            row.addWidget(combo)
        combo.connect("activated(int)", lambda index, k=cell.kind: self.on_edit(level, k, index))
        if cell.kind == "canal":   # the diameter itself: a new one is graded by Verbiest's rule
            spin = qt.QDoubleSpinBox()
            spin.setRange(0.0, 40.0)
            spin.setDecimals(1)
            spin.setSuffix(" mm")
            spin.setSpecialValueText("no diameter")
            spin.value = cell.ap_mm or 0.0
            spin.toolTip = "The canal's antero-posterior diameter; a new value sets the grade by Verbiest's rule"
            spin.connect("editingFinished()", lambda s=spin, old=cell.ap_mm: self.on_canal_diameter(level, s.value, old))
            row.addWidget(spin)
        return box

    def on_edit(self, level: str, kind: str, index: int) -> None:
        if self._updating:
            return
        self._safe(lambda: self.logic.correct(level, kind, index), "Cannot record the correction")
        self.refresh()
        self._safe(lambda: self.logic.center(level))

    def on_canal_diameter(self, level: str, ap_mm: float, shown: float | None) -> None:
        # editingFinished also fires when the box merely loses focus: only a changed number is a reading
        if self._updating or ap_mm <= 0 or (shown is not None and round(shown, 1) == round(ap_mm, 1)):
            return
        self._safe(lambda: self.logic.correct_canal_diameter(level, ap_mm), "Cannot record the diameter")
        self.refresh()

    def on_reset(self, level: str) -> None:
        self._safe(lambda: self.logic.reset(level), "Cannot reset")
        self.refresh()

    def on_row_selected(self, row: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self._safe(lambda: self.logic.center(item.text()), "Cannot centre the views")

    def on_relabel(self, shift: int) -> None:
        if self._safe(lambda: self.logic.relabel(shift), "Cannot relabel") is not None:
            self.refresh()

    def on_unlock(self, on: bool) -> None:
        if on:
            self._safe(lambda: self.logic.start_live(on_regrade=lambda *_: self.refresh()), "Cannot unlock")
        else:
            self.logic.stop_live()

    # ------------------------------------------------------------------ export
    def on_rewrite_outputs(self) -> None:
        if self.study_dir is None:
            self.status.text = "Run the assessment in this session first: this scene has no study folder."
            return
        if self._safe(self.logic.save_findings, "Cannot save the corrections") is not None:
            self._start("export", self.logic.out_dir)

    def on_open_report(self) -> None:
        import qt

        report = self.logic.out_dir / "report.html"
        if report.is_file():
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(report)))
        else:
            self.status.text = f"No report in {self.logic.out_dir}"

    def on_import_dicom(self) -> None:
        from DICOMLib import DICOMUtils

        folder = new_work_folder("dicom-export")
        found = [shutil.copy2(self.logic.out_dir / name, folder / name) for name in ("seg.dcm", "sr.dcm")
                 if (self.logic.out_dir / name).is_file()]
        if not found:
            self.status.text = "No SEG or SR was written (see the log)."
            return
        self._safe(lambda: DICOMUtils.importDicom(str(folder)), "Cannot import into the DICOM database")
        self.status.text = f"Added {', '.join(Path(f).name for f in found)} to the DICOM database."

    def on_export_training(self) -> None:
        import qt

        dest = qt.QFileDialog.getExistingDirectory(None, "Folder for the training data (cases accumulate there)")
        if not dest:
            return
        result = self._safe(lambda: self.logic.export_training_data(Path(dest)), "Training-data export failed")
        if result is not None:
            self.status.text = result.summary().replace("\n", "<br>")

    # ------------------------------------------------------------------ teaching
    def on_teach_step(self, delta: int) -> None:
        level, kind = self.teach_level.currentText, self.teach_kind.currentData
        if not level:
            return
        index = 0 if self._teaching is None or self._teaching[:2] != (level, kind) else self._teaching[2] + delta
        count = len(self.logic.teaching_steps(level, kind))
        index = max(0, min(index, count - 1))
        step = self._safe(lambda: self.logic.show_teaching_step(level, kind, index), "Teaching")
        if step is not None:
            self._teaching = (level, kind, index)
            self.teach_text.text = f"<b>{index + 1}/{count}. {step.title}</b><br>{step.text}"
            self._safe(lambda: self.logic.center(level))

    def on_teach_end(self) -> None:
        self._teaching = None
        self.logic.end_teaching()
        self.teach_text.text = "Choose a level and a finding, then Next."

    # ------------------------------------------------------------------ lifecycle
    def enter(self) -> None:
        """The module was opened: pick the series loaded since, and any assessment the scene holds."""
        self._select_default_series()
        if not self.logic.loaded and self.logic.adopt_scene():
            self.refresh()

    def _scene_closed(self) -> None:
        import slicer

        self.logic.stop_live()
        self.logic = SpineAssistLogic(slicer.mrmlScene)
        self.unlock.checked = False
        self.refresh()

    def cleanup(self) -> None:
        import slicer

        self.job.cancel()
        self.logic.stop_live()
        slicer.mrmlScene.RemoveObserver(self._observer)


__all__ = ["QtProcessRunner", "SpineAssistPanel"]
