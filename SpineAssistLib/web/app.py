"""The browser page: Slicer's sagittal and axial slice views of the study beside a review panel.

Built with trame-slicer, which renders Slicer's own MRML views on the server (offscreen, VTK's EGL
or OSMesa) and streams them to the page. Every button calls one action of
``SpineAssistLib.ui.controller.PanelController`` (the model the Slicer panel shows too); after each
action the controller's state is copied into the page's state (``page_state``), so the page is a view
and holds no logic of its own.

Usage::

    app = SpineAssistWebApp(reader="dr.lee")
    app.panel.open("out")                         # an assessed study
    app.server.start(host="127.0.0.1", port=8080, open_browser=False)
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Callable

from trame.app import TrameApp
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout
from vtkmodules.vtkCommonCore import vtkObject

from SpineAssistLib.mrml import LAYERS
from SpineAssistLib.mrml.nodes import level_center_ras
from SpineAssistLib.ui.controller import PanelController
from SpineAssistLib.ui.panel_model import KIND_COLUMN, KIND_TITLES, choices
from SpineAssistLib.ui.process import DEVICES
from SpineAssistLib.version import __version__
from SpineAssistLib.web.access import token_middleware

LAYOUT = "SpineAssist"
SAGITTAL_VIEW, AXIAL_VIEW = "Yellow", "Red"
SELECTED_FIELD_MM = 110.0     # the sagittal view's height when a level is chosen: the level and its two vertebrae
DISCLAIMER = "Research software: not validated for clinical use."
# The editors' order in the level card: the three graded findings first, then the sagittal gradings.
EDITOR_KINDS: tuple[str, ...] = tuple(KIND_COLUMN)
TEACH_KINDS = [{"title": KIND_TITLES[k], "value": k} for k in EDITOR_KINDS]


def page_state(panel: PanelController) -> dict[str, Any]:
    """Return the page's state for the controller's: what every widget of the page shows (JSON-safe)."""
    levels = []
    for view in panel.views():
        cells = {kind: {"text": cell.text, "display": cell.display, "model": cell.model_text,
                        "corrected": cell.corrected, "assessed": cell.assessed, "index": cell.index,
                        "tooltip": cell.tooltip, "view": cell.view,
                        "ap_mm": None if cell.ap_mm is None else round(cell.ap_mm, 1)}
                 for kind, cell in view.cells.items()}
        levels.append({"name": view.name, "label": view.name_text, "model_name": view.model_name,
                       "corrected": view.corrected, "uncertain": view.uncertain, "tooltip": view.name_tooltip,
                       "slip": view.slip_text, "cells": cells})
    selected = panel.selected if any(lv["name"] == panel.selected for lv in levels) else None
    teaching = panel.teaching
    return {
        "loaded": panel.loaded,
        "running": panel.running,
        "progress": round(panel.progress * 100),
        "status": panel.status,
        "error": panel.error,
        "review": panel.review,
        "messages": list(panel.messages),
        "levels": levels,
        "selected": selected,
        "editor": next((lv["cells"] for lv in levels if lv["name"] == selected), None),
        "unlocked": panel.unlocked,
        "unsaved": panel.dirty,
        "layers": dict(panel.layers),
        "out_dir": str(panel.out_dir or ""),
        "teaching": None if teaching is None else {
            "level": teaching.level, "kind": teaching.kind, "step": teaching.index + 1, "count": teaching.count,
            "title": teaching.title, "text": teaching.text},
    }


def _slices_away(volume: Any, ras: tuple[float, float, float]) -> float:
    """How far (in slices and pixels, the largest) a RAS point lies outside a volume's voxel grid; 0 inside.

    An oblique axial block's RAS bounding box is far larger than the block: only its own grid says
    whether a disc is in it.
    """
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    volume.GetRASToIJKMatrix(m)
    ijk = m.MultiplyPoint([*ras, 1.0])[:3]
    dims = volume.GetImageData().GetDimensions()
    return max(max(-0.5 - c, c - (n - 0.5), 0.0) for c, n in zip(ijk, dims))


class SpineAssistWebApp(TrameApp):
    """One reader's review page over one scene."""

    def __init__(self, server: Any = None, *, reader: str | None = None, device: str = "auto",
                 locked_paths: bool = False, quiet: bool = False) -> None:
        super().__init__(server)
        self.server.enable_module(trame_slicer_module)
        if not os.environ.get("DISPLAY"):    # no X server: straight to offscreen EGL rather than through X's failure
            os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        self.slicer_app = SlicerApp()
        if quiet:
            # SlicerApp sends every VTK message to stderr (deprecation notes, X fallbacks on a machine without a
            # display): they would bury the page's address; `spineassist -v view` shows them
            vtkObject.GlobalWarningDisplayOff()
        register_rca_factories(self.slicer_app.view_manager, self.server)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout(LAYOUT, Layout(LayoutDirection.Horizontal, [
            ViewLayoutDefinition.sagittal_view(SAGITTAL_VIEW), ViewLayoutDefinition.axial_view(AXIAL_VIEW)]))
        self.layout_manager.set_layout(LAYOUT)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.panel = PanelController(self.slicer_app.scene, reader=reader, call_soon=self._call_soon)
        self.panel.subscribe(self._panel_changed)
        self._shown_out: Path | None = None
        # served beyond this machine: the page may run only the study and OUT the command named, whatever a
        # client writes into the (client-writable) state
        self.locked_paths = locked_paths
        self._paths: tuple[str, str] = ("", "")
        self._open_warned: str | None = None
        self._zoomed: str | None = None
        self._axial_volume: str | None = None
        self.state.setdefault("device", device)
        self.state.setdefault("study_dir", "")
        self.state.setdefault("run_out", "")
        self.state.setdefault("paths_locked", locked_paths)
        self.state.setdefault("teach_kind", "pfirrmann")
        self.state.setdefault("canal_mm", None)
        self.state.update(page_state(self.panel))
        self._build_ui()

    def set_paths(self, study_dir: str | os.PathLike[str] | None, out_dir: str | os.PathLike[str]) -> None:
        """Fill the run card with the study and OUT the command was given (the only ones when paths are locked)."""
        self._paths = (str(study_dir or ""), str(out_dir))
        self.state.study_dir, self.state.run_out = self._paths

    # ------------------------------------------------------------------ controller -> page
    def _call_soon(self, fn: Callable[[], None]) -> None:
        """Run a background run's callback on the server's event loop (the only thread that may touch state)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def _panel_changed(self, panel: PanelController) -> None:
        if panel.loaded and panel.out_dir != self._shown_out:
            self._shown_out = panel.out_dir
            self._show_study()
        if panel.selected:
            self._show_axial_for(panel.selected)
            if panel.selected != self._zoomed:
                self._zoom_sagittal(panel.selected)
        self._zoomed = panel.selected
        with self.state:
            self.state.update(page_state(panel))

    def _slice_view(self, name: str) -> Any:
        for view in self.slicer_app.view_manager.get_slice_views():
            node = self.slicer_app.scene.GetNodeByID(view.get_view_node_id())
            if node is not None and node.GetLayoutName() == name:
                return view, node
        raise RuntimeError(f"the page has no {name} slice view")

    def _show_volume(self, view_name: str, volume: Any) -> None:
        view, node = self._slice_view(view_name)
        view.set_background_volume_id(volume.GetID())
        node.RotateToVolumePlane(volume)
        view.fit_view_to_content()

    def _show_study(self) -> None:
        """Put the sagittal series in the left view and the first axial block in the right one."""
        nodes = self.panel.logic.nodes
        if nodes is None:
            return
        # names and lengths of some hundred lines and boxes hide the image at the page's size: the table and
        # the teaching steps give them; the keypoints keep their labels (which corner is which)
        for node in [*nodes.lines, *nodes.boxes]:
            for i in range(node.GetNumberOfDisplayNodes()):
                display = node.GetNthDisplayNode(i)
                display.SetPropertiesLabelVisibility(False)
                if node.IsA("vtkMRMLMarkupsROINode"):    # the box's outline; a filled box hides the vertebra
                    display.SetFillVisibility(False)
        sagittal = nodes.volumes.get("sagittal")
        if sagittal is not None:
            self._show_volume(SAGITTAL_VIEW, sagittal)
        axial = [v for k, v in nodes.volumes.items() if k != "sagittal"]
        self._axial_volume = None
        if axial:
            self._show_volume(AXIAL_VIEW, axial[0])
            self._axial_volume = axial[0].GetID()

    def _zoom_sagittal(self, level: str) -> None:
        """Show about two vertebrae around the chosen level: its corners are far enough apart to take with the mouse."""
        _, node = self._slice_view(SAGITTAL_VIEW)
        width, height, _ = node.GetDimensions()
        fov = list(node.GetFieldOfView())
        if height > 0 and width > 0:
            node.SetFieldOfView(SELECTED_FIELD_MM * width / height, SELECTED_FIELD_MM, fov[2])
        try:
            self.panel.logic.center(level)
        except (ValueError, KeyError):
            pass

    def _show_axial_for(self, level: str) -> None:
        """Show the axial block whose slices cut ``level``'s disc centre (the nearest, within a slice)."""
        nodes, assessment = self.panel.logic.nodes, self.panel.logic.assessment
        if nodes is None or assessment is None:
            return
        try:
            ras = level_center_ras(nodes, assessment, level)
        except (ValueError, KeyError):
            return
        best = min(((_slices_away(volume, ras), volume) for key, volume in nodes.volumes.items() if key != "sagittal"),
                   key=lambda pair: pair[0], default=None)
        if best is None or best[0] > 1.0:     # no axial slice within a slice of this disc: keep the view as it is
            return
        volume = best[1]
        if volume.GetID() != self._axial_volume:
            self._show_volume(AXIAL_VIEW, volume)
            self._axial_volume = volume.GetID()
            self.panel.logic.center(level)

    # ------------------------------------------------------------------ page -> controller
    def _act(self, action: Callable[[], Any], what: str) -> Any:
        return self.panel.attempt(action, what)

    def on_select(self, level: str) -> None:
        self._act(lambda: self.panel.select(level), "Cannot show the level")

    def on_edit(self, kind: str, index: int) -> None:
        level = self.state.selected
        if level is None or index is None:
            return
        self._act(lambda: self.panel.edit(level, kind, int(index)), "Cannot record the correction")

    def on_canal_diameter(self, value: Any) -> None:
        level = self.state.selected
        try:
            ap_mm = float(value)
        except (TypeError, ValueError):
            return
        if level is not None and ap_mm > 0:
            self._act(lambda: self.panel.set_canal_diameter(level, ap_mm), "Cannot record the diameter")

    def on_reset(self) -> None:
        level = self.state.selected
        if level is not None:
            self._act(lambda: self.panel.reset(level), "Cannot reset")

    def on_relabel(self, shift: int) -> None:
        self._act(lambda: self.panel.relabel(int(shift)), "Cannot relabel")

    def on_layer(self, layer: str, visible: bool) -> None:
        self._act(lambda: self.panel.set_layer(layer, bool(visible)), "Cannot change the layer")

    def on_unlock(self, on: bool) -> None:
        self._act(lambda: self.panel.unlock(bool(on)), "Cannot unlock the keypoints")

    def on_save(self) -> None:
        self._act(self.panel.save, "Cannot save")

    def on_run(self) -> None:
        study, out = self._paths if self.locked_paths else ((self.state.study_dir or "").strip(),
                                                            (self.state.run_out or "").strip())
        self._act(lambda: self.panel.run(study, out, device=self.state.device), "Cannot run")

    def on_open(self) -> None:
        out = self._paths[1] if self.locked_paths else (self.state.run_out or "").strip()
        # a second Open of the same folder, after the warning about unsaved corrections, discards them
        discard = self._open_warned == out
        self._open_warned = out if self.panel.dirty and not discard else None
        self._act(lambda: self.panel.open(out, discard=discard) if out else self._need_out(), "Cannot open")

    @staticmethod
    def _need_out() -> None:
        raise ValueError("give the output folder of an assessed study (it holds scene.mrb)")

    def on_cancel(self) -> None:
        self._act(self.panel.cancel, "Cannot cancel")

    def on_teach(self, delta: int) -> None:
        level = self.state.selected or (self.state.levels[0]["name"] if self.state.levels else None)
        if level is not None:
            self._act(lambda: self.panel.teach(level, self.state.teach_kind, int(delta)), "Teaching")

    def on_teach_end(self) -> None:
        self._act(self.panel.stop_teaching, "Teaching")

    # ------------------------------------------------------------------ the page
    def _build_ui(self) -> None:
        with SinglePageWithDrawerLayout(self.server, full_height=True) as self.ui:
            self.ui.title.set_text("SpineAssist")
            self.ui.drawer.width = 460
            self.ui.drawer.permanent = True
            with self.ui.toolbar:
                v3.VSpacer()
                html.Span("{{ out_dir }}", classes="text-caption mr-4", id="out-dir")
                v3.VChip(DISCLAIMER, size="small", color="warning", variant="tonal", classes="mr-2")
                html.Span(f"v{__version__}", classes="text-caption mr-2")
            with self.ui.drawer:
                self._run_card()
                self._levels_card()
                self._editor_card()
                self._teaching_card()
            with self.ui.content:
                html.Style("html { overflow-y: hidden; }")
                with html.Div(style="position: relative; width: 100%; height: calc(100vh - 64px);"):
                    self.layout_manager.initialize_layout_grid(self.ui)

    def _run_card(self) -> None:
        with v3.VCard(classes="ma-2", variant="outlined"):
            v3.VCardTitle("Study", classes="text-subtitle-1")
            with v3.VCardText():
                v3.VTextField(v_model=("study_dir",), label="DICOM folder of the study", density="compact",
                              hide_details=True, classes="mb-2", id="study-dir", readonly=("paths_locked",))
                v3.VTextField(v_model=("run_out",), label="Output folder", density="compact", hide_details=True,
                              classes="mb-2", id="run-out", readonly=("paths_locked",))
                with html.Div(classes="d-flex align-center ga-2"):
                    v3.VSelect(v_model=("device",), items=("devices", list(DEVICES)), label="Device",
                               density="compact", hide_details=True, style="max-width: 140px")
                    v3.VBtn("Run", click=self.on_run, disabled=("running",), color="primary", id="run")
                    v3.VBtn("Cancel", click=self.on_cancel, disabled=("!running",), id="cancel")
                    v3.VBtn("Open", click=self.on_open, disabled=("running",), id="open",
                            title="Show the assessed study in the output folder")
                v3.VProgressLinear(model_value=("progress",), height=8, classes="mt-3", id="progress",
                                   color="primary")
                html.Div("{{ status }}", classes="text-body-2 mt-1", id="status")
                html.Div("{{ error }}", v_if="error", classes="text-body-2 text-error mt-1", id="error")
                html.Div("{{ review }}", v_if="review", classes="text-body-2 text-warning mt-1", id="review")
                html.Div("{{ m }}", v_for="m in messages", classes="text-caption mt-1")

    def _levels_card(self) -> None:
        with v3.VCard(classes="ma-2", variant="outlined", v_if="loaded"):
            v3.VCardTitle("Levels", classes="text-subtitle-1")
            with v3.VTable(density="compact", id="levels"):
                with html.Thead():
                    with html.Tr():
                        for title in ("Level", "MSU", "Pfirrmann", "Meyerding", "Slip %"):
                            html.Th(title)
                with html.Tbody():
                    with html.Tr(v_for="row in levels", key="row.name",
                                 click=(self.on_select, "[row.name]"),
                                 style=("row.name === selected ? 'background: rgba(33,150,243,0.15); cursor: pointer'"
                                        " : 'cursor: pointer'",),
                                 __properties=[("data_level", "data-level")], data_level=("row.name",)):
                        html.Td("{{ row.label }}", title=("row.tooltip",),
                                classes=("row.uncertain ? 'text-warning' : ''",))
                        for kind in ("ldh", "pfirrmann", "listhesis"):
                            html.Td(f"{{{{ row.cells.{kind}.text }}}}",
                                    title=(f"row.cells.{kind}.tooltip",),
                                    classes=(f"row.cells.{kind}.corrected ? 'font-weight-bold text-primary' : ''",),
                                    __properties=[("data_kind", "data-kind")], data_kind=kind)
                        html.Td("{{ row.slip }}", __properties=[("data_kind", "data-kind")], data_kind="slip")
            with v3.VCardActions(classes="flex-wrap"):
                v3.VBtn("\u2191 level up", click=(self.on_relabel, "[-1]"), size="small",
                        title="Relabel every level one disc up (e.g. L4-L5 becomes L3-L4)")
                v3.VBtn("\u2193 level down", click=(self.on_relabel, "[1]"), size="small",
                        title="Relabel every level one disc down (e.g. L4-L5 becomes L5-S1)")
                v3.VSpacer()
                v3.VBtn("Save", click=self.on_save, color="primary", variant="flat", id="save",
                        disabled=("running",), prepend_icon=("unsaved ? 'mdi-content-save-alert' : 'mdi-content-save'",))
            with v3.VCardText(classes="pt-0"):
                with html.Div(classes="d-flex flex-wrap"):
                    for layer in LAYERS:
                        v3.VCheckbox(label=layer.capitalize(), model_value=(f"layers.{layer}",), density="compact",
                                     hide_details=True, update_modelValue=(self.on_layer, f"['{layer}', $event]"))
                v3.VSwitch(label="Unlock keypoints: drag one, its level is regraded", model_value=("unlocked",),
                           update_modelValue=(self.on_unlock, "[$event]"), color="primary", density="compact",
                           hide_details=True, id="unlock")

    def _editor_card(self) -> None:
        with v3.VCard(classes="ma-2", variant="outlined", v_if="editor"):
            v3.VCardTitle("{{ selected }}: the reader's values", classes="text-subtitle-1")
            with v3.VCardText():
                for kind in EDITOR_KINDS:
                    items = [{"title": c.text, "value": i} for i, c in enumerate(choices(kind))]
                    with html.Div(classes="d-flex align-center ga-2"):
                        v3.VSelect(label=KIND_TITLES[kind], items=("choices_" + kind, items),
                                   model_value=(f"editor.{kind}.index >= 0 ? editor.{kind}.index : null",),
                                   update_modelValue=(self.on_edit, f"['{kind}', $event]"), density="compact",
                                   hide_details=True, classes="mb-1", id=f"edit-{kind}",
                                   bg_color=(f"editor.{kind}.corrected ? 'blue-lighten-5' : undefined",))
                        html.Span("model: {{ editor.%s.model || 'none' }}" % kind, v_if=f"editor.{kind}.corrected",
                                  classes="text-caption", style="min-width: 110px")
                        if kind == "canal":
                            v3.VTextField(label="AP mm", type="number", model_value=("editor.canal.ap_mm",),
                                          update_modelValue="canal_mm = $event",
                                          change=(self.on_canal_diameter, "[canal_mm]"), density="compact",
                                          hide_details=True, style="max-width: 100px", id="canal-mm")
            with v3.VCardActions():
                v3.VBtn("Reset level to the model's values", click=self.on_reset, size="small", id="reset")

    def _teaching_card(self) -> None:
        with v3.VCard(classes="ma-2", variant="outlined", v_if="loaded"):
            v3.VCardTitle("How is it graded?", classes="text-subtitle-1")
            with v3.VCardText():
                v3.VSelect(v_model=("teach_kind",), items=("teach_kinds", TEACH_KINDS), label="Finding",
                           density="compact", hide_details=True, id="teach-kind")
                with html.Div(classes="d-flex ga-2 mt-2"):
                    v3.VBtn("< Previous", click=(self.on_teach, "[-1]"), size="small")
                    v3.VBtn("Next >", click=(self.on_teach, "[1]"), size="small", id="teach-next")
                    v3.VBtn("End", click=self.on_teach_end, size="small")
                with html.Div(v_if="teaching", classes="mt-2", id="teaching"):
                    html.Div("{{ teaching.level }} \u2014 {{ teaching.step }}/{{ teaching.count }}. {{ teaching.title }}",
                             classes="font-weight-bold")
                    html.Div("{{ teaching.text }}", classes="text-body-2")


def start_page(app: SpineAssistWebApp, *, host: str, port: int, token: str | None,
               on_ready: Callable[[int], None] | None = None) -> None:
    """Serve the page (blocking until the server stops); ``token`` guards a non-loopback address."""
    if token is not None:
        @app.server.controller.add("on_server_bind")
        def _bind(wslink_server: Any) -> None:
            wslink_server.app.middlewares.append(token_middleware(token))

    @app.server.controller.add("on_server_ready")
    def _ready(**_: Any) -> None:
        app._loop = asyncio.get_running_loop()   # noqa: SLF001 - the background run's callbacks hop onto it
        if on_ready is not None:
            on_ready(app.server.port)

    os.environ.setdefault("TRAME_DISABLE_V3_WARNING", "1")
    app.server.start(host=host, port=port, open_browser=False, show_connection_info=False,
                     disable_logging=True)


__all__ = ["DISCLAIMER", "LAYOUT", "SpineAssistWebApp", "page_state", "start_page"]
