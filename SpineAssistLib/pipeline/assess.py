"""``assess``: from loaded sagittal and axial T2 images to an Assessment, via the bundled models and the grading rules.

Stages, in data-flow order: sagittal models (disc U-Net on every slice, vertebra pose on the
mid-sagittal slice) → levels (counted up from the sacrum) → disc segmentation labelled by level →
Pfirrmann (classifier + measured SIR/DHI) → listhesis (Meyerding from the corners) →
sagittal-to-axial mapping (each axial slice's own plane against the disc segmentation) → axial
models per disc (segmentation + MSU keypoints) → MSU grade on the slice of maximal extrusion.
The models only find points and masks; every grade comes from ``SpineAssistLib.grading``.

Usage::

    from SpineAssistLib.pipeline.assess import ModelSet, SAGITTAL_MODELS, assess
    result = assess(sagittal_stack, axial_stacks, study_instance_uid=uid,
                    models=ModelSet.load(SAGITTAL_MODELS))     # -> AssessmentResult

The whole job from a study folder to written outputs is ``SpineAssistLib.pipeline.run``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from SpineAssistLib.anatomy import (
    CORNERS,
    DISC_LABELS,
    HERNIATION_LABEL,
    THECAL_SAC_LABEL,
    corner_name,
    disc_space_corners,
)
from SpineAssistLib.dicom.index import NO_AXIAL_WARNING
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.findings import (
    LOW_LEVEL_CONFIDENCE,
    STANDARD_LUMBAR_LEVELS,
    Assessment,
    CanalFinding,
    Finding,
    Geometry,
    HerniationFinding,
    Level,
    ModelInfo,
    ModicFinding,
    ModicType,
    PfirrmannFinding,
    PfirrmannGrade,
    Presence,
    SagittalHerniationFinding,
    finding_class,
)
from SpineAssistLib.geometry import pixel_spacing, pixel_spacing_xy, world_to_index
from SpineAssistLib.grading import (
    SlicePlane,
    SpineDetection,
    herniation_from_masks,
    label_levels,
    map_axial_slices,
    meyerding_grade,
    msu_grade,
    pfirrmann_grade,
    select_maximal_extrusion,
    voxel_centers_lps,
)
from SpineAssistLib.grading.canal import canal_ap_from_corners
from SpineAssistLib.models import load_model, model_spec
from SpineAssistLib.models.crops import (
    disc_segmentations,
    pfirrmann_crop,
    window_keypoints,
)
from SpineAssistLib.models.disc_grades import disc_grades_crop, neighbour_slices
from SpineAssistLib.models.imaging import erode, region_centroids
from SpineAssistLib.models.orientation import Oriented, SliceOrientation
from SpineAssistLib.models.predictor import BatchPredictor, Predictor, WindowPredictor
from SpineAssistLib.models.unet import UNetResult, segment_sagittal_stack
from SpineAssistLib.pipeline.progress import StageReporter
from SpineAssistLib.pipeline.result import AssessmentResult, Box, ImageStack

log = logging.getLogger(__name__)

STAGES: dict[str, float] = {
    "loading": 2.0, "sagittal models": 3.0, "levels": 0.5, "disc segmentation": 1.0, "disc corners": 0.5,
    "pfirrmann": 1.0, "listhesis": 0.3, "sagittal gradings": 0.8, "sagittal-axial mapping": 0.5,
    "axial models": 3.0, "msu": 0.5,
    "outputs": 3.0,
}

SAGITTAL_MODELS = ("sag_disc_unet", "sag_vertebra_pose", "sag_disc_corners", "sag_pfirrmann_cls", "sag_disc_grades",
                   "sag_canal_unet")
AXIAL_MODELS = ("ax_disc_seg", "ax_disc_window_seg", "ax_msu_pose")
# what the pipeline asks of each model (a site's own model, or a test's, must answer the same way)
MODEL_ROLES: dict[str, type] = {
    "sag_disc_unet": Predictor, "sag_vertebra_pose": Predictor, "sag_disc_corners": WindowPredictor,
    "sag_pfirrmann_cls": Predictor, "ax_disc_seg": BatchPredictor, "ax_disc_window_seg": WindowPredictor,
    "ax_msu_pose": WindowPredictor, "sag_disc_grades": Predictor, "sag_canal_unet": Predictor,
}
# the disc-grades model's outputs that become findings; its herniation output is not used (SPIDER holds
# too few herniations to learn it: the model card) and the sagittal herniation is measured instead
SAGITTAL_HERNIATION_NOT_GRADED = ("no sagittal herniation grading passed validation on real scans; "
                                  "read the sagittal images (the report's key image)")
DISC_GRADE_KINDS = ("modic", "endplate_upper", "endplate_lower", "narrowing", "bulging")

VERTEBRA_MIN_SCORE = 0.25
SACRUM_RETRY_SCORE = 0.1      # the sacrum anchors the count: accept a weaker detection rather than none
CORNER_MIN_SCORE = 0.3        # a vertebral corner scored lower is not used
HERNIATION_MIN_PIXELS = 6     # smaller herniation masks are taken as noise
PLAUSIBLE_SPACING_MM = (25.0, 50.0)   # adult lumbar vertebral centroid spacing, with room for disease
OFF_CENTRE_FRACTION = 0.3     # mid-sagittal slice this far (share of the stack) from its middle
SACRUM_EDGE_MM = 3.0          # a sacrum box this close to the image's caudal edge may be a body cut off
DISC_CORE_RADIUS_MM = 10.0    # an axial slice is mapped to a disc only where it cuts the disc's middle
CSF_BAND_MM = (3.0, 9.0)      # the thecal sac lies this far behind the posterior vertebral line (epidural space, PLL)
DEFAULT_SETTINGS: dict[str, Any] = {"no_listhesis_percent": 5.0, "lumbar_count": 5}


@dataclass
class ModelSet:
    """The loaded models, by manifest name, and their identities for the findings file."""

    models: dict[str, Predictor | WindowPredictor]
    infos: list[ModelInfo]

    def __post_init__(self) -> None:
        for name, model in self.models.items():
            role = MODEL_ROLES.get(name)
            if role is not None and not isinstance(model, role):
                raise TypeError(f"model {name!r} must be a {role.__name__} (see models.predictor); "
                                f"got {type(model).__name__}")

    @classmethod
    def load(cls, names: Sequence[str], device: str = "auto", manifest: Mapping[str, Any] | None = None) -> "ModelSet":
        """Load and verify (SHA-256) the named bundled models on ``device`` (``manifest``: model specs
        by name instead of the bundled manifest's)."""
        models, infos = {}, []
        for name in names:
            spec = model_spec(name, manifest)
            models[name] = load_model(name, device=device, manifest=manifest)
            infos.append(ModelInfo(name, spec.sha256, str(spec.version)))
        return cls(models, infos)

    def __getitem__(self, name: str) -> Any:
        # a Predictor, or a WindowPredictor for the models that read windows around each disc
        return self.models[name]


def assess(sagittal: ImageStack, axial: Sequence[ImageStack] = (), *, study_instance_uid: str,
           models: ModelSet, settings: Mapping[str, Any] | None = None,
           reporter: StageReporter | None = None) -> AssessmentResult:
    """Return the assessment of one study from its loaded sagittal stack and axial stacks (possibly none)."""
    settings = {**DEFAULT_SETTINGS, **(settings or {})}
    reporter = reporter or StageReporter(STAGES)
    timings: dict[str, float] = {}
    result = AssessmentResult(Assessment(study_instance_uid, models=list(models.infos), settings=dict(settings)),
                              sagittal=sagittal, axial=list(axial), timings=timings)
    a = result.assessment
    a.sagittal_series_uid = _series_uid(sagittal)
    a.axial_series_uid = _series_uid(axial[0]) if axial else None

    t = time.perf_counter()
    reporter.stage("sagittal models", 0.0, f"disc U-Net on {sagittal.voxels.shape[0]} sagittal slices")
    disc_masks_arr = _segment_disc_slices(models["sag_disc_unet"], sagittal, reporter)
    mid = _mid_sagittal_slice(disc_masks_arr)
    result.key_slices[sagittal.name] = mid
    reporter.stage("sagittal models", 0.8, f"vertebral bodies and corners on slice {mid + 1}")
    mid, pose = _find_vertebrae(models["sag_vertebra_pose"], sagittal, mid)
    result.key_slices[sagittal.name] = mid
    timings["sagittal models"] = time.perf_counter() - t

    t = time.perf_counter()
    reporter.stage("levels")
    labelling, corners, vertebra_boxes = _label_levels(sagittal, mid, pose, disc_masks_arr[mid], settings)
    a.levels = _reported_levels(labelling, a.warnings)
    sacrum_cut = _sacrum_at_edge(sagittal, mid, labelling, pose)
    _level_confidences(a.levels, labelling, pose, sacrum_cut)
    result.keypoints[sagittal.name] = corners
    result.boxes.extend(vertebra_boxes)
    timings["levels"] = time.perf_counter() - t

    t = time.perf_counter()
    reporter.stage("disc segmentation")
    sagittal.labels = _disc_label_volume(sagittal, disc_masks_arr, a.levels)
    timings["disc segmentation"] = time.perf_counter() - t

    t = time.perf_counter()
    reporter.stage("disc corners", 0.0, f"vertebral corners around {len(a.levels)} disc(s)")
    _refine_corners(models["sag_disc_corners"], sagittal, mid, a.levels, corners)
    timings["disc corners"] = time.perf_counter() - t

    t = time.perf_counter()
    reporter.stage("pfirrmann")
    for i, level in enumerate(a.levels):
        reporter.stage("pfirrmann", i / max(len(a.levels), 1), level.name)
        _grade_pfirrmann(level, sagittal, mid, corners, models["sag_pfirrmann_cls"], a)
    timings["pfirrmann"] = time.perf_counter() - t

    t = time.perf_counter()
    reporter.stage("listhesis")
    source = _source(sagittal, mid)
    for level in a.levels:
        _grade_listhesis(level, corners, settings, source, a)
    timings["listhesis"] = time.perf_counter() - t
    a.review_reasons = review_reasons(a.levels, labelling, mid, sagittal.voxels.shape[0], _sacrum_score(labelling, pose),
                                      sacrum_cut)

    t = time.perf_counter()
    reporter.stage("sagittal gradings", 0.0, "Modic, endplates, narrowing, bulging")
    _grade_disc_findings(models.models.get("sag_disc_grades"), sagittal, mid, a.levels)
    reporter.stage("sagittal gradings", 0.5, "central canal")
    _grade_canal(models.models.get("sag_canal_unet"), sagittal, mid, a.levels, corners)
    _grade_sagittal_herniation(a.levels)
    timings["sagittal gradings"] = time.perf_counter() - t

    if not axial:
        for level in a.levels:
            level.ldh = HerniationFinding(status="not_assessed", reason="no axial T2 series in the study")
        a.warnings.append(NO_AXIAL_WARNING)
        return result

    t = time.perf_counter()
    reporter.stage("sagittal-axial mapping")
    slices_by_level = _map_axial(sagittal, axial, a)
    timings["sagittal-axial mapping"] = time.perf_counter() - t

    t = time.perf_counter()
    per_level = _run_axial_models(axial, slices_by_level, models, reporter, result)
    timings["axial models"] = time.perf_counter() - t

    t = time.perf_counter()
    reporter.stage("msu")
    for level in a.levels:
        _grade_msu(level, per_level.get(level.name, []), result)
    timings["msu"] = time.perf_counter() - t
    return result


# ---- sagittal -------------------------------------------------------------------------------

def _series_uid(stack: ImageStack) -> str | None:
    return str(stack.datasets[0].SeriesInstanceUID) if stack.datasets else None


def _source(stack: ImageStack, k: int) -> dict[str, str]:
    if not stack.datasets:
        return {}
    ds = stack.datasets[k]
    return {"series_instance_uid": str(ds.SeriesInstanceUID), "sop_instance_uid": str(ds.SOPInstanceUID)}


def _segment_disc_slices(unet: Predictor, stack: ImageStack, reporter: StageReporter) -> np.ndarray:
    """Return the U-Net's disc masks of the sagittal slices (``models.unet.segment_sagittal_stack``)."""
    n = stack.voxels.shape[0]
    spacing = pixel_spacing(stack.affine, "col,row,slice")
    return segment_sagittal_stack(Oriented(unet, _orientation(stack)), stack.voxels, spacing,
                                  on_slice=lambda done: reporter.stage("sagittal models", 0.7 * done / n))


def _orientation(stack: ImageStack) -> SliceOrientation:
    """Return how the stack's slices turn into the view the models were trained on."""
    return SliceOrientation.of(stack.slice_numpy_affine(0), stack.role)


def _mid_sagittal_slice(disc_masks: np.ndarray) -> int:
    """Return the slice with the largest disc area: discs are widest at the mid-line."""
    areas = disc_masks.reshape(disc_masks.shape[0], -1).sum(axis=1)
    if areas.max() == 0:
        raise SpineAssistError("no intervertebral disc was found on any sagittal slice: the series may not show "
                               "the lumbar spine, or it is not a T2 image. Check the series with `spineassist series`")
    # among near-maximal slices take the central one, so a single noisy slice does not win
    near = np.flatnonzero(areas >= 0.9 * areas.max())
    return int(near[len(near) // 2])


def _find_vertebrae(pose_model: Predictor, stack: ImageStack, mid: int) -> tuple[int, Any]:
    """Return the slice and the vertebra detections to count levels from: the mid-sagittal slice, or a
    neighbour, or a lower confidence, whichever first shows the sacrum (the anchor of the count)."""
    n = stack.voxels.shape[0]
    slices = [k for k in (mid, mid - 1, mid + 1) if 0 <= k < n]
    first = None
    pose_model = Oriented(pose_model, _orientation(stack))
    for conf in (VERTEBRA_MIN_SCORE, SACRUM_RETRY_SCORE):
        for k in slices:
            pose = pose_model.predict(stack.voxels[k], conf=conf)
            first = first or (k, pose)
            if any(pose.names[c] == "sacrum" for c in pose.classes):
                return k, pose
    return first


def _label_levels(stack: ImageStack, k: int, pose: Any, disc_mask: np.ndarray, settings: Mapping[str, Any]):
    detections: list[SpineDetection] = []
    corner_px: list[np.ndarray] = []
    classes = list(pose.names)
    for b, cls, score, kp in zip(pose.boxes, pose.classes, pose.scores, pose.keypoints):
        x1, y1, x2, y2 = b
        centre = stack.pixel_to_lps(k, np.array((y1 + y2) / 2), np.array((x1 + x2) / 2))
        detections.append(SpineDetection("vertebra", tuple(centre), is_sacrum=classes[cls] == "sacrum",
                                         confidence=float(min(max(score, 0.0), 1.0))))
        corner_px.append(kp)
    n_vertebrae = len(detections)
    for m in UNetResult(disc_mask, disc_mask.astype(np.float32)).instances():
        rc = np.argwhere(m).mean(axis=0)
        detections.append(SpineDetection("disc", tuple(stack.pixel_to_lps(k, np.array(rc[0]), np.array(rc[1])))))
    if not any(d.is_sacrum for d in detections):
        raise SpineAssistError("the sacrum was not found on the mid-sagittal slice, so levels cannot be counted from "
                               "S1. The field of view must include the sacrum; check the sagittal series")
    try:
        labelling = label_levels(detections, lumbar_count=int(settings["lumbar_count"]))
    except ValueError as e:
        raise SpineAssistError(f"disc levels could not be named from the detected vertebrae: {e}") from None

    corners: dict[str, tuple[float, float, float]] = {}
    boxes: list[Box] = []
    for i in range(n_vertebrae):
        name = labelling.name_of(i)
        if name is None:
            continue
        x1, y1, x2, y2 = pose.boxes[i]
        a = stack.pixel_to_lps(k, np.array(y1), np.array(x1))
        b = stack.pixel_to_lps(k, np.array(y2), np.array(x2))
        boxes.append(Box(f"{name} vertebral body", tuple(a), tuple(b), None, float(pose.scores[i]),
                         stack.name, k, (float(y1), float(x1), float(y2), float(x2))))
        kp = corner_px[i]
        scores = pose.keypoint_scores[i]
        for c, corner in enumerate(CORNERS):
            if name == "S1" and "inferior" in corner:
                continue
            if scores[c] < CORNER_MIN_SCORE:
                continue
            corners[corner_name(name, corner)] = tuple(float(v) for v in stack.pixel_to_lps(k, kp[c, 1], kp[c, 0]))
    return labelling, corners, boxes


def _refine_corners(model: WindowPredictor, stack: ImageStack, k: int, levels: list[Level],
                    corners: dict[str, tuple[float, float, float]]) -> None:
    """Replace the whole-slice corners around each segmented disc with ``sag_disc_corners``' answer
    on a window around that disc (0.33 mm a pixel instead of about 1.2): the points Meyerding and
    the disc heights are measured from. A corner the window model does not score is kept as found."""
    A = stack.slice_numpy_affine(k)
    found = window_keypoints(model, [(stack.voxels[k], A, stack.labels[k] == DISC_LABELS[lv.name]) for lv in levels],
                             "sagittal")
    for level, w in zip(levels, found):
        if w is None:
            continue
        for name, p, score in zip(disc_space_corners(level.name), w.keypoints, w.keypoint_scores):
            if score >= CORNER_MIN_SCORE:
                corners[name] = tuple(float(v) for v in stack.pixel_to_lps(k, p[1], p[0]))


def _reported_levels(labelling: Any, warnings: list[str]) -> list[Level]:
    """Return the levels to report: every detected disc, and undetected discs between two detected ones.

    A disc the models did not find at the edge of the field of view (e.g. T11-T12 at the top of
    the image) is left out; one missing between found discs is reported as not assessed.
    """
    discs = list(labelling.discs)
    detected = [i for i, d in enumerate(discs) if d.detected]
    if not detected:
        return []
    reported = {d.name for d in discs[detected[0]: detected[-1] + 1]}
    for w in labelling.warnings:
        # a reader needs the warnings about the levels shown; detection bookkeeping goes to the log
        if any(name in w for name in reported):
            warnings.append(w)
        else:
            log.info("level labelling: %s", w)
    levels = []
    for i, d in enumerate(discs[detected[0]: detected[-1] + 1], start=detected[0]):
        level = Level(d.name, disc_center=d.centroid)
        if not d.detected:
            for f in level.findings():
                f.status, f.reason = "not_assessed", "disc not found by the segmentation model"
        levels.append(level)
    return levels


def _sacrum_detection(labelling: Any, pose: Any) -> int | None:
    """Return the index in ``pose`` of the detection named S1 (None when there is none)."""
    s1 = next((v for v in labelling.vertebrae if v.name == "S1"), None)
    return None if s1 is None or s1.detection >= len(pose.scores) else s1.detection


def _sacrum_score(labelling: Any, pose: Any) -> float | None:
    """Return the detection score of the vertebra named S1 (None when there is none)."""
    i = _sacrum_detection(labelling, pose)
    return None if i is None else float(pose.scores[i])


def _sacrum_at_edge(stack: ImageStack, k: int, labelling: Any, pose: Any) -> bool:
    """Return True when the box of the vertebra named S1 reaches the image's caudal edge: what is
    taken for the sacrum may be a lumbar body cut off by the field of view."""
    i = _sacrum_detection(labelling, pose)
    if i is None:
        return False
    x1, y1, x2, y2 = pose.boxes[i]
    rows, cols = stack.voxels.shape[1:]
    box = stack.pixel_to_lps(k, np.array([y1, y1, y2, y2]), np.array([x1, x2, x1, x2]))
    image = stack.pixel_to_lps(k, np.array([0, 0, rows - 1, rows - 1]), np.array([0, cols - 1, 0, cols - 1]))
    return float(box[:, 2].min()) - float(image[:, 2].min()) <= SACRUM_EDGE_MM


def _level_confidences(levels: list[Level], labelling: Any, pose: Any, sacrum_cut: bool = False) -> None:
    """Set each level's confidence: the weakest score among the vertebrae bounding it and the sacrum,
    the detections its name rests on (an undetected one, or a sacrum at the image's edge, counts 0)."""
    score = {v.name: float(pose.scores[v.detection]) for v in labelling.vertebrae
             if v.detection is not None and v.detection < len(pose.scores)}
    sacrum = 0.0 if sacrum_cut else score.get("S1", 0.0)
    for level in levels:
        upper, lower = level.name.split("-")
        level.confidence = float(np.clip(min(score.get(upper, 0.0), score.get(lower, 0.0), sacrum), 0.0, 1.0))


def review_reasons(levels: Sequence[Level], labelling: Any, mid: int, n_slices: int,
                   sacrum_score: float | None = None, sacrum_cut: bool = False) -> list[str]:
    """Return why a reader should look closely at this study (empty: nothing flagged): a level or
    the sacrum (``sacrum_score``: its detection's, None without one) found with low confidence, fewer lumbar levels than expected, an implausible spacing
    or order of the discs, or a spine far off the middle slice."""
    reasons = []
    weak = [f"{lv.name} ({lv.confidence:.2f})" for lv in levels
            if lv.confidence is not None and lv.confidence < LOW_LEVEL_CONFIDENCE]
    if weak:
        reasons.append("levels found or named with low confidence: " + ", ".join(weak))
    names = {lv.name for lv in levels}
    expected = [n for n in STANDARD_LUMBAR_LEVELS if n not in names]
    if expected and not any(n in names for n in ("L4-S1", "L5-L6", "L6-S1")):
        reasons.append(f"lumbar level(s) not reported: {', '.join(expected)}")
    missing = [lv.name for lv in levels if lv.pfirrmann.status == "not_assessed"
               and "not found" in lv.pfirrmann.reason]
    if missing:
        reasons.append(f"disc(s) not found between found discs: {', '.join(missing)}")
    spacing = float(getattr(labelling, "vertebral_spacing_mm", float("nan")))
    if np.isfinite(spacing) and not PLAUSIBLE_SPACING_MM[0] <= spacing <= PLAUSIBLE_SPACING_MM[1]:
        reasons.append(f"vertebrae {spacing:.0f} mm apart, outside the adult {PLAUSIBLE_SPACING_MM[0]:.0f}-"
                       f"{PLAUSIBLE_SPACING_MM[1]:.0f} mm: check the image's pixel spacing and the levels")
    if any("(disc) lies caudal to the sacrum" in w for w in getattr(labelling, "warnings", ())):
        reasons.append("a disc was found below the detected sacrum: the sacrum may really be L5 (or a transitional "
                       "vertebra), and every level name one level off; check the count from the sacrum")
    if sacrum_score is not None and sacrum_score < VERTEBRA_MIN_SCORE:
        reasons.append(f"the sacrum was found only weakly (score {sacrum_score:.2f}): it may be out of the field "
                       "of view, and every level name may be off; check the count from the sacrum")
    if sacrum_cut:
        reasons.append("what was taken for the sacrum reaches the lower edge of the image: the sacrum may be out of "
                       "the field of view, and every level name may be off; name the levels from another landmark")
    z = [lv.disc_center[2] for lv in levels if lv.disc_center is not None]
    if any(b >= a for a, b in zip(z, z[1:])):
        reasons.append("the discs are not in head-to-feet order: check the levels")
    if n_slices >= 5 and abs(mid - (n_slices - 1) / 2) > OFF_CENTRE_FRACTION * n_slices:
        reasons.append(f"the spine's mid-line is on slice {mid + 1} of {n_slices}, far from the middle "
                       "(scoliosis or positioning): check the levels on the neighbouring slices")
    return reasons


def _disc_label_volume(stack: ImageStack, disc_masks: np.ndarray, levels: list[Level]) -> np.ndarray:
    """Return a label volume: each disc region, on every slice, labelled with the nearest level's disc label."""
    labels = np.zeros(disc_masks.shape, np.uint16)
    centres = {lv.name: np.asarray(lv.disc_center) for lv in levels if lv.disc_center is not None}
    if not centres:
        return labels
    names = list(centres)
    c = np.stack([centres[n] for n in names])
    for k in range(disc_masks.shape[0]):
        comp, n, centroids = region_centroids(disc_masks[k])
        if not n:
            continue
        label_of = np.zeros(n + 1, np.uint16)         # component -> disc label
        for j, rc in enumerate(centroids, start=1):
            p = stack.pixel_to_lps(k, np.array(rc[0]), np.array(rc[1]))
            # compare within the sagittal plane (y, z): slices off the mid-line are shifted in x only
            d = np.linalg.norm((c - p)[:, 1:], axis=1)
            best = int(np.argmin(d))
            if d[best] < 15.0:
                label_of[j] = DISC_LABELS[names[best]]
        labels[k] = label_of[comp]
    return labels


def _corner(corners: Mapping[str, Any], vertebra: str, corner: str) -> np.ndarray | None:
    p = corners.get(corner_name(vertebra, corner))
    return None if p is None else np.asarray(p, float)


def _grade_pfirrmann(level: Level, stack: ImageStack, k: int, corners: Mapping[str, Any], classifier: Predictor,
                     a: Assessment) -> None:
    if level.pfirrmann.status == "not_assessed":
        return
    upper, lower = level.name.split("-")
    mask = stack.labels[k] == DISC_LABELS[level.name]
    if mask.sum() < 10:
        level.pfirrmann.status, level.pfirrmann.reason = "not_assessed", "disc not segmented on the mid-sagittal slice"
        return
    image = stack.voxels[k].astype(float)
    nucleus = erode(mask, iterations=2)
    if nucleus.sum() < 4:
        nucleus = mask
    annulus = mask & ~nucleus

    o = _orientation(stack)   # the crop the classifier was trained on: canonical view, whole slice normalised
    probs = classifier.predict(pfirrmann_crop(o.image(stack.voxels[k]), o.image(mask))).probs
    grade = int(np.argmax(probs)) + 1
    confidence = float(np.max(probs))

    def height(v: str, c1: str, c2: str):
        p, q = _corner(corners, v, c1), _corner(corners, v, c2)
        return None if p is None or q is None else (tuple(p), tuple(q))

    disc_heights = [h for h in (
        _pair(_corner(corners, upper, "anterior-inferior"), _corner(corners, lower, "anterior-superior")),
        _pair(_corner(corners, upper, "posterior-inferior"), _corner(corners, lower, "posterior-superior"))) if h]
    upper_h = [h for h in (height(upper, "anterior-superior", "anterior-inferior"),
                           height(upper, "posterior-superior", "posterior-inferior")) if h] or None
    lower_h = [h for h in (height(lower, "anterior-superior", "anterior-inferior"),
                           height(lower, "posterior-superior", "posterior-inferior")) if h] or None
    csf = _csf_signal(stack, k, corners, upper, lower)
    try:
        if not disc_heights or csf is None or (upper_h is None and lower_h is None):
            raise ValueError("corners or CSF missing")
        measured = pfirrmann_grade(image[nucleus], image[annulus], csf, disc_heights, upper_h, lower_h,
                                   source=_source(stack, k))
        level.pfirrmann = measured.to_finding(model_grade=grade, confidence=confidence)
    except ValueError as e:
        level.pfirrmann = PfirrmannFinding(model=PfirrmannGrade(grade), confidence=confidence)
        a.warnings.append(f"{level.name}: Pfirrmann measurements not available ({e}); classifier grade only")


def _grade_disc_findings(model: Predictor | None, stack: ImageStack, k: int, levels: list[Level]) -> None:
    """Grade Modic, endplate defects, narrowing and bulging of every segmented disc with
    ``sag_disc_grades`` (three slices around the mid-sagittal one, a window around the disc)."""
    if model is None:
        for level in levels:
            for kind in DISC_GRADE_KINDS:
                setattr(level, kind, _not_assessed(kind, "the disc-grades model was not loaded"))
        return
    crops, graded = [], []
    for level in levels:
        try:
            crops.append(disc_grades_input(stack, k, stack.labels[k] == DISC_LABELS.get(level.name, -1)))
            graded.append(level)
        except ValueError as e:
            for kind in DISC_GRADE_KINDS:
                setattr(level, kind, _not_assessed(kind, f"disc not segmented on the mid-sagittal slice ({e})"))
    if not crops:
        return
    source = _source(stack, k)
    for level, answer in zip(graded, model.predict(np.stack(crops))):
        modic, modic_p = answer["modic"]
        level.modic = ModicFinding(model=ModicType(int(modic)), confidence=float(max(modic_p)),
                                   geometry=Geometry(source=source))
        for kind in DISC_GRADE_KINDS[1:]:
            present, prob = answer[kind]
            # the probability of the value given, so a low number always means an unsure call
            sure = float(prob) if present else 1.0 - float(prob)
            setattr(level, kind, finding_class(kind)(model=Presence(bool(present)), confidence=sure,
                                                          geometry=Geometry(source=source)))


def disc_grades_input(stack: ImageStack, k: int, disc_mask: np.ndarray) -> np.ndarray:
    """Return ``sag_disc_grades``' input for the disc ``disc_mask`` (slice ``k`` as stored): the
    slices 3 mm either side and the middle one in the canonical view, a window around the disc.
    ValueError where the mask is too small to place the window."""
    o = _orientation(stack)
    canonical = o.affine(stack.slice_numpy_affine(k), stack.voxels[k].shape)
    slice_mm = float(abs(stack.affine[:3, 2] @ canonical[:3, 2])) or 1.0
    around = neighbour_slices(stack.voxels.shape[0], k, slice_mm)
    return disc_grades_crop([o.image(stack.voxels[i]) for i in around], o.image(disc_mask),
                            pixel_spacing_xy(canonical, "row,col,slice"))


def _canonical_xy(stack: ImageStack, k: int, points: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Return LPS mm points as pixels (x = column, y = row) of slice ``k``'s canonical view."""
    o = _orientation(stack)
    canonical = o.affine(stack.slice_numpy_affine(k), stack.voxels[k].shape)
    out = {}
    for name, p in points.items():
        if p is not None:
            row, col, _ = world_to_index(np.asarray(p, float), canonical)
            out[name] = (float(col), float(row))
    return out


def _grade_canal(model: Predictor | None, stack: ImageStack, k: int, levels: list[Level],
                 corners: Mapping[str, Any]) -> None:
    """Measure the central canal's AP diameter at each disc (``grading.canal``) on the canal
    U-Net's masks of the mid-sagittal slice and its neighbours, keeping the widest: the midsagittal
    diameter is the canal's largest, and a slice beside the canal's mid-line cuts a shorter chord
    of it. Graded by Verbiest's rule."""
    if model is None:
        for level in levels:
            level.canal = CanalFinding(status="not_assessed", reason="the canal model was not loaded")
        return
    o = _orientation(stack)
    best: dict[str, Any] = {}
    for j in (k, k - 1, k + 1):       # the mid-sagittal slice first: it wins a tie
        if not 0 <= j < stack.voxels.shape[0]:
            continue
        canonical = o.affine(stack.slice_numpy_affine(j), stack.voxels[j].shape)
        spacing = pixel_spacing(canonical, "row,col,slice")
        mask = model.predict(o.image(stack.voxels[j]), spacing).mask
        corners_xy = _canonical_xy(stack, j, corners)
        for level in levels:
            measure = canal_ap_from_corners(mask, spacing, corners_xy, level.name)
            kept = best.get(level.name)
            if kept is None or (measure.assessed and (not kept[0].assessed or measure.ap_mm > kept[0].ap_mm)):
                best[level.name] = (measure, canonical, _source(stack, j))
    for level in levels:
        measure, canonical, source = best[level.name]
        level.canal = measure.to_finding(canonical, source)


def _grade_sagittal_herniation(levels: list[Level]) -> None:
    """Say plainly that the sagittal view gives no herniation call: neither the disc-grades model
    nor the measured protrusion behind the posterior vertebral line (``grading.sagittal_herniation``)
    told SPIDER's herniated discs from the others on held-out patients (the model card), so a yes/no
    from them would mislead more than it helps."""
    for level in levels:
        level.herniation_sag = SagittalHerniationFinding(
            status="not_assessed", reason=SAGITTAL_HERNIATION_NOT_GRADED)


def _not_assessed(kind: str, reason: str) -> Finding:
    return finding_class(kind)(status="not_assessed", reason=reason)


def _pair(p: np.ndarray | None, q: np.ndarray | None):
    return None if p is None or q is None else (tuple(p), tuple(q))


def _csf_signal(stack: ImageStack, k: int, corners: Mapping[str, Any], upper: str, lower: str) -> np.ndarray | None:
    """Return CSF voxel values behind the disc: a band parallel to the posterior vertebral line."""
    pi, ps = _corner(corners, upper, "posterior-inferior"), _corner(corners, lower, "posterior-superior")
    ai = _corner(corners, upper, "anterior-inferior")
    if pi is None or ps is None or ai is None:
        return None
    along = ps - pi
    along /= np.linalg.norm(along)
    back = pi - ai
    back -= (back @ along) * along
    back /= np.linalg.norm(back)
    centre = (pi + ps) / 2
    samples = [centre + t * along + d * back for t in np.linspace(-6, 6, 13) for d in np.linspace(*CSF_BAND_MM, 13)]
    ijk = np.rint(stack.lps_to_index(np.asarray(samples))).astype(int)
    h, w = stack.voxels.shape[1:]
    ok = (ijk[:, 0] >= 0) & (ijk[:, 0] < w) & (ijk[:, 1] >= 0) & (ijk[:, 1] < h)
    if ok.sum() < 10:
        return None
    values = stack.voxels[k][ijk[ok, 1], ijk[ok, 0]].astype(float)
    # the band also crosses dura and nerve roots: CSF is its bright part
    return values[values >= np.percentile(values, 60)]


def _grade_listhesis(level: Level, corners: Mapping[str, Any], settings: Mapping[str, Any],
                     source: Mapping[str, str], a: Assessment) -> None:
    upper, lower = level.name.split("-")
    p = _corner(corners, lower, "posterior-superior")
    q = _corner(corners, lower, "anterior-superior")
    r = _corner(corners, upper, "posterior-inferior")
    if p is None or q is None or r is None:
        level.listhesis.status = "not_assessed"
        level.listhesis.reason = "vertebral corners not found"
        return
    try:
        res = meyerding_grade(p, q, r, no_listhesis_percent=float(settings["no_listhesis_percent"]), source=source)
    except ValueError as e:
        level.listhesis.status, level.listhesis.reason = "not_assessed", str(e)
        return
    level.listhesis = res.to_finding()


# ---- axial ----------------------------------------------------------------------------------

@dataclass
class _AxialSlice:
    stack: ImageStack
    k: int
    seg: Any = None
    msu: Any = None        # models.crops.WindowKeypoints: the MSU keypoints, or None


def _map_axial(sagittal: ImageStack, axial: Sequence[ImageStack], a: Assessment) -> dict[str, list[tuple[ImageStack, int]]]:
    planes, where = [], []
    for stack in axial:
        for k in range(stack.voxels.shape[0]):
            origin, normal = stack.slice_plane(k)
            planes.append(SlicePlane(tuple(origin), tuple(normal)))
            where.append((stack, k))
    labels = {DISC_LABELS[lv.name]: lv.name for lv in a.levels}
    mapping = map_axial_slices(planes, label_mask=sagittal.labels, index_to_lps=sagittal.numpy_affine(), labels=labels,
                               core_radius_mm=DISC_CORE_RADIUS_MM)
    out: dict[str, list[tuple[ImageStack, int]]] = {}
    for s, loc in zip(mapping.slices, where):
        if s.level is not None:
            out.setdefault(s.level, []).append(loc)
    if mapping.ambiguous:
        a.warnings.append(f"{len(mapping.ambiguous)} axial slice(s) cut two discs and were not used")
    for stack in axial:
        levels = {lv for lv, locs in out.items() for st, _ in locs if st is stack}
        if len(levels) == 1:
            stack.level = next(iter(levels))
    return out


def _run_axial_models(axial: Sequence[ImageStack], slices_by_level: Mapping[str, list[tuple[ImageStack, int]]],
                      models: ModelSet, reporter: StageReporter, result: AssessmentResult) -> dict[str, list[_AxialSlice]]:
    total = sum(len(v) for v in slices_by_level.values()) or 1
    done = 0
    out: dict[str, list[_AxialSlice]] = {}
    for stack in axial:
        if stack.labels is None:
            stack.labels = np.zeros(stack.voxels.shape, np.uint16)
    for level, locs in slices_by_level.items():
        by_stack: dict[int, list[tuple[ImageStack, int]]] = {}
        for stack, k in locs:
            by_stack.setdefault(id(stack), []).append((stack, k))
        for group in by_stack.values():      # the slices of one level and stack run as one batch
            stack, ks = group[0][0], [k for _, k in group]
            reporter.stage("axial models", done / total, f"{level}: {len(ks)} slice(s) of {stack.name}")
            done += len(ks)
            images = [stack.voxels[k] for k in ks]
            affines = [stack.slice_numpy_affine(k) for k in ks]
            # the central slice finds the disc; the window around it gives the masks graded, on every slice
            segs = disc_segmentations(Oriented(models["ax_disc_seg"], _orientation(stack)),
                                      models["ax_disc_window_seg"], images, affines)
            # the MSU keypoints on a window behind each slice's segmented disc
            windows = window_keypoints(models["ax_msu_pose"], [(x, A, seg.mask_of("disc"))
                                                                for x, A, seg in zip(images, affines, segs)], "axial")
            for k, seg, w in zip(ks, segs, windows):
                s = _AxialSlice(stack, k, seg, w)
                _paint_axial_labels(s, level)
                out.setdefault(level, []).append(s)
    return out


def _class_box(seg: Any, name: str) -> tuple[np.ndarray, float] | None:
    """Return (box x1, y1, x2, y2 px around every detection of class ``name``, best score) or None."""
    sel = [i for i, cls in enumerate(seg.classes) if seg.names[cls] == name]
    if not sel:
        return None
    b = np.asarray(seg.boxes, float)[sel]
    return np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()]), float(np.max(seg.scores[sel]))


def _paint_axial_labels(s: _AxialSlice, level: str) -> None:
    seg = s.seg
    if seg.masks is None:
        return
    value = {"disc": DISC_LABELS[level], "herniation": HERNIATION_LABEL, "thecal sac": THECAL_SAC_LABEL}
    for m, cls in zip(seg.masks, seg.classes):
        name = seg.names[cls]
        s.stack.labels[s.k][m & (s.stack.labels[s.k] == 0)] = value.get(name, 0)


def _grade_msu(level: Level, slices: list[_AxialSlice], result: AssessmentResult) -> None:
    if not slices:
        level.ldh = HerniationFinding(status="not_assessed", reason="no axial slice crosses this disc")
        return
    graded = []
    for s in slices:
        if s.msu is None:
            continue
        kp, sc = s.msu.keypoints, s.msu.keypoint_scores
        lps = s.stack.pixel_to_lps(s.k, kp[:, 1], kp[:, 0])
        a_, b_ = lps[0], lps[1]
        left, right = (a_, b_) if a_[0] > b_[0] else (b_, a_)   # LPS +x is the patient's left
        disc_points = hern_points = None
        disc, hern = s.seg.mask_of("disc"), s.seg.mask_of("herniation")
        A = s.stack.slice_numpy_affine(s.k)
        if disc.any():
            disc_points = voxel_centers_lps(disc, A)
        if hern.sum() >= HERNIATION_MIN_PIXELS:
            hern_points = voxel_centers_lps(hern, A)
        # the masks say herniation or bulge, and where its apex is (the window lies behind a segmented disc)
        apex, hern_points, bulge = herniation_from_masks(disc_points, hern_points, lps[2], lps[4])
        origin, normal = s.stack.slice_plane(s.k)
        try:
            res = msu_grade(left, right, lps[2], lps[4], apex, hern_points, bulge=bulge,
                            slice_normal=tuple(normal),
                            source=_source(s.stack, s.k))
        except ValueError as e:
            log.info("%s slice %d: MSU keypoints unusable (%s)", level.name, s.k, e)
            continue
        graded.append((res, s, float(np.mean(sc)), 0 if disc_points is None else len(disc_points)))
    if not graded:
        level.ldh = HerniationFinding(status="not_assessed", reason="MSU keypoints not found on the axial slices")
        return
    best = select_maximal_extrusion([g[0] for g in graded])
    if best.depth_ratio is None:
        # no herniation on any slice: report (and show) the slice through the middle of the disc,
        # where the disc is largest, not merely the first slice of the block
        best = max(graded, key=lambda g: g[3])[0]
    res, s, conf, _ = next(g for g in graded if g[0] is best)
    level.ldh = res.to_finding(confidence=min(max(conf, 0.0), 1.0))
    result.key_slices[s.stack.name] = s.k
    disc_box = _class_box(s.seg, "disc")
    if disc_box is not None:
        (x1, y1, x2, y2), score = disc_box
        a = s.stack.pixel_to_lps(s.k, np.array(y1), np.array(x1))
        b = s.stack.pixel_to_lps(s.k, np.array(y2), np.array(x2))
        result.boxes.append(Box("intervertebral disc", tuple(a), tuple(b), level.model_name, score,
                                s.stack.name, s.k, (float(y1), float(x1), float(y2), float(x2))))
    names = ("left medial facet", "right medial facet", "posterior disc margin", "herniation apex", "posterior canal")
    pts = {f"{level.name} {n}": p for n, p in res.geometry.points.items() if n in names}
    result.keypoints.setdefault("axial", {}).update(pts)
