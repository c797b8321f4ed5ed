"""Assessment -> Slicer nodes: volumes, disc segments, keypoints, detection boxes, measurement lines, findings table.

Every finding's geometry lines become markups lines (the listhesis slip lines, the MSU lines, the
canal's antero-posterior diameter), and the table has a value, model and corrected column per finding.

Every node goes under the study's item in the subject hierarchy, in one folder per layer, so the
panel can show or hide a layer at once. Nodes are tied to a disc by its *model* level name
(``Level.model_name``, stable when a reader relabels levels); what a user sees (segment names,
point labels, table rows) uses the current level name.

Files and findings are patient LPS mm; nodes are RAS (x and y negated).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from SpineAssistLib import anatomy
from SpineAssistLib.findings import CORE_KINDS, FINDING_KINDS, FINDING_TITLES, Assessment, FindingKind, Level, _point
from SpineAssistLib.geometry import affine_lps_to_ras, lps_to_ras, ras_to_lps
from SpineAssistLib.mrml.scene import register_segmentation_converters, segmentations_logic
from SpineAssistLib.mrml.terminology import apply_terminology, disc_segment_name, vertebral_body_segment_name
from SpineAssistLib.pipeline.result import AssessmentResult

# Node attributes and segment tags (names are part of the saved scene: do not rename).
ATTR_LAYER = "SpineAssist.Layer"
ATTR_SERIES = "SpineAssist.Series"
ATTR_KEYPOINTS = "SpineAssist.Keypoints"      # JSON {control point ID: {"name", "level", "model_lps"}}
ATTR_MODEL_LEVEL = "SpineAssist.ModelLevel"
ATTR_FINDING = "SpineAssist.Finding"
ATTR_LINE = "SpineAssist.Line"
ATTR_BOX = "SpineAssist.Box"
ATTR_STUDY = "SpineAssist.StudyInstanceUID"
TAG_STRUCTURE = "SpineAssist.Structure"        # segment tag: disc, vertebral body, thecal sac, disc herniation
TAG_MODEL_NAME = "SpineAssist.ModelName"       # segment tag: the disc's model level or the vertebra's model name

# Layers a reader can show or hide, and the subject hierarchy folder each lives in.
LAYER_FOLDERS: dict[str, str] = {
    "images": "",                      # volumes sit directly under the study, as DICOM-loaded series do
    "segmentation": "Segmentation",
    "keypoints": "Keypoints",
    "boxes": "Detection boxes",
    "measurements": "Measurement lines",
}
LAYERS: tuple[str, ...] = tuple(LAYER_FOLDERS)

# The findings of schema version 2 (issue #21) and their columns' names: the value in force, then
# "<name> model" and "<name> corrected", as for the first three.
_NEW_KIND_COLUMNS = {kind: FINDING_TITLES[kind][0].upper() + FINDING_TITLES[kind][1:]
                     for kind in FINDING_KINDS if kind not in CORE_KINDS}
TABLE_COLUMNS: tuple[str, ...] = (
    "Level", "Model level",
    "Pfirrmann", "Pfirrmann model", "Pfirrmann corrected",
    "Herniation (MSU)", "Herniation model", "Herniation corrected",
    "Meyerding", "Slip %", "Meyerding model", "Meyerding corrected",
    *(f"{name}{suffix}" for name in _NEW_KIND_COLUMNS.values() for suffix in ("", " model", " corrected")),
)
_KIND_COLUMNS = {"pfirrmann": "Pfirrmann", "ldh": "Herniation (MSU)", "listhesis": "Meyerding"}

_LABEL_TO_DISC = {v: k for k, v in anatomy.DISC_LABELS.items()}
_LABEL_TO_VERTEBRA = {v: k for k, v in anatomy.VERTEBRA_LABELS.items()}


@dataclass(frozen=True)
class DetectionBox:
    """A detection box as two opposite corners in LPS mm, with what it found and, if known, its disc level."""

    label: str
    corner_a_lps: tuple[float, float, float]
    corner_b_lps: tuple[float, float, float]
    level: str | None = None
    confidence: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "corner_a_lps", _point(f"box {self.label!r} corner_a_lps", self.corner_a_lps))
        object.__setattr__(self, "corner_b_lps", _point(f"box {self.label!r} corner_b_lps", self.corner_b_lps))

    @classmethod
    def coerce(cls, box: "DetectionBox | Mapping[str, Any]") -> "DetectionBox":
        if isinstance(box, DetectionBox):
            return box
        try:
            return cls(box.get("label", "box"), box["corner_a_lps"], box["corner_b_lps"], box.get("level"), box.get("confidence"))
        except (KeyError, AttributeError):
            raise TypeError(f"a detection box must be a DetectionBox or a mapping with corner_a_lps and corner_b_lps "
                            f"(LPS mm); got {box!r}") from None


@dataclass
class NodeSet:
    """The nodes showing one assessment, by layer. ``study_item`` and ``layer_items`` are subject hierarchy items."""

    scene: Any
    study_item: int
    layer_items: dict[str, int] = field(default_factory=dict)
    volumes: dict[str, Any] = field(default_factory=dict)        # series name -> vtkMRMLScalarVolumeNode
    segmentation: Any | None = None
    keypoints: dict[str, Any] = field(default_factory=dict)      # series name -> vtkMRMLMarkupsFiducialNode
    boxes: list[Any] = field(default_factory=list)               # vtkMRMLMarkupsROINode
    lines: list[Any] = field(default_factory=list)               # vtkMRMLMarkupsLineNode
    table: Any | None = None

    def layer_nodes(self, layer: str) -> list[Any]:
        """Return the nodes of one layer (see LAYERS)."""
        if layer not in LAYER_FOLDERS:
            raise ValueError(f"layer must be one of {', '.join(LAYERS)}; got {layer!r}")
        return {"images": list(self.volumes.values()),
                "segmentation": [self.segmentation] if self.segmentation is not None else [],
                "keypoints": list(self.keypoints.values()),
                "boxes": list(self.boxes), "measurements": list(self.lines)}[layer]

    def all_nodes(self) -> list[Any]:
        nodes = [n for layer in LAYERS for n in self.layer_nodes(layer)]
        return nodes + ([self.table] if self.table is not None else [])


# ------------------------------------------------------------------------------------------------
# Small conversions
# ------------------------------------------------------------------------------------------------

def ijk_to_ras_matrix(affine_lps: Any) -> Any:
    """Return Slicer's IJKToRAS vtkMatrix4x4 from a 4x4 "col,row,slice" affine mapping (i, j, k, 1) to LPS mm."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    a = np.asarray(affine_lps, dtype=float)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise ValueError(f"affine must be a finite 4x4 matrix mapping (i, j, k, 1) to LPS mm; got shape {a.shape}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError("affine's 3x3 part is singular: a voxel must have a non-zero size along i, j and k")
    m = vtkMatrix4x4()
    ras = affine_lps_to_ras(a)
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(ras[r, c]))
    return m


def _image(name: str, image: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (voxels (k, j, i), affine (i, j, k, 1) -> LPS) from a pair or an object with array/voxels and affine."""
    if isinstance(image, (tuple, list)) and len(image) == 2:
        array, affine = image
    else:
        array = getattr(image, "array", getattr(image, "voxels", None))
        affine = getattr(image, "affine", getattr(image, "index_to_lps", None))
        if array is None or affine is None:
            raise TypeError(f"{name}: expected (array, affine) or an object with .array and .affine; got {type(image).__name__}")
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"{name}: voxels must be a 3D array shaped (slices, rows, columns); got shape {array.shape}")
    return array, np.asarray(affine, dtype=float)


def _image_data(array: np.ndarray) -> Any:
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    array = np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    img = vtkImageData()
    img.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    img.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True))
    return img


def _as_tuple(p: np.ndarray) -> tuple[float, float, float]:
    """Return a point as three plain floats, the form findings and callers compare with ``==``."""
    return (float(p[0]), float(p[1]), float(p[2]))


def control_point_lps(node: Any, index: int) -> tuple[float, float, float]:
    """Return a markups control point's position in LPS mm."""
    xyz = [0.0, 0.0, 0.0]
    node.GetNthControlPointPosition(index, xyz)
    return _as_tuple(ras_to_lps(xyz))


def level_by_model_name(assessment: Assessment, model_name: str) -> Level | None:
    return next((lv for lv in assessment.levels if lv.model_name == model_name), None)


def keypoint_level(name: str, level_names: Iterable[str]) -> str | None:
    """Return the disc level a keypoint belongs to, or None.

    ``"L4-L5 herniation apex"`` belongs to L4-L5. A vertebral body corner belongs to the disc it
    borders: superior corners to the disc above (``"L5 posterior-superior"`` -> L4-L5, Meyerding's P
    and Q), inferior corners to the disc below (``"L4 posterior-inferior"`` -> L4-L5, its R).
    """
    levels = list(level_names)
    head, _, rest = name.partition(" ")
    if head in levels:
        return head
    if head in anatomy.VERTEBRAE and rest in anatomy.CORNERS:
        if rest.endswith("superior"):
            return next((lv for lv in levels if lv.endswith(f"-{head}")), None)
        return next((lv for lv in levels if lv.startswith(f"{head}-")), None)
    return None


def keypoint_kind(name: str) -> str | None:
    """Return the finding kind a keypoint feeds: corners -> listhesis, MSU points -> ldh."""
    rest = name.partition(" ")[2]
    if rest in anatomy.CORNERS:
        return "listhesis"
    if rest in anatomy.MSU_KEYPOINTS or name in anatomy.MSU_KEYPOINTS:
        return "ldh"
    return None


def keypoint_records(node: Any) -> dict[str, dict[str, Any]]:
    """Return a keypoints node's records: control point ID -> {"name", "level", "model_lps"} (model names)."""
    return json.loads(node.GetAttribute(ATTR_KEYPOINTS) or "{}")


# ------------------------------------------------------------------------------------------------
# Subject hierarchy
# ------------------------------------------------------------------------------------------------

def _subject_hierarchy(scene: Any) -> Any:
    import slicer

    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def _study_item(scene: Any, assessment: Assessment) -> int:
    """Return the study's subject hierarchy item: the DICOM-loaded one if there is one, else a new one."""
    import slicer

    sh = _subject_hierarchy(scene)
    uid_name = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()
    item = sh.GetItemByUID(uid_name, assessment.study_instance_uid) if assessment.study_instance_uid else 0
    if not item:
        subject = sh.CreateSubjectItem(sh.GetSceneItemID(), "SpineAssist patient")
        item = sh.CreateStudyItem(subject, f"Study {assessment.study_instance_uid}")
        if assessment.study_instance_uid:
            sh.SetItemUID(item, uid_name, assessment.study_instance_uid)
    sh.SetItemAttribute(item, ATTR_STUDY, assessment.study_instance_uid)
    return item


def _place(scene: Any, node: Any, parent_item: int) -> None:
    sh = _subject_hierarchy(scene)
    item = sh.GetItemByDataNode(node)
    if item:
        sh.SetItemParent(item, parent_item)
    else:  # slicer-core has no subject hierarchy plugin logic adding items for new nodes
        sh.CreateItem(parent_item, node)


# ------------------------------------------------------------------------------------------------
# Building the nodes
# ------------------------------------------------------------------------------------------------

def show_assessment(
    scene: Any,
    assessment: Assessment,
    volumes: Mapping[str, Any] | None = None,
    label_maps: Mapping[str, Any] | None = None,
    keypoints: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    boxes: Mapping[str, Sequence[DetectionBox | Mapping[str, Any]]] | None = None,
    *,
    lock_keypoints: bool = True,
) -> NodeSet:
    """Return the nodes showing ``assessment``, created in ``scene`` under the study's subject hierarchy item.

    ``volumes`` and ``label_maps``: series name -> (voxels shaped (slices, rows, columns), 4x4 affine
    (i, j, k, 1) -> LPS mm). One label map (values from ``anatomy``) gives the segmentation: a segment
    per disc, named by level, plus vertebral bodies, thecal sac and herniation where labelled.
    ``keypoints``: series name -> {keypoint name: LPS mm}, e.g. ``{"sagittal": {"L5 posterior-superior":
    (x, y, z)}}``; locked unless ``lock_keypoints=False``. ``boxes``: series name -> detection boxes.
    The assessment's geometry lines become line nodes and its findings a table node.

    Usage::

        nodes = show_assessment(scene, assessment, volumes={"sagittal": (voxels, affine)},
                                label_maps={"sagittal": (labels, affine)}, keypoints={"sagittal": points})
        save_state(scene, assessment, nodes)
    """
    if not isinstance(assessment, Assessment):
        raise TypeError(f"assessment must be a findings.Assessment; got {type(assessment).__name__}")
    if label_maps and len(label_maps) > 1:
        raise ValueError(f"give one label map (the segmentation's series); got {len(label_maps)}: {', '.join(label_maps)}")
    sh = _subject_hierarchy(scene)
    study = _study_item(scene, assessment)
    nodes = NodeSet(scene, study)
    for layer, folder in LAYER_FOLDERS.items():
        if folder:
            nodes.layer_items[layer] = sh.CreateFolderItem(study, folder)
            sh.SetItemAttribute(nodes.layer_items[layer], ATTR_LAYER, layer)
        else:
            nodes.layer_items[layer] = study

    for series, image in (volumes or {}).items():
        nodes.volumes[series] = _add_volume(scene, series, image, nodes.layer_items["images"])
    for series, image in (label_maps or {}).items():
        nodes.segmentation = _add_segmentation(scene, assessment, series, image, nodes.volumes.get(series),
                                               nodes.layer_items["segmentation"])
    for series, points in (keypoints or {}).items():
        nodes.keypoints[series] = _add_keypoints(scene, assessment, series, points, nodes.layer_items["keypoints"],
                                                 lock_keypoints)
    for series, series_boxes in (boxes or {}).items():
        for box in series_boxes:
            nodes.boxes.append(_add_box(scene, series, DetectionBox.coerce(box), nodes.layer_items["boxes"]))
    for level in assessment.levels:
        for kind in FINDING_KINDS:
            for line_name, (a, b) in level.finding(kind).geometry.lines.items():
                nodes.lines.append(_add_line(scene, level, kind, line_name, a, b, nodes.layer_items["measurements"]))
    nodes.table = _add_table(scene, study)
    refresh_table(nodes, assessment)
    return nodes


def _layer_attr(node: Any, layer: str) -> None:
    node.SetAttribute(ATTR_LAYER, layer)


def integer_voxels(array: np.ndarray) -> np.ndarray:
    """Return ``array`` as int16 or uint16 where that holds every value exactly (MR images are whole
    numbers after the rescale), else unchanged: as Slicer loads an MR series, and half the bytes of
    float32 to store (the scene's volumes are written gzipped: about half the time, too)."""
    if array.dtype.kind != "f" or array.size == 0:
        return array
    lo, hi = float(array.min()), float(array.max())
    for t in (np.int16, np.uint16):
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            out = array.astype(t)
            return out if np.array_equal(out, array) else array
    return array


def _add_volume(scene: Any, series: str, image: Any, parent: int) -> Any:
    array, affine = _image(f"volumes[{series!r}]", image)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{series} T2")
    node.SetAndObserveImageData(_image_data(integer_voxels(array)))
    node.SetIJKToRASMatrix(ijk_to_ras_matrix(affine))
    node.CreateDefaultDisplayNodes()
    node.SetAttribute(ATTR_SERIES, series)
    _layer_attr(node, "images")
    _place(scene, node, parent)
    return node


def _add_segmentation(scene: Any, assessment: Assessment, series: str, image: Any, volume: Any | None, parent: int) -> Any:
    register_segmentation_converters()
    array, affine = _image(f"label_maps[{series!r}]", image)
    labels = np.asarray(array).astype(np.int16)
    known = {*anatomy.DISC_LABELS.values(), *anatomy.VERTEBRA_LABELS.values(),
             anatomy.THECAL_SAC_LABEL, anatomy.HERNIATION_LABEL}
    labels[~np.isin(labels, list(known))] = 0
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{series} segmentation")
    seg.CreateDefaultDisplayNodes()
    if volume is not None:
        seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    temp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "SpineAssist temporary labels")
    try:
        temp.SetAndObserveImageData(_image_data(labels))
        temp.SetIJKToRASMatrix(ijk_to_ras_matrix(affine))
        if not segmentations_logic(scene).ImportLabelmapToSegmentationNode(temp, seg):
            raise RuntimeError(f"label_maps[{series!r}]: Slicer could not import the label map into a segmentation")
    finally:
        scene.RemoveNode(temp)
    segmentation = seg.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        value = segment.GetLabelValue()
        if value in _LABEL_TO_DISC:
            model_level = _LABEL_TO_DISC[value]
            level = level_by_model_name(assessment, model_level)
            structure, model_name = "disc", model_level
            name = disc_segment_name(level.name if level else model_level)
        elif value in _LABEL_TO_VERTEBRA:
            structure, model_name = "vertebral body", _LABEL_TO_VERTEBRA[value]
            name = vertebral_body_segment_name(model_name)
        elif value == anatomy.THECAL_SAC_LABEL:
            structure = model_name = name = "thecal sac"
        else:
            structure = model_name = name = "disc herniation"
        apply_terminology(segment, name[0].upper() + name[1:] if structure in ("thecal sac", "disc herniation") else name)
        segment.SetTag(TAG_STRUCTURE, structure)
        segment.SetTag(TAG_MODEL_NAME, model_name)
    seg.SetAttribute(ATTR_SERIES, series)
    _layer_attr(seg, "segmentation")
    _place(scene, seg, parent)
    return seg


def _add_keypoints(scene: Any, assessment: Assessment, series: str, points: Mapping[str, Sequence[float]],
                   parent: int, locked: bool) -> Any:
    from vtkmodules.vtkCommonDataModel import vtkVector3d

    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{series} keypoints")
    node.CreateDefaultDisplayNodes()
    model_levels = [lv.model_name for lv in assessment.levels]
    name_of = {lv.model_name: lv.name for lv in assessment.levels}
    records: dict[str, dict[str, Any]] = {}
    for name, xyz in points.items():
        lps = _point(f"keypoints[{series!r}][{name!r}]", xyz)
        index = node.AddControlPoint(vtkVector3d(*lps_to_ras(lps)), name)
        model_level = keypoint_level(name, model_levels)
        node.SetNthControlPointDescription(index, name_of.get(model_level, "") if model_level else "")
        records[node.GetNthControlPointID(index)] = {"name": name, "level": model_level, "model_lps": list(lps)}
    node.SetAttribute(ATTR_KEYPOINTS, json.dumps(records))
    node.SetAttribute(ATTR_SERIES, series)
    node.SetLocked(1 if locked else 0)
    _layer_attr(node, "keypoints")
    _place(scene, node, parent)
    return node


def _add_box(scene: Any, series: str, box: DetectionBox, parent: int) -> Any:
    a = np.array(lps_to_ras(box.corner_a_lps))
    b = np.array(lps_to_ras(box.corner_b_lps))
    name = f"{box.level} {box.label}" if box.level else box.label
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", f"{name} ({series})")
    node.CreateDefaultDisplayNodes()
    node.SetCenter(*((a + b) / 2.0))
    node.SetSize(*np.abs(b - a))
    node.SetLocked(1)
    node.SetAttribute(ATTR_SERIES, series)
    node.SetAttribute(ATTR_BOX, box.label)
    if box.level:
        node.SetAttribute(ATTR_MODEL_LEVEL, box.level)
    if box.confidence is not None:
        node.SetAttribute("SpineAssist.Confidence", f"{box.confidence:.4f}")
    _layer_attr(node, "boxes")
    _place(scene, node, parent)
    return node


def line_node_name(level_name: str, kind: FindingKind, line_name: str) -> str:
    return f"{level_name} {kind}: {line_name}"


def _add_line(scene: Any, level: Level, kind: FindingKind, line_name: str, a: Sequence[float], b: Sequence[float], parent: int) -> Any:
    from vtkmodules.vtkCommonDataModel import vtkVector3d

    node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", line_node_name(level.name, kind, line_name))
    node.CreateDefaultDisplayNodes()
    node.AddControlPoint(vtkVector3d(*lps_to_ras(a)))
    node.AddControlPoint(vtkVector3d(*lps_to_ras(b)))
    node.SetLocked(1)
    node.SetAttribute(ATTR_MODEL_LEVEL, level.model_name or level.name)
    node.SetAttribute(ATTR_FINDING, kind)
    node.SetAttribute(ATTR_LINE, line_name)
    _layer_attr(node, "measurements")
    _place(scene, node, parent)
    return node


def update_lines(nodes: NodeSet, level: Level, kind: FindingKind, lines: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> None:
    """Move (or add) the line nodes of one finding to ``lines`` (LPS mm), e.g. after a regrade."""
    existing = {(n.GetAttribute(ATTR_MODEL_LEVEL), n.GetAttribute(ATTR_FINDING), n.GetAttribute(ATTR_LINE)): n
                for n in nodes.lines}
    for line_name, (a, b) in lines.items():
        node = existing.get((level.model_name, kind, line_name))
        if node is None:
            nodes.lines.append(_add_line(nodes.scene, level, kind, line_name, a, b, nodes.layer_items["measurements"]))
            continue
        node.SetNthControlPointPosition(0, *lps_to_ras(a))
        node.SetNthControlPointPosition(1, *lps_to_ras(b))


# ------------------------------------------------------------------------------------------------
# The findings table
# ------------------------------------------------------------------------------------------------

def _add_table(scene: Any, parent: int) -> Any:
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "SpineAssist findings")
    for name in TABLE_COLUMNS:
        table.AddColumn().SetName(name)
    # a view of the findings: Slicer's table view must not take edits the findings would not see
    # (corrections go through the panel's controls, which offer only valid values)
    table.SetLocked(1)
    _layer_attr(table, "findings")
    _place(scene, table, parent)
    return table


def _value_text(kind: FindingKind, value: Any) -> str:
    if value is None:
        return ""
    if kind in ("pfirrmann", "listhesis"):
        return str(value.grade)
    return value.label      # "2-AB right", "Modic 1", "yes", "9.2 mm, relative stenosis"


def table_row(level: Level) -> dict[str, str]:
    """Return one level's table row: current values, model values, and which findings a reader corrected."""
    row = {"Level": level.name, "Model level": level.model_name or level.name}
    for kind, column in _KIND_COLUMNS.items():
        f = level.finding(kind)
        row[column] = _value_text(kind, f.value) if f.status == "assessed" else "not assessed"
        model_column = {"pfirrmann": "Pfirrmann model", "ldh": "Herniation model", "listhesis": "Meyerding model"}[kind]
        row[model_column] = _value_text(kind, f.model)
        row[column.split(" ")[0] + " corrected"] = "yes" if f.corrected else ""
    slip = level.listhesis.value.slip_percent if level.listhesis.value is not None else None
    row["Slip %"] = "" if slip is None else f"{slip:.1f}"
    for kind, column in _NEW_KIND_COLUMNS.items():
        f = level.finding(kind)  # type: ignore[arg-type]
        row[column] = _value_text(kind, f.value) if f.status == "assessed" else "not assessed"  # type: ignore[arg-type]
        row[f"{column} model"] = _value_text(kind, f.model)  # type: ignore[arg-type]
        row[f"{column} corrected"] = "yes" if f.corrected else ""
    return row


def refresh_table(nodes: NodeSet, assessment: Assessment) -> None:
    """Rewrite the findings table from ``assessment``: one row per level, in the assessment's order."""
    table = nodes.table
    vtable = table.GetTable()
    vtable.SetNumberOfRows(len(assessment.levels))
    for r, level in enumerate(assessment.levels):
        row = table_row(level)
        for c, name in enumerate(TABLE_COLUMNS):
            vtable.SetValue(r, c, row[name])
    vtable.Modified()
    table.Modified()


def table_rows(nodes: NodeSet) -> list[dict[str, str]]:
    """Return the table node's rows as dicts keyed by column name (what the panel shows)."""
    table = nodes.table
    return [{table.GetColumnName(c): table.GetCellText(r, c) for c in range(table.GetNumberOfColumns())}
            for r in range(table.GetNumberOfRows())]


# ------------------------------------------------------------------------------------------------
# Showing, hiding, navigating
# ------------------------------------------------------------------------------------------------

def set_layer_visible(scene: Any, nodes: NodeSet, layer: str, visible: bool) -> None:
    """Show or hide one layer (see LAYERS) in every view, by its nodes' display nodes."""
    for node in nodes.layer_nodes(layer):
        for i in range(node.GetNumberOfDisplayNodes()):
            node.GetNthDisplayNode(i).SetVisibility(1 if visible else 0)


def layer_visible(nodes: NodeSet, layer: str) -> bool:
    """Return True if any node of the layer is shown."""
    return any(node.GetNthDisplayNode(i).GetVisibility()
               for node in nodes.layer_nodes(layer) for i in range(node.GetNumberOfDisplayNodes()))


def set_keypoints_locked(nodes: NodeSet, locked: bool) -> None:
    """Lock or unlock every keypoint node (unlocked points can be dragged, which regrades live)."""
    for node in nodes.keypoints.values():
        node.SetLocked(1 if locked else 0)


def level_center_ras(nodes: NodeSet, assessment: Assessment, level_name: str) -> tuple[float, float, float]:
    """Return the RAS mm point to centre the views on for a level: its disc centre, segment centre, or keypoints' mean."""
    level = assessment.level(level_name)
    if level.disc_center is not None:
        return _as_tuple(lps_to_ras(level.disc_center))
    if nodes.segmentation is not None:
        segmentation = nodes.segmentation.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(i)
            if segment_tag(segment, TAG_STRUCTURE) == "disc" and segment_tag(segment, TAG_MODEL_NAME) == level.model_name:
                center = nodes.segmentation.GetSegmentCenterRAS(segmentation.GetNthSegmentID(i))
                if center is not None:
                    return tuple(float(c) for c in center)  # type: ignore[return-value]
    points = [control_point_lps(node, node.GetNthControlPointIndexByID(cid))
              for node in nodes.keypoints.values() for cid, rec in keypoint_records(node).items()
              if rec["level"] == level.model_name and node.GetNthControlPointIndexByID(cid) >= 0]
    if points:
        return _as_tuple(lps_to_ras(np.mean(np.array(points), axis=0)))
    raise ValueError(f"level {level_name}: no disc centre, disc segment or keypoints to centre the views on")


def center_views_on_level(scene: Any, nodes: NodeSet, assessment: Assessment, level_name: str) -> tuple[float, float, float]:
    """Centre every slice view on a level's disc (what selecting a table row does); return the RAS point."""
    import slicer

    ras = level_center_ras(nodes, assessment, level_name)
    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, *ras, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
    return ras


def segment_tag(segment: Any, name: str) -> str:
    """Return a vtkSegment's tag value, or "" when it has none (GetTag fills a by-reference string)."""
    from vtkmodules.vtkCommonCore import reference

    value = reference("")
    return str(value) if segment.GetTag(name, value) else ""


def scene_inputs(result: AssessmentResult) -> dict[str, Any]:
    """Return the keyword arguments of ``show_assessment`` for a pipeline result."""
    volumes = {s.name: (s.voxels, s.affine) for s in result.stacks()}
    label_maps = {}
    if result.sagittal is not None and result.sagittal.labels is not None:
        label_maps[result.sagittal.name] = (result.sagittal.labels, result.sagittal.affine)
    boxes: dict[str, list[Any]] = {}
    for b in result.boxes:
        boxes.setdefault(b.series, []).append(
            DetectionBox(b.label, b.corner_a_lps, b.corner_b_lps, b.level, b.confidence))
    return {"volumes": volumes, "label_maps": label_maps, "keypoints": result.keypoints, "boxes": boxes}
