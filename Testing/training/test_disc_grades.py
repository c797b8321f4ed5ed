"""Training and scoring of sag_disc_grades (training.disc_grades): SPIDER's gradings read whole, the
thresholds chosen on validation discs, the scores of hand-made predictions, and one short training."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from SpineAssistLib.anatomy import DISC_LABELS
from SpineAssistLib.models.disc_grades import BINARY_GRADINGS, MODIC_CHANGE
from SpineAssistLib.training import disc_grades as T


def test_read_gradings_keeps_every_column_of_spiders_table(tmp_path):
    from SpineAssistLib.training.spider import patient_gradings, read_gradings

    path = tmp_path / "radiological_gradings.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Patient", "IVD label", "Modic", "UP endplate", "LOW endplate", "Spondylolisthesis",
                    "Disc herniation", "Disc narrowing", "Disc bulging", "Pfirrman grade"])
        w.writerow([12, 1, 2, 1, 0, 1, 0, 1, 1, 4])
        w.writerow([12, 2, 0, 0, 1, 0, 1, 0, 0, 2])
    g = patient_gradings(read_gradings(path), "12")
    assert g["L5-S1"] == {"modic": 2, "up_endplate": 1, "low_endplate": 0, "spondylolisthesis": 1, "herniation": 0,
                          "narrowing": 1, "bulging": 1, "pfirrmann": 4}
    assert g["L4-L5"]["low_endplate"] == 1 and g["L4-L5"]["herniation"] == 1 and T.has_all_gradings(g["L4-L5"])


def test_the_threshold_maximises_the_balanced_accuracy():
    # 0.2 and 0.6 separate the classes: the chosen cut lies between them
    assert T.choose_threshold([0, 0, 1, 1], [0.1, 0.2, 0.6, 0.8]) == pytest.approx(0.4)
    # one negative above a positive: cutting at 0.45 gives sensitivity 1, specificity 2/3 (0.83)
    t = T.choose_threshold([0, 0, 0, 1], [0.1, 0.3, 0.7, 0.6])
    assert T.balanced_accuracy([0, 0, 0, 1], np.array([0.1, 0.3, 0.7, 0.6]) >= t) == pytest.approx(5 / 6)
    assert T.choose_threshold([0, 0], [0.3, 0.9]) == 0.5           # one class only: nothing to choose from
    assert T.balanced_accuracy([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.75)


def test_the_modic_threshold_maximises_the_type_accuracy():
    probs = np.array([[0.9, 0.0, 0.1, 0.0], [0.6, 0.0, 0.4, 0.0], [0.3, 0.0, 0.7, 0.0], [0.2, 0.1, 0.7, 0.0]])
    t = T.choose_modic_threshold([0, 0, 2, 2], probs)
    assert 0.4 < t <= 0.7                  # between the changes 0.4 (type 0) and 0.7 (type 2)


def _records():
    """Two patients; upper endplate: patient 1 right twice, patient 2 one of two wrong."""
    rec = []
    for patient, truth, pred, modic in (("1", 1, 1, (2, 2)), ("1", 0, 0, (0, 0)), ("2", 1, 0, (2, 0)),
                                        ("2", 0, 0, (0, 0))):
        r = {"patient": patient, "modic_truth": modic[0], "modic_pred": modic[1],
             "modic_probs": [0.2, 0.0, 0.8, 0.0] if modic[1] else [0.8, 0.0, 0.2, 0.0]}
        for n in BINARY_GRADINGS:
            r[f"{n}_truth"], r[f"{n}_pred"], r[f"{n}_p"] = truth, pred, 0.9 if pred else 0.1
        rec.append(r)
    return rec


def test_scores_count_what_a_person_would():
    s = T.summarise(_records(), n_boot=200)
    g = s["endplate_upper"]
    assert g["positives"] == 2 and g["confusion"] == [[2, 0], [1, 1]]
    assert g["accuracy"]["value"] == 0.75 and g["sensitivity"]["value"] == 0.5 and g["specificity"]["value"] == 1.0
    assert g["balanced_accuracy"]["value"] == 0.75 and g["auc"]["value"] == 0.75
    lo, hi = g["accuracy"]["ci95"]
    assert 0.5 <= lo <= 0.75 <= hi <= 1.0            # resampling patients: 0.5, 0.75 or 1.0
    assert s["modic"]["accuracy"]["value"] == 0.75 and s["modic"]["confusion"][2] == [1, 0, 1, 0]
    table = T.markdown_table({"summary": s, "patients": ["1", "2"], "thresholds": {n: 0.5 for n in
                              (MODIC_CHANGE, *BINARY_GRADINGS)}, "model": {"sha256": "ab" * 32}, "runtime": "onnx"})
    assert "| upper endplate defect | 2 of 4 | 0.500 | 0.750 (" in table and "| type 2 | 1 | 0 | 1 | 0 |" in table


def _sample(patient: str, modic: int, flag: int, rng: np.random.Generator) -> T.DiscSample:
    img = rng.random((5, 120, 100)).astype(np.float32)
    labels = np.zeros(img.shape, np.uint8)
    labels[:, 55:65, 25:75] = DISC_LABELS["L4-L5"]
    g = {"modic": modic, "pfirrmann": 3, **{k: flag for k in T.SPIDER_KEYS.values()}}
    return T.DiscSample(patient, "L4-L5", img, labels, mid=2, spacing=(0.6, 0.6), slice_mm=1.0, gradings=g)


def test_a_short_training_gives_fp16_weights_and_every_threshold():
    rng = np.random.default_rng(0)
    train = [_sample("1", m, f, rng) for m, f in ((0, 0), (2, 1), (0, 1), (2, 0))]
    val = [_sample("2", m, f, rng) for m, f in ((0, 0), (2, 1), (0, 1), (2, 0))]
    r = T.train_network(train, val, {"epochs": 1, "batch": 4, "copies": 1, "widths": [4, 8]}, seed=0, progress=None)
    assert set(r["thresholds"]) == {MODIC_CHANGE, *BINARY_GRADINGS}
    assert r["thresholds"]["herniation"] == 0.5          # 2 validation positives: fewer than 5
    assert all(v.dtype.is_floating_point is False or str(v.dtype) == "torch.float16" for v in r["state"].values())
    assert r["epoch"] == 1 and len(r["history"]) == 1 and r["val_probabilities"][0].shape == (4, 4)
    x = T.training_input(train[0], rng)
    assert x.shape == (3, 112, 112) and 0.0 <= x.min() and x.max() <= 1.0


def test_cross_validation_folds_are_disjoint_patients_and_score_each_disc_once_unseen(monkeypatch):
    folds = T.patient_folds([str(p) for p in range(1, 12)], folds=5, seed=0)
    assert sorted(p for f in folds for p in f) == sorted(str(p) for p in range(1, 12))
    assert [len(f) for f in folds] == [3, 2, 2, 2, 2] and folds == T.patient_folds(map(str, range(11, 0, -1)), 5, 0)
    with pytest.raises(T.SpineAssistError, match="cannot make 5"):
        T.patient_folds(["1", "2"], folds=5)
    rng = np.random.default_rng(0)
    samples = [_sample(p, m, f, rng) for p in ("1", "2", "3") for m, f in ((0, 0), (2, 1))]
    trained_on = []
    real = T.train_network
    monkeypatch.setattr(T, "train_network", lambda fit, val, *a, **k: trained_on.append({s.patient for s in fit})
                        or real(fit, val, *a, **k))
    settings = {"epochs": 1, "batch": 4, "copies": 1, "widths": [4, 8]}
    modic_p, binary_p, groups = T.out_of_fold_probabilities(samples, settings, seed=0, folds=3, progress=None)
    assert [set(g) for g in groups] == [{"1", "2", "3"} - t for t in trained_on]   # each fold's net never saw it
    assert modic_p.shape == (6, 4) and binary_p.shape == (6, 5)
    assert np.allclose(modic_p.sum(axis=1), 1.0, atol=1e-3) and ((binary_p > 0) & (binary_p < 1)).all()
    chosen = T.choose_thresholds(samples, modic_p, binary_p)
    assert set(chosen) == {MODIC_CHANGE, *BINARY_GRADINGS} and chosen["herniation"] == 0.5   # 3 positives
