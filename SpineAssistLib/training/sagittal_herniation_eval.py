"""Choose and score the sagittal herniation rule (``grading.sagittal_herniation``) on SPIDER.

Truth: SPIDER's radiologists' "Disc herniation" grading (``radiological_gradings.csv``; IVD label 1 =
L5-S1, counted up) of the lumbar discs L1-L2 to L5-S1. Measurement: the disc's posterior protrusion
beyond the posterior vertebral line on the MANUAL disc mask, with the vertebral corners derived from
the manual masks as ``spider.disc_corners`` derives them, at the patient's estimated pixel spacing
(``spider.estimate_pixel_spacing``: the PNG mirror lost it; 37 mm per lumbar segment is assumed,
so every millimetre here is approximate).

Split: the 12 held-out test patients (``spider.HELD_OUT_PATIENTS``) are never used to choose
anything. On the other 29 (development) patients the definition and threshold are chosen:

- which slice: the depth on the study's mid-sagittal slice (``RealCase.mid``, the slice of largest
  disc area), or the maximum over that slice and ``w`` slices either side (w = 1, 2, 3); or the same
  around the disc's own largest slice. The PNG mirror's slice distance is not recorded (nominally
  1 mm);
- the threshold: the depth that maximises the balanced accuracy over the development discs
  (midpoint between neighbouring observed depths; ties to the smaller threshold). The slice choice
  maximises the same balanced accuracy, ties broken by the AUC, then the smaller window.

Then the chosen rule is scored once on the held-out patients: accuracy, balanced accuracy,
sensitivity, specificity and the AUC of the depth, each with a 95 % bootstrap interval over
patients (a patient's discs move together), and the confusion matrix. How the depth relates to
SPIDER's separate "Disc bulging" grading is reported on both splits (mean depth of discs with
neither, bulging only, herniation; AUC of the depth for bulging among non-herniated discs).

Usage::

    python -m SpineAssistLib.training.sagittal_herniation_eval --data /work/data/Data/t2_SPACE \\
        --gradings /work/data/radiological_gradings.csv --markdown table.md --json report.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from SpineAssistLib.anatomy import DISC_LABELS, VERTEBRA_LABELS, corner_name
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.findings import STANDARD_LUMBAR_LEVELS
from SpineAssistLib.grading.sagittal_herniation import (
    DEFAULT_THRESHOLD_MM,
    sagittal_protrusion,
)
from SpineAssistLib.training import metrics as M
from SpineAssistLib.training.spider import (
    HELD_OUT_PATIENTS,
    RealCase,
    _disc_axes,
    iter_cases,
    read_gradings,
)

CORNER_SOURCES: tuple[str, ...] = ("bodies", "spider")   # see ``posterior_corners``
WINDOWS: tuple[int, ...] = (0, 1, 2, 3)        # slices either side of the centre slice
CENTRES: tuple[str, ...] = ("study", "disc")    # the study's mid-sagittal slice, or the disc's largest slice
TARGET_BALANCED_ACCURACY = 0.80                 # issue #21
# A sagittal-only study must say yes or no at every disc: an option that leaves more of the graded
# development discs unmeasured (corners not found) is not eligible.
MIN_COVERAGE = 0.95


def option_name(corners: str, centre: str, window: int) -> str:
    return f"{corners}/{centre}_mid" + (f"_pm{window}" if window else "")


MIN_BODY_PIXELS = 50


def body_posterior_corners(slice_labels: np.ndarray, level: str) -> dict[str, tuple[float, float]]:
    """Return the two posterior corners at disc ``level`` from the vertebral body masks of one
    canonical sagittal label slice, keyed as ``anatomy.corner_name``: with the disc's axes (``u``
    along it pointing back, ``down`` across it), the upper body's posterior-inferior corner is its
    pixel farthest along ``u + down`` and the lower body's posterior-superior corner its pixel
    farthest along ``u - down`` (the diagonal extremes of a roughly rectangular body). A body with
    fewer than ``MIN_BODY_PIXELS`` pixels on the slice gives no corner."""
    disc = slice_labels == DISC_LABELS[level]
    if disc.sum() < 20:
        return {}
    c, u, down = _disc_axes(disc)
    upper, lower = level.split("-")
    out = {}
    for vertebra, corner, diagonal in ((upper, "posterior-inferior", u + down), (lower, "posterior-superior", u - down)):
        body = slice_labels == VERTEBRA_LABELS.get(vertebra, -1)
        if body.sum() < MIN_BODY_PIXELS:
            continue
        xy = np.argwhere(body)[:, ::-1].astype(float)
        best = xy[int(np.argmax((xy - c) @ diagonal))]
        out[corner_name(vertebra, corner)] = (float(best[0]), float(best[1]))
    return out


def measure_case(case: RealCase) -> list[dict[str, Any]]:
    """Return one patient's per-disc records: SPIDER's herniation and bulging flags and the depth (mm)
    under every slice option (``option_name``), with the slice and apex of each."""
    out = []
    n = len(case.labels)
    for level in STANDARD_LUMBAR_LEVELS:
        g = case.gradings.get(level)
        if level not in case.levels or not g or "herniation" not in g:
            continue
        disc = case.labels == DISC_LABELS[level]
        area = disc.reshape(n, -1).sum(axis=1)
        if not area.any():
            continue
        own = int(np.argmax(area))
        sp = case.pixel_spacing
        per_slice: dict[tuple[str, int], Any] = {}
        rec: dict[str, Any] = {"patient": case.patient, "level": level, "herniation": int(g["herniation"] > 0),
                               "bulging": None if g.get("bulging") is None else int(g["bulging"] > 0),
                               "pixel_mm": round(float(sp[0]), 4), "study_mid": case.mid, "disc_mid": own,
                               "options": {}}
        for source, centre, w in ((a, b, c) for a in CORNER_SOURCES for b in CENTRES for c in WINDOWS):
            k0 = case.mid if centre == "study" else own
            best = None
            for k in range(max(0, k0 - w), min(n, k0 + w + 1)):
                if (source, k) not in per_slice:
                    corners = (case.corners_px.get(k, {}) if source == "spider"
                               else body_posterior_corners(case.labels[k], level))
                    per_slice[(source, k)] = sagittal_protrusion(disc[k], sp, corners, level)
                m = per_slice[(source, k)]
                if m.assessed and (best is None or m.depth_mm > best[1].depth_mm):
                    best = (k, m)
            rec["options"][option_name(source, centre, w)] = None if best is None else {
                    "depth_mm": round(float(best[1].depth_mm), 3), "extent_mm": round(float(best[1].extent_mm), 3),
                "slice": best[0], "apex_xy": best[1].apex_xy, "foot_xy": best[1].foot_xy}
        rec["reason_mid"] = {src: per_slice[(src, case.mid)].reason for src in CORNER_SOURCES}
        out.append(rec)
    return out


def _depths(records: Iterable[Mapping[str, Any]], option: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (truth, depth) of the records measured under ``option`` (unmeasured discs dropped)."""
    t, d = [], []
    for r in records:
        o = r["options"].get(option)
        if o is not None:
            t.append(bool(r["herniation"]))
            d.append(float(o["depth_mm"]))
    return np.array(t, bool), np.array(d, float)


def best_threshold(truth: np.ndarray, depth: np.ndarray) -> tuple[float, float]:
    """Return (threshold mm, balanced accuracy) maximising the balanced accuracy of depth >= threshold:
    candidates are midpoints between neighbouring distinct depths (and below the smallest); ties go to
    the smaller threshold."""
    values = np.unique(depth)
    candidates = np.r_[values[0] - 0.05, 0.5 * (values[1:] + values[:-1])] if len(values) else np.array([0.0])
    best = (float("nan"), -1.0)
    for c in candidates:
        ba = M.balanced_accuracy(truth, depth >= c)
        if ba > best[1] + 1e-12:
            best = (round(float(c), 3), float(ba))
    return best


def roc_points(truth: np.ndarray, depth: np.ndarray) -> list[dict[str, float]]:
    """Return the ROC of depth >= threshold at every distinct depth: threshold, sensitivity, 1 - specificity."""
    out = []
    for c in np.r_[np.unique(depth)[::-1]]:
        sens, spec = M.sensitivity_specificity(truth, depth >= c)
        out.append({"threshold_mm": round(float(c), 3), "sensitivity": M._round(sens), "fpr": M._round(1 - spec)})
    return out


def choose(dev: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the slice option and threshold chosen on the development records, with every option's
    figures (threshold, balanced accuracy, AUC) and the chosen option's ROC."""
    table = []
    for source, centre, w in ((a, b, c) for a in CORNER_SOURCES for b in CENTRES for c in WINDOWS):
        opt = option_name(source, centre, w)
        t, d = _depths(dev, opt)
        thr, ba = best_threshold(t, d)
        table.append({"option": opt, "window": w, "threshold_mm": thr, "balanced_accuracy": M._round(ba),
                      "auc": M._round(M.auc(t, d)), "n": len(t), "positives": int(t.sum()),
                      "coverage": M._round(len(t) / max(len(dev), 1))})
    eligible = [r for r in table if r["coverage"] >= MIN_COVERAGE] or table
    best = max(eligible, key=lambda r: (r["balanced_accuracy"] or 0.0, r["auc"] or 0.0, -r["window"]))
    t, d = _depths(dev, best["option"])
    return {"option": best["option"], "threshold_mm": best["threshold_mm"], "options": table,
            "roc": roc_points(t, d)}


def score(records_by_patient: Sequence[Sequence[Mapping[str, Any]]], option: str, threshold_mm: float,
          n_boot: int = M.N_BOOTSTRAP) -> dict[str, Any]:
    """Return the rule's figures (with 95 % patient-bootstrap intervals) and confusion matrix."""
    per_patient = [[(bool(r["herniation"]), float(r["options"][option]["depth_mm"]), r.get("bulging"))
                    for r in p if r["options"].get(option) is not None] for p in records_by_patient]

    def stat(f: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[list], float | None]:
        def g(items: list) -> float | None:
            t = np.array([x[0] for x in items], bool)
            d = np.array([x[1] for x in items], float)
            v = f(t, d)
            return None if v is None or not np.isfinite(v) else float(v)
        return g

    pred = lambda d: d >= threshold_mm
    flat = [x for p in per_patient for x in p]
    t = np.array([x[0] for x in flat], bool)
    d = np.array([x[1] for x in flat], float)
    p_ = pred(d)
    ci = lambda f: M.cluster_ci(per_patient, stat(f), n_boot)
    graded = [r for p in records_by_patient for r in p]
    return {
        "patients": len(per_patient), "discs": len(flat), "positives": int(t.sum()),
        "discs_graded": len(graded), "positives_graded": sum(int(r["herniation"]) for r in graded),
        "accuracy": ci(lambda t, d: float(np.mean(pred(d) == t))),
        "balanced_accuracy": ci(lambda t, d: M.balanced_accuracy(t, pred(d))),
        "sensitivity": ci(lambda t, d: M.sensitivity_specificity(t, pred(d))[0]),
        "specificity": ci(lambda t, d: M.sensitivity_specificity(t, pred(d))[1]),
        "auc": ci(lambda t, d: M.auc(t, d)),
        # rows: SPIDER (no, yes); columns: the rule (no, yes)
        "confusion": [[int((~t & ~p_).sum()), int((~t & p_).sum())], [int((t & ~p_).sum()), int((t & p_).sum())]],
        "bulging": bulging_relation(flat),
    }


def bulging_relation(items: Sequence[tuple[bool, float, Any]]) -> dict[str, Any]:
    """Return the depth by SPIDER category (neither, bulging only, herniation) and the AUC of the depth
    for bulging among the discs without a herniation."""
    groups = {"neither": [d for h, d, b in items if not h and b == 0],
              "bulging_only": [d for h, d, b in items if not h and b == 1],
              "herniation": [d for h, d, b in items if h]}
    out: dict[str, Any] = {k: {"n": len(v), "mean_mm": M._round(np.mean(v)) if v else None,
                               "median_mm": M._round(np.median(v)) if v else None} for k, v in groups.items()}
    nb = [(b == 1, d) for h, d, b in items if not h and b is not None]
    out["auc_bulging_vs_neither"] = M._round(M.auc([x[0] for x in nb], [x[1] for x in nb])) if nb else None
    return out


def evaluate(root: str | Path, gradings_csv: str | Path, n_boot: int = M.N_BOOTSTRAP,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Return the report: the choice on the development patients, then the held-out figures."""
    gradings = read_gradings(gradings_csv)
    dev: list[list[dict[str, Any]]] = []
    held: list[list[dict[str, Any]]] = []
    for case in iter_cases(root, gradings):
        recs = measure_case(case)
        (held if case.patient in HELD_OUT_PATIENTS else dev).append(recs)
        if progress:
            progress(f"patient {case.patient}: " + ", ".join(
                f"{r['level']} {'H' if r['herniation'] else '-'} "
                f"{(r['options']['bodies/study_mid'] or {}).get('depth_mm', 'n/a')}" for r in recs))
    if not dev or not held:
        raise SpineAssistError(f"{root}: need both development and held-out patients; found {len(dev)} and {len(held)}")
    chosen = choose([r for p in dev for r in p])
    opt, thr = chosen["option"], chosen["threshold_mm"]
    return {"source": str(root), "gradings": str(gradings_csv), "chosen": chosen,
            "default_threshold_mm": DEFAULT_THRESHOLD_MM,
            "development": {"patient_ids": sorted({r["patient"] for p in dev for r in p}, key=int),
                            **score(dev, opt, thr, n_boot)},
            "held_out": {"patient_ids": sorted(HELD_OUT_PATIENTS, key=int), **score(held, opt, thr, n_boot)},
            "discs": [r for p in dev + held for r in p]}


def _fmt(m: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    lo, hi = m["ci95"]
    return f"{m['value']:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})" if lo is not None else f"{m['value']:.{digits}f}"


def markdown_table(report: Mapping[str, Any]) -> str:
    """Return the choice and held-out tables of a report (``evaluate``)."""
    c, h, dv = report["chosen"], report["held_out"], report["development"]
    lines = [(f"Chosen on {dv['patients']} development patients ({dv['discs_graded']} graded lumbar discs, "
              f"{dv['positives_graded']} herniated): option `{c['option']}` (corners / slice), threshold "
              f"{c['threshold_mm']:.2f} mm. Options measuring under {MIN_COVERAGE:.0%} of the discs were not "
              "eligible."), "",
             "| option (development) | discs measured | positives | best threshold mm | balanced accuracy | AUC of depth |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {o['option']} | {o['coverage']:.0%} | {o['positives']} | {o['threshold_mm']:.2f} | "
              f"{o['balanced_accuracy']:.3f} | {o['auc']:.3f} |" for o in c["options"]]
    lines += ["", (f"Held-out test patients ({h['patients']}: {', '.join(h['patient_ids'])}; {h['discs_graded']} "
                   f"graded lumbar discs, {h['positives_graded']} herniated; measured at {h['discs']}, {h['positives']} "
                   "of them herniated), scored once:"), "",
              "| metric | held-out (95 % CI, patients resampled) | development (same rule) |", "|---|---|---|"]
    for key, name in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                      ("sensitivity", "sensitivity"), ("specificity", "specificity"), ("auc", "AUC of depth_mm")):
        lines.append(f"| {name} | {_fmt(h[key])} | {_fmt(dv[key])} |")
    cm = h["confusion"]
    lines += ["", "Held-out confusion (rows SPIDER, columns the rule):", "", "| | rule no | rule yes |", "|---|---|---|",
              f"| SPIDER no | {cm[0][0]} | {cm[0][1]} |", f"| SPIDER yes | {cm[1][0]} | {cm[1][1]} |", "",
              "Depth by SPIDER's gradings (mean / median mm, n):", "",
              "| split | neither | bulging only | herniation | AUC of depth, bulging vs neither |", "|---|---|---|---|---|"]
    for name, s in (("development", dv), ("held-out", h)):
        b = s["bulging"]

        def cell(g: str, b: Mapping[str, Any] = b) -> str:
            return "n/a" if not b[g]["n"] else f"{b[g]['mean_mm']:.2f} / {b[g]['median_mm']:.2f} ({b[g]['n']})"
        auc = "n/a" if b["auc_bulging_vs_neither"] is None else f"{b['auc_bulging_vs_neither']:.3f}"
        lines.append(f"| {name} | {cell('neither')} | {cell('bulging_only')} | {cell('herniation')} | {auc} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m SpineAssistLib.training.sagittal_herniation_eval``."""
    p = argparse.ArgumentParser(prog="python -m SpineAssistLib.training.sagittal_herniation_eval",
                                description="Choose the sagittal herniation rule on SPIDER's development patients "
                                            "and score it once on the held-out ones.")
    p.add_argument("--data", type=Path, required=True, help="SPIDER folder (images/ and masks/)")
    p.add_argument("--gradings", type=Path, required=True, help="SPIDER's radiological_gradings.csv")
    p.add_argument("--bootstrap", type=int, default=M.N_BOOTSTRAP)
    p.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    p.add_argument("--json", type=Path, default=None, help="write the whole report (per disc) here")
    args = p.parse_args(argv)
    try:
        report = evaluate(args.data, args.gradings, n_boot=args.bootstrap, progress=print)
    except SpineAssistError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = markdown_table(report)
    print(table)
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
