"""The panel's logic, without Qt: inputs from the DICOM database, results into the scene, edits, teaching.

``SpineAssistLogic`` holds one session (the scene, the assessment, its nodes) and is what every
button of the panel calls, in a line or two. It runs in Slicer and, without Qt, with slicer-core.

Usage (Slicer's Python console)::

    from SpineAssistLib.ui.logic import SpineAssistLogic
    from SpineAssistLib.ui.process import AssessProcess, stage_dicom_files
    logic = SpineAssistLogic(slicer.mrmlScene, reader="dr.lee")
    files, sag_uid = dicom_files_for_volume(sagittal_node, slicer.dicomDatabase)
    job = AssessProcess(); job.start(stage_dicom_files(files, "/tmp/study"), "/tmp/out", sagittal_uid=sag_uid)
    logic.load_results(job.wait_for_done().out)
    logic.correct("L4-L5", "pfirrmann", 3)        # the editor's entry 3: Pfirrmann IV
    [v.cells["pfirrmann"].display for v in logic.views()]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from SpineAssistLib import mrml
from SpineAssistLib.export.outputs import save_reader_session
from SpineAssistLib.findings import FINDING_KINDS, Assessment, Correction, FindingKind
from SpineAssistLib.geometry import lps_to_ras
from SpineAssistLib.mrml.edits import current_reader
from SpineAssistLib.mrml.nodes import ATTR_FINDING, ATTR_LINE, ATTR_MODEL_LEVEL
from SpineAssistLib.training.reader_cases import write_training_data_from_scene
from SpineAssistLib.ui.panel_model import LevelView, canal_with_diameter, chosen_value, level_view
from SpineAssistLib.ui.teaching import TeachingStep, teaching_steps

TEACHING_POINTS_NODE = "SpineAssist teaching points"


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------

def plane_of_direction(ijk_to_ras: Any) -> str:
    """Return "sagittal", "coronal" or "axial": the plane a volume's slices lie in, from its IJK->RAS 3x3 (or 4x4).

    The slice normal is the K axis; the plane is the one whose normal it is closest to (R: sagittal,
    A: coronal, S: axial), which holds for angled axial slices too.
    """
    m = np.asarray(ijk_to_ras, dtype=float)
    if m.shape not in ((3, 3), (4, 4)):
        raise ValueError(f"expected a 3x3 or 4x4 IJK->RAS matrix; got shape {m.shape}")
    normal = m[:3, 2]
    if not np.any(normal):
        raise ValueError("the volume's K axis is zero; its geometry is broken")
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def volume_plane(volume: Any) -> str:
    """Return the plane of a scalar volume node's slices (see plane_of_direction)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    volume.GetIJKToRASDirectionMatrix(m)
    return plane_of_direction([[m.GetElement(r, c) for c in range(3)] for r in range(3)])


def default_series(volumes: Sequence[tuple[str, str]]) -> dict[str, str | None]:
    """Return {"sagittal": name, "axial": name} picked from (name, plane) pairs: T2 in the name first, then the last loaded."""
    out: dict[str, str | None] = {}
    for plane in ("sagittal", "axial"):
        names = [n for n, p in volumes if p == plane]
        t2 = [n for n in names if "t2" in n.lower()]
        out[plane] = (t2 or names or [None])[-1]
    return out


def dicom_files_for_volume(volume: Any, database: Any) -> tuple[list[str], str | None]:
    """Return (the volume's DICOM files, its SeriesInstanceUID) from its ``DICOM.instanceUIDs`` attribute.

    ``database`` is ``slicer.dicomDatabase`` (``fileForInstance``, ``instanceValue``).
    """
    uids = (volume.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids:
        raise ValueError(f"volume {volume.GetName()!r} was not loaded from DICOM; load the study with the DICOM "
                         f"module, or choose its folder with 'DICOM folder...'")
    files = [f for f in (database.fileForInstance(u) for u in uids) if f]
    if not files:
        raise ValueError(f"the DICOM database has no files for volume {volume.GetName()!r}; import the study again")
    series = database.instanceValue(uids[0], "0020,000e") or None
    return files, series


def new_work_folder(prefix: str) -> Path:
    """Return a new temporary folder (never inside the user's folders)."""
    return Path(tempfile.mkdtemp(prefix=f"spineassist-{prefix}-"))


# ------------------------------------------------------------------------------------------------
# The session
# ------------------------------------------------------------------------------------------------

class SpineAssistLogic:
    """One assessment shown in a scene, and every edit a reader makes to it."""

    def __init__(self, scene: Any, reader: str | None = None) -> None:
        self.scene = scene
        self.reader = reader or current_reader()
        self.assessment: Assessment | None = None
        self.nodes: mrml.NodeSet | None = None
        self.out_dir: Path | None = None
        self.live: mrml.LiveRegrading | None = None
        self._teaching_node: Any = None

    @property
    def loaded(self) -> bool:
        return self.assessment is not None and self.nodes is not None

    def _need(self) -> tuple[Assessment, mrml.NodeSet]:
        if self.assessment is None or self.nodes is None:
            raise RuntimeError("no assessment is loaded: run one, or open a scene SpineAssist saved")
        return self.assessment, self.nodes

    # Results -----------------------------------------------------------------------------------
    def load_results(self, out_dir: str | Path) -> mrml.NodeSet:
        """Import ``out_dir/scene.mrb`` (every node of the assessment) into the scene; return its nodes."""
        out_dir = Path(out_dir)
        scene_file = out_dir / "scene.mrb"
        if not scene_file.is_file():
            raise FileNotFoundError(f"{scene_file} is missing: the assessment did not write its Slicer scene")
        self.stop_live()
        self.unload()
        mrml.read_mrb(scene_file, self.scene)
        self.assessment, self.nodes = mrml.load_state(self.scene)
        self.out_dir = out_dir
        return self.nodes

    def unload(self) -> None:
        """Remove the shown assessment's nodes (images, segments, points, boxes, lines, table, their folders)
        from the scene, so the next one loaded is not drawn over it."""
        self.stop_live()
        self.end_teaching()
        nodes, self.assessment, self.nodes, self.out_dir = self.nodes, None, None, None
        if nodes is None:
            return
        for node in nodes.all_nodes():
            if not self.scene.IsNodePresent(node):
                continue
            helpers = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())] \
                if hasattr(node, "GetNumberOfDisplayNodes") else []
            helpers += [node.GetStorageNode()] if hasattr(node, "GetStorageNode") else []
            for helper in [h for h in helpers if h is not None]:
                self.scene.RemoveNode(helper)
            self.scene.RemoveNode(node)
        sh = self.scene.GetSubjectHierarchyNode()
        if sh is not None and nodes.study_item:
            # the data nodes are gone already; removing them again through the hierarchy never returns
            sh.RemoveItem(nodes.study_item, False, True)

    def adopt_scene(self) -> bool:
        """Pick up an assessment already in the scene (a reopened .mrb); return True if there was one."""
        try:
            self.assessment, self.nodes = mrml.load_state(self.scene)
        except ValueError:
            return False
        return True

    def views(self) -> list[LevelView]:
        """Return the table's rows, one per level, cranial to caudal as the assessment lists them."""
        return [level_view(level) for level in (self.assessment.levels if self.assessment else [])]

    # Edits --------------------------------------------------------------------------------------
    def correct(self, level: str, kind: FindingKind, index: int, note: str = "") -> Correction | None:
        """Record the editor's entry ``index`` as the reader's value; return the record (None if unchanged)."""
        assessment, nodes = self._need()
        finding = assessment.level(level).finding(kind)
        value = chosen_value(kind, index, finding.value)
        if value == finding.value:
            return None
        return mrml.apply_correction(self.scene, nodes, assessment, level, kind, value, self.reader, note)

    def correct_canal_diameter(self, level: str, ap_mm: float, note: str = "") -> Correction | None:
        """Record the canal diameter the reader measured (mm) as the reader's value, graded by Verbiest's
        rule (the grade editor then changes the grade only); return the record.

        None when the diameter is the one in force: its grade, the reader's perhaps, stays.
        """
        assessment, nodes = self._need()
        finding = assessment.level(level).canal
        value = canal_with_diameter(ap_mm)
        if finding.value is not None and finding.value.ap_mm == value.ap_mm:
            return None
        return mrml.apply_correction(self.scene, nodes, assessment, level, "canal", value, self.reader, note)

    def reset(self, level: str, kind: FindingKind | None = None) -> list[Correction]:
        """Put the model's value back for one finding, or every finding of the level; return the records."""
        assessment, nodes = self._need()
        kinds = [kind] if kind else list(FINDING_KINDS)
        out = [mrml.reset_finding(self.scene, nodes, assessment, level, k, self.reader) for k in kinds]
        return [c for c in out if c is not None]

    def relabel(self, shift: int) -> list[Correction]:
        """Move every level name ``shift`` discs caudally (+1) or cranially (-1); return the records."""
        assessment, nodes = self._need()
        return mrml.relabel_levels(self.scene, nodes, assessment, self.reader, shift=shift)

    # Views --------------------------------------------------------------------------------------
    def center(self, level: str) -> tuple[float, float, float]:
        """Centre every slice view (sagittal and axial) on a level's disc; return the RAS point."""
        assessment, nodes = self._need()
        return mrml.center_views_on_level(self.scene, nodes, assessment, level)

    def set_layer_visible(self, layer: str, visible: bool) -> None:
        _, nodes = self._need()
        mrml.set_layer_visible(self.scene, nodes, layer, visible)

    # Live regrading -----------------------------------------------------------------------------
    def start_live(self, on_regrade: Callable[[str, str, Correction], None] | None = None) -> None:
        """Unlock the keypoints; moving one regrades its level at once, recorded as the reader's value."""
        assessment, nodes = self._need()
        self.stop_live()
        self.live = mrml.LiveRegrading(self.scene, nodes, assessment, reader=self.reader, on_regrade=on_regrade)
        mrml.set_keypoints_locked(nodes, False)

    def stop_live(self) -> None:
        """Lock the keypoints again and stop regrading."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.nodes is not None:
            mrml.set_keypoints_locked(self.nodes, True)

    # Saving -------------------------------------------------------------------------------------
    def save_findings(self, out_dir: str | Path | None = None, *,
                      scene_writer: Callable[[Path], None] | None = None) -> Path:
        """Write the findings with the reader's corrections to ``out_dir/findings.json`` (default: the run's folder).

        A later ``spineassist assess`` into the same folder keeps them and rewrites the report,
        SEG and SR with them. With ``scene_writer`` the scene is written beside them as
        ``scene.mrb``, the two replacing OUT's pair as one set (``save_reader_session``).
        """
        assessment, _ = self._need()
        target = Path(out_dir) if out_dir is not None else self.out_dir
        if target is None:
            raise RuntimeError("no output folder: give out_dir")
        # under the folder's lock: an assessment writing there finishes first, and a newer run's
        # findings take the corrections instead of being overwritten
        return save_reader_session(assessment, target, scene_writer=scene_writer)

    # Teaching -----------------------------------------------------------------------------------
    def export_training_data(self, dest: str | Path, salt: str = "") -> Any:
        """Add this case, as the reader left it (segments, keypoints, grades in force), to the
        training sets under ``dest``; return the ``TrainingExport`` (what was added)."""
        assessment, _ = self._need()
        return write_training_data_from_scene(self.scene, dest, assessment=assessment, salt=salt)

    def teaching_steps(self, level: str, kind: FindingKind) -> list[TeachingStep]:
        assessment, _ = self._need()
        return teaching_steps(assessment.level(level), kind)

    def show_teaching_step(self, level: str, kind: FindingKind, index: int) -> TeachingStep:
        """Show only the lines and points step ``index`` names for one finding; return the step."""
        from vtkmodules.vtkCommonDataModel import vtkVector3d

        assessment, nodes = self._need()
        lv = assessment.level(level)
        steps = teaching_steps(lv, kind)
        step = steps[max(0, min(index, len(steps) - 1))]
        for line in nodes.lines:
            show = (line.GetAttribute(ATTR_MODEL_LEVEL) == lv.model_name and line.GetAttribute(ATTR_FINDING) == kind
                    and line.GetAttribute(ATTR_LINE) in step.lines)
            for i in range(line.GetNumberOfDisplayNodes()):
                line.GetNthDisplayNode(i).SetVisibility(1 if show else 0)
        points = self._teaching_points()
        points.RemoveAllControlPoints()
        geometry = lv.finding(kind).geometry
        for name in step.points:
            points.AddControlPoint(vtkVector3d(*lps_to_ras(geometry.points[name])), name)
        return step

    def end_teaching(self) -> None:
        """Show every measurement line again and remove the teaching points."""
        if self._teaching_node is not None and self.scene.IsNodePresent(self._teaching_node):
            self.scene.RemoveNode(self._teaching_node)
        self._teaching_node = None
        if self.nodes is not None:
            mrml.set_layer_visible(self.scene, self.nodes, "measurements", True)

    def _teaching_points(self) -> Any:
        if self._teaching_node is None or not self.scene.IsNodePresent(self._teaching_node):
            node = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", TEACHING_POINTS_NODE)
            node.CreateDefaultDisplayNodes()
            node.SetLocked(1)
            node.SetSaveWithScene(False)
            self._teaching_node = node
        return self._teaching_node
