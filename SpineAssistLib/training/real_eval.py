"""Score the shipped pipeline on held-out real patients: what ``pipeline.assess`` returns for each
SPIDER patient's sagittal series, against the manual masks and the radiologists' gradings.

Per patient the pipeline runs as ``spineassist assess`` runs it (the bundled sagittal models, the
levels counted from the sacrum, the grading rules); a run that stops with an error counts as every
disc missed. Metrics, each with a 95 % bootstrap interval over patients (levels of one patient move
together):

- disc Dice: per lumbar disc (L1-L2 to L5-S1), the manual disc against the predicted disc voxels
  in a box 5 mm around it, whatever their name; ``named Dice``: against the voxels the pipeline
  gave that disc's name, so misnaming counts;
- discs found (Dice >= 0.5) and found and named right;
- vertebral body box IoU on the slice the levels were counted on (the pipeline draws boxes, not
  vertebra masks);
- Pfirrmann exact and within-one accuracy and quadratic kappa against SPIDER's grade;
- spondylolisthesis: Meyerding >= I against SPIDER's flag, sensitivity and specificity;
- the disc gradings the pipeline reports from ``sag_disc_grades`` (upper and lower endplate defect,
  narrowing, bulging: balanced accuracy, sensitivity, specificity and AUC of the probability the
  finding carries; Modic type accuracy and the balanced accuracy of "any Modic change"), against
  SPIDER's gradings: the product's figures, the window placed from the pipeline's own disc, where
  ``training.disc_grades evaluate`` places it from the manual mask.

A grade counts only at a disc the pipeline found and named right (as the Pfirrmann grade does); the
share of graded discs it gave a value is reported beside each.

Usage::

    from SpineAssistLib.training.real_eval import evaluate_real
    report = evaluate_real("Data/t2_SPACE", "radiological_gradings.csv")
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from SpineAssistLib.anatomy import DISC_LABELS, VERTEBRA_LABELS
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.findings import FINDING_TITLES, LOW_LEVEL_CONFIDENCE, STANDARD_LUMBAR_LEVELS
from SpineAssistLib.geometry import flip_index
from SpineAssistLib.models.registry import models_dir
from SpineAssistLib.pipeline.assess import SAGITTAL_MODELS, ModelSet, assess
from SpineAssistLib.training import metrics as M
from SpineAssistLib.training.spider import HELD_OUT_PATIENTS, RealCase, image_stack, iter_cases, read_gradings
from SpineAssistLib.training.train import _manifest_lock

FOUND_DICE = 0.5
BOX_MARGIN_MM = 5.0
TARGETS = {"disc_dice": 0.90, "pfirrmann_exact": 0.75, "pfirrmann_within_one": 0.97, "pfirrmann_kappa": 0.85,
           "listhesis_sensitivity": 0.90, "listhesis_specificity": 0.95,
           **{f"{k}_balanced_accuracy": 0.80 for k in ("endplate_upper", "endplate_lower", "narrowing", "bulging")},
           "modic_type_accuracy": 0.85}
# the pipeline's yes/no disc findings and SPIDER's column for each (``spider.GRADING_COLUMNS`` keys)
PRESENCE_GRADINGS = (("endplate_upper", "up_endplate"), ("endplate_lower", "low_endplate"),
                     ("narrowing", "narrowing"), ("bulging", "bulging"))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (r1, c1, r2, c2) boxes."""
    r1, c1 = max(a[0], b[0]), max(a[1], b[1])
    r2, c2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, r2 - r1) * max(0.0, c2 - c1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score_case(case: RealCase, result: Any | None, error: str | None = None) -> dict[str, Any]:
    """Return one patient's per-level records from the pipeline's result (None: the run failed)."""
    pred_labels = None if result is None else result.sagittal.labels
    levels = {} if result is None else {lv.name: lv for lv in result.assessment.levels}
    sp_col, sp_row = case.pixel_spacing
    out: dict[str, Any] = {"patient": case.patient, "error": error, "levels": [], "boxes": [],
                           "reported": sorted(levels), "review": [] if result is None else
                           list(result.assessment.review_reasons), "warnings": [] if result is None else
                           list(result.assessment.warnings)}
    for name in STANDARD_LUMBAR_LEVELS:
        truth = case.labels == DISC_LABELS[name]
        if not truth.any():
            continue
        rec: dict[str, Any] = {"level": name, "dice": 0.0, "named_dice": 0.0, "found": False, "named": False}
        if pred_labels is not None:
            idx = np.argwhere(truth)
            lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
            mr, mc = int(np.ceil(BOX_MARGIN_MM / sp_row)), int(np.ceil(BOX_MARGIN_MM / sp_col))
            box = (slice(lo[0], hi[0]), slice(max(lo[1] - mr, 0), hi[1] + mr), slice(max(lo[2] - mc, 0), hi[2] + mc))
            pred_any = np.zeros_like(truth)
            pred_any[box] = pred_labels[box] > 0
            rec["dice"] = _dice(truth, pred_any)
            rec["named_dice"] = _dice(truth, pred_labels == DISC_LABELS[name])
            rec["found"] = rec["dice"] >= FOUND_DICE
            rec["named"] = rec["named_dice"] >= FOUND_DICE
        g = case.gradings.get(name, {})
        lv = levels.get(name)
        rec["confidence"] = None if lv is None else lv.confidence
        rec["pfirrmann_truth"] = g.get("pfirrmann")
        rec["pfirrmann_pred"] = (lv.pfirrmann.value.grade if lv is not None and lv.pfirrmann.value is not None
                                 and rec["named"] else None)
        rec["listhesis_truth"] = g.get("spondylolisthesis")
        grade = lv.listhesis.value.grade if lv is not None and lv.listhesis.value is not None and rec["named"] else None
        rec["listhesis_pred"] = None if grade is None else int(grade >= 1)
        slip = lv.listhesis.value.slip_percent if grade is not None else None
        rec["slip_percent"] = None if slip is None else round(float(slip), 1)
        rec.update(_disc_gradings(g, lv if rec["named"] else None))
        out["levels"].append(rec)
    if result is not None:
        for b in result.boxes:
            vert = b.label.split(" ")[0]
            if vert not in VERTEBRA_LABELS or vert == "S1" or b.series != result.sagittal.name:
                continue
            m = case.labels[b.slice_index] == VERTEBRA_LABELS[vert]
            if m.sum() < 50:
                continue
            rows, cols = np.nonzero(m)
            truth_box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
            out["boxes"].append({"vertebra": vert, "iou": _box_iou(b.pixel_box, truth_box)})
    return out


def _disc_gradings(truth: Mapping[str, Any], level: Any | None) -> dict[str, Any]:
    """Return one disc's Modic and yes/no gradings, SPIDER's against the pipeline's (None where
    SPIDER has no grade, or the level was not named right or its finding not assessed); for a yes/no
    finding also the probability of "present" (its confidence is that of the value it gives)."""
    rec: dict[str, Any] = {"modic_truth": truth.get("modic"), "modic_pred": None}
    f = None if level is None else level.modic
    if f is not None and f.status == "assessed" and f.value is not None:
        rec["modic_pred"] = f.value.type
    for key, column in PRESENCE_GRADINGS:
        t = truth.get(column)
        rec[f"{key}_truth"] = None if t is None else bool(t)
        rec[f"{key}_pred"] = rec[f"{key}_p"] = None
        f = None if level is None else getattr(level, key)
        if f is None or f.status != "assessed" or f.value is None:
            continue
        rec[f"{key}_pred"] = f.value.present
        if f.confidence is not None:
            rec[f"{key}_p"] = f.confidence if f.value.present else 1.0 - f.confidence
    return rec


def _presence_summary(lv: Sequence[Sequence[Mapping[str, Any]]], key: str, n_boot: int) -> dict[str, Any]:
    """Return a yes/no grading's figures over the discs SPIDER graded and the pipeline gave a value."""
    pairs = [[(x[f"{key}_truth"], x[f"{key}_pred"], x[f"{key}_p"]) for x in p
              if x.get(f"{key}_truth") is not None and x.get(f"{key}_pred") is not None] for p in lv]
    graded = [[x for x in p if x.get(f"{key}_truth") is not None] for p in lv]

    # a statistic undefined on a resample (one class only) is nan: cluster_ci leaves it out
    def rates(items: list) -> tuple[float, float]:
        return M.sensitivity_specificity([t for t, _, _ in items], [q for _, q, _ in items])

    def auc(items: list) -> float:
        scored = [(t, p) for t, _, p in items if p is not None]
        return M.auc([t for t, _ in scored], [p for _, p in scored])

    return {"balanced_accuracy": M.cluster_ci(
                pairs, lambda i: M.balanced_accuracy([t for t, _, _ in i], [q for _, q, _ in i]), n_boot),
            "sensitivity": M.cluster_ci(pairs, lambda i: rates(i)[0], n_boot),
            "specificity": M.cluster_ci(pairs, lambda i: rates(i)[1], n_boot),
            "auc": M.cluster_ci(pairs, auc, n_boot),
            "positives": sum(1 for p in pairs for t, _, _ in p if t),
            "graded_share": M.cluster_ci(graded, lambda i: float(np.mean(
                [x[f"{key}_pred"] is not None for x in i])), n_boot)}


def _modic_summary(lv: Sequence[Sequence[Mapping[str, Any]]], n_boot: int) -> dict[str, Any]:
    """Return the Modic type accuracy, the balanced accuracy of any change against none, and the
    accuracy of always answering "no change" on the same discs."""
    pairs = [[(x["modic_truth"], x["modic_pred"]) for x in p
              if x.get("modic_truth") is not None and x.get("modic_pred") is not None] for p in lv]

    return {"type_accuracy": M.cluster_ci(pairs, lambda i: float(np.mean([t == q for t, q in i])), n_boot),
            "change_balanced_accuracy": M.cluster_ci(
                pairs, lambda i: M.balanced_accuracy([t != 0 for t, _ in i], [q != 0 for _, q in i]), n_boot),
            "majority_accuracy": M._round(float(np.mean([t == 0 for p in pairs for t, _ in p]))) if any(pairs) else None,
            "changes": sum(1 for p in pairs for t, _ in p if t != 0)}


def summarise(cases: Sequence[Mapping[str, Any]], n_boot: int = M.N_BOOTSTRAP) -> dict[str, Any]:
    """Return the real-data metrics of scored patients (``score_case`` records)."""
    lv = [c["levels"] for c in cases]

    def mean_of(key: str) -> Callable[[list], float]:
        return lambda items: float(np.mean([float(x[key]) for x in items]))

    graded = [[x for x in p if x["pfirrmann_truth"] and x["pfirrmann_pred"]] for p in lv]
    all_graded = [[x for x in p if x["pfirrmann_truth"]] for p in lv]
    flagged = [[x for x in p if x["listhesis_truth"] is not None and x["listhesis_pred"] is not None] for p in lv]

    def kappa(items: list) -> float | None:
        t, p = [x["pfirrmann_truth"] for x in items], [x["pfirrmann_pred"] for x in items]
        return M.cohen_kappa(t, p, weights="quadratic", labels=[1, 2, 3, 4, 5])

    def sens(items: list) -> float | None:
        pos = [x for x in items if x["listhesis_truth"]]
        return float(np.mean([x["listhesis_pred"] for x in pos])) if pos else None

    def spec(items: list) -> float | None:
        neg = [x for x in items if not x["listhesis_truth"]]
        return float(np.mean([1 - x["listhesis_pred"] for x in neg])) if neg else None

    box = [[b for b in c["boxes"]] for c in cases]
    return {
        "patients": len(cases), "failed_runs": sum(1 for c in cases if c["error"]),
        "levels": sum(len(p) for p in lv),
        "disc_dice": M.cluster_ci(lv, mean_of("dice"), n_boot),
        "disc_named_dice": M.cluster_ci(lv, mean_of("named_dice"), n_boot),
        "discs_found": M.cluster_ci(lv, mean_of("found"), n_boot),
        "discs_named_right": M.cluster_ci(lv, mean_of("named"), n_boot),
        "patients_all_named": sum(1 for p in lv if p and all(x["named"] for x in p)),
        "vertebra_box_iou": M.cluster_ci(box, mean_of("iou"), n_boot),
        "pfirrmann_exact": M.cluster_ci(graded, lambda i: float(np.mean(
            [x["pfirrmann_truth"] == x["pfirrmann_pred"] for x in i])), n_boot),
        "pfirrmann_within_one": M.cluster_ci(graded, lambda i: float(np.mean(
            [abs(x["pfirrmann_truth"] - x["pfirrmann_pred"]) <= 1 for x in i])), n_boot),
        "pfirrmann_kappa": M.cluster_ci(graded, kappa, n_boot),
        "pfirrmann_graded_share": M.cluster_ci(all_graded, lambda i: float(np.mean(
            [x["pfirrmann_pred"] is not None for x in i])), n_boot),
        "pfirrmann_confusion": _confusion(graded),
        "listhesis_sensitivity": M.cluster_ci(flagged, sens, n_boot),
        "listhesis_specificity": M.cluster_ci(flagged, spec, n_boot),
        "listhesis_positives": sum(1 for p in flagged for x in p if x["listhesis_truth"]),
        # does the confidence tell right names from wrong ones? (levels the pipeline reported)
        "named_right_when_confident": _share_named([x for p in lv for x in p], lambda c: c >= LOW_LEVEL_CONFIDENCE),
        "named_right_when_unsure": _share_named([x for p in lv for x in p], lambda c: c < LOW_LEVEL_CONFIDENCE),
        "patients_flagged_for_review": sum(1 for c in cases if c.get("review")),
        "disc_gradings": {**{key: _presence_summary(lv, key, n_boot) for key, _ in PRESENCE_GRADINGS},
                          "modic": _modic_summary(lv, n_boot)},
    }


def _share_named(levels: Sequence[Mapping[str, Any]], keep: Callable[[float], bool]) -> dict[str, Any]:
    """Return {"named_right", "of"}: of the reported levels whose confidence passes ``keep``."""
    chosen = [x for x in levels if x.get("confidence") is not None and keep(x["confidence"])]
    return {"named_right": sum(1 for x in chosen if x["named"]), "of": len(chosen)}


def _confusion(graded: Sequence[Sequence[Mapping[str, Any]]]) -> list[list[int]]:
    """Return the Pfirrmann confusion matrix, rows the radiologists' grade 1-5, columns the pipeline's."""
    m = [[0] * 5 for _ in range(5)]
    for p in graded:
        for x in p:
            m[x["pfirrmann_truth"] - 1][x["pfirrmann_pred"] - 1] += 1
    return m


VARIANTS = ("as-stored", "flipped", "thick", "off-centre")


def variant_case(case: RealCase, variant: str) -> RealCase:
    """Return the case as another acquisition would store it, with its truth moved along:

    - ``flipped``: anterior on the image's right and the slices in the opposite order (the pipeline
      must turn it round from the geometry alone);
    - ``thick``: every fourth slice, 4 times the slice distance (a 2D sequence's thick slices; no
      partial-volume blur is added);
    - ``off-centre``: the slices on one side of the mid-line dropped, so that the spine's mid-line
      lies two slices from the stack's edge (scoliosis, positioning).
    """
    from dataclasses import replace

    if variant == "as-stored":
        return case
    A = case.affine.copy()
    if variant == "flipped":
        n, w = case.images.shape[0], case.images.shape[2]
        A = flip_index(flip_index(A, 0, n), 2, w)
        corners = {n - 1 - s: {k: (w - 1 - x, y) for k, (x, y) in c.items()} for s, c in case.corners_px.items()}
        return replace(case, images=case.images[::-1, :, ::-1].copy(), labels=case.labels[::-1, :, ::-1].copy(),
                       affine=A, mid=n - 1 - case.mid, corners_px=corners)
    if variant == "thick":
        keep = list(range(case.mid % 4, case.images.shape[0], 4))
        A[:3, 3] = A[:3, 3] + keep[0] * A[:3, 0]
        A[:3, 0] = 4 * A[:3, 0]
    elif variant == "off-centre":
        keep = list(range(max(case.mid - 2, 0), case.images.shape[0]))
        A[:3, 3] = A[:3, 3] + keep[0] * A[:3, 0]
    else:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    return replace(case, images=case.images[keep], labels=case.labels[keep], affine=A, mid=keep.index(case.mid),
                   corners_px={i: case.corners_px[s] for i, s in enumerate(keep)})


def evaluate_real(root: str | Path, gradings_csv: str | Path, patients: Sequence[str] | None = None,
                  device: str = "cpu", n_boot: int = M.N_BOOTSTRAP,
                  progress: Callable[[str], None] | None = None, variant: str = "as-stored") -> dict[str, Any]:
    """Return the real-data report of the held-out patients (default) of a SPIDER folder, stored as
    ``variant`` says (``variant_case``)."""
    wanted = sorted(patients or HELD_OUT_PATIENTS, key=int)
    gradings = read_gradings(gradings_csv)
    models = ModelSet.load(SAGITTAL_MODELS, device=device)
    scored, seconds = [], []
    for case in iter_cases(root, gradings, patients=wanted):
        case = variant_case(case, variant)
        t = time.perf_counter()
        try:
            result, error = assess(image_stack(case), (), study_instance_uid=f"SPIDER-{case.patient}",
                                   models=models), None
        except SpineAssistError as e:
            result, error = None, str(e)
        seconds.append(time.perf_counter() - t)
        rec = score_case(case, result, error)
        scored.append(rec)
        if progress:
            named = sum(x["named"] for x in rec["levels"])
            progress(f"patient {case.patient}: {named}/{len(rec['levels'])} lumbar discs named right, "
                     f"disc Dice {np.mean([x['dice'] for x in rec['levels']]):.3f}"
                     + (f"; stopped: {error}" if error else ""))
    missing = set(wanted) - {c["patient"] for c in scored}
    if missing:
        raise SpineAssistError(f"{root}: no images of patient(s) {', '.join(sorted(missing, key=int))}")
    return {"source": str(root), "patients": wanted, "variant": variant, "summary": summarise(scored, n_boot),
            "seconds_per_patient": round(float(np.median(seconds)), 2), "cases": scored,
            "models": [{"name": i.name, "sha256": i.sha256} for i in models.infos], "targets": TARGETS}


def format_ci(m: Mapping[str, Any] | None) -> str:
    """Return a figure as "value (low-high)" at 3 decimals, or "n/a"."""
    if not m or m.get("value") is None:
        return "n/a"
    lo, hi = m["ci95"]
    return f"{m['value']:.3f} ({lo:.3f}-{hi:.3f})" if lo is not None else f"{m['value']:.3f}"


def markdown_table(report: Mapping[str, Any]) -> str:
    """Return the real-MRI table of a report, with the targets."""
    s = report["summary"]
    rows = [
        ("disc Dice (lumbar discs, any name)", "disc_dice", ">= 0.90"),
        ("disc Dice (voxels given the disc's own name)", "disc_named_dice", ""),
        ("lumbar discs found (Dice >= 0.5)", "discs_found", "all"),
        ("lumbar discs found and named right", "discs_named_right", "all"),
        ("vertebral body box IoU (counting slice)", "vertebra_box_iou", ""),
        ("Pfirrmann exact accuracy", "pfirrmann_exact", ">= 0.75"),
        ("Pfirrmann within one grade", "pfirrmann_within_one", ">= 0.97"),
        ("Pfirrmann quadratic kappa", "pfirrmann_kappa", ">= 0.85"),
        ("lumbar discs given a Pfirrmann grade", "pfirrmann_graded_share", ""),
        ("spondylolisthesis sensitivity (Meyerding >= I)", "listhesis_sensitivity", ">= 0.90"),
        ("spondylolisthesis specificity", "listhesis_specificity", ">= 0.95"),
    ]
    which = "Held-out SPIDER patients" if set(report["patients"]) == HELD_OUT_PATIENTS else \
        "SPIDER patients (not the held-out test set)"
    lines = [f"Stored as: {report.get('variant', 'as-stored')}. {which}: {s['patients']} ({', '.join(report['patients'])}), {s['levels']} lumbar "
             f"levels; runs stopped with an error: {s['failed_runs']}; patients with every lumbar disc named right: "
             f"{s['patients_all_named']}; spondylolisthesis-positive levels: {s['listhesis_positives']}; patients "
             f"flagged for review: {s['patients_flagged_for_review']}. Levels named right when the level confidence "
             f"is >= {LOW_LEVEL_CONFIDENCE}: {s['named_right_when_confident']['named_right']} of "
             f"{s['named_right_when_confident']['of']}; below: {s['named_right_when_unsure']['named_right']} of "
             f"{s['named_right_when_unsure']['of']}.", "",
             "| metric | value (95 % CI, patients resampled) | n | target |", "|---|---|---|---|"]
    for label, key, target in rows:
        lines.append(f"| {label} | {format_ci(s[key])} | {s[key]['n']} | {target} |")
    lines += _gradings_table(s.get("disc_gradings"))
    cm = s["pfirrmann_confusion"]
    lines += ["", "Pfirrmann confusion (rows: SPIDER's radiologists, columns: SpineAssist):", "",
              "| | I | II | III | IV | V |", "|---|---|---|---|---|---|"]
    lines += [f"| {'I II III IV V'.split()[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(cm)]
    return "\n".join(lines) + "\n"


def _gradings_table(g: Mapping[str, Any] | None) -> list[str]:
    """Return the lines of the disc-gradings table (none for a report made before they were scored)."""
    if not g:
        return []
    lines = ["", "Disc gradings as the pipeline reports them (`sag_disc_grades` on the pipeline's own disc; "
             "only discs found and named right):", "",
             "| grading | positives | balanced accuracy | sensitivity | specificity | AUC | discs given a value | target |",
             "|---|---|---|---|---|---|---|---|"]
    for key, _ in PRESENCE_GRADINGS:
        m = g[key]
        lines.append(f"| {FINDING_TITLES[key]} | {m['positives']} of {m['balanced_accuracy']['n']} | {format_ci(m['balanced_accuracy'])} | "
                     f"{format_ci(m['sensitivity'])} | {format_ci(m['specificity'])} | {format_ci(m['auc'])} | "
                     f"{format_ci(m['graded_share'])} | balanced accuracy >= 0.80 |")
    m = g["modic"]
    lines.append(f"| any Modic change | {m['changes']} of {m['type_accuracy']['n']} | {format_ci(m['change_balanced_accuracy'])} "
                 f"| | | | | |")
    lines += ["", f"Modic type (0/1/2/3) accuracy: {format_ci(m['type_accuracy'])}, target >= 0.85 (always answering "
                  f"\"no change\" on the same discs: {m['majority_accuracy']})."]
    return lines


REAL_SOURCE = "spineassist evaluate --real"
GRADED_BY = "sag_disc_grades"     # the model whose findings ``disc_gradings`` scores


def store_real_in_manifest(report: Mapping[str, Any], manifest_path: str | Path | None = None) -> None:
    """Write the held-out real patients' summary beside each sagittal model's phantom metrics, keyed
    by the weights it was measured with (the phantom evaluation leaves it in place). A model whose
    ``real_metrics`` come from its own held-out evaluation (``sag_canal_unet``'s, from
    ``training.canal_eval``) keeps them; the disc gradings' figures go to ``GRADED_BY`` only."""
    import json

    path = Path(manifest_path) if manifest_path else models_dir() / "manifest.json"
    measured = {m["name"]: m["sha256"] for m in report["models"]}
    summary = {k: v for k, v in report["summary"].items() if k != "disc_gradings"}
    source = f"{REAL_SOURCE} (SPIDER held-out patients " + ", ".join(report["patients"]) + ")"
    with _manifest_lock(path):
        data = json.loads(path.read_text(encoding="utf-8"))
        for m in data["models"]:
            own = m.get("real_metrics", {}).get("source", REAL_SOURCE)
            if m["name"] not in measured or not own.startswith(REAL_SOURCE):
                continue
            m["real_metrics"] = {"sha256": measured[m["name"]], "source": source, **summary}
            if m["name"] == GRADED_BY and "disc_gradings" in report["summary"]:
                m["real_metrics"]["disc_gradings"] = report["summary"]["disc_gradings"]
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
