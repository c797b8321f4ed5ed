"""Metrics with hand-checkable numbers: IoU / Dice of squares, kappa, F1, AUC, bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pytest

from SpineAssistLib.training import metrics as M


def test_iou_and_dice_of_two_overlapping_squares():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:4] = True      # 16 px
    b[2:6, 0:4] = True      # 16 px, 8 shared
    assert M.iou(a, b) == pytest.approx(8 / 24)
    assert M.dice(a, b) == pytest.approx(16 / 32)
    assert M.iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


def test_quadratic_kappa_hand_example():
    # one of four cases off by one grade on a 0-3 scale
    truth, pred = [0, 1, 2, 3], [0, 1, 2, 2]
    # observed weighted disagreement: (1/3)^2 / 4; expected from the marginals
    k = M.cohen_kappa(truth, pred, "quadratic", labels=[0, 1, 2, 3])
    O = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]], float)
    E = np.outer(O.sum(1), O.sum(0)) / 4
    W = (np.subtract.outer(np.arange(4), np.arange(4)) / 3) ** 2
    assert k == pytest.approx(1 - (W * O).sum() / (W * E).sum())
    assert M.cohen_kappa([1, 2, 3], [1, 2, 3], "quadratic") == 1.0
    assert M.cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)


def test_precision_recall_f1_per_class_and_macro():
    r = M.precision_recall_f1(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert r["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert r["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert r["macro"]["f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_auc_sensitivity_specificity():
    assert M.auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert M.auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert M.auc([0, 1], [0.5, 0.5]) == 0.5
    assert M.sensitivity_specificity([1, 1, 0, 0], [1, 0, 0, 0]) == (0.5, 1.0)


def test_bootstrap_interval_brackets_the_value_and_is_reproducible():
    values = list(np.linspace(0, 1, 41))
    r = M.mean_ci(values, n_boot=300, seed=3)
    assert r["value"] == pytest.approx(0.5)
    lo, hi = r["ci95"]
    assert lo < 0.5 < hi and hi - lo < 0.25
    assert M.mean_ci(values, n_boot=300, seed=3) == r
    assert M.mean_ci([], n_boot=10) == {"value": None, "ci95": [None, None], "n": 0}


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        M.accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="weights must be"):
        M.cohen_kappa([1], [1], weights="cubic")


def test_pfirrmann_is_also_scored_on_the_true_disc_masks():
    """The diagnostic row: the classifier alone (crops of the true masks) beside the pipeline's
    accuracy (crops of the U-Net's masks), so a low figure can be blamed on the right model."""
    from SpineAssistLib.training.evaluate import _new_acc, summarise

    acc = _new_acc()
    acc["pfirrmann_true_all"] += [1, 2, 3, 4]
    acc["pfirrmann_pred_true_mask"] += [1, 2, 3, 3]
    acc["pfirrmann_true"] += [1, 2, 3]
    acc["pfirrmann_pred"] += [1, 1, 1]
    acc["pfirrmann_degenerated_score"] += [0.1, 0.2, 0.3]
    table = summarise(acc, n_boot=50)["pfirrmann"]
    assert table["accuracy_on_true_masks"]["value"] == 0.75 and table["accuracy_on_true_masks"]["n"] == 4
    assert abs(table["accuracy"]["value"] - 1 / 3) < 1e-3
    assert table["confusion_on_true_masks"][3] == [0, 0, 1, 0, 0]          # true IV called III
    assert sum(map(sum, table["confusion_on_true_masks"])) == 4
    assert table["mean_grade_error_on_true_masks"]["value"] == -0.25


def test_msu_keypoint_errors_are_also_summarised_per_point():
    """The per-point rows say which MSU point raises the mean (both facets in one row)."""
    from SpineAssistLib.training.evaluate import ROWS, _new_acc, _point_key, summarise

    acc = _new_acc()
    for j, errors in enumerate(([0.2, 0.4], [0.6], [1.0], [3.0], [0.5, 0.7])):
        acc[_point_key(j)] += errors
        acc["msu_kp_mm"] += errors
    table = summarise(acc, n_boot=20)["msu_keypoints"]
    assert table["facets_error_mm"]["n"] == 3 and abs(table["facets_error_mm"]["value"] - 0.4) < 1e-9
    assert table["posterior_disc_margin_error_mm"]["value"] == 1.0
    assert table["herniation_apex_error_mm"]["value"] == 3.0
    assert abs(table["posterior_canal_error_mm"]["value"] - 0.6) < 1e-9
    assert table["mean_error_mm"]["n"] == 7
    shown = {key for _, group, key in ROWS if group == "msu_keypoints"}
    assert {"facets_error_mm", "posterior_disc_margin_error_mm", "herniation_apex_error_mm",
            "posterior_canal_error_mm"} <= shown
