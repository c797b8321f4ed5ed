"""Score the canal U-Net (``sag_canal_unet``) and the canal measurement on SPIDER's held-out patients.

Per patient (the 12 held-out by default), every sagittal slice is segmented by the bundled canal
model (``models.canal.CanalModel``, at the patient's estimated pixel spacing) and compared with the
manual canal mask:

- canal Dice per patient over the whole stack (all slices; a canal predicted on a slice without one
  counts against it), and on the canal's mid-sagittal slice (the slice where the manual canal is
  largest, the one the AP is measured on);
- at each lumbar disc (L1-L2 to L5-S1) of that slice, the canal AP diameter measured by
  ``grading.canal.canal_ap_from_corners`` on the predicted mask and on the manual mask, with the same
  disc geometry (the four corners from the manual disc and vertebra masks, ``spider.disc_corners``),
  so the difference is the segmentation's alone: mean absolute error (mm), Bland-Altman bias
  (predicted - manual) and 95 % limits of agreement, and agreement of the Verbiest grade.

Intervals: 95 % bootstrap over patients (the levels of one patient move together). The PNG
mirror's pixel spacing is estimated per patient (``spider.estimate_pixel_spacing``: 37 mm per
lumbar segment), so every millimetre here is approximate: a patient whose segments are 10 % longer
than 37 mm has every AP 10 % too small, in both masks alike.

Usage::

    from SpineAssistLib.training.canal_eval import evaluate_canal, markdown_table
    report = evaluate_canal("Data/t2_SPACE")        # held-out patients, the bundled model
    print(markdown_table(report))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from SpineAssistLib.anatomy import THECAL_SAC_LABEL
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.findings import STANDARD_LUMBAR_LEVELS, STENOSIS_GRADES
from SpineAssistLib.grading.canal import canal_ap_from_corners
from SpineAssistLib.models import load_model, sha256_file
from SpineAssistLib.models.registry import models_dir
from SpineAssistLib.training import metrics as M
from SpineAssistLib.training.spider import HELD_OUT_PATIENTS, RealCase, iter_cases
from SpineAssistLib.training.train import _manifest_lock

GRADE_ORDER = ("none", "relative", "absolute")      # mild to severe, for the weighted kappa
assert set(GRADE_ORDER) == set(STENOSIS_GRADES)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def score_canal_case(case: RealCase, predicted: np.ndarray) -> dict[str, Any]:
    """Return one patient's canal record: Dice (stack, mid slice) and per-level AP from both masks.

    ``predicted``: the canal masks (slices, rows, cols) of the case's slices."""
    truth = case.labels == THECAL_SAC_LABEL
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted masks {predicted.shape} differ from the case's slices {truth.shape}")
    # the mid-sagittal plane of the canal: the slice where the manual canal is largest (the levels'
    # mid slice, that of the largest disc area, lies off the canal's mid-line in some patients)
    k = int(np.argmax(truth.reshape(len(truth), -1).sum(axis=1)))
    sp_col, sp_row = case.pixel_spacing
    corners = case.corners_px.get(k, {})
    levels = []
    for name in STANDARD_LUMBAR_LEVELS:
        if name not in case.levels:
            continue
        manual = canal_ap_from_corners(truth[k], (sp_row, sp_col), corners, name)
        model = canal_ap_from_corners(predicted[k], (sp_row, sp_col), corners, name)
        levels.append({"level": name, "ap_manual_mm": manual.ap_mm, "ap_model_mm": model.ap_mm,
                       "grade_manual": manual.grade, "grade_model": model.grade,
                       "reason_manual": manual.reason, "reason_model": model.reason,
                       "line_manual": manual.endpoints, "line_model": model.endpoints})
    return {"patient": case.patient, "pixel_mm": round(float(sp_row), 4), "slice": k,
            "dice": _dice(predicted, truth), "dice_mid": _dice(predicted[k], truth[k]), "levels": levels}


def _patient_bootstrap(per_patient: Sequence[Sequence[Any]], statistic: Callable[[list], float | None],
                       n_boot: int, seed: int = 0) -> dict[str, Any]:
    return M.cluster_ci(per_patient, statistic, n_boot, seed)


def summarise_canal(cases: Sequence[Mapping[str, Any]], n_boot: int = M.N_BOOTSTRAP) -> dict[str, Any]:
    """Return the canal metrics of scored patients (``score_canal_case`` records)."""
    both = [[x for x in c["levels"] if x["ap_manual_mm"] is not None and x["ap_model_mm"] is not None]
            for c in cases]
    per_patient = [[c] for c in cases]

    def mean_of(key: str) -> Callable[[list], float]:
        return lambda items: float(np.mean([float(x[key]) for x in items]))

    def diff(x: Mapping[str, Any]) -> float:
        return float(x["ap_model_mm"]) - float(x["ap_manual_mm"])

    def kappa(items: list) -> float | None:
        return M.cohen_kappa([GRADE_ORDER.index(x["grade_manual"]) for x in items],
                             [GRADE_ORDER.index(x["grade_model"]) for x in items], weights="linear",
                             labels=[0, 1, 2])

    diffs = [diff(x) for p in both for x in p]
    sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None
    bias = float(np.mean(diffs)) if diffs else None
    confusion = [[0] * 3 for _ in range(3)]
    for p in both:
        for x in p:
            confusion[GRADE_ORDER.index(x["grade_manual"])][GRADE_ORDER.index(x["grade_model"])] += 1
    all_levels = [x for c in cases for x in c["levels"]]
    r = M._round
    return {
        "patients": len(cases), "levels": len(all_levels),
        "levels_measured_on_both": sum(len(p) for p in both),
        "levels_manual_only": sum(1 for x in all_levels if x["ap_manual_mm"] is not None and x["ap_model_mm"] is None),
        "levels_model_only": sum(1 for x in all_levels if x["ap_manual_mm"] is None and x["ap_model_mm"] is not None),
        "levels_neither": sum(1 for x in all_levels if x["ap_manual_mm"] is None and x["ap_model_mm"] is None),
        "canal_dice": _patient_bootstrap(per_patient, mean_of("dice"), n_boot),
        "canal_dice_mid_slice": _patient_bootstrap(per_patient, mean_of("dice_mid"), n_boot),
        "ap_manual_mm": _patient_bootstrap(both, mean_of("ap_manual_mm"), n_boot),
        "ap_model_mm": _patient_bootstrap(both, mean_of("ap_model_mm"), n_boot),
        "ap_abs_error_mm": _patient_bootstrap(both, lambda i: float(np.mean([abs(diff(x)) for x in i])), n_boot),
        "ap_bias_mm": _patient_bootstrap(both, lambda i: float(np.mean([diff(x) for x in i])), n_boot),
        "ap_limits_of_agreement_mm": [r(bias - 1.96 * sd), r(bias + 1.96 * sd)] if sd is not None else [None, None],
        "grade_agreement": _patient_bootstrap(both, lambda i: float(np.mean(
            [x["grade_manual"] == x["grade_model"] for x in i])), n_boot),
        "grade_kappa_linear": _patient_bootstrap(both, kappa, n_boot),
        "grade_confusion": confusion,
        "grade_order": list(GRADE_ORDER),
    }


def evaluate_canal(root: str | Path, patients: Sequence[str] | None = None, model: Any = None,
                   device: str = "cpu", n_boot: int = M.N_BOOTSTRAP,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Return the canal report of the held-out patients (default) of a SPIDER folder.

    ``model``: a canal predictor (``predict(image, pixel_spacing_mm).mask``); default the bundled
    ``sag_canal_unet``, its SHA-256 checked."""

    wanted = sorted(patients or HELD_OUT_PATIENTS, key=int)
    if model is None:
        model = load_model("sag_canal_unet", device=device)
    scored, seconds = [], []
    for case in iter_cases(root, None, patients=wanted):
        sp_col, sp_row = case.pixel_spacing
        t = time.perf_counter()
        predicted = np.stack([np.asarray(model.predict(img, (sp_row, sp_col)).mask, bool) for img in case.images])
        seconds.append((time.perf_counter() - t) / len(case.images))
        rec = score_canal_case(case, predicted)
        scored.append(rec)
        if progress:
            aps = ", ".join(f"{x['level']} {_mm(x['ap_manual_mm'])}/{_mm(x['ap_model_mm'])}" for x in rec["levels"])
            progress(f"patient {case.patient}: canal Dice {rec['dice']:.3f} (mid slice {rec['dice_mid']:.3f}); "
                     f"AP manual/model mm: {aps}")
    missing = set(wanted) - {c["patient"] for c in scored}
    if missing:
        raise SpineAssistError(f"{root}: no images of patient(s) {', '.join(sorted(missing, key=int))}")
    weights = getattr(model, "weights", None)
    return {"source": str(root), "patients": wanted, "summary": summarise_canal(scored, n_boot),
            "seconds_per_slice": round(float(np.median(seconds)), 3), "cases": scored,
            "model": {"name": "sag_canal_unet", "sha256": sha256_file(weights) if weights is not None else None}}


def _mm(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _fmt(m: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    lo, hi = m["ci95"]
    return f"{m['value']:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})" if lo is not None else f"{m['value']:.{digits}f}"


def markdown_table(report: Mapping[str, Any]) -> str:
    """Return the held-out canal table of a report (``evaluate_canal``)."""
    s = report["summary"]
    which = "Held-out SPIDER patients" if set(report["patients"]) == HELD_OUT_PATIENTS else \
        "SPIDER patients (not the held-out test set)"
    loa = s["ap_limits_of_agreement_mm"]
    rows = [
        ("canal Dice per patient, whole stack", _fmt(s["canal_dice"]), s["canal_dice"]["n"]),
        ("canal Dice per patient, mid-sagittal slice", _fmt(s["canal_dice_mid_slice"]), s["canal_dice_mid_slice"]["n"]),
        ("AP at the disc from the manual mask, mean mm", _fmt(s["ap_manual_mm"], 2), s["ap_manual_mm"]["n"]),
        ("AP at the disc from the model's mask, mean mm", _fmt(s["ap_model_mm"], 2), s["ap_model_mm"]["n"]),
        ("AP absolute error, mean mm", _fmt(s["ap_abs_error_mm"], 2), s["ap_abs_error_mm"]["n"]),
        ("AP bias (model - manual), mm (Bland-Altman)", _fmt(s["ap_bias_mm"], 2), s["ap_bias_mm"]["n"]),
        ("AP 95 % limits of agreement, mm", "n/a" if loa[0] is None else f"{loa[0]:.2f} to {loa[1]:.2f}",
         s["ap_bias_mm"]["n"]),
        ("Verbiest grade agreement", _fmt(s["grade_agreement"]), s["grade_agreement"]["n"]),
        ("Verbiest grade kappa (linear)", _fmt(s["grade_kappa_linear"]), s["grade_kappa_linear"]["n"]),
    ]
    lines = [(f"{which}: {s['patients']} ({', '.join(report['patients'])}); {s['levels']} lumbar levels (L1-L2 to "
             f"L5-S1) on the canal's mid-sagittal slice; AP measured on both masks at {s['levels_measured_on_both']}, on the "
             f"manual mask only at {s['levels_manual_only']}, on the model's only at {s['levels_model_only']}, on "
             f"neither at {s['levels_neither']}. Model SHA-256 {str(report['model']['sha256'])[:12]}...; "
             f"{report['seconds_per_slice']} s per slice."), "",
             "| metric | value (95 % CI, patients resampled) | n |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {n} |" for a, b, n in rows]
    cm = s["grade_confusion"]
    lines += ["", "Verbiest grade (rows: from the manual mask, columns: from the model's mask):", "",
              "| | " + " | ".join(GRADE_ORDER) + " |", "|---|---|---|---|"]
    lines += [f"| {GRADE_ORDER[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(cm)]
    return "\n".join(lines) + "\n"


def store_canal_in_manifest(report: Mapping[str, Any], manifest_path: str | Path | None = None) -> None:
    """Write the held-out summary into ``sag_canal_unet``'s manifest entry (``real_metrics``), keyed by
    the weights it was measured with; every other entry is left as it is."""

    path = Path(manifest_path) if manifest_path else models_dir() / "manifest.json"
    with _manifest_lock(path):
        data = json.loads(path.read_text(encoding="utf-8"))
        for m in data["models"]:
            if m["name"] == "sag_canal_unet":
                m["real_metrics"] = {"sha256": report["model"]["sha256"],
                                     "source": "training.canal_eval (SPIDER held-out patients "
                                     + ", ".join(report["patients"]) + ")", **report["summary"]}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
