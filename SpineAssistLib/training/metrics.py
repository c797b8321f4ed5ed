"""Return the metrics the published work reports, each with a 95 % bootstrap interval:
segmentation IoU / Dice, keypoint error, precision / recall / F1 (per class and macro), Cohen's
kappa (quadratic-weighted for ordinal grades), accuracy, sensitivity / specificity, AUC.

Every function takes plain sequences and returns floats; ``with_ci`` resamples cases
(with replacement, a fixed seed) to give the interval.

Usage::

    from SpineAssistLib.training.metrics import cohen_kappa, with_ci
    cohen_kappa([0, 1, 2, 3], [0, 1, 2, 2], weights="quadratic")      # 0.9
    with_ci(lambda t, p: cohen_kappa(t, p, "quadratic"), truth, pred)  # {"value", "ci95", "n"}
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

N_BOOTSTRAP = 1000


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Return intersection over union of two boolean masks (1.0 when both are empty)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Return the Dice coefficient 2|P∩T| / (|P| + |T|) of two boolean masks (1.0 when both are empty)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, t).sum() / total)


def accuracy(truth: Sequence[Any], pred: Sequence[Any]) -> float:
    """Return the fraction of cases where pred equals truth."""
    t, p = np.asarray(truth), np.asarray(pred)
    if len(t) != len(p):
        raise ValueError(f"truth and pred differ in length: {len(t)} and {len(p)}")
    return float(np.mean(t == p)) if len(t) else float("nan")


def precision_recall_f1(truth: Sequence[Any], pred: Sequence[Any], labels: Sequence[Any] | None = None
                        ) -> dict[str, Any]:
    """Return per-class and macro precision, recall and F1 (classes with no truth and no prediction left out)."""
    t, p = list(truth), list(pred)
    labels = list(labels) if labels is not None else sorted(set(t) | set(p), key=str)
    per = {}
    for c in labels:
        tp = sum(1 for a, b in zip(t, p) if a == c and b == c)
        fp = sum(1 for a, b in zip(t, p) if a != c and b == c)
        fn = sum(1 for a, b in zip(t, p) if a == c and b != c)
        if tp + fp + fn == 0:
            continue
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[str(c)] = {"precision": prec, "recall": rec, "f1": f1, "support": tp + fn}
    keys = list(per)
    macro = {m: float(np.mean([per[k][m] for k in keys])) if keys else float("nan") for m in ("precision", "recall", "f1")}
    return {"per_class": per, "macro": macro}


def macro_f1(truth: Sequence[Any], pred: Sequence[Any]) -> float:
    """Return the macro-averaged F1 over the classes present in truth or pred."""
    return precision_recall_f1(truth, pred)["macro"]["f1"]


def cohen_kappa(truth: Sequence[Any], pred: Sequence[Any], weights: str | None = None,
                labels: Sequence[Any] | None = None) -> float:
    """Return Cohen's kappa; ``weights="quadratic"`` for ordinal grades (labels in their order)."""
    t, p = list(truth), list(pred)
    if len(t) != len(p):
        raise ValueError(f"truth and pred differ in length: {len(t)} and {len(p)}")
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic'; got {weights!r}")
    labels = list(labels) if labels is not None else sorted(set(t) | set(p))
    k = len(labels)
    if not t or k < 2:
        return 1.0 if t and t == p else float("nan")
    index = {c: i for i, c in enumerate(labels)}
    O = np.zeros((k, k))
    for a, b in zip(t, p):
        O[index[a], index[b]] += 1
    E = np.outer(O.sum(1), O.sum(0)) / O.sum()
    i, j = np.mgrid[0:k, 0:k]
    W = (i != j).astype(float) if weights is None else np.abs(i - j) / (k - 1) if weights == "linear" \
        else ((i - j) / (k - 1)) ** 2
    denom = (W * E).sum()
    return 1.0 if denom == 0 else float(1.0 - (W * O).sum() / denom)


def sensitivity_specificity(truth: Sequence[bool], pred: Sequence[bool]) -> tuple[float, float]:
    """Return (sensitivity, specificity) of binary predictions."""
    t, p = np.asarray(truth, bool), np.asarray(pred, bool)
    sens = float((t & p).sum() / t.sum()) if t.sum() else float("nan")
    spec = float((~t & ~p).sum() / (~t).sum()) if (~t).sum() else float("nan")
    return sens, spec


def balanced_accuracy(truth: Sequence[bool], pred: Sequence[bool]) -> float:
    """Return the mean of sensitivity and specificity (nan where the truth lacks a class)."""
    sens, spec = sensitivity_specificity(truth, pred)
    return float((sens + spec) / 2)


def auc(truth: Sequence[bool], score: Sequence[float]) -> float:
    """Return the ROC AUC of scores for a binary truth (Mann-Whitney U with tie correction)."""
    t = np.asarray(truth, bool)
    s = np.asarray(score, float)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(s)
    return float((r[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def with_ci(statistic: Callable[..., float], *arrays: Sequence[Any], n_boot: int = N_BOOTSTRAP, seed: int = 0,
            ) -> dict[str, Any]:
    """Return ``{"value", "ci95": [lo, hi], "n"}``: the statistic and its 95 % percentile bootstrap
    interval over cases (the arrays are resampled together)."""
    arrs = [np.asarray(a, dtype=object) if np.asarray(a).dtype == object else np.asarray(a) for a in arrays]
    n = len(arrs[0]) if arrs else 0
    if any(len(a) != n for a in arrs):
        raise ValueError("with_ci: the arrays differ in length")
    if n == 0:
        return {"value": None, "ci95": [None, None], "n": 0}
    value = statistic(*[list(a) for a in arrs])
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = statistic(*[list(a[idx]) for a in arrs])
        if v is not None and math.isfinite(v):
            boots.append(v)
    lo, hi = (np.percentile(boots, [2.5, 97.5]).tolist() if boots else [None, None])
    return {"value": _round(value), "ci95": [_round(lo), _round(hi)], "n": n}


def cluster_ci(clusters: Sequence[Sequence[Any]], statistic: Callable[[list], float | None],
               n_boot: int = N_BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """Return ``{"value", "ci95", "n"}``: the statistic over every item of every cluster and its 95 %
    percentile bootstrap interval resampling whole clusters (a patient's levels move together);
    ``n`` is the number of items."""
    flat = [x for c in clusters for x in c]
    value = statistic(flat) if flat else None
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot if flat else 0):
        items = [x for i in rng.integers(0, len(clusters), len(clusters)) for x in clusters[i]]
        v = statistic(items) if items else None
        if v is not None and math.isfinite(v):
            boots.append(v)
    lo, hi = (np.percentile(boots, [2.5, 97.5]).tolist() if boots else [None, None])
    return {"value": _round(value), "ci95": [_round(lo), _round(hi)], "n": len(flat)}


def mean_ci(values: Sequence[float], n_boot: int = N_BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """Return the mean of ``values`` with its 95 % bootstrap interval."""
    return with_ci(lambda v: float(np.mean(v)), [float(v) for v in values], n_boot=n_boot, seed=seed)


def _round(v: Any) -> Any:
    if v is None:
        return None
    v = float(v)
    return round(v, 4) if math.isfinite(v) else None
