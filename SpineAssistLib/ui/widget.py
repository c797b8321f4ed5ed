"""The SpineAssist side panel (Qt). Imported only inside 3D Slicer, by SpineAssist.py's widget.

A thin view over ``SpineAssistLib.ui.controller.PanelController``, the Qt-free model the browser page
shows too: its layout is the Qt Designer file ``SpineAssist/Resources/UI/SpineAssist.ui``, each handler
calls one controller action, and ``_redraw`` shows the controller's state after every change. What is
left here is what only Slicer has: its node selectors and DICOM database, file dialogs, the desktop's
report viewer. The controller, the logic and ``panel_model`` (what each cell shows, which values an
editor offers) are tested with pytest outside Slicer; this file by the module's self-test inside it.
"""

from __future__ import annotations

import html
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from SpineAssistLib.mrml import LAYERS
from SpineAssistLib.ui import dependencies
from SpineAssistLib.ui.controller import PanelController
from SpineAssistLib.ui.logic import default_series, dicom_files_for_volume, new_work_folder, volume_plane
from SpineAssistLib.ui.panel_model import COLUMNS, KIND_COLUMN, KIND_TITLES, LevelView, choices
from SpineAssistLib.ui.process import DEVICES, stage_dicom_files

RESET_COLUMN = len(COLUMNS)
IDLE_TEACHING = "Choose a level and a finding, then Next."

# Every widget the panel looks up in SpineAssist.ui, with its class (Testing/test_packaging.py checks
# the .ui file against this, so a renamed widget fails a test here, not a click in Slicer).
UI_WIDGETS: dict[str, str] = {
    "sagittalSelector": "qMRMLNodeComboBox",
    "axialSelector": "qMRMLNodeComboBox",
    "folderButton": "QPushButton",
    "folderLabel": "QLabel",
    "deviceComboBox": "QComboBox",
    "runButton": "QPushButton",
    "cancelButton": "QPushButton",
    "progressBar": "QProgressBar",
    "statusLabel": "QLabel",
    "levelsTable": "QTableWidget",
    "relabelUpButton": "QPushButton",
    "relabelDownButton": "QPushButton",
    **{f"{layer}CheckBox": "QCheckBox" for layer in LAYERS},
    "unlockButton": "QPushButton",
    "saveButton": "QPushButton",
    "rewriteButton": "QPushButton",
    "openReportButton": "QPushButton",
    "importDicomButton": "QPushButton",
    "exportTrainingButton": "QPushButton",
    "teachLevelComboBox": "QComboBox",
    "teachKindComboBox": "QComboBox",
    "teachPreviousButton": "QPushButton",
    "teachNextButton": "QPushButton",
    "teachEndButton": "QPushButton",
    "teachTextLabel": "QLabel",
}


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


def status_html(c: PanelController) -> str:
    """The status label's rich text: the status, what to review first, the run's messages, the last error."""
    def lines(text: str) -> str:
        return html.escape(text).replace("\n", "<br>")

    parts = [lines(c.status)]
    if c.loaded and c.review:
        parts.append(f"<b>{lines(c.review)}</b>")
    parts += [lines(m) for m in c.messages]
    if c.error:
        parts.append(f'<span style="color:#b00020">{lines(c.error)}</span>')
    return "<br>".join(p for p in parts if p)


class SpineAssistPanel:
    """The side panel: inputs and Run, the level table, layers, live regrading, save and export, teaching.

    ``ui`` holds the widgets of SpineAssist.ui by name (``slicer.util.childWidgetVariables``).
    """

    def __init__(self, ui: Any) -> None:
        import slicer

        missing = sorted(name for name in UI_WIDGETS if getattr(ui, name, None) is None)
        if missing:
            raise RuntimeError(f"SpineAssist.ui lacks the widgets {', '.join(missing)}: reinstall the extension")
        self.ui = ui
        self.folder: Path | None = None
        self._deps_checked = False
        self._shown_views: list[LevelView] | None = None
        self._shown_error = ""
        self.controller = self._new_controller()
        self._connect()
        self._observer = slicer.mrmlScene.AddObserver(slicer.mrmlScene.EndCloseEvent, lambda *_: self._scene_closed())
        self.controller.adopt_scene()
        self._redraw(self.controller)

    def _new_controller(self) -> PanelController:
        import slicer

        controller = PanelController(slicer.mrmlScene, runner=QtProcessRunner())
        controller.subscribe(self._redraw)
        return controller

    # The self-test and the Python console reach the session through these.
    @property
    def logic(self) -> Any:
        return self.controller.logic

    @property
    def job(self) -> Any:
        return self.controller.job

    def _connect(self) -> None:
        import qt

        ui = self.ui
        ui.deviceComboBox.addItems(list(DEVICES))
        for kind, title in KIND_TITLES.items():
            ui.teachKindComboBox.addItem(title, kind)
        table = ui.levelsTable
        table.setColumnCount(len(COLUMNS) + 1)
        table.setHorizontalHeaderLabels([*COLUMNS, ""])
        table.horizontalHeader().setSectionResizeMode(qt.QHeaderView.ResizeToContents)
        table.connect("cellClicked(int,int)", lambda row, _column: self.on_row_selected(row))
        ui.folderButton.connect("clicked()", self.on_choose_folder)
        ui.runButton.connect("clicked()", self.on_run)
        ui.cancelButton.connect("clicked()", lambda: self._act(self.controller.cancel, "Cannot cancel"))
        for selector in (ui.sagittalSelector, ui.axialSelector):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", lambda *_: self._set_folder(None))
        ui.relabelUpButton.connect("clicked()", lambda: self._act(lambda: self.controller.relabel(-1), "Cannot relabel"))
        ui.relabelDownButton.connect("clicked()", lambda: self._act(lambda: self.controller.relabel(1), "Cannot relabel"))
        for layer in LAYERS:
            getattr(ui, f"{layer}CheckBox").connect(
                "toggled(bool)", lambda on, name=layer: self._act(lambda: self.controller.set_layer(name, on),
                                                                  "Cannot show or hide the layer"))
        ui.unlockButton.connect("toggled(bool)", lambda on: self._act(lambda: self.controller.unlock(on),
                                                                      "Cannot unlock the keypoints"))
        ui.saveButton.connect("clicked()", lambda: self._act(self.controller.save, "Cannot save the corrections"))
        ui.rewriteButton.connect("clicked()", lambda: self._act(
            lambda: self.controller.rewrite_outputs(self.ui.deviceComboBox.currentText), "Cannot rewrite the outputs"))
        ui.openReportButton.connect("clicked()", self.on_open_report)
        ui.importDicomButton.connect("clicked()", self.on_import_dicom)
        ui.exportTrainingButton.connect("clicked()", self.on_export_training)
        ui.teachPreviousButton.connect("clicked()", lambda: self.on_teach_step(-1))
        ui.teachNextButton.connect("clicked()", lambda: self.on_teach_step(1))
        ui.teachEndButton.connect("clicked()", lambda: self._act(self.controller.stop_teaching, "Teaching"))
        self._select_default_series()

    # ------------------------------------------------------------------ actions
    def _act(self, action: Callable[[], Any], what: str) -> Any:
        """One controller action; a failure the reader can act on is shown once, in a message box."""
        self._shown_error = ""
        return self.controller.attempt(action, what)

    def _set_folder(self, folder: Path | None) -> None:
        self.folder = folder
        self.ui.folderLabel.text = str(folder) if folder else ""

    def on_choose_folder(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(None, "DICOM folder of a lumbar MRI study")
        if folder:
            self._set_folder(Path(folder))

    def _select_default_series(self) -> None:
        import slicer

        volumes = []
        for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            try:
                volumes.append((node.GetName(), volume_plane(node)))
            except ValueError:
                continue
        picks = default_series(volumes)
        for selector, plane in ((self.ui.sagittalSelector, "sagittal"), (self.ui.axialSelector, "axial")):
            if picks[plane] and selector.currentNode() is None:
                selector.setCurrentNode(slicer.mrmlScene.GetFirstNodeByName(picks[plane]))

    def _ensure_dependencies(self) -> bool:
        if self._deps_checked:
            return True
        if dependencies.missing_requirements():
            if self._act(dependencies.install_in_slicer, "Installing dependencies failed") is None:
                return False
            if dependencies.missing_requirements():
                return False
        self._deps_checked = True
        return True

    def _stage_inputs(self) -> tuple[Path, str | None, str | None]:
        """The study to assess: the chosen folder, or the selected series' files copied from the database."""
        import slicer

        if self.folder is not None:
            return self.folder, None, None
        sagittal, axial = self.ui.sagittalSelector.currentNode(), self.ui.axialSelector.currentNode()
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

        def run() -> None:
            study, sagittal_uid, axial_uid = self._stage_inputs()
            self.controller.run(study, new_work_folder("out"), device=self.ui.deviceComboBox.currentText,
                                sagittal_uid=sagittal_uid, axial_uid=axial_uid)

        self._act(run, "Cannot run")

    def on_row_selected(self, row: int) -> None:
        import qt

        item = self.ui.levelsTable.item(row, 0)
        level = item.data(qt.Qt.UserRole) if item is not None else None   # the name, not the text shown
        if level:
            self._act(lambda: self.controller.select(level), "Cannot centre the views")

    def on_edit(self, level: str, kind: str, index: int) -> None:
        self._act(lambda: self.controller.edit(level, kind, index), "Cannot record the correction")

    def on_canal_diameter(self, level: str, ap_mm: float, shown: float | None) -> None:
        # editingFinished also fires when the box merely loses focus: only a changed number is a reading
        if ap_mm <= 0 or (shown is not None and round(shown, 1) == round(ap_mm, 1)):
            return
        self._act(lambda: self.controller.set_canal_diameter(level, ap_mm), "Cannot record the diameter")

    def on_open_report(self) -> None:
        import qt

        out = self.controller.out_dir
        report = out / "report.html" if out is not None else None
        if report is not None and report.is_file():
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(report)))
        else:
            self.controller.inform(f"No report in {out}: rewrite the outputs first")

    def on_import_dicom(self) -> None:
        from DICOMLib import DICOMUtils

        def import_outputs() -> None:
            out = self.controller.out_dir
            folder = new_work_folder("dicom-export")
            found = [Path(shutil.copy2(out / name, folder / name)).name for name in ("seg.dcm", "sr.dcm")
                     if out is not None and (out / name).is_file()]
            if not found:
                raise FileNotFoundError(f"no SEG or SR in {out} (see the run's messages)")
            DICOMUtils.importDicom(str(folder))
            self.controller.inform(f"Added {', '.join(found)} to the DICOM database.")

        self._act(import_outputs, "Cannot import into the DICOM database")

    def on_export_training(self) -> None:
        import qt

        dest = qt.QFileDialog.getExistingDirectory(None, "Folder for the training data (cases accumulate there)")
        if dest:
            self._act(lambda: self.controller.export_training_data(dest), "Training-data export failed")

    def on_teach_step(self, delta: int) -> None:
        level, kind = self.ui.teachLevelComboBox.currentText, self.ui.teachKindComboBox.currentData
        if level:
            self._act(lambda: self.controller.teach(level, kind, delta), "Teaching")

    # ------------------------------------------------------------------ showing the controller's state
    def _redraw(self, c: PanelController) -> None:
        import slicer

        ui = self.ui
        running, has_out = c.running, c.loaded and c.out_dir is not None
        ui.progressBar.value = int(round(c.progress * 100))
        ui.statusLabel.text = status_html(c)
        ui.runButton.enabled = not running
        ui.cancelButton.enabled = running
        for button in (ui.saveButton, ui.rewriteButton, ui.openReportButton, ui.importDicomButton):
            button.enabled = has_out and not running
        ui.saveButton.text = "Save corrections *" if c.dirty else "Save corrections"
        ui.exportTrainingButton.enabled = c.loaded and not running
        ui.unlockButton.enabled = c.loaded
        self._set_quietly(ui.unlockButton, c.unlocked)
        for layer in LAYERS:
            self._set_quietly(getattr(ui, f"{layer}CheckBox"), c.layers[layer])
        self._show_table(c)
        t = c.teaching
        ui.teachTextLabel.text = (f"<b>{t.index + 1}/{t.count}. {t.title}</b><br>{t.text}" if t is not None
                                  else IDLE_TEACHING)
        if c.error and c.error != self._shown_error:   # each failure once, not on every later redraw
            self._shown_error = c.error
            slicer.util.errorDisplay(c.error)

    @staticmethod
    def _set_quietly(button: Any, checked: bool) -> None:
        if button.checked != checked:
            was = button.blockSignals(True)
            button.checked = checked
            button.blockSignals(was)

    def _show_table(self, c: PanelController) -> None:
        import qt

        views = c.views()
        table = self.ui.levelsTable
        if views != self._shown_views:   # progress and status changes leave the editors alone
            self._shown_views = views
            table.setRowCount(len(views))
            for r, view in enumerate(views):
                item = qt.QTableWidgetItem(view.name_text)
                item.setData(qt.Qt.UserRole, view.name)
                item.setToolTip(view.name_tooltip)
                table.setItem(r, 0, item)
                for kind, column in KIND_COLUMN.items():
                    table.setCellWidget(r, COLUMNS.index(column), self._editor(view.name, view.cells[kind]))
                table.setItem(r, COLUMNS.index("Slip %"), qt.QTableWidgetItem(view.slip_text))
                reset = qt.QPushButton("Reset")
                reset.toolTip = "Put the model's values back at this level"
                reset.connect("clicked()", lambda name=view.name: self._act(lambda: c.reset(name), "Cannot reset"))
                table.setCellWidget(r, RESET_COLUMN, reset)
            levels = self.ui.teachLevelComboBox
            current = levels.currentText
            levels.clear()
            levels.addItems([v.name for v in views])
            if current:
                levels.setCurrentText(current)
        names = [v.name for v in views]
        if c.selected in names and table.currentRow() != names.index(c.selected):
            was = table.blockSignals(True)
            table.selectRow(names.index(c.selected))
            table.blockSignals(was)

    def _editor(self, level: str, cell: Any) -> Any:
        import qt

        box = qt.QWidget()
        row = qt.QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        combo = qt.QComboBox()
        combo.addItems([c.text for c in choices(cell.kind)])
        combo.setCurrentIndex(cell.index)  # -1 (blank) when not assessed: the reader may still set a value
        combo.toolTip = cell.tooltip
        row.addWidget(combo)
        if cell.corrected:
            font = combo.font
            font.setBold(True)
            combo.font = font
            row.addWidget(qt.QLabel(f"(model: {cell.model_text or 'none'})"))
        # "activated" is the reader's choice only: filling the table never records a correction
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

    # ------------------------------------------------------------------ lifecycle
    def enter(self) -> None:
        """The module was opened: pick the series loaded since, and any assessment the scene holds."""
        self._select_default_series()
        if not self.controller.loaded:
            self.controller.adopt_scene()

    def _scene_closed(self) -> None:
        self.controller.close()
        self._shown_views = None
        self.controller = self._new_controller()
        self._redraw(self.controller)

    def cleanup(self) -> None:
        import slicer

        self.controller.close()
        slicer.mrmlScene.RemoveObserver(self._observer)


__all__ = ["QtProcessRunner", "SpineAssistPanel", "UI_WIDGETS", "status_html"]
