"""The shipped models on a phantom slice (fixture ``phantom_slices``, models/conftest.py): each loads and
predicts, and the window models put their points and masks where the phantom's truth is."""

from __future__ import annotations

import numpy as np
import pytest

from SpineAssistLib.anatomy import DISC_LABELS


def test_shipped_models_predict_on_a_phantom(phantom_slices):
    from SpineAssistLib.models import load_model

    sag = phantom_slices["sag_images"][0]
    ax = phantom_slices["ax_images"][len(phantom_slices["ax_images"]) // 2]
    pose = load_model("sag_vertebra_pose", device="cpu").predict(sag)
    assert pose.keypoints.shape == (len(pose), 4, 2) and pose.boxes.shape == (len(pose), 4)
    assert len(pose) >= 3 and set(pose.classes) <= {0, 1}
    unet = load_model("sag_disc_unet", device="cpu").predict(sag)
    assert unet.mask.shape == sag.shape and unet.mask.dtype == bool and unet.mask.any()
    cls = load_model("sag_pfirrmann_cls", device="cpu").predict(sag[100:164, 100:164])
    assert cls.probs.shape == (5,) and cls.probs.sum() == pytest.approx(1.0, abs=1e-3)
    seg = load_model("ax_disc_seg", device="cpu").predict(ax)
    assert seg.masks is not None and seg.masks.shape[1:] == ax.shape and len(seg) >= 1


def test_shipped_window_models_find_their_points_near_the_truth(phantom_slices):
    """The corner and MSU window models, each on windows placed from the phantom's own disc labels,
    put their points within a couple of millimetres of the truth (median; no point wildly off): the
    window geometry, the canonical view and the mapping back to the slice all hold (a slip anywhere
    puts every point tens of millimetres off)."""
    from SpineAssistLib.anatomy import MSU_KEYPOINTS, disc_space_corners
    from SpineAssistLib.models import load_model
    from SpineAssistLib.models.crops import window_keypoints
    from SpineAssistLib.training.datasets import DISC_NAMES
    from SpineAssistLib.geometry import slice_affine, world_to_index, xy_to_world

    st = phantom_slices
    k = int(st["sag_mid"])
    A = slice_affine(st["sag_affine"], k, "slice,row,col")
    discs = {lv: st["sag_labels"][k] == v for v, lv in DISC_NAMES.items() if (st["sag_labels"][k] == v).sum() >= 40}
    assert len(discs) >= 3
    found = window_keypoints(load_model("sag_disc_corners", device="cpu"),
                             [(st["sag_images"][k], A, m) for m in discs.values()], "sagittal")
    errors = []
    for level, w in zip(discs, found):
        assert w is not None and w.keypoints.shape == (4, 2) and w.keypoint_scores.shape == (4,)
        for name, p in zip(disc_space_corners(level), xy_to_world(w.keypoints, A)):
            if name in st["corners"] and abs(world_to_index(st["corners"][name], A)[2]) < 0.5:
                errors.append(float(np.linalg.norm(p - np.array(st["corners"][name]))))
    assert len(errors) >= 6 and np.median(errors) < 2.0 and max(errors) < 15.0, errors
    pose = load_model("ax_msu_pose", device="cpu")
    with_keypoints = {a["slice_index"]: a["keypoints"] for a in st["axial_keypoints"]}
    items = [(st["ax_images"][i], st["ax_affines"][i], np.isin(st["ax_labels"][i], list(DISC_LABELS.values())))
             for i in with_keypoints]
    msu_errors = []
    for i, w in zip(with_keypoints, window_keypoints(pose, items, "axial")):
        assert w is not None and w.keypoints.shape == (5, 2)
        lps = xy_to_world(w.keypoints, st["ax_affines"][i])
        truth = with_keypoints[i]
        left, right = (lps[0], lps[1]) if lps[0][0] > lps[1][0] else (lps[1], lps[0])   # LPS +x: patient's left
        for p, name in ((left, MSU_KEYPOINTS[0]), (right, MSU_KEYPOINTS[1]), (lps[2], MSU_KEYPOINTS[2])):
            msu_errors.append(float(np.linalg.norm(p - np.array(truth[name]))))
    assert len(msu_errors) >= 6 and np.median(msu_errors) < 2.0 and max(msu_errors) < 15.0, msu_errors


def test_shipped_window_segmentation_outlines_the_disc(phantom_slices):
    """ax_disc_window_seg, on windows placed from the whole-slice model's discs (as the pipeline),
    gives disc masks in the slice's pixels that overlap the truth well (IoU) and better than or
    as well as the whole slice's: a slip in the window's placement or the way back to the slice
    would put the mask off the disc."""
    from SpineAssistLib.training import metrics as M
    from SpineAssistLib.models import load_model
    from SpineAssistLib.models.crops import refined_segmentations
    from SpineAssistLib.models.orientation import Oriented, SliceOrientation

    st = phantom_slices
    whole_model, window_model = load_model("ax_disc_seg", device="cpu"), load_model("ax_disc_window_seg", device="cpu")
    idx = [i for i, lab in enumerate(st["ax_labels"]) if np.isin(lab, list(DISC_LABELS.values())).sum() >= 200]
    assert len(idx) >= 3
    images, affines = [st["ax_images"][i] for i in idx], [st["ax_affines"][i] for i in idx]
    whole = [Oriented(whole_model, SliceOrientation.of(A, "axial")).predict(x) for x, A in zip(images, affines)]
    refined = refined_segmentations(window_model, images, affines, whole)
    ious_whole, ious_window = [], []
    for i, w, r in zip(idx, whole, refined):
        truth = np.isin(st["ax_labels"][i], list(DISC_LABELS.values()))
        assert r.mask_of("disc").shape == truth.shape and r is not w   # the window answered
        ious_whole.append(M.iou(w.mask_of("disc"), truth))
        ious_window.append(M.iou(r.mask_of("disc"), truth))
    assert np.mean(ious_window) > 0.8 and np.mean(ious_window) >= np.mean(ious_whole) - 0.02, (ious_window, ious_whole)


@pytest.mark.gpu
def test_models_run_on_the_gpu(phantom_slices):
    from SpineAssistLib.models import load_model

    r = load_model("sag_vertebra_pose", device="cuda").predict(phantom_slices["sag_images"][0])
    assert r.keypoints.shape[1:] == (4, 2)
