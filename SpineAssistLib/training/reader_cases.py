"""Write a reviewed assessment as training data for the bundled models (``spineassist train``).

What a reader has checked becomes labels, in the formats ``models.datasets`` writes for the
phantom (so ``spineassist train NAME --data DEST`` reads them as they are):

- ``sag_disc_unet``: every sagittal slice with disc segments (the segmentation as edited);
- ``sag_pfirrmann_cls``: a crop per disc on the mid-sagittal slice, in the class of the grade
  in force (the reader's where corrected);
- ``sag_vertebra_pose``: the mid-sagittal slice with each vertebral body's box (the ROI nodes)
  and its four corners (the keypoints as moved);
- ``sag_disc_corners``: a window around each disc of the mid-sagittal slice (placed from its
  segment, or from the corners) with the four corners bounding it;
- ``ax_msu_pose``: a window of each level's axial slice of maximal extrusion, placed from the
  facets and the disc margin, with the five MSU keypoints (the apex only where there is one).

Not exported: ``ax_disc_seg`` and ``ax_disc_window_seg``. The scene holds no axial segmentation a
reader can correct, and model masks no one has reviewed would teach the model its own errors.

Privacy: images go out as normalised 8-bit PNG / float arrays with no DICOM header; files are
named by a case pseudonym (a salted SHA-256 of the StudyInstanceUID), never by a patient name,
ID or UID. Each export adds one case to DEST (the sets grow case by case); ``exports.json``
lists the cases and what each added. A case goes to the validation split when its pseudonym's
hash says so (about one in ten), so a case is never split across train and val.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from SpineAssistLib.anatomy import DISC_LABELS, MSU_KEYPOINTS
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.findings import Assessment
from SpineAssistLib.geometry import affine_ras_to_lps, ras_to_lps, reorder_index, slice_affine, world_to_index
from SpineAssistLib.mrml.nodes import (
    ATTR_BOX,
    ATTR_SERIES,
    TAG_MODEL_NAME,
    TAG_STRUCTURE,
    control_point_lps,
    keypoint_records,
    level_by_model_name,
    segment_tag,
)
from SpineAssistLib.mrml.scene import read_mrb, segmentations_logic
from SpineAssistLib.mrml.state import load_state
from SpineAssistLib.training.datasets import FolderWriter, add_study, make_writers

EXPORTED_MODELS = ("sag_disc_unet", "sag_pfirrmann_cls", "sag_vertebra_pose", "sag_disc_corners", "ax_msu_pose")
VAL_EVERY = 10          # about one case in ten is validation
SLICE_TOLERANCE = 0.5   # a keypoint lies on an axial slice when within half a slice spacing of it


@dataclass
class TrainingExport:
    """What one export wrote."""

    dest: Path
    case_id: str
    split: str
    counts: dict[str, int] = field(default_factory=dict)      # model -> images added
    notes: list[str] = field(default_factory=list)            # what was left out and why

    def summary(self) -> str:
        added = ", ".join(f"{m} {n}" for m, n in self.counts.items()) or "nothing"
        text = f"case {self.case_id} ({self.split}) added to {self.dest}: {added}"
        return text + "".join(f"\n  note: {n}" for n in self.notes)


def case_pseudonym(study_instance_uid: str, salt: str = "") -> str:
    """Return the file-name pseudonym of a study: 12 hex digits of SHA-256(salt | UID)."""
    return hashlib.sha256(f"{salt}|{study_instance_uid}".encode()).hexdigest()[:12]


def _split_of(case_id: str) -> str:
    return "val" if int(hashlib.sha256(case_id.encode()).hexdigest(), 16) % VAL_EVERY == 0 else "train"


# ---- reading the scene ------------------------------------------------------------------------

def _array(node: Any) -> np.ndarray:
    from vtkmodules.util import numpy_support

    image = node.GetImageData()
    if image is None:
        raise SpineAssistError(f"the volume {node.GetName()!r} holds no image data")
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).copy()


def _numpy_affine(node: Any) -> np.ndarray:
    """Return the "slice,row,col" -> LPS affine of a volume node (numpy order of its voxels)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ijk_to_lps = affine_ras_to_lps([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    return reorder_index(ijk_to_lps, "col,row,slice", "slice,row,col")


def _disc_label_map(scene: Any, segmentation: Any, volume: Any, assessment: Assessment) -> np.ndarray:
    """Return the segmentation's discs as a label map on ``volume``'s grid, valued by the level in force."""
    from vtkmodules.vtkCommonCore import vtkStringArray

    seg = segmentation.GetSegmentation()
    ids, values = vtkStringArray(), []
    for i in range(seg.GetNumberOfSegments()):
        segment = seg.GetNthSegment(i)
        if segment_tag(segment, TAG_STRUCTURE) != "disc":
            continue
        level = level_by_model_name(assessment, segment_tag(segment, TAG_MODEL_NAME))
        if level is None or level.name not in DISC_LABELS:
            continue
        ids.InsertNextValue(seg.GetNthSegmentID(i))
        values.append(DISC_LABELS[level.name])
    labels = np.zeros(_array(volume).shape, np.uint16)
    if not values:
        return labels
    temp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "SpineAssist training-export labels")
    try:
        if not segmentations_logic(scene).ExportSegmentsToLabelmapNode(segmentation, ids, temp, volume):
            raise SpineAssistError("Slicer could not turn the disc segments into a label map")
        exported = _array(temp)
    finally:
        scene.RemoveNode(temp)
    for index, value in enumerate(values, start=1):
        labels[exported == index] = value
    return labels


def _points(node: Any) -> list[tuple[str, str | None, np.ndarray]]:
    """Return (keypoint model name, model level, LPS as it is now) of every control point of a keypoints node."""
    records = keypoint_records(node)
    out = []
    for i in range(node.GetNumberOfControlPoints()):
        rec = records.get(node.GetNthControlPointID(i))
        if rec is not None:
            out.append((rec["name"], rec.get("level"), np.array(control_point_lps(node, i))))
    return out


def _box_pixels(roi: Any, slice_to_lps: np.ndarray) -> tuple[float, float, float, float]:
    center = np.zeros(3)
    roi.GetCenter(center)
    size = np.array(roi.GetSize(), float)
    signs = [np.array(s) * 2 - 1 for s in np.ndindex(2, 2, 2)]
    lps = ras_to_lps(np.array([center + c * size / 2 for c in signs]))
    rc = world_to_index(lps, slice_to_lps)
    return (float(rc[:, 1].min()), float(rc[:, 0].min()), float(rc[:, 1].max()), float(rc[:, 0].max()))


def training_case(scene: Any, assessment: Assessment | None = None) -> tuple[dict[str, Any], list[str]]:
    """Return one reviewed case from a scene SpineAssist made, in the form ``models.datasets.add_study``
    takes, and notes on what it lacks. ``assessment`` (e.g. the latest findings.json) overrides
    the one kept in the scene's parameter node."""
    try:
        stored, nodes = load_state(scene)
    except ValueError as e:
        raise SpineAssistError(str(e)) from None
    assessment = assessment or stored
    notes: list[str] = []
    seg = nodes.segmentation
    sag_name = (seg.GetAttribute(ATTR_SERIES) if seg is not None else None) or "sagittal"
    sag_node = nodes.volumes.get(sag_name)
    if sag_node is None:
        raise SpineAssistError("the scene holds no sagittal volume; export training data from a scene that "
                               "SpineAssist made (the assessment's scene.mrb or the scene it showed in Slicer)")
    sag = _array(sag_node).astype(np.float32)
    sag_affine = _numpy_affine(sag_node)
    labels = _disc_label_map(scene, seg, sag_node, assessment) if seg is not None else np.zeros(sag.shape, np.uint16)
    areas = (labels > 0).reshape(len(labels), -1).sum(1)
    mid = int(np.argmax(areas)) if areas.any() else len(labels) // 2
    if not areas.any():
        notes.append("no disc segments: nothing for sag_disc_unet or sag_pfirrmann_cls")

    corners = {name: tuple(p) for name, _, p in (_points(nodes.keypoints[sag_name]) if sag_name in nodes.keypoints else [])}
    A_mid = slice_affine(sag_affine, mid, "slice,row,col")
    vertebra_boxes = {}
    for roi in nodes.boxes:
        label = roi.GetAttribute(ATTR_BOX) or ""
        if roi.GetAttribute(ATTR_SERIES) == sag_name and label.endswith(" vertebral body"):
            vertebra_boxes[label[: -len(" vertebral body")]] = _box_pixels(roi, A_mid)
    grades = {lv.name: int(lv.pfirrmann.value.grade) for lv in assessment.levels
              if lv.pfirrmann.value is not None}

    # axial: each level's keypoints lie on one slice of one axial volume (the slice of maximal extrusion)
    axial = {name: (_array(node).astype(np.float32), _numpy_affine(node)) for name, node in nodes.volumes.items()
             if name != sag_name}
    by_level: dict[str, dict[str, np.ndarray]] = {}
    for node_series, node in nodes.keypoints.items():
        if node_series == sag_name:
            continue
        for name, model_level, p in _points(node):
            if model_level:
                by_level.setdefault(model_level, {})[name[len(model_level) + 1:]] = p
    ax_images, ax_affines, ax_levels, ax_kp = [], [], [], []
    for model_level, pts in sorted(by_level.items()):
        level = next((lv for lv in assessment.levels if lv.model_name == model_level), None)
        where = _axial_slice(axial, list(pts.values()))
        if level is None or where is None:
            notes.append(f"{model_level}: its MSU keypoints lie on no axial slice; left out")
            continue
        series, k = where
        voxels, A = axial[series]
        S = slice_affine(A, k, "slice,row,col")
        keypoints = {name: (tuple(pts[name]) if name in pts else None) for name in MSU_KEYPOINTS}
        ldh = level.ldh.value
        if ldh is not None and ldh.size == 0:
            keypoints[MSU_KEYPOINTS[3]] = None   # no herniation in force: no apex, whatever the model placed
        index = len(ax_images)
        ax_images.append(voxels[k])
        ax_affines.append(S)
        ax_levels.append(level.name)
        ax_kp.append({"slice_index": index, "level": level.name, "keypoints": keypoints})
    shape = ax_images[0].shape if ax_images else (1, 1)
    case = {
        "seed": 0, "sag_images": sag, "sag_labels": labels, "sag_affine": sag_affine, "sag_mid": mid,
        "corners": corners, "vertebra_boxes": vertebra_boxes,
        "ax_images": np.array(ax_images, np.float32).reshape(-1, *shape),
        "ax_labels": np.zeros((len(ax_images), *shape), np.uint8),
        "ax_affines": np.array(ax_affines).reshape(-1, 4, 4), "ax_levels": ax_levels, "axial_keypoints": ax_kp,
        "params": {"pfirrmann": grades}, "truth": None,
    }
    return case, notes


def _axial_slice(axial: Mapping[str, tuple[np.ndarray, np.ndarray]], points: list[np.ndarray]
                 ) -> tuple[str, int] | None:
    """Return (series, slice) of the axial volume slice all ``points`` lie on, or None."""
    best = None
    for series, (voxels, A) in axial.items():
        idx = world_to_index(np.array(points).reshape(-1, 3), A)        # A is "slice,row,col"
        k = int(round(float(np.median(idx[:, 0]))))
        off = float(np.max(np.abs(idx[:, 0] - k)))
        inside = 0 <= k < voxels.shape[0] and np.all((idx[:, 1:] >= -0.5) & (idx[:, 1:] <= np.array(voxels.shape[1:]) - 0.5))
        if inside and off <= SLICE_TOLERANCE and (best is None or off < best[0]):
            best = (off, series, k)
    return None if best is None else (best[1], best[2])


# ---- writing ----------------------------------------------------------------------------------

def write_training_data_from_scene(scene: Any, dest: str | os.PathLike[str], *, assessment: Assessment | None = None,
                                   salt: str = "", case_id: str | None = None) -> TrainingExport:
    """Add the reviewed case shown in ``scene`` to the training sets under ``dest``; return what was added."""
    case, notes = training_case(scene, assessment)
    study_uid = (assessment or _stored(scene)).study_instance_uid
    case_id = case_id or case_pseudonym(study_uid, salt)
    if not case_id.replace("-", "").replace("_", "").isalnum():
        raise SpineAssistError(f"case id {case_id!r}: use letters, digits, '-' and '_' only (it names files)")
    dest = Path(dest)
    split = _split_of(case_id)
    writers = make_writers(dest, EXPORTED_MODELS)
    add_study(writers, case, split, 1, np.random.default_rng(0), f"case-{case_id}", sag_pose_slices=0, augment=False)
    for w in writers.values():
        if isinstance(w, FolderWriter):
            w.finish(borrow=False)      # no train image copied into val; `spineassist train` fills gaps
        elif hasattr(w, "finish"):
            w.finish()
    counts = {m: int(sum(w.counts.values())) for m, w in writers.items()}
    record = dest / "exports.json"
    log = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {"source": "SpineAssist reviewed cases",
                                                                                    "cases": []}
    log["cases"] = [c for c in log["cases"] if c.get("case") != case_id] + [{
        "case": case_id, "split": split, "added": counts, "notes": notes,
        "exported": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "corrections": sum(len(lv.all_corrections()) for lv in (assessment or _stored(scene)).levels),
    }]
    tmp = record.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(log, indent=1), encoding="utf-8")
    tmp.replace(record)
    return TrainingExport(dest, case_id, split, counts, notes)


def _stored(scene: Any) -> Assessment:
    return load_state(scene)[0]


def write_training_data(out_dir: str | os.PathLike[str], dest: str | os.PathLike[str], *, salt: str = "",
                        case_id: str | None = None) -> TrainingExport:
    """Add the assessment in ``out_dir`` (its scene.mrb, with the corrections in its findings.json)
    to the training sets under ``dest``."""
    out = Path(out_dir)
    mrb = out / "scene.mrb"
    if not mrb.is_file():
        raise SpineAssistError(f"{out} holds no scene.mrb; run `spineassist assess STUDY --out {out}` first")
    assessment = None
    if (out / "findings.json").is_file():
        try:
            assessment = Assessment.from_json((out / "findings.json").read_text(encoding="utf-8"))
        except (ValueError, KeyError) as e:
            raise SpineAssistError(f"{out / 'findings.json'} cannot be read ({e}); fix or remove it") from None
    try:
        scene = read_mrb(mrb)
    except (OSError, RuntimeError) as e:
        raise SpineAssistError(f"{mrb} cannot be read as a Slicer scene ({e})") from None
    return write_training_data_from_scene(scene, dest, assessment=assessment, salt=salt, case_id=case_id)


__all__ = ["EXPORTED_MODELS", "TrainingExport", "case_pseudonym", "training_case", "write_training_data",
           "write_training_data_from_scene"]
