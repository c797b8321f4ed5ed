"""Oracle models for pipeline tests: they answer from a phantom study's ground truth, exactly as
the bundled models would answer if they were perfect. The pipeline's plumbing (pixel ↔ LPS
geometry, level naming, slice mapping, grading, outputs) is then checked against the truth,
independently of how well the trained models perform (that is ``spineassist evaluate``'s job).

``OracleDiscGrades`` and ``OracleCanal`` answer the two sagittal models of findings schema 2 (the
disc-grade classifier and the canal segmenter); ``truth_disc_grades`` and ``truth_canal_mask`` give
the same truth to tests directly."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SpineAssistLib.anatomy import (
    CORNERS,
    DISC_LABELS,
    HERNIATION_LABEL,
    NEURAL_LABEL,
    THECAL_SAC_LABEL,
    VERTEBRA_LABELS,
)
from SpineAssistLib.findings import SAGITTAL_GRADING_KINDS, Assessment, ModelInfo
from SpineAssistLib.models.catalog import AX_POSE_KEYPOINTS
from SpineAssistLib.models.orientation import SliceOrientation
from SpineAssistLib.models.yolo import YoloResult
from SpineAssistLib.pipeline.assess import ModelSet
from SpineAssistLib.pipeline.result import ImageStack

_VERTEBRA_BY_LABEL = {v: k for k, v in VERTEBRA_LABELS.items()}


def _label_slices(truth_dir: Path) -> dict[tuple, np.ndarray]:
    """Return every truth label slice keyed by its rounded LPS origin."""
    out = {}
    for f in sorted(truth_dir.glob("labels_*.nii.gz")):
        img = sitk.ReadImage(str(f))
        arr = sitk.GetArrayFromImage(img)
        d = np.asarray(img.GetDirection()).reshape(3, 3)
        origin, spacing = np.asarray(img.GetOrigin()), np.asarray(img.GetSpacing())
        for k in range(arr.shape[0]):
            o = origin + k * spacing[2] * d[:, 2]
            out[tuple(np.round(o, 1))] = arr[k]
    return out


# What the canal segmenter outlines: the thecal sac with the cord and roots inside it (the phantom's
# canal AP truth is measured on the same labels, SpineAssistLib/phantom/canal.py).
CANAL_MASK_LABELS = (THECAL_SAC_LABEL, NEURAL_LABEL)
DISC_GRADE_KINDS = ("pfirrmann", *SAGITTAL_GRADING_KINDS)


def truth_disc_grades(study_dir: Path) -> dict[str, dict[str, object]]:
    """Return each truth level's disc gradings: level name -> {kind: the truth value} for Pfirrmann
    and the sagittal gradings (``findings.SAGITTAL_GRADING_KINDS``: Modic, both endplates, narrowing,
    bulging, sagittal herniation), e.g. ``{"L4-L5": {"modic": ModicType(1), "bulging": Presence(False), ...}}``."""
    truth = Assessment.load(Path(study_dir) / "truth.json")
    return {lv.name: {kind: lv.finding(kind).model for kind in DISC_GRADE_KINDS} for lv in truth.levels}


@functools.lru_cache(maxsize=4)
def _sagittal_labels(path: str, modified_ns: int) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def truth_canal_mask(study_dir: Path, slice_index: int) -> np.ndarray:
    """Return the canal (``CANAL_MASK_LABELS``) of sagittal slice ``slice_index`` (0-based, in the
    series' order: InstanceNumber - 1) as a bool (rows, columns) mask, as the slice is stored."""
    path = Path(study_dir) / "truth" / "labels_sag.nii.gz"
    labels = _sagittal_labels(str(path), path.stat().st_mtime_ns)      # a study rewritten there is read again
    if not 0 <= slice_index < labels.shape[0]:
        raise IndexError(f"sagittal slice {slice_index} is outside the series' {labels.shape[0]} slices")
    return np.isin(labels[slice_index], CANAL_MASK_LABELS)


class _Oracle:
    def __init__(self, study_dir: Path, stacks: list[ImageStack]):
        truth = Path(study_dir) / "truth"
        self.keypoints = json.loads((truth / "keypoints.json").read_text())
        self.truth = Assessment.load(Path(study_dir) / "truth.json")
        labels = _label_slices(truth)
        self.by_image: dict[bytes, tuple[ImageStack, int, np.ndarray]] = {}
        self.views: dict[bytes, SliceOrientation] = {}
        for st in stacks:
            for k in range(st.voxels.shape[0]):
                origin = tuple(np.round(st.slice_plane(k)[0], 1))
                lab = labels.get(origin)
                if lab is None:  # tolerate rounding at .x5
                    key = min(labels, key=lambda o: np.linalg.norm(np.subtract(o, origin)))
                    assert np.linalg.norm(np.subtract(key, origin)) < 0.2, f"no truth labels for {st.name} slice {k}"
                    lab = labels[key]
                self.by_image[st.voxels[k].tobytes()] = (st, k, lab)
                # the pipeline shows models the canonical view (models.orientation): know it too
                o = SliceOrientation.of(st.slice_numpy_affine(0), st.role)
                if not o.identity:
                    self.views[o.image(st.voxels[k]).tobytes()] = o
                    self.by_image.setdefault(o.image(st.voxels[k]).tobytes(), (st, k, lab))
        self.sop_keypoints = {a["sop_instance_uid"]: a for a in self.keypoints["axial"]}

    def lookup(self, image: np.ndarray):
        return self.by_image[np.asarray(image).tobytes()]

    def view_of(self, image: np.ndarray) -> SliceOrientation | None:
        """The orientation ``image`` was shown in (None: the slice as stored)."""
        return self.views.get(np.asarray(image).tobytes())

    def pixel(self, st: ImageStack, p) -> np.ndarray:
        i, j, _ = st.lps_to_index(np.asarray(p, float))
        return np.array([i, j])   # x = column, y = row


class OracleUNet:
    def __init__(self, oracle: _Oracle):
        self.o = oracle

    def predict(self, image, threshold: float = 0.5, roi=None):
        from SpineAssistLib.models.unet import UNetResult

        _, _, lab = self.o.lookup(image)
        mask = np.isin(lab, list(DISC_LABELS.values()))
        if roi is not None:          # the part the pipeline asked for
            inside = np.zeros(mask.shape, bool)
            inside[roi] = True
            mask &= inside
        return UNetResult(mask, mask.astype(np.float32))


class OracleVertebraPose:
    names = ("vertebra", "sacrum")

    def __init__(self, oracle: _Oracle):
        self.o = oracle

    def predict(self, image, conf: float = 0.25, iou: float = 0.5, max_det: int = 30) -> YoloResult:
        st, k, lab = self.o.lookup(image)
        points = self.o.keypoints["sagittal"]["points"]
        boxes, classes, kps, kscores = [], [], [], []
        for value, name in _VERTEBRA_BY_LABEL.items():
            rows, cols = np.nonzero(lab == value)
            if len(rows) < 20:
                continue
            boxes.append([cols.min(), rows.min(), cols.max(), rows.max()])
            classes.append(1 if name == "S1" else 0)
            kp, sc = [], []
            for corner in CORNERS:
                p = points.get(f"{name} {corner}")
                kp.append(self.o.pixel(st, p) if p is not None else np.zeros(2))
                sc.append(1.0 if p is not None else 0.0)
            kps.append(kp)
            kscores.append(sc)
        n = len(boxes)
        return YoloResult(self.names, np.asarray(boxes, float).reshape(n, 4), np.ones(n), np.asarray(classes, int),
                          keypoints=np.asarray(kps, float).reshape(n, 4, 2), keypoint_scores=np.asarray(kscores).reshape(n, 4))


class OraclePfirrmann:
    """Finds where the crop came from (an exact sub-array of a sagittal slice) and answers that disc's truth grade."""

    def __init__(self, oracle: _Oracle):
        self.o = oracle
        self.grades = {lv.name: lv.pfirrmann.model.grade for lv in oracle.truth.levels if lv.pfirrmann.model}
        self.level_of = {v: k for k, v in DISC_LABELS.items()}

    def _truth_grade(self, crop: np.ndarray) -> int:
        from numpy.lib.stride_tricks import sliding_window_view

        from SpineAssistLib.models.imaging import normalize_slice, to_uint8

        h, w = crop.shape
        patch = crop[h // 2 - 2: h // 2 + 3, w // 2 - 2: w // 2 + 3]
        for st, k, lab in {id(v[0]) * 1000 + v[1]: v for v in self.o.by_image.values()}.values():
            if st.role != "sagittal":
                continue
            # the crop is cut from the slice's canonical view, normalised like this
            o = SliceOrientation.of(st.slice_numpy_affine(0), st.role)
            seen = to_uint8(normalize_slice(o.image(st.voxels[k])))
            view_lab = o.image(lab)
            hits = np.argwhere((sliding_window_view(seen, patch.shape) == patch).all(axis=(2, 3)))
            if len(hits) == 1:
                r, c = hits[0] + 2
                values = view_lab[max(r - 3, 0): r + 4, max(c - 3, 0): c + 4]
                discs = [self.level_of[v] for v in np.unique(values) if v in self.level_of]
                if discs and discs[0] in self.grades:
                    return self.grades[discs[0]]
        return 1

    def predict(self, image, **_) -> YoloResult:
        grade = self._truth_grade(np.asarray(image))
        probs = np.full(5, 0.025)
        probs[grade - 1] = 0.9
        return YoloResult(("grade1", "grade2", "grade3", "grade4", "grade5"), probs=probs)


class OracleCanal:
    """The canal U-Net's answer from the truth: the sac and its contents on the slice asked about."""

    def __init__(self, oracle: _Oracle):
        self.o = oracle

    def predict(self, image, pixel_spacing_mm=None, threshold=None, roi=None):
        from SpineAssistLib.models.unet import UNetResult

        _, _, lab = self.o.lookup(image)
        mask = np.isin(lab, CANAL_MASK_LABELS)
        return UNetResult(mask, mask.astype(np.float32))


class OracleDiscGrades:
    """Answers each disc window with that disc's truth gradings. The window is recognised by
    comparing it with the windows the pipeline's own input function cuts around every truth disc
    of every sagittal slice (exact where the pipeline's disc masks are the truth's)."""

    def __init__(self, oracle: _Oracle):
        self.o = oracle
        self.truth = {lv.name: lv for lv in oracle.truth.levels}
        self._known: list[tuple[np.ndarray, str]] | None = None
        self.level_of = {v: k for k, v in DISC_LABELS.items()}

    def _windows(self) -> list[tuple[np.ndarray, str]]:
        from SpineAssistLib.pipeline.assess import disc_grades_input

        if self._known is None:
            self._known = []
            seen = set()
            for st, k, lab in self.o.by_image.values():
                if st.role != "sagittal" or (id(st), k) in seen:
                    continue
                seen.add((id(st), k))
                for value in np.unique(lab):
                    name = self.level_of.get(int(value))
                    if name in self.truth:
                        try:
                            self._known.append((disc_grades_input(st, k, lab == value), name))
                        except ValueError:
                            pass
        return self._known

    def predict(self, crops):
        answers = []
        for crop in np.asarray(crops, np.float32):
            _, name = min(self._windows(), key=lambda w: float(np.abs(w[0] - crop).mean()))
            level = self.truth[name]
            answer = {"modic": (level.modic.model.type, tuple(0.9 if t == level.modic.model.type else 0.1 / 3
                                                             for t in range(4)))}
            for kind in ("endplate_upper", "endplate_lower", "narrowing", "bulging", "herniation_sag"):
                present = bool(level.finding(kind).model.present)
                answer["herniation" if kind == "herniation_sag" else kind] = (present, 0.9 if present else 0.1)
            answers.append(answer)
        return answers


class _Many:
    def predict_many(self, images, *args, **kwargs):
        return [self.predict(image, *args, **kwargs) for image in images]


class OracleAxialSeg(_Many):
    names = ("disc", "herniation", "thecal sac")

    def __init__(self, oracle: _Oracle):
        self.o = oracle

    def predict_windows(self, pairs, conf: float = 0.25, max_det: int = 30) -> list[YoloResult]:
        """The truth labels of each window (the window model's question)."""
        out = []
        for image, crop in pairs:
            _, _, lab = self.o.lookup(image)
            view = self.o.view_of(image) or SliceOrientation()
            out.append(self._from_labels(crop.image(view.image(lab), order=0).astype(lab.dtype)))
        return out

    def predict(self, image, **_) -> YoloResult:
        _, _, lab = self.o.lookup(image)
        return self._from_labels(lab)

    def _from_labels(self, lab: np.ndarray) -> YoloResult:
        masks, classes, boxes = [], [], []
        for c, values in enumerate((list(DISC_LABELS.values()), [HERNIATION_LABEL], [THECAL_SAC_LABEL])):
            m = np.isin(lab, values)
            if m.sum() == 0:
                continue
            rows, cols = np.nonzero(m)
            masks.append(m)
            classes.append(c)
            boxes.append([cols.min(), rows.min(), cols.max(), rows.max()])
        n = len(masks)
        return YoloResult(self.names, np.asarray(boxes, float).reshape(n, 4), np.ones(n), np.asarray(classes, int),
                          masks=np.asarray(masks, bool).reshape(n, *lab.shape))


class OracleMSUPose:
    """Answers a window behind an axial disc with that slice's truth MSU keypoints (facets by the window's columns)."""

    names = ("disc",)

    def __init__(self, oracle: _Oracle):
        self.o = oracle

    def predict_windows(self, pairs, conf: float = 0.1) -> list[YoloResult]:
        out = []
        for image, crop in pairs:
            st, k, _ = self.o.lookup(image)
            view = self.o.view_of(image) or SliceOrientation()
            entry = self.o.sop_keypoints.get(str(st.datasets[k].SOPInstanceUID))
            if entry is None:
                out.append(YoloResult(self.names, keypoints=np.zeros((0, 5, 2)), keypoint_scores=np.zeros((0, 5))))
                continue
            pts = entry["keypoints"]

            def at(p):
                return crop.to_crop(view.xy(self.o.pixel(st, p), st.voxels.shape[1:]))

            left, right = at(pts["left medial facet"]), at(pts["right medial facet"])
            kp, sc = list((left, right) if left[0] < right[0] else (right, left)), [1.0, 1.0]
            for name in AX_POSE_KEYPOINTS[2:]:
                p = pts.get(name)
                kp.append(at(p) if p is not None else at(pts["posterior disc margin"]))
                sc.append(1.0 if p is not None else 0.0)
            out.append(_window_result(self.names, np.asarray(kp, float), sc))
        return out


class OracleDiscCorners:
    """Answers a window around a sagittal disc with the truth corners bounding that disc."""

    names = ("disc space",)

    def __init__(self, oracle: _Oracle):
        self.o = oracle
        self.level_of = {v: k for k, v in DISC_LABELS.items()}

    def predict_windows(self, pairs, conf: float = 0.1) -> list[YoloResult]:
        from SpineAssistLib.anatomy import disc_space_corners

        points = self.o.keypoints["sagittal"]["points"]
        out = []
        for image, crop in pairs:
            st, k, lab = self.o.lookup(image)
            view = self.o.view_of(image) or SliceOrientation()
            shape = st.voxels.shape[1:]
            seen = view.image(lab)
            rows, cols = np.nonzero(np.isin(seen, list(self.level_of)))
            # the disc the window was placed on: the labelled disc pixel nearest its centre
            j = int(np.argmin((cols - crop.cx) ** 2 + (rows - crop.cy) ** 2))
            level = self.level_of[int(seen[rows[j], cols[j]])]
            kp, sc = [], []
            for name in disc_space_corners(level):
                p = points.get(name)
                kp.append(crop.to_crop(view.xy(self.o.pixel(st, p), shape)) if p is not None else np.zeros(2))
                sc.append(1.0 if p is not None else 0.0)
            out.append(_window_result(self.names, np.asarray(kp, float), sc))
        return out


def _window_result(names, kp: np.ndarray, scores) -> YoloResult:
    box = [[kp[:, 0].min() - 4, kp[:, 1].min() - 4, kp[:, 0].max() + 4, kp[:, 1].max() + 4]]
    return YoloResult(names, np.array(box, float), np.ones(1), np.zeros(1, int), keypoints=kp[None],
                      keypoint_scores=np.asarray([scores], float))


class _InView:
    """Answers an oracle's question asked in the canonical view, in that view's pixels."""

    def __init__(self, oracle: _Oracle, model):
        self.o, self.model = oracle, model

    def predict(self, image, *args, **kwargs):
        o = self.o.view_of(image)
        if o is None:
            return self.model.predict(image, *args, **kwargs)
        st, k, _ = self.o.lookup(image)
        roi = kwargs.pop("roi", None)             # in the view's pixels: applied to the answer below
        r = self.model.predict(st.voxels[k], *args, **kwargs)
        shape = st.voxels.shape[1:]
        changes = {}
        for name in ("mask", "probability"):
            if isinstance(getattr(r, name, None), np.ndarray):
                changes[name] = o.image(getattr(r, name))
        if getattr(r, "masks", None) is not None:
            changes["masks"] = np.array([o.image(m) for m in r.masks]).reshape(len(r.masks), *o.canonical_shape(shape))
        if getattr(r, "boxes", None) is not None and len(r.boxes):
            changes["boxes"] = np.array([o.box(b, shape) for b in r.boxes])
        if getattr(r, "keypoints", None) is not None and r.keypoints.size:
            changes["keypoints"] = o.xy(r.keypoints, shape)
        if roi is not None:
            for name in ("mask", "probability"):
                if name in changes:
                    inside = np.zeros(changes[name].shape, bool)
                    inside[roi] = True
                    changes[name] = np.where(inside, changes[name], 0).astype(changes[name].dtype)
        return dataclasses.replace(r, **changes)

    def predict_many(self, images, *args, **kwargs):
        return [self.predict(image, *args, **kwargs) for image in images]


def oracle_models(study_dir: Path, stacks: list[ImageStack]) -> ModelSet:
    o = _Oracle(study_dir, stacks)
    models = {"sag_disc_unet": _InView(o, OracleUNet(o)), "sag_vertebra_pose": _InView(o, OracleVertebraPose(o)),
              "sag_disc_corners": OracleDiscCorners(o), "sag_pfirrmann_cls": OraclePfirrmann(o),
              "ax_disc_seg": _InView(o, OracleAxialSeg(o)), "ax_disc_window_seg": OracleAxialSeg(o),
              "ax_msu_pose": OracleMSUPose(o), "sag_disc_grades": OracleDiscGrades(o),
              "sag_canal_unet": _InView(o, OracleCanal(o))}
    infos = [ModelInfo(f"oracle_{n}", "0" * 64, "truth") for n in models]
    return ModelSet(models, infos)


def oracle_for(study_dir: Path):
    """Return a ``models`` argument for ``run_assessment``: the oracle models of ``study_dir``'s truth,
    made once the study's stacks are loaded."""
    return lambda loaded: oracle_models(study_dir, [loaded.sagittal, *loaded.axial])
