"""Return the published metric tables of the bundled models on held-out phantom studies, each
with a 95 % bootstrap interval; internal (the training generator's settings) and external
(acquisition shifted: ``phantom_cache.EXTERNAL_OVERRIDES``) test sets are reported apart.

What is measured, per test set:

- sagittal disc segmentation (``sag_disc_unet``): IoU and Dice per disc over the sagittal stack;
- axial disc segmentation (``ax_disc_window_seg`` on the window around ``ax_disc_seg``'s disc, disc
  class, as the pipeline): IoU and Dice per axial slice; ``ax_disc_seg``'s whole-slice IoU as a diagnostic;
- corner keypoints on the mid-sagittal slice: ``sag_disc_corners`` on windows placed from the
  U-Net's discs (what the grades use), and ``sag_vertebra_pose``'s whole-slice corners (a
  diagnostic); MSU keypoints (``ax_msu_pose`` on the window behind the segmented disc, the apex
  from the herniation mask): mean error in mm and in pixels of the slice, and per point in mm;
- herniation (MSU from the predicted keypoints and herniation mask through ``grading.msu_grade``,
  slice of maximal extrusion per level): 4-grade (none/bulge, 1, 2, 3), region (zone x side) and
  category (size x zone) precision / recall / F1 and quadratic-weighted kappa (4-grade);
- Pfirrmann (``sag_pfirrmann_cls`` on crops of the U-Net's disc instances): accuracy, kappa,
  sensitivity / specificity and AUC for degenerated (III-V) vs not;
- Meyerding (``grading.meyerding_grade`` on predicted corners): grade accuracy, slip error in mm.

Usage::

    from SpineAssistLib.training.evaluate import evaluate_models
    report = evaluate_models(internal_seeds=range(3000, 3020), external_seeds=range(3000, 3020))
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from SpineAssistLib.anatomy import CORNERS, DISC_LABELS, MSU_KEYPOINTS, corner_name, disc_space_corners
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.geometry import (
    pixel_spacing,
    reorder_index,
    slice_affine,
    slice_normal,
    world_to_index,
    xy_to_world,
)
from SpineAssistLib.grading import (
    herniation_from_masks,
    meyerding_grade,
    msu_grade,
    select_maximal_extrusion,
    voxel_centers_lps,
)
from SpineAssistLib.models import load_model
from SpineAssistLib.models.crops import disc_segmentations, pfirrmann_crop, window_keypoints
from SpineAssistLib.models.orientation import Oriented, SliceOrientation
from SpineAssistLib.models.registry import models_dir
from SpineAssistLib.models.unet import UNetResult, segment_sagittal_stack

# as the pipeline: a corner scored lower is not used, a smaller herniation mask is noise
from SpineAssistLib.pipeline.assess import (
    AXIAL_MODELS,
    CORNER_MIN_SCORE,
    HERNIATION_MIN_PIXELS,
    SAGITTAL_MODELS,
    ModelSet,
    assess,
)
from SpineAssistLib.pipeline.result import ImageStack
from SpineAssistLib.training import metrics as M
from SpineAssistLib.training.datasets import DISC_NAMES
from SpineAssistLib.training.phantom_cache import EXTERNAL_OVERRIDES, load_phantom
from SpineAssistLib.training.train import _manifest_lock

log = logging.getLogger(__name__)

MATCH_MM = 12.0           # a detected vertebra belongs to the truth vertebra whose corner centroid is this near
TARGETS = {"disc_iou": 0.95, "disc_dice": 0.97, "keypoint_mm": 0.5, "herniation_4grade_f1": 0.92,
           "herniation_4grade_kappa": 0.88, "pfirrmann_accuracy": 0.91, "meyerding_accuracy": 0.95,
           "levels_named_right": 1.0}


class Models:
    """The seven bundled models, loaded once (``load_model`` verifies each SHA-256)."""

    def __init__(self, device: str = "cpu", manifest: Mapping[str, Any] | None = None,
                 loaded: Mapping[str, Any] | None = None):
        """``loaded``: models by name already loaded (a ``pipeline.ModelSet``'s), used instead of loading again."""
        def get(name: str) -> Any:
            return loaded[name] if loaded is not None and name in loaded else load_model(name, device, manifest)

        self.vertebra = get("sag_vertebra_pose")
        self.corners = get("sag_disc_corners")
        self.unet = get("sag_disc_unet")
        self.pfirrmann = get("sag_pfirrmann_cls")
        self.ax_seg = get("ax_disc_seg")
        self.ax_window_seg = get("ax_disc_window_seg")
        self.ax_pose = get("ax_msu_pose")


def _truth_level(study: Mapping[str, Any], level: str) -> dict[str, Any] | None:
    for lv in (study.get("truth") or {}).get("levels", []):
        if lv["level"] == level:
            return lv
    return None


def _value(finding: Mapping[str, Any] | None) -> Any:
    if not finding:
        return None
    return finding.get("model") if finding.get("reader") is None else finding.get("reader")


def evaluate_sagittal(models: Models, st: Mapping[str, Any], acc: dict[str, list]) -> None:
    """Add one study's sagittal results (segmentation, corners, Meyerding, Pfirrmann) to ``acc``."""
    mid = int(st["sag_mid"])
    img, lab = st["sag_images"], st["sag_labels"]
    A = slice_affine(st["sag_affine"], mid, "slice,row,col")
    spacing, col_spacing = pixel_spacing(A, "row,col,slice")
    # --- disc segmentation over the stack, per disc
    o = SliceOrientation.of(A, "sagittal")       # the models see the canonical view (models.orientation)
    # as the pipeline segments a stack (central slices out, cropped around the discs)
    pred_mask = segment_sagittal_stack(Oriented(models.unet, o), np.asarray(img), (spacing, col_spacing))
    from scipy import ndimage

    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True
    comp, n = ndimage.label(pred_mask, structure=in_plane)   # 2D components, slice by slice
    # each predicted component belongs to the truth disc it overlaps most
    sel = (comp > 0) & np.isin(lab, list(DISC_LABELS.values()))
    pair, count = np.unique(comp[sel].astype(np.int64) * 256 + lab[sel], return_counts=True)
    owner: dict[int, int] = {}
    best: dict[int, int] = {}
    for pv, c in zip(pair.tolist(), count.tolist()):
        k, v = divmod(pv, 256)
        if c > best.get(k, 0):
            best[k], owner[k] = c, v
    for value in np.unique(lab):
        if int(value) not in DISC_NAMES:
            continue
        truth = lab == value
        pm = np.isin(comp, [k for k, v in owner.items() if v == value])
        acc["sag_iou"].append(M.iou(pm, truth))
        acc["sag_dice"].append(M.dice(pm, truth))
    # --- vertebra corners on the mid-sagittal slice
    r = Oriented(models.vertebra, o).predict(img[mid])
    truth_px = {}
    for name, p in st["corners"].items():
        rr, cc, kk = world_to_index(p, A)
        if abs(kk) < 0.5 and 0 <= rr < img.shape[1] and 0 <= cc < img.shape[2]:
            truth_px[name] = np.array([cc, rr])
    vertebrae = sorted({n.split(" ")[0] for n in truth_px})
    centroids = {v: np.mean([truth_px[corner_name(v, c)] for c in CORNERS if corner_name(v, c) in truth_px], 0)
                 for v in vertebrae}
    matched: dict[str, np.ndarray] = {}
    for i in np.argsort(-r.scores):
        kp = r.keypoints[i]
        kcen = kp.mean(0) if r.classes[i] == 0 else kp[:2].mean(0)
        best = min(vertebrae, key=lambda v: np.linalg.norm(centroids[v] - kcen), default=None)
        if best is None or best in matched or np.linalg.norm(centroids[best] - kcen) * spacing > MATCH_MM:
            continue
        matched[best] = kp
    corners: dict[str, np.ndarray] = {}      # as the pipeline: whole-slice corners, then the windows'
    for v, kp in matched.items():
        for j, c in enumerate(CORNERS):
            name = corner_name(v, c)
            if not (v == "S1" and c.endswith("inferior")):
                corners[name] = kp[j]
            if name in truth_px and not (v == "S1" and c.endswith("inferior")):
                err_px = float(np.linalg.norm(kp[j] - truth_px[name]))
                acc["corner_whole_px"].append(err_px)
                acc["corner_whole_mm"].append(err_px * spacing)
    acc["vertebra_detected"].append(sum(1 for v in vertebrae if v in matched) / max(1, len(vertebrae)))
    # --- the corners around each disc (sag_disc_corners), on windows placed from the U-Net's discs
    own = _predicted_discs(pred_mask[mid], lab[mid])
    windows = window_keypoints(models.corners, [(img[mid], A, m) for m in own.values()], "sagittal")
    for level, w in zip(own, windows):
        if w is None:
            continue
        for name, p, score in zip(disc_space_corners(level), w.keypoints, w.keypoint_scores):
            if score < CORNER_MIN_SCORE:
                continue
            corners[name] = p
            if name in truth_px:
                err_px = float(np.linalg.norm(p - truth_px[name]))
                acc["corner_px"].append(err_px)
                acc["corner_mm"].append(err_px * spacing)
    # --- Meyerding from the predicted corners
    for lv in st["truth"]["levels"]:
        tv = _value(lv["listhesis"])
        if tv is None:
            continue
        truth_slip = next((m["value"] for m in lv["listhesis"].get("measurements", []) if m["name"] == "slip_mm"), None)
        _, r_name, q_name, p_name = disc_space_corners(lv["level"])
        if not all(n in corners for n in (p_name, q_name, r_name)):
            acc["meyerding_missed"].append(lv["level"])
            continue
        R, P, Q = (xy_to_world(corners[n][None], A)[0] for n in (r_name, p_name, q_name))
        try:
            res = meyerding_grade(P, Q, R)
        except ValueError:
            acc["meyerding_missed"].append(lv["level"])
            continue
        acc["meyerding_true"].append(int(tv["meyerding"]))
        acc["meyerding_pred"].append(int(res.grade))
        if truth_slip is not None:
            acc["slip_err_mm"].append(abs(res.slip_mm - float(truth_slip)))
    # --- Pfirrmann on crops of the U-Net's disc instances on the mid slice
    for value, level in DISC_NAMES.items():
        lvt = _truth_level(st, level)
        truth_mask = lab[mid] == value
        if lvt is None or truth_mask.sum() < 40:
            continue
        tv = _value(lvt["pfirrmann"])
        if tv is None:
            continue
        # the classifier alone, on the crop of the true disc: separates its errors from the U-Net's
        probs_true_mask = models.pfirrmann.predict(pfirrmann_crop(o.image(img[mid]), o.image(truth_mask))).probs
        acc["pfirrmann_true_all"].append(int(tv["grade"]))
        acc["pfirrmann_pred_true_mask"].append(int(np.argmax(probs_true_mask)) + 1)
        m = own.get(level)
        if m is None:
            acc["pfirrmann_missed"].append(level)
            continue
        probs = models.pfirrmann.predict(pfirrmann_crop(o.image(img[mid]), o.image(m))).probs
        acc["pfirrmann_true"].append(int(tv["grade"]))
        acc["pfirrmann_pred"].append(int(np.argmax(probs)) + 1)
        acc["pfirrmann_degenerated_score"].append(float(probs[2:].sum()))


def _predicted_discs(pred: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Return, per truth disc of a sagittal slice (level name), the predicted disc instance that
    overlaps it most (discs the prediction misses are absent)."""
    inst = UNetResult(pred, pred.astype(np.float32)).instances()
    out = {}
    for value, level in DISC_NAMES.items():
        truth = labels == value
        if truth.sum() < 40 or not inst:
            continue
        overlaps = [float((m & truth).sum()) for m in inst]
        if max(overlaps) > 0:
            out[level] = inst[int(np.argmax(overlaps))]
    return out


def evaluate_axial(models: Models, st: Mapping[str, Any], acc: dict[str, list]) -> None:
    """Add one study's axial results (disc segmentation, MSU keypoints, herniation grades) to ``acc``."""
    kp_truth = {a["slice_index"]: a for a in st["axial_keypoints"]}
    per_level: dict[str, list] = {}
    segs = _axial_segmentations(models, st)
    for s in range(len(st["ax_images"])):
        img, lab, A = st["ax_images"][s], st["ax_labels"][s], st["ax_affines"][s]
        spacing = pixel_spacing(A, "row,col,slice")[0]
        whole = Oriented(models.ax_seg, SliceOrientation.of(A, "axial")).predict(img)   # the whole-slice model alone
        seg = segs[s]
        disc_pred = seg.mask_of("disc")
        disc_true = np.isin(lab, list(DISC_LABELS.values()))
        if disc_true.sum() >= 20:
            acc["ax_iou"].append(M.iou(disc_pred, disc_true))
            acc["ax_dice"].append(M.dice(disc_pred, disc_true))
            acc["ax_whole_iou"].append(M.iou(whole.mask_of("disc"), disc_true))
        hern_pred = seg.mask_of("herniation")
        # the MSU keypoints on the window behind the segmented disc, as the pipeline finds them
        w = window_keypoints(models.ax_pose, [(img, A, disc_pred)], "axial")[0]
        if w is None:
            if s in kp_truth:
                acc["msu_slices_without_keypoints"].append(s)
            continue
        kp = w.keypoints
        lps = xy_to_world(kp, A)
        # patient left is +x in LPS: name the facets by it, not by image side
        left, right = (lps[0], lps[1]) if lps[0][0] >= lps[1][0] else (lps[1], lps[0])
        hp = voxel_centers_lps(hern_pred, A) if hern_pred.sum() >= HERNIATION_MIN_PIXELS else None
        dp = voxel_centers_lps(disc_pred, A) if disc_pred.any() else None
        apex, hp, bulge = herniation_from_masks(dp, hp, lps[2], lps[4])     # the masks decide, as in the pipeline
        apex = None if apex is None else np.asarray(apex)
        if s in kp_truth:
            t = kp_truth[s]["keypoints"]
            tl = np.array(t[MSU_KEYPOINTS[0]]), np.array(t[MSU_KEYPOINTS[1]])
            pairs = [(left, tl[0], 0), (right, tl[1], 1), (lps[2], np.array(t[MSU_KEYPOINTS[2]]), 2),
                     (lps[4], np.array(t[MSU_KEYPOINTS[4]]), 4)]
            if apex is not None and t[MSU_KEYPOINTS[3]] is not None:
                pairs.append((apex, np.array(t[MSU_KEYPOINTS[3]]), 3))
            for p, q, j in pairs:
                e = float(np.linalg.norm(p - q))
                acc["msu_kp_mm"].append(e)
                acc["msu_kp_px"].append(e / spacing)
                acc[_point_key(j)].append(e)
        level = st["ax_levels"][s]
        if level is None or not disc_pred.any():
            continue
        normal = np.cross(A[:3, 1], A[:3, 0])
        try:
            res = msu_grade(left, right, lps[2], lps[4], apex, hp, bulge=bulge, slice_normal=normal)
        except ValueError as e:
            log.info("slice %d: MSU not measurable: %s", s, e)
            continue
        per_level.setdefault(level, []).append(res)
    for lv in st["truth"]["levels"]:
        tv = _value(lv["ldh"])
        if tv is None:
            continue
        t_size, t_zone, t_side = int(tv["msu_size"]), tv.get("msu_zone"), tv.get("side")
        results = per_level.get(lv["level"])
        if results:
            best = select_maximal_extrusion(results)
            p_size, p_zone, p_side = best.size, best.zone, best.side
        else:
            p_size, p_zone, p_side = 0, None, None
            acc["herniation_no_reading"].append(lv["level"])
        _add_herniation(acc, "", (t_size, t_zone, t_side), (p_size, p_zone, p_side))


def _add_herniation(acc: dict[str, list], prefix: str, truth: tuple, pred: tuple) -> None:
    """Add one level's (size, zone, side), true and predicted, as 4-grade, region and category."""
    for (size, zone, side), which in ((truth, "true"), (pred, "pred")):
        acc[f"{prefix}hern_{which}"].append(size)
        acc[f"{prefix}region_{which}"].append(_region(size, zone, side))
        acc[f"{prefix}category_{which}"].append("none" if size == 0 else f"{size}-{zone}")


def study_stacks(st: Mapping[str, Any]) -> tuple[Any, list[Any]]:
    """Return a ``phantom_cache`` study as the pipeline's input: the sagittal ``ImageStack`` and one
    axial ``ImageStack`` per block (a run of parallel slices through one truth level), the arrays and
    geometry its DICOM series carries (no headers)."""
    A = reorder_index(st["sag_affine"], "slice,row,col", "col,row,slice")
    sagittal = ImageStack("sagittal", "sagittal", np.asarray(st["sag_images"]), A)
    images, affines, levels = st["ax_images"], np.asarray(st["ax_affines"], float), list(st["ax_levels"])
    blocks: list[list[int]] = []
    for k in range(len(images)):
        prev = blocks[-1][-1] if blocks else None
        if prev is not None and levels[k] == levels[prev] and np.allclose(affines[k][:3, :2], affines[prev][:3, :2]):
            blocks[-1].append(k)
        else:
            blocks.append([k])
    axial = []
    for i, block in enumerate(blocks, start=1):
        first = affines[block[0]]
        step = (affines[block[1]][:3, 3] - first[:3, 3]) if len(block) > 1 else slice_normal(first, "row,col,slice")
        B = reorder_index(first, "row,col,slice", "col,row,slice")
        B[:3, 2] = step
        axial.append(ImageStack("axial", f"axial block {i}", np.stack([images[k] for k in block]), B))
    return sagittal, axial


def evaluate_pipeline(model_set: Any, st: Mapping[str, Any], acc: dict[str, list], stacks: Any = None) -> None:
    """Add what ``pipeline.assess`` returns for one phantom study to ``acc``: the product's figures.

    Each truth level is matched to the reported level of the same name; a level the pipeline did not
    report, or named wrongly (its disc's named Dice below 0.5), gets no grade from it and counts as
    wrong for every grading. ``stacks``: (sagittal, axial) to assess instead of ``study_stacks(st)``."""
    sagittal, axial = stacks or study_stacks(st)
    try:
        result = assess(sagittal, axial, study_instance_uid=f"phantom-{st['seed']}", models=model_set)
        levels = {lv.name: lv for lv in result.assessment.levels}
        pred_labels = result.sagittal.labels
    except SpineAssistError as e:
        log.info("phantom %s: the pipeline stopped: %s", st["seed"], e)
        acc["pipe_failed"].append(int(st["seed"]))
        levels, pred_labels = {}, None
    lab = np.asarray(st["sag_labels"])
    for lv in st["truth"]["levels"]:
        name = lv["level"]
        truth = lab == DISC_LABELS[name]
        named_dice = M.dice(pred_labels == DISC_LABELS[name], truth) if pred_labels is not None and truth.any() else 0.0
        acc["pipe_disc_dice"].append(named_dice)
        named = named_dice >= 0.5
        acc["pipe_named"].append(float(named))
        got = levels.get(name) if named else None
        tv = _value(lv["pfirrmann"])
        if tv is not None:
            pv = got.pfirrmann.value if got is not None and got.pfirrmann.status == "assessed" else None
            acc["pipe_pfirrmann_true"].append(int(tv["grade"]))
            acc["pipe_pfirrmann_pred"].append(0 if pv is None else int(pv.grade))
        tv = _value(lv["listhesis"])
        if tv is not None:
            pv = got.listhesis.value if got is not None and got.listhesis.status == "assessed" else None
            acc["pipe_meyerding_true"].append(int(tv["meyerding"]))
            acc["pipe_meyerding_pred"].append(-1 if pv is None else int(pv.grade))
        tv = _value(lv["ldh"])
        graded = got is not None and got.ldh.status == "assessed"
        if tv is None:
            if graded:     # the truth has no axial slice through this disc: nothing should be graded
                acc["pipe_msu_without_axial"].append(f"{st['seed']} {name}")
            continue
        pv = got.ldh.value if graded else None
        t_size, t_zone, t_side = int(tv["msu_size"]), tv.get("msu_zone"), tv.get("side")
        p_size, p_zone, p_side = (0, None, None) if pv is None else (int(pv.size), pv.zone, pv.side)
        if pv is None:
            acc["pipe_herniation_not_graded"].append(f"{st['seed']} {name}")
        _add_herniation(acc, "pipe_", (t_size, t_zone, t_side), (p_size, p_zone, p_side))


def _axial_segmentations(models: Models, st: Mapping[str, Any]) -> list[Any]:
    """Return each axial slice's segmentation as the pipeline makes it (``crops.disc_segmentations``):
    the slices of one disc (a run of slices of one block through the same truth level; the pipeline
    groups them by the level the sagittal mapping gives, which its own tests check) share the window
    the whole-slice model places on their central slice; a slice through no disc is segmented alone."""
    images, affines, levels = st["ax_images"], st["ax_affines"], st["ax_levels"]
    groups: list[list[int]] = []
    for s in range(len(images)):
        prev = groups[-1][-1] if groups else None
        if (prev is not None and levels[s] is not None and levels[s] == levels[prev]
                and np.shape(images[s]) == np.shape(images[prev]) and np.allclose(affines[s][:3, :2], affines[prev][:3, :2])):
            groups[-1].append(s)
        else:
            groups.append([s])
    out: list[Any] = [None] * len(images)
    for group in groups:
        o = SliceOrientation.of(affines[group[0]], "axial")
        for s, seg in zip(group, disc_segmentations(Oriented(models.ax_seg, o), models.ax_window_seg,
                                                    [images[s] for s in group], [affines[s] for s in group])):
            out[s] = seg
    return out


def _point_key(j: int) -> str:
    """The ``msu_keypoints`` key of one MSU point's mean error (the facets share one)."""
    return "facets_error_mm" if j < 2 else MSU_KEYPOINTS[j].replace(" ", "_") + "_error_mm"


def _region(size: int, zone: str | None, side: str | None) -> str:
    if size == 0:
        return "none"
    return f"{zone} {side or 'central'}"


def summarise(acc: Mapping[str, list], n_boot: int = M.N_BOOTSTRAP) -> dict[str, Any]:
    """Return the metric table (value, 95 % CI, n) of one test set's accumulated results."""
    q = lambda t, p: M.cohen_kappa(t, p, "quadratic", labels=[0, 1, 2, 3])  # noqa: E731
    qp = lambda t, p: M.cohen_kappa(t, p, "quadratic", labels=[1, 2, 3, 4, 5])  # noqa: E731
    qm = lambda t, p: M.cohen_kappa(t, p, "quadratic", labels=[0, 1, 2, 3, 4, 5])  # noqa: E731
    deg_t = [g >= 3 for g in acc["pfirrmann_true"]]
    deg_p = [g >= 3 for g in acc["pfirrmann_pred"]]
    out = {
        "disc_segmentation_sagittal": {"iou": M.mean_ci(acc["sag_iou"], n_boot), "dice": M.mean_ci(acc["sag_dice"], n_boot)},
        "disc_segmentation_axial": {"iou": M.mean_ci(acc["ax_iou"], n_boot), "dice": M.mean_ci(acc["ax_dice"], n_boot),
                                    "whole_slice_iou": M.mean_ci(acc["ax_whole_iou"], n_boot)},
        "corner_keypoints": {"mean_error_mm": M.mean_ci(acc["corner_mm"], n_boot),
                             "mean_error_px": M.mean_ci(acc["corner_px"], n_boot),
                             "whole_slice_mean_error_mm": M.mean_ci(acc["corner_whole_mm"], n_boot),
                             "vertebrae_found": M.mean_ci(acc["vertebra_detected"], n_boot)},
        "msu_keypoints": {"mean_error_mm": M.mean_ci(acc["msu_kp_mm"], n_boot),
                          "mean_error_px": M.mean_ci(acc["msu_kp_px"], n_boot),
                          "slices_without_keypoints": len(acc["msu_slices_without_keypoints"])}
        | {_point_key(j): M.mean_ci(acc[_point_key(j)], n_boot) for j in range(1, 5)},
        "herniation_4grade": _prf(acc["hern_true"], acc["hern_pred"], n_boot) | {
            "kappa_quadratic": M.with_ci(q, acc["hern_true"], acc["hern_pred"], n_boot=n_boot),
            "accuracy": M.with_ci(M.accuracy, acc["hern_true"], acc["hern_pred"], n_boot=n_boot),
            # rows: true MSU size 0-3 (0: none), columns: predicted
            "confusion": _confusion(acc["hern_true"], acc["hern_pred"], 0, 3)},
        "herniation_region": _prf(acc["region_true"], acc["region_pred"], n_boot),
        "herniation_category": _prf(acc["category_true"], acc["category_pred"], n_boot),
        "pfirrmann": {
            "accuracy": M.with_ci(M.accuracy, acc["pfirrmann_true"], acc["pfirrmann_pred"], n_boot=n_boot),
            "kappa_quadratic": M.with_ci(qp, acc["pfirrmann_true"], acc["pfirrmann_pred"], n_boot=n_boot),
            "sensitivity_III_V": M.with_ci(lambda t, p: M.sensitivity_specificity(t, p)[0], deg_t, deg_p, n_boot=n_boot),
            "specificity_III_V": M.with_ci(lambda t, p: M.sensitivity_specificity(t, p)[1], deg_t, deg_p, n_boot=n_boot),
            "auc_III_V": M.with_ci(M.auc, deg_t, acc["pfirrmann_degenerated_score"], n_boot=n_boot),
            "accuracy_on_true_masks": M.with_ci(M.accuracy, acc["pfirrmann_true_all"], acc["pfirrmann_pred_true_mask"],
                                                n_boot=n_boot),
            # rows: true grade I-V, columns: predicted; and the mean signed error (a systematic over- or under-grading)
            "confusion_on_true_masks": _confusion(acc["pfirrmann_true_all"], acc["pfirrmann_pred_true_mask"], 1, 5),
            "mean_grade_error_on_true_masks": M.mean_ci([p - t for t, p in zip(acc["pfirrmann_true_all"],
                                                                               acc["pfirrmann_pred_true_mask"])], n_boot),
            "discs_not_segmented": len(acc["pfirrmann_missed"])},
        "pipeline": _pipeline_summary(acc, n_boot),
        "meyerding": {
            "grade_accuracy": M.with_ci(M.accuracy, acc["meyerding_true"], acc["meyerding_pred"], n_boot=n_boot),
            "kappa_quadratic": M.with_ci(qm, acc["meyerding_true"], acc["meyerding_pred"], n_boot=n_boot),
            "slip_error_mm": M.mean_ci(acc["slip_err_mm"], n_boot),
            "levels_without_corners": len(acc["meyerding_missed"])},
    }
    return out


def _pipeline_summary(acc: Mapping[str, list], n_boot: int) -> dict[str, Any]:
    """Return the figures of what ``pipeline.assess`` returned (``evaluate_pipeline``); a level not
    reported or misnamed counts as wrong (Pfirrmann 0, Meyerding -1, herniation none)."""
    q = lambda t, p: M.cohen_kappa(t, p, "quadratic", labels=[0, 1, 2, 3])  # noqa: E731
    qp = lambda t, p: M.cohen_kappa(t, p, "quadratic", labels=[0, 1, 2, 3, 4, 5])  # noqa: E731
    qm = lambda t, p: M.cohen_kappa(t, p, "quadratic", labels=[-1, 0, 1, 2, 3, 4, 5])  # noqa: E731
    pt, pp = acc["pipe_pfirrmann_true"], acc["pipe_pfirrmann_pred"]
    return {
        "levels_named_right": M.mean_ci(acc["pipe_named"], n_boot),
        "disc_dice_sagittal_named": M.mean_ci(acc["pipe_disc_dice"], n_boot),
        "studies_stopped": len(acc["pipe_failed"]),
        "pfirrmann_accuracy": M.with_ci(M.accuracy, pt, pp, n_boot=n_boot),
        "pfirrmann_within_one": M.with_ci(lambda t, p: float(np.mean([abs(a - b) <= 1 and b > 0 for a, b in zip(t, p)])),
                                          pt, pp, n_boot=n_boot),
        "pfirrmann_kappa_quadratic": M.with_ci(qp, pt, pp, n_boot=n_boot),
        "pfirrmann_confusion": _confusion(pt, pp, 0, 5),
        "meyerding_accuracy": M.with_ci(M.accuracy, acc["pipe_meyerding_true"], acc["pipe_meyerding_pred"], n_boot=n_boot),
        "meyerding_kappa_quadratic": M.with_ci(qm, acc["pipe_meyerding_true"], acc["pipe_meyerding_pred"], n_boot=n_boot),
        "herniation_4grade": _prf(acc["pipe_hern_true"], acc["pipe_hern_pred"], n_boot) | {
            "kappa_quadratic": M.with_ci(q, acc["pipe_hern_true"], acc["pipe_hern_pred"], n_boot=n_boot),
            "confusion": _confusion(acc["pipe_hern_true"], acc["pipe_hern_pred"], 0, 3)},
        "herniation_region": _prf(acc["pipe_region_true"], acc["pipe_region_pred"], n_boot),
        "herniation_category": _prf(acc["pipe_category_true"], acc["pipe_category_pred"], n_boot),
        "herniation_not_graded": list(acc["pipe_herniation_not_graded"]),
        "msu_graded_without_axial_slice": list(acc["pipe_msu_without_axial"]),
    }


def _confusion(t: Sequence[int], p: Sequence[int], lo: int, hi: int) -> list[list[int]]:
    out = [[0] * (hi - lo + 1) for _ in range(hi - lo + 1)]
    for a, b in zip(t, p):
        out[int(a) - lo][int(b) - lo] += 1
    return out


def _prf(t: Sequence[Any], p: Sequence[Any], n_boot: int) -> dict[str, Any]:
    return {
        "precision_macro": M.with_ci(lambda a, b: M.precision_recall_f1(a, b)["macro"]["precision"], t, p, n_boot=n_boot),
        "recall_macro": M.with_ci(lambda a, b: M.precision_recall_f1(a, b)["macro"]["recall"], t, p, n_boot=n_boot),
        "f1_macro": M.with_ci(M.macro_f1, t, p, n_boot=n_boot),
        "per_class": M.precision_recall_f1(t, p)["per_class"],
    }


def _new_acc() -> dict[str, list]:
    from collections import defaultdict

    return defaultdict(list)


def evaluate_set(models: Models, studies: Iterable[Mapping[str, Any]], n_boot: int = M.N_BOOTSTRAP,
                 model_set: Any = None) -> dict[str, Any]:
    """Return the metric table of one test set (an iterable of ``phantom_cache`` studies with truth):
    each model on its own, and (given ``model_set``, a ``pipeline.ModelSet``) what the pipeline returns."""
    acc = _new_acc()
    seeds = []
    for st in studies:
        if st.get("truth") is None:
            raise ValueError(f"phantom {st['seed']} has no truth Assessment; evaluate needs whole studies "
                             "(phantom_cache.load_phantom without partial=True)")
        seeds.append(int(st["seed"]))
        evaluate_sagittal(models, st, acc)
        evaluate_axial(models, st, acc)
        if model_set is not None:
            evaluate_pipeline(model_set, st, acc)
        log.info("evaluated phantom %d", st["seed"])
    table = summarise(acc, n_boot)
    table["studies"] = {"count": len(seeds), "seeds": seeds}
    return table


def headline(table: Mapping[str, Any]) -> dict[str, float | None]:
    """Return the target figures of one test set (the values compared with ``TARGETS``)."""
    return {
        "disc_iou": table["disc_segmentation_axial"]["iou"]["value"],
        "disc_dice": table["disc_segmentation_axial"]["dice"]["value"],
        "disc_iou_sagittal": table["disc_segmentation_sagittal"]["iou"]["value"],
        "disc_dice_sagittal": table["disc_segmentation_sagittal"]["dice"]["value"],
        "keypoint_mm": table["msu_keypoints"]["mean_error_mm"]["value"],
        "corner_keypoint_mm": table["corner_keypoints"]["mean_error_mm"]["value"],
        # the grades as the product gives them: what pipeline.assess returned
        "herniation_4grade_f1": table["pipeline"]["herniation_4grade"]["f1_macro"]["value"],
        "herniation_4grade_kappa": table["pipeline"]["herniation_4grade"]["kappa_quadratic"]["value"],
        "pfirrmann_accuracy": table["pipeline"]["pfirrmann_accuracy"]["value"],
        "meyerding_accuracy": table["pipeline"]["meyerding_accuracy"]["value"],
        "levels_named_right": table["pipeline"]["levels_named_right"]["value"],
    }


def evaluate_models(internal_seeds: Sequence[int], external_seeds: Sequence[int], cache_dir: str | Path | None = None,
                    device: str = "cpu", n_boot: int = M.N_BOOTSTRAP, manifest: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """Return ``{"internal": table, "external": table, "targets": TARGETS}`` on phantom test studies."""
    model_set = ModelSet.load(SAGITTAL_MODELS + AXIAL_MODELS, device=device, manifest=manifest)
    models = Models(device, manifest, loaded=model_set.models)
    out: dict[str, Any] = {"targets": TARGETS}
    for name, seeds, overrides in (("internal", internal_seeds, None), ("external", external_seeds, EXTERNAL_OVERRIDES)):
        studies = (load_phantom(s, overrides, cache_dir) for s in seeds)
        out[name] = evaluate_set(models, studies, n_boot, model_set)
        out[name]["headline"] = headline(out[name])
    out["external_overrides"] = json.loads(json.dumps(EXTERNAL_OVERRIDES, default=list))
    return out


def _fmt(m: Mapping[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    lo, hi = m["ci95"]
    ci = f" ({lo:.3f}-{hi:.3f})" if lo is not None and hi is not None else ""
    return f"{m['value']:.3f}{ci}"


ROWS: tuple[tuple[str, str, str], ...] = (
    ("Pipeline (what `assess` returns): truth levels found and named right", "pipeline", "levels_named_right"),
    ("Pipeline: sagittal disc Dice, voxels given the disc's own name", "pipeline", "disc_dice_sagittal_named"),
    ("Pipeline: herniation 4-grade F1 (macro)", "pipeline", "herniation_4grade.f1_macro"),
    ("Pipeline: herniation 4-grade kappa (quadratic)", "pipeline", "herniation_4grade.kappa_quadratic"),
    ("Pipeline: herniation region (zone x side) F1", "pipeline", "herniation_region.f1_macro"),
    ("Pipeline: herniation category (size x zone) F1", "pipeline", "herniation_category.f1_macro"),
    ("Pipeline: Pfirrmann accuracy", "pipeline", "pfirrmann_accuracy"),
    ("Pipeline: Pfirrmann within one grade", "pipeline", "pfirrmann_within_one"),
    ("Pipeline: Pfirrmann kappa (quadratic)", "pipeline", "pfirrmann_kappa_quadratic"),
    ("Pipeline: Meyerding grade accuracy", "pipeline", "meyerding_accuracy"),
    ("Pipeline: Meyerding kappa (quadratic)", "pipeline", "meyerding_kappa_quadratic"),
    ("Disc segmentation, axial (ax_disc_window_seg, window): IoU", "disc_segmentation_axial", "iou"),
    ("Disc segmentation, axial (ax_disc_window_seg, window): Dice", "disc_segmentation_axial", "dice"),
    ("Disc segmentation, axial (ax_disc_seg, whole slice; diagnostic): IoU", "disc_segmentation_axial",
     "whole_slice_iou"),
    ("Disc segmentation, sagittal (sag_disc_unet): IoU", "disc_segmentation_sagittal", "iou"),
    ("Disc segmentation, sagittal (sag_disc_unet): Dice", "disc_segmentation_sagittal", "dice"),
    ("MSU keypoints (ax_msu_pose): mean error mm", "msu_keypoints", "mean_error_mm"),
    ("MSU keypoints (ax_msu_pose): mean error px of the slice", "msu_keypoints", "mean_error_px"),
    ("MSU keypoints: medial facets, mean error mm (diagnostic)", "msu_keypoints", "facets_error_mm"),
    ("MSU keypoints: posterior disc margin, mean error mm (diagnostic)", "msu_keypoints",
     "posterior_disc_margin_error_mm"),
    ("MSU keypoints: herniation apex (deepest point of the herniation mask), mean error mm (diagnostic)",
     "msu_keypoints", "herniation_apex_error_mm"),
    ("MSU keypoints: posterior canal, mean error mm (diagnostic)", "msu_keypoints", "posterior_canal_error_mm"),
    ("Corner keypoints (sag_disc_corners, window): mean error mm", "corner_keypoints", "mean_error_mm"),
    ("Corner keypoints (sag_disc_corners, window): mean error px of the slice", "corner_keypoints", "mean_error_px"),
    ("Corner keypoints (sag_vertebra_pose, whole slice; diagnostic): mean error mm", "corner_keypoints",
     "whole_slice_mean_error_mm"),
    ("Vertebrae found (sag_vertebra_pose)", "corner_keypoints", "vertebrae_found"),
    ("Herniation 4-grade: precision (macro)", "herniation_4grade", "precision_macro"),
    ("Herniation 4-grade: recall (macro)", "herniation_4grade", "recall_macro"),
    ("Herniation 4-grade: F1 (macro)", "herniation_4grade", "f1_macro"),
    ("Herniation 4-grade: kappa (quadratic)", "herniation_4grade", "kappa_quadratic"),
    ("Herniation region (zone x side): precision", "herniation_region", "precision_macro"),
    ("Herniation region (zone x side): recall", "herniation_region", "recall_macro"),
    ("Herniation region (zone x side): F1", "herniation_region", "f1_macro"),
    ("Herniation category (size x zone): precision", "herniation_category", "precision_macro"),
    ("Herniation category (size x zone): recall", "herniation_category", "recall_macro"),
    ("Herniation category (size x zone): F1", "herniation_category", "f1_macro"),
    ("Pfirrmann: accuracy", "pfirrmann", "accuracy"),
    ("Pfirrmann: kappa (quadratic)", "pfirrmann", "kappa_quadratic"),
    ("Pfirrmann III-V vs I-II: sensitivity", "pfirrmann", "sensitivity_III_V"),
    ("Pfirrmann III-V vs I-II: specificity", "pfirrmann", "specificity_III_V"),
    ("Pfirrmann III-V vs I-II: AUC", "pfirrmann", "auc_III_V"),
    ("Pfirrmann: accuracy on crops of the true disc masks (classifier alone, diagnostic)", "pfirrmann",
     "accuracy_on_true_masks"),
    ("Pfirrmann: mean grade error (predicted - true) on those crops (diagnostic)", "pfirrmann",
     "mean_grade_error_on_true_masks"),
    ("Meyerding: grade accuracy", "meyerding", "grade_accuracy"),
    ("Meyerding: kappa (quadratic)", "meyerding", "kappa_quadratic"),
    ("Meyerding: slip error mm", "meyerding", "slip_error_mm"),
)


def _lookup(table: Mapping[str, Any], key: str) -> Any:
    """Return ``table[a][b]`` for the dotted key ``"a.b"`` (None where absent)."""
    for part in key.split("."):
        table = table.get(part) if isinstance(table, Mapping) else None
    return table


def markdown_tables(report: Mapping[str, Any]) -> str:
    """Return the metric table (internal and external columns, value and 95 % CI) as Markdown."""
    ni = report["internal"]["studies"]["count"]
    ne = report["external"]["studies"]["count"]
    lines = [f"| metric | internal ({ni} studies) | external ({ne} studies) | n (int/ext) |", "|---|---|---|---|"]
    for label, group, key in ROWS:
        a, b = (_lookup(report[name][group], key) for name in ("internal", "external"))
        n = f"{(a or {}).get('n', '')}/{(b or {}).get('n', '')}"
        lines.append(f"| {label} | {_fmt(a)} | {_fmt(b)} | {n} |")
    lines += ["", "| target | goal | internal | external |", "|---|---|---|---|"]
    for key, goal in TARGETS.items():
        hi, he = report["internal"]["headline"].get(key), report["external"]["headline"].get(key)
        op = "<=" if key.endswith("_mm") else ">="
        f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {key} | {op} {goal} | {f(hi)} | {f(he)} |")
    return "\n".join(lines) + "\n"


def store_in_manifest(report: Mapping[str, Any], manifest_path: str | Path | None = None) -> None:
    """Write each model's headline metrics (internal and external, with CIs) into the manifest."""
    path = Path(manifest_path) if manifest_path else models_dir() / "manifest.json"
    groups = {
        "sag_vertebra_pose": ("corner_keypoints",),
        "sag_disc_corners": ("corner_keypoints", "meyerding"),
        "sag_disc_unet": ("disc_segmentation_sagittal",),
        "sag_pfirrmann_cls": ("pfirrmann",),
        "ax_disc_seg": ("disc_segmentation_axial",),
        "ax_disc_window_seg": ("disc_segmentation_axial", "herniation_4grade", "herniation_region", "herniation_category"),
        "ax_msu_pose": ("msu_keypoints", "herniation_4grade", "herniation_region", "herniation_category"),
    }
    with _manifest_lock(path):
        data = json.loads(path.read_text(encoding="utf-8"))
        for m in data["models"]:
            g = groups.get(m["name"], ())
            m["metrics"] = {
                "sha256": m["sha256"], "source": "spineassist evaluate (held-out phantom studies)",
                **{name: {grp: {k: v for k, v in report[name][grp].items() if k != "per_class"} for grp in g}
                   | {"pipeline": report[name]["headline"]}
                   | {"studies": report[name]["studies"]} for name in ("internal", "external")}}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
