"""The canal evaluation's summary (training.canal_eval) on records whose numbers are checked by hand."""

from __future__ import annotations

import pytest

from SpineAssistLib.training import metrics as M
from SpineAssistLib.training.canal_eval import markdown_table, summarise_canal


def _level(name, manual, model):
    from SpineAssistLib.grading.canal import stenosis_grade

    return {"level": name, "ap_manual_mm": manual, "ap_model_mm": model,
            "grade_manual": None if manual is None else stenosis_grade(manual),
            "grade_model": None if model is None else stenosis_grade(model), "reason_manual": "", "reason_model": ""}


def test_errors_bias_and_grade_agreement_of_two_patients():
    """Patient A: 13 vs 14 mm (+1) and 11 vs 9 mm (-2); patient B: 8 vs 8 mm (0) and a level the model
    missed. Errors 1, 2, 0: mean 1.0 mm; bias (1 - 2 + 0) / 3 = -0.333 mm; grades none/none,
    relative/absolute, absolute/absolute: 2 of 3 agree."""
    cases = [{"patient": "A", "dice": 0.8, "dice_mid": 0.9, "levels": [_level("L3-L4", 13.0, 14.0),
                                                                      _level("L4-L5", 11.0, 9.0)]},
             {"patient": "B", "dice": 0.6, "dice_mid": 0.7, "levels": [_level("L3-L4", 8.0, 8.0),
                                                                      _level("L4-L5", 7.0, None)]}]
    s = summarise_canal(cases, n_boot=50)
    assert s["canal_dice"]["value"] == pytest.approx(0.7) and s["canal_dice"]["n"] == 2
    assert s["levels_measured_on_both"] == 3 and s["levels_manual_only"] == 1 and s["levels_model_only"] == 0
    assert s["ap_abs_error_mm"]["value"] == pytest.approx(1.0)
    assert s["ap_bias_mm"]["value"] == pytest.approx(-1 / 3, abs=1e-4)
    sd = (((1 + 1 / 3) ** 2 + (-2 + 1 / 3) ** 2 + (1 / 3) ** 2) / 2) ** 0.5
    assert s["ap_limits_of_agreement_mm"] == pytest.approx([-1 / 3 - 1.96 * sd, -1 / 3 + 1.96 * sd], abs=1e-4)
    assert s["grade_agreement"]["value"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["grade_confusion"] == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]
    table = markdown_table({"patients": ["1", "2"], "summary": s, "model": {"sha256": "ab" * 32},
                            "seconds_per_slice": 0.02})
    assert "| AP absolute error, mean mm | 1.00" in table and "not the held-out test set" in table


def test_the_cluster_bootstrap_resamples_whole_patients():
    """Items of one cluster move together: with clusters [1, 1] and [3] the mean is 5/3, and every
    resample's mean is 1, 5/3 or 3."""
    r = M.cluster_ci([[1.0, 1.0], [3.0]], lambda items: sum(items) / len(items), n_boot=200)
    assert r["value"] == pytest.approx(5 / 3, abs=1e-4) and r["n"] == 3
    assert 1.0 <= r["ci95"][0] <= r["ci95"][1] <= 3.0
