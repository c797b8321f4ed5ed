"""Return ``sag_disc_grades`` trained on SPIDER's per-disc gradings, its decision thresholds, and its
scores on the held-out test patients.

Data: the SPIDER sagittal T2 series as PNG slices with manual masks (``training.spider``) and
SPIDER's ``radiological_gradings.csv``; each disc whose level is named (T11-T12 to L5-S1) and graded
is one sample. The 12 held-out test patients (``spider.HELD_OUT_PATIENTS``) are never read for
training; the other 29 (the development patients) all train the shipped network, for a fixed number
of epochs. Its decision thresholds come from a patient-level ``CV_FOLDS``-fold cross-validation on
those 29 (``out_of_fold_probabilities``): each disc is scored by a network trained the same way on the
other folds' patients, and each threshold is chosen on those out-of-fold scores of all 29 patients
(a fixed validation subset of 6 patients, used before, held 2 herniated discs and chose thresholds
that did not carry over).

Training input: the window ``models.disc_grades`` cuts at inference, placed from the manual disc
mask, on the study's mid-sagittal slice or one of the two either side of it; moved by up to
``SHIFT_MM``, turned by up to ``ANGLE_DEG``, scaled by up to ``SCALE``; the side slices 2-4 slices
away, their order reversed at random (a sagittal window is never flipped front to back: anterior is
always on its left); coil bias, gamma, contrast, blur and noise. Losses: cross-entropy for the Modic
type (types 0 and 2 weighted by inverse frequency; types 1 and 3, one disc each in SPIDER, take type
2's weight), binary cross-entropy for each binary grading (positives weighted by the negatives over
the positives, at most ``POS_WEIGHT_CAP``), and the Pfirrmann grade as an auxiliary output. Each binary
threshold is the one that maximises the balanced accuracy of the out-of-fold scores, and the Modic
change threshold (``models.disc_grades.modic_type``) the one that maximises the Modic type accuracy
there. ``train_network`` can still choose the epoch on validation discs (``val``); the shipped recipe
does not, since no fixed subset of 29 patients is large enough to choose it.

Usage::

    python -m SpineAssistLib.training.disc_grades train --data /work/data/Data/t2_SPACE \\
        --gradings /work/data/radiological_gradings.csv --seed 0          # = spineassist train sag_disc_grades
    python -m SpineAssistLib.training.disc_grades evaluate --data /work/data/Data/t2_SPACE \\
        --gradings /work/data/radiological_gradings.csv --update-manifest --markdown table.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from SpineAssistLib.anatomy import DISC_LABELS
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.models import load_model, model_spec
from SpineAssistLib.models.catalog import MODEL_DEFS
from SpineAssistLib.models.disc_grades import (
    MODIC_CHANGE,
    NEIGHBOUR_MM,
    WINDOW_MM,
    both_orders,
    disc_grades_crop,
    disc_window,
    modic_type,
    neighbour_slices,
    window_input,
)
from SpineAssistLib.models.disc_grades_net import (
    BINARY_GRADINGS,
    INPUT_SIZE,
    MODIC_TYPES,
    WIDTHS,
    build_network,
    network_from_state,
)
from SpineAssistLib.models.imaging import normalize_slice
from SpineAssistLib.models.registry import models_dir, sha256_file
from SpineAssistLib.training import metrics as M
from SpineAssistLib.training.metrics import balanced_accuracy
from SpineAssistLib.training.real_eval import variant_case
from SpineAssistLib.training.spider import (
    HELD_OUT_PATIENTS,
    iter_cases,
    mha_patients,
    png_patients,
    read_gradings,
)
from SpineAssistLib.training.train import _manifest_lock, update_manifest

NAME = "sag_disc_grades"
CV_FOLDS = 5                     # patient-level folds whose out-of-fold scores choose the thresholds
# SPIDER's column (training.spider.read_gradings' key) of each binary grading
SPIDER_KEYS: dict[str, str] = {"endplate_upper": "up_endplate", "endplate_lower": "low_endplate",
                               "narrowing": "narrowing", "bulging": "bulging", "herniation": "herniation"}
DEFAULT_SETTINGS: dict[str, Any] = {"epochs": 45, "batch": 32, "lr": 2e-3, "weight_decay": 1e-4, "copies": 3,
                                    "aux_weight": 0.5, "dropout": 0.3, "widths": list(WIDTHS)}
SHIFT_MM, ANGLE_DEG, SCALE = 3.0, 8.0, 0.10       # the window's random placement in training
CENTRE_JITTER_SLICES = 2                          # the middle slice: the mid-sagittal one or up to 2 either side
SIDE_STEP_SLICES = (2, 4)                         # side slices this many slices away (SPIDER's slices are ~1 mm)
POS_WEIGHT_CAP = 10.0
MIN_MASK_PIXELS = 40
# How a series may be stored for scoring (``real_eval.variant_case``); "flipped" is left out: these
# windows are cut in the canonical view, which the pipeline's orientation step gives every series.
VARIANTS = ("as-stored", "thick", "off-centre")


@dataclass
class DiscSample:
    """One graded disc of one patient: the patient's normalised slices and label map (shared by its
    discs), the disc's label value, mid-sagittal slice, pixel spacing and SPIDER's gradings."""

    patient: str
    level: str
    slices01: np.ndarray                 # (slices, rows, cols) float32, each slice normalize_slice'd
    labels: np.ndarray                   # (slices, rows, cols) SpineAssist label map
    mid: int
    spacing: tuple[float, float]         # (column, row) mm per pixel
    slice_mm: float
    gradings: dict[str, int] = field(default_factory=dict)
    raw: np.ndarray | None = None        # the slices as stored (for scoring through disc_grades_crop)

    @property
    def disc_label(self) -> int:
        return DISC_LABELS[self.level]

    def mask(self, k: int) -> np.ndarray:
        return self.labels[k] == self.disc_label

    @property
    def modic(self) -> int:
        return int(self.gradings.get("modic", 0))

    def binary(self, name: str) -> int:
        return int(self.gradings.get(SPIDER_KEYS[name], 0) > 0)


def has_all_gradings(g: Mapping[str, int]) -> bool:
    return all(k in g for k in ("modic", "pfirrmann", *SPIDER_KEYS.values()))


def load_samples(root: str | Path, gradings: Mapping[str, Any], patients: Iterable[str], keep_raw: bool = False,
                 progress: Callable[[str], None] | None = None, variant: str = "as-stored") -> list[DiscSample]:
    """Return the graded discs of ``patients`` of a SPIDER folder (levels T11-T12 to L5-S1 whose
    disc is labelled on the mid-sagittal slice), the series stored as ``variant`` says
    (``real_eval.variant_case``: ``thick`` keeps every fourth slice, 4 times as far apart;
    ``off-centre`` drops the slices on one side of the mid-line)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    wanted = {str(p) for p in patients}
    out: list[DiscSample] = []
    for case in iter_cases(root, gradings, patients=wanted):
        if variant != "as-stored":

            case = variant_case(case, variant)
        slices01 = np.stack([normalize_slice(s) for s in case.images]).astype(np.float32)
        slice_mm = float(np.linalg.norm(case.affine[:3, 0]))
        n = 0
        for level in case.levels:
            g = case.gradings.get(level)
            if not g or not has_all_gradings(g) or (case.labels[case.mid] == DISC_LABELS[level]).sum() < MIN_MASK_PIXELS:
                continue
            out.append(DiscSample(case.patient, level, slices01, case.labels, case.mid, case.pixel_spacing, slice_mm,
                                  dict(g), case.images if keep_raw else None))
            n += 1
        if progress:
            progress(f"patient {case.patient}: {n} graded discs")
    missing = wanted - {s.patient for s in out}
    if missing:
        raise SpineAssistError(f"{root}: no graded discs of patient(s) {', '.join(sorted(missing, key=int))}")
    return out


# ---- inputs ---------------------------------------------------------------------------------

def evaluation_input(s: DiscSample) -> np.ndarray:
    """Return the input the shipped predictor gets for a disc: its mid-sagittal slice and the slices
    ``NEIGHBOUR_MM`` either side, the window from the disc's mask (``disc_grades_crop``'s result)."""
    idx = list(neighbour_slices(len(s.slices01), s.mid, s.slice_mm))
    if s.raw is not None:
        return disc_grades_crop(s.raw[idx], s.mask(s.mid), s.spacing)
    return window_input(s.slices01[idx], disc_window(s.mask(s.mid), s.spacing))


def training_input(s: DiscSample, rng: np.random.Generator) -> np.ndarray:
    """Return one randomly altered training input of a disc (module docstring)."""
    n = len(s.slices01)
    k = s.mid
    if rng.random() < 0.5:
        k = int(np.clip(s.mid + rng.integers(-CENTRE_JITTER_SLICES, CENTRE_JITTER_SLICES + 1), 0, n - 1))
        if s.mask(k).sum() < MIN_MASK_PIXELS:
            k = s.mid
    crop = disc_window(s.mask(k), s.spacing).jittered(rng, SHIFT_MM, ANGLE_DEG, SCALE)
    step = int(rng.integers(SIDE_STEP_SLICES[0], SIDE_STEP_SLICES[1] + 1))
    idx = [max(k - step, 0), k, min(k + step, n - 1)]
    if rng.random() < 0.5:
        idx = idx[::-1]
    return augment_window(window_input(s.slices01[idx], crop), rng)


def augment_window(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return a (3, S, S) [0, 1] window with one random coil bias field, gamma, contrast, blur and
    noise for its three slices (they come from one acquisition)."""
    import cv2

    _, h, w = x.shape
    x = x.astype(np.float32).copy()
    if rng.random() < 0.7:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        yy, xx = yy / h - 0.5, xx / w - 0.5
        a = rng.normal(0, 0.3, 5)
        x *= np.exp(a[0] * xx + a[1] * yy + a[2] * xx * yy + a[3] * xx ** 2 + a[4] * yy ** 2)[None]
    if rng.random() < 0.7:
        x = np.clip(x, 0, None) ** float(np.exp(rng.normal(0, 0.25)))
    if rng.random() < 0.7:
        x = rng.uniform(0.8, 1.2) * (x - 0.5) + 0.5 + rng.normal(0, 0.05)
    if rng.random() < 0.2:
        sigma = float(rng.uniform(0.3, 1.0))
        x = np.stack([cv2.GaussianBlur(ch, (0, 0), sigmaX=sigma, sigmaY=sigma) for ch in x])
    if rng.random() < 0.5:
        sigma = float(rng.uniform(0.005, 0.04))
        x = np.sqrt((x + rng.normal(0, sigma, x.shape)) ** 2 + rng.normal(0, sigma, x.shape) ** 2)
    return np.clip(x, 0, 1).astype(np.float32)


def targets(samples: Sequence[DiscSample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (Modic type index (N,), binary gradings (N, 5), Pfirrmann grade - 1 (N,)) of samples."""
    modic = np.array([MODIC_TYPES.index(s.modic) for s in samples], np.int64)
    binary = np.array([[s.binary(n) for n in BINARY_GRADINGS] for s in samples], np.float32)
    pf = np.array([int(s.gradings["pfirrmann"]) - 1 for s in samples], np.int64)
    return modic, binary.reshape(len(samples), len(BINARY_GRADINGS)), pf


# ---- thresholds and scores -----------------------------------------------------------------

def choose_threshold(truth: Sequence[bool], prob: Sequence[float]) -> float:
    """Return the threshold that maximises the balanced accuracy of ``prob >= t`` (ties: the middle
    of the best run of candidate thresholds); 0.5 where the truth has one class only."""
    t, p = np.asarray(truth, bool), np.asarray(prob, float)
    if t.all() or not t.any():
        return 0.5
    cuts = np.unique(p)
    candidates = np.concatenate([[0.0], (cuts[:-1] + cuts[1:]) / 2, [1.0]]) if len(cuts) > 1 else np.array([0.5])
    scores = np.array([balanced_accuracy(t, p >= c) for c in candidates])
    return _middle_of_best(candidates, scores)


def _middle_of_best(candidates: np.ndarray, scores: np.ndarray) -> float:
    """Return the candidate in the middle of the first run of candidates with the best score."""
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    run = best[: np.argmax(np.diff(np.append(best, best[-1] + 2)) > 1) + 1]
    return float(candidates[run[len(run) // 2]])


def choose_modic_threshold(truth: Sequence[int], probs: np.ndarray) -> float:
    """Return the ``modic_change`` threshold that maximises the Modic type accuracy (``modic_type``)."""
    t = np.asarray(truth)
    change = np.unique(1.0 - np.asarray(probs, float)[:, 0])
    candidates = np.concatenate([[0.0], (change[:-1] + change[1:]) / 2, [1.0]]) if len(change) > 1 else np.array([0.5])
    scores = np.array([np.mean([modic_type(p, c) == y for p, y in zip(probs, t)]) for c in candidates])
    return _middle_of_best(candidates, scores)


MIN_SELECTION_POSITIVES = 5     # a grading with fewer positives chooses neither the epoch nor its threshold


def choose_thresholds(samples: Sequence[DiscSample], modic_p: np.ndarray, binary_p: np.ndarray) -> dict[str, float]:
    """Return every decision threshold chosen on scored discs: the Modic change threshold at the best
    type accuracy, each binary one at the best balanced accuracy; 0.5 (the balance point the weighted
    loss trains towards) for a grading with fewer than ``MIN_SELECTION_POSITIVES`` positives."""
    modic_t, binary_t, _ = targets(samples)
    return {MODIC_CHANGE: choose_modic_threshold([MODIC_TYPES[i] for i in modic_t], modic_p),
            **{n: choose_threshold(binary_t[:, j] > 0, binary_p[:, j])
               if (binary_t[:, j] > 0).sum() >= MIN_SELECTION_POSITIVES else 0.5
               for j, n in enumerate(BINARY_GRADINGS)}}


def validation_score(modic_p: np.ndarray, binary_p: np.ndarray, modic_t: np.ndarray, binary_t: np.ndarray) -> float:
    """Return the mean AUC over Modic change (any type against none) and the binary gradings with at
    least ``MIN_SELECTION_POSITIVES`` positives and negatives (an AUC of 2 positives moves by
    a quarter with one disc)."""
    aucs = [M.auc(binary_t[:, j] > 0, binary_p[:, j]) for j in range(binary_t.shape[1])
            if MIN_SELECTION_POSITIVES <= (binary_t[:, j] > 0).sum() <= len(binary_t) - MIN_SELECTION_POSITIVES]
    aucs.append(M.auc(modic_t != 0, 1.0 - modic_p[:, 0]))
    aucs = [a for a in aucs if np.isfinite(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


# ---- training -------------------------------------------------------------------------------

def _predict_torch(net: Any, x: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Return the network's probabilities as the predictor gives them (both slice orders averaged)."""
    import torch

    net.eval()
    modic, binary = [], []
    with torch.inference_mode():
        for k in range(0, len(x), batch):
            part = x[k:k + batch]
            m, b = net(torch.from_numpy(np.ascontiguousarray(np.concatenate([part, part[:, ::-1]]))))
            modic.append(both_orders(m.numpy(), len(part)))
            binary.append(both_orders(b.numpy(), len(part)))
    return np.concatenate(modic), np.concatenate(binary)


def train_network(train: Sequence[DiscSample], val: Sequence[DiscSample], settings: Mapping[str, Any], seed: int = 0,
                  progress: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train the network; return {"state" (fp16 state dict of the best epoch), "epoch", "history",
    "val_probabilities" (modic, binary) of that epoch, "thresholds"}."""
    import torch
    import torch.nn.functional as F

    s = {**DEFAULT_SETTINGS, **settings}
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_network(tuple(s["widths"]), float(s["dropout"]))
    modic_t, binary_t, pf_t = targets(train)
    counts = np.bincount(modic_t, minlength=len(MODIC_TYPES)).astype(float)
    w = np.ones(len(MODIC_TYPES))
    w[0] = len(modic_t) / (2 * max(counts[0], 1))
    w[2] = len(modic_t) / (2 * max(counts[2], 1))
    w[1] = w[3] = w[2]               # one disc each in SPIDER: weighted as the type the rare types resemble
    modic_w = torch.tensor(w, dtype=torch.float32)
    pos = binary_t.sum(axis=0)
    pos_w = torch.tensor(np.minimum((len(binary_t) - pos) / np.maximum(pos, 1), POS_WEIGHT_CAP), dtype=torch.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=float(s["lr"]), weight_decay=float(s["weight_decay"]))
    epochs, batch, copies = int(s["epochs"]), int(s["batch"]), int(s["copies"])
    steps = epochs * int(np.ceil(len(train) * copies / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(s["lr"]), total_steps=max(steps, 1), pct_start=0.15)
    val_x = np.stack([evaluation_input(v) for v in val]) if val else None
    val_m, val_b, _ = targets(val) if val else (None, None, None)
    history, best = [], {"score": -1.0}
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        net.train()
        order = rng.permutation(np.repeat(np.arange(len(train)), copies))
        losses = []
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            if len(idx) < 2:
                continue
            x = torch.from_numpy(np.stack([training_input(train[i], rng) for i in idx]))
            m, b, p = net.logits(x)
            loss = (F.cross_entropy(m, torch.from_numpy(modic_t[idx]), weight=modic_w)
                    + F.binary_cross_entropy_with_logits(b, torch.from_numpy(binary_t[idx]), pos_weight=pos_w,
                                                         reduction="none").sum(dim=1).mean()
                    + float(s["aux_weight"]) * F.cross_entropy(p, torch.from_numpy(pf_t[idx])))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        rec: dict[str, Any] = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4),
                               "seconds": round(time.perf_counter() - t0, 1)}
        if val_x is not None:
            mp, bp = _predict_torch(net, val_x)
            rec["val_auc"] = round(validation_score(mp, bp, val_m, val_b), 4)
            rec["val_modic_accuracy"] = round(float(np.mean(mp.argmax(1) == val_m)), 4)
            if rec["val_auc"] > best["score"]:
                best = {"score": rec["val_auc"], "epoch": epoch, "probs": (mp, bp),
                        "state": {k: v.detach().clone() for k, v in net.state_dict().items()}}
        history.append(rec)
        if progress:
            progress(f"{NAME} epoch {epoch}/{epochs}: " + ", ".join(f"{k} {v}" for k, v in rec.items() if k != "epoch"))
    if "state" not in best:          # no validation patients: the last epoch
        best = {"epoch": epochs, "probs": None, "state": {k: v.detach().clone() for k, v in net.state_dict().items()}}
    thresholds = {n: 0.5 for n in (MODIC_CHANGE, *BINARY_GRADINGS)}
    if best["probs"] is not None:
        thresholds = choose_thresholds(val, *best["probs"])
    state = {k: v.half() if v.is_floating_point() else v for k, v in best["state"].items()}
    return {"state": state, "epoch": best["epoch"], "history": history, "val_probabilities": best["probs"],
            "val_score": best.get("score"), "thresholds": thresholds}


def patient_folds(patients: Iterable[str], folds: int = CV_FOLDS, seed: int = 0) -> list[list[str]]:
    """Return ``folds`` disjoint groups of the patients (a seeded shuffle dealt round), each sorted."""
    order = np.random.default_rng(seed).permutation(sorted({str(p) for p in patients}, key=int))
    if len(order) < folds:
        raise SpineAssistError(f"{len(order)} patients cannot make {folds} cross-validation folds")
    return [sorted(order[i::folds].tolist(), key=int) for i in range(folds)]


def out_of_fold_probabilities(samples: Sequence[DiscSample], settings: Mapping[str, Any], seed: int = 0,
                              folds: int = CV_FOLDS, progress: Callable[[str], None] | None = print
                              ) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Return (Modic probabilities (N, 4), binary probabilities (N, 5), the folds' patients): each
    disc scored by a network trained as the shipped one is (``settings``, last epoch) on the discs of
    the other folds' patients, as the predictor scores it (both slice orders)."""
    groups = patient_folds((s.patient for s in samples), folds, seed)
    modic_p = np.zeros((len(samples), len(MODIC_TYPES)), np.float32)
    binary_p = np.zeros((len(samples), len(BINARY_GRADINGS)), np.float32)
    s = {**DEFAULT_SETTINGS, **settings}
    for f, group in enumerate(groups):
        held = set(group)
        fit = [d for d in samples if d.patient not in held]
        idx = [i for i, d in enumerate(samples) if d.patient in held]
        net = network_from_state(train_network(fit, [], s, seed + 1 + f, progress=None)["state"])
        modic_p[idx], binary_p[idx] = _predict_torch(net, np.stack([evaluation_input(samples[i]) for i in idx]))
        if progress:
            progress(f"{NAME} cross-validation fold {f + 1}/{folds}: {len(fit)} discs trained, {len(idx)} scored "
                     f"(patients {', '.join(group)})")
    return modic_p, binary_p, groups


def split_patients(root: str | Path) -> dict[str, list[str]]:
    """Return {"train": the patients of a SPIDER folder outside the held-out test set, "val": []}
    (the thresholds come from cross-validation over the training patients)."""

    root = Path(root)
    if (root / "images").is_dir() and any((root / "images").glob("*.png")):
        patients = list(png_patients(root))
    else:

        patients = sorted({ip.name.split("_")[0] for ip, _ in mha_patients(root)}, key=lambda p: (len(p), p))
    dev = [p for p in patients if p not in HELD_OUT_PATIENTS]
    return {"train": dev, "val": []}


def _software() -> dict[str, str]:
    out = {}
    for mod in ("torch", "numpy", "cv2"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:  # pragma: no cover
            pass
    return out


def train_and_register(data: str | Path, gradings_csv: str | Path, *, epochs: int | None = None,
                       batch: int | None = None, seed: int = 0, device: str = "cpu", out_dir: str | Path | None = None,
                       command: str | None = None, version: str | None = None,
                       progress: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train ``sag_disc_grades`` on a SPIDER folder (held-out patients left out), write its fp16
    weights to ``out_dir`` (default ``Resources/Models``) and its manifest entry; return the entry."""
    import torch


    if device != "cpu":
        raise SpineAssistError(f"{NAME} trains on the CPU (a small network); got --device {device}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.perf_counter()
    settings = dict(DEFAULT_SETTINGS)
    if epochs is not None:
        settings["epochs"] = int(epochs)
    if batch is not None:
        settings["batch"] = int(batch)
    table = read_gradings(gradings_csv)
    split = split_patients(data)
    train = load_samples(data, table, split["train"], progress=progress)
    modic_p, binary_p, folds = out_of_fold_probabilities(train, settings, seed, CV_FOLDS, progress)
    thresholds = choose_thresholds(train, modic_p, binary_p)
    result = train_network(train, [], settings, seed, progress)
    result.update(thresholds=thresholds, folds=folds)
    out = Path(out_dir) if out_dir else models_dir()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{NAME}.pt"
    tmp = target.with_name(target.name + ".tmp")
    torch.save(result["state"], str(tmp))
    tmp.replace(target)
    seconds = time.perf_counter() - t0
    cv_report = score_probabilities(train, modic_p, binary_p, thresholds, n_boot=0)
    entry = manifest_entry(target, settings, seed, seconds, data, gradings_csv, split, result, cv_report,
                           command or f"spineassist train {NAME} --data {data} --gradings {gradings_csv} --seed {seed}",
                           version)
    if out.resolve() == models_dir().resolve():
        old = _old_entry()
        if old.get("sha256") == entry["sha256"]:
            entry["metrics"] = old.get("metrics", {})
    update_manifest(entry, out / "manifest.json")
    if progress:
        progress(f"{NAME}: {target} {target.stat().st_size / 1e6:.2f} MB, best epoch {result['epoch']}, "
                 f"thresholds {result['thresholds']}, {seconds / 60:.1f} min")
    return entry


def _old_entry() -> dict[str, Any]:
    path = models_dir() / "manifest.json"
    if not path.is_file():
        return {}
    return next((m for m in json.loads(path.read_text(encoding="utf-8")).get("models", []) if m.get("name") == NAME), {})


def manifest_entry(weights: Path, settings: Mapping[str, Any], seed: int, seconds: float, data: str | Path,
                   gradings_csv: str | Path, split: Mapping[str, list[str]], result: Mapping[str, Any],
                   cv_report: Mapping[str, Any] | None, command: str, version: str | None) -> dict[str, Any]:
    """Return the manifest entry of freshly trained weights (metrics empty until ``evaluate``)."""

    defn = MODEL_DEFS[NAME]
    return {
        "name": NAME, "file": weights.name, "sha256": sha256_file(weights), "size_bytes": weights.stat().st_size,
        "task": defn.task, "architecture": defn.architecture, "description": defn.description,
        "input": {"plane": "sagittal", "size": INPUT_SIZE, "channels": 3,
                  "normalisation": "per slice: 0.5-99.5th percentile to 0-1, float (no 8-bit rounding)",
                  "crop": defn.crop, "window_mm": WINDOW_MM, "neighbour_mm": NEIGHBOUR_MM,
                  "function": "models.disc_grades.disc_grades_crop"},
        "classes": list(defn.classes), "keypoints": [],
        "outputs": {"modic": {"kind": "4 classes (softmax)", "classes": [f"type{t}" for t in MODIC_TYPES],
                              "decision": "type 0 where 1 - p0 < thresholds.modic_change, else the most probable "
                                          "of types 1-3 (models.disc_grades.modic_type)"},
                    **{n: {"kind": "binary (sigmoid)", "spider_column": SPIDER_KEYS[n],
                           "decision": f"present where p >= thresholds.{n}"} for n in BINARY_GRADINGS},
                    "onnx": ["modic probabilities (N, 4)", "binary probabilities (N, 5) in the order "
                             + ", ".join(BINARY_GRADINGS)]},
        "thresholds": dict(result["thresholds"]),
        "version": version or _dt.date.today().strftime("%Y.%m.%d"),
        "training": {
            "data": {"source": "SPIDER (van der Graaf et al., Sci Data 2024; CC BY 4.0): sagittal T2 SPACE PNG "
                               "slices with manual masks and radiological_gradings.csv",
                     "path": str(data), "gradings": str(gradings_csv), "patients": dict(split),
                     "held_out_left_out": sorted(HELD_OUT_PATIENTS, key=int),
                     "discs": "levels T11-T12 to L5-S1 (SPIDER IVD labels 1-7) whose disc is labelled on the "
                              "mid-sagittal slice; the window placed from the manual disc mask",
                     "inputs": f"training.disc_grades: the window of the mid-sagittal slice or one within "
                               f"{CENTRE_JITTER_SLICES} slices, side slices {SIDE_STEP_SLICES[0]}-{SIDE_STEP_SLICES[1]} "
                               f"slices away in random order, window moved <= {SHIFT_MM} mm, turned <= {ANGLE_DEG} deg, "
                               f"scaled <= {SCALE:.0%}; bias field, gamma, contrast, blur, noise; no front-back flip"},
            "command": command, "seed": seed, "device": "cpu", "settings": dict(settings),
            "losses": "Modic: cross-entropy, types 0 and 2 weighted by inverse frequency, types 1 and 3 (one "
                      "disc each) as type 2; binary: BCE with positive weight n_neg / n_pos (at most "
                      f"{POS_WEIGHT_CAP:g}); auxiliary Pfirrmann cross-entropy x {settings.get('aux_weight')}",
            "selection": f"the last of {settings.get('epochs')} epochs, trained on every development patient; "
                         f"thresholds from a patient-level {len(result.get('folds') or [])}-fold cross-validation on "
                         "them (each disc scored by a network trained the same way on the other folds): binary: the "
                         "balanced-accuracy optimum of the out-of-fold scores, or 0.5 for a grading with fewer than "
                         f"{MIN_SELECTION_POSITIVES} positives; modic_change: the Modic type accuracy optimum; "
                         "probabilities averaged over the two slice orders",
            "cross_validation_folds": [list(f) for f in result.get("folds") or []],
            "history": list(result["history"]), "seconds": round(seconds, 1), "software": _software(),
            **({"cross_validation": cv_report["summary"]} if cv_report else {}),
        },
        "metrics": {},
    }


# ---- scoring --------------------------------------------------------------------------------

def score_probabilities(samples: Sequence[DiscSample], modic_p: np.ndarray, binary_p: np.ndarray,
                        thresholds: Mapping[str, float], n_boot: int = M.N_BOOTSTRAP) -> dict[str, Any]:
    """Return {"discs": per-disc records, "summary": metrics with 95 % patient-bootstrap intervals}."""
    records = []
    for s, m, b in zip(samples, modic_p, binary_p):
        rec = {"patient": s.patient, "level": s.level, "modic_truth": s.modic,
               "modic_pred": modic_type(m, thresholds[MODIC_CHANGE]), "modic_probs": [round(float(v), 4) for v in m]}
        for j, n in enumerate(BINARY_GRADINGS):
            rec[f"{n}_truth"] = s.binary(n)
            rec[f"{n}_p"] = round(float(b[j]), 4)
            rec[f"{n}_pred"] = int(b[j] >= thresholds[n])
        records.append(rec)
    return {"discs": records, "summary": summarise(records, n_boot), "thresholds": dict(thresholds)}


def summarise(records: Sequence[Mapping[str, Any]], n_boot: int = M.N_BOOTSTRAP) -> dict[str, Any]:
    """Return per grading: accuracy, balanced accuracy, sensitivity, specificity, AUC (binary) with
    95 % intervals resampling patients, base rate and confusion matrix; Modic type accuracy,
    balanced accuracy over the types present and the AUC of any Modic change."""

    by_patient: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_patient.setdefault(r["patient"], []).append(r)
    groups = list(by_patient.values())

    def boot(stat: Callable[[list], float | None]) -> dict[str, Any]:
        if n_boot == 0:
            v = stat(list(records))
            return {"value": M._round(v), "ci95": [None, None], "n": len(records)}
        return M.cluster_ci(groups, stat, n_boot)

    def nan_none(f: Callable[[list], float]) -> Callable[[list], float | None]:
        def g(items: list) -> float | None:
            v = f(items)
            return None if v is None or not np.isfinite(v) else v
        return g

    out: dict[str, Any] = {"patients": len(groups), "discs": len(records)}
    for n in BINARY_GRADINGS:
        t, p, s = f"{n}_truth", f"{n}_pred", f"{n}_p"
        out[n] = {
            "positives": int(sum(r[t] for r in records)),
            "accuracy": boot(nan_none(lambda i, t=t, p=p: float(np.mean([r[t] == r[p] for r in i])))),
            "balanced_accuracy": boot(nan_none(lambda i, t=t, p=p: balanced_accuracy([r[t] for r in i], [r[p] for r in i]))),
            "sensitivity": boot(nan_none(lambda i, t=t, p=p: M.sensitivity_specificity([r[t] for r in i], [r[p] for r in i])[0])),
            "specificity": boot(nan_none(lambda i, t=t, p=p: M.sensitivity_specificity([r[t] for r in i], [r[p] for r in i])[1])),
            "auc": boot(nan_none(lambda i, t=t, s=s: M.auc([bool(r[t]) for r in i], [r[s] for r in i]))),
            "confusion": [[sum(1 for r in records if r[t] == a and r[p] == b) for b in (0, 1)] for a in (0, 1)],
        }

    def modic_balanced(items: list) -> float:
        present = sorted({r["modic_truth"] for r in items})
        return float(np.mean([np.mean([r["modic_pred"] == c for r in items if r["modic_truth"] == c]) for c in present]))

    out["modic"] = {
        "counts": {str(c): int(sum(r["modic_truth"] == c for r in records)) for c in MODIC_TYPES},
        "accuracy": boot(nan_none(lambda i: float(np.mean([r["modic_truth"] == r["modic_pred"] for r in i])))),
        "balanced_accuracy": boot(nan_none(modic_balanced)),
        "any_change_auc": boot(nan_none(lambda i: M.auc([r["modic_truth"] != 0 for r in i],
                                                        [1.0 - r["modic_probs"][0] for r in i]))),
        "confusion": [[sum(1 for r in records if r["modic_truth"] == a and r["modic_pred"] == b) for b in MODIC_TYPES]
                      for a in MODIC_TYPES],
    }
    return out


TARGETS = {"balanced_accuracy": 0.80, "modic_accuracy": 0.85}
LABELS = {"endplate_upper": "upper endplate defect", "endplate_lower": "lower endplate defect",
          "narrowing": "disc narrowing", "bulging": "disc bulging", "herniation": "disc herniation"}


def evaluate(root: str | Path, gradings_csv: str | Path, patients: Iterable[str] | None = None, device: str = "cpu",
             n_boot: int = M.N_BOOTSTRAP, manifest: Mapping[str, Any] | None = None,
             progress: Callable[[str], None] | None = None, variant: str = "as-stored") -> dict[str, Any]:
    """Return the shipped model's scores on SPIDER patients (default: the 12 held-out test patients),
    each disc's input cut by ``disc_grades_crop`` from the manual disc mask on the mid-sagittal slice
    (of the series stored as ``variant`` says: ``load_samples``)."""

    wanted = sorted(patients or HELD_OUT_PATIENTS, key=int)
    model = load_model(NAME, device=device, manifest=manifest)
    samples = load_samples(root, read_gradings(gradings_csv), wanted, keep_raw=True, progress=progress,
                           variant=variant)
    x = np.stack([evaluation_input(s) for s in samples])
    modic_p, binary_p = model.probabilities(x)
    report = score_probabilities(samples, modic_p, binary_p, model.thresholds, n_boot)
    spec = model_spec(NAME, manifest)
    report.update(source=str(root), patients=wanted, model={"name": NAME, "sha256": spec.sha256},
                  runtime=model.runtime, targets=TARGETS, variant=variant)
    return report


def _fmt(m: Mapping[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    lo, hi = m["ci95"]
    return f"{m['value']:.3f} ({lo:.3f}-{hi:.3f})" if lo is not None else f"{m['value']:.3f}"


def markdown_table(report: Mapping[str, Any]) -> str:
    """Return the held-out table of an ``evaluate`` report (markdown), with the confusion matrices."""
    s = report["summary"]
    which = "held-out SPIDER test patients" if set(report["patients"]) == HELD_OUT_PATIENTS else "SPIDER patients"
    head = (f"{s['discs']} graded discs (T11-T12 to L5-S1) of {s['patients']} {which} "
            f"({', '.join(report['patients'])}); window from the manual disc mask; weights "
            f"{report['model']['sha256'][:12]}, run in {report['runtime']}. Intervals: 95 % bootstrap over "
            "patients (1000 resamples).")
    lines = [head, "",
             "| grading | positives | threshold | accuracy | balanced accuracy | sensitivity | specificity | AUC | target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in BINARY_GRADINGS:
        g = s[n]
        lines.append(f"| {LABELS[n]} | {g['positives']} of {s['discs']} | {report['thresholds'][n]:.3f} | "
                     f"{_fmt(g['accuracy'])} | {_fmt(g['balanced_accuracy'])} | {_fmt(g['sensitivity'])} | "
                     f"{_fmt(g['specificity'])} | {_fmt(g['auc'])} | balanced accuracy >= "
                     f"{TARGETS['balanced_accuracy']:.2f} |")
    m = s["modic"]
    lines.append(f"| Modic type (0/1/2/3) | {s['discs'] - m['counts']['0']} of {s['discs']} with a change | "
                 f"{report['thresholds'][MODIC_CHANGE]:.3f} (change) | "
                 f"{_fmt(m['accuracy'])} | {_fmt(m['balanced_accuracy'])} (types present) | | | "
                 f"{_fmt(m['any_change_auc'])} (any change) | accuracy >= {TARGETS['modic_accuracy']:.2f} |")
    lines += ["", "Confusion matrices (rows: SPIDER's radiologists, columns: the model):", "",
              "| grading | truth absent: called absent / present | truth present: called absent / present |",
              "|---|---|---|"]
    for n in BINARY_GRADINGS:
        c = s[n]["confusion"]
        lines.append(f"| {LABELS[n]} | {c[0][0]} / {c[0][1]} | {c[1][0]} / {c[1][1]} |")
    lines += ["", "| Modic | called 0 | called 1 | called 2 | called 3 |", "|---|---|---|---|---|"]
    for t, row in zip(MODIC_TYPES, m["confusion"]):
        lines.append(f"| type {t} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def store_in_manifest(report: Mapping[str, Any], manifest_path: str | Path | None = None) -> None:
    """Write the held-out summary into the model's manifest entry as ``metrics``, keyed by the
    weights it was measured with."""

    path = Path(manifest_path) if manifest_path else models_dir() / "manifest.json"
    with _manifest_lock(path):
        data = json.loads(path.read_text(encoding="utf-8"))
        for entry in data["models"]:
            if entry["name"] == NAME:
                if entry["sha256"] != report["model"]["sha256"]:
                    raise SpineAssistError(f"{path}: {NAME}'s weights changed since they were scored; evaluate again")
                entry["metrics"] = {"sha256": report["model"]["sha256"], "source": "python -m "
                                    "SpineAssistLib.training.disc_grades evaluate (SPIDER held-out patients "
                                    + ", ".join(report["patients"]) + "; manual disc masks)",
                                    "thresholds": dict(report["thresholds"]), **report["summary"]}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)


# ---- command line ---------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m SpineAssistLib.training.disc_grades train|evaluate``."""
    p = argparse.ArgumentParser(prog="python -m SpineAssistLib.training.disc_grades",
                                description=f"Train or score {NAME} on a SPIDER folder (images/, masks/).")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("train", "evaluate"):
        s = sub.add_parser(name)
        s.add_argument("--data", type=Path, required=True, help="SPIDER folder (images/ and masks/)")
        s.add_argument("--gradings", type=Path, required=True, help="SPIDER's radiological_gradings.csv")
    t = sub.choices["train"]
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, default=None, help="weights + manifest folder (default Resources/Models)")
    e = sub.choices["evaluate"]
    e.add_argument("--update-manifest", action="store_true", help="write the summary into the manifest entry")
    e.add_argument("--markdown", type=Path, default=None, help="write the table here")
    e.add_argument("--json", type=Path, default=None, help="write the whole report (per disc) here")
    args = p.parse_args(argv)
    try:
        if args.command == "train":
            words = ["train", NAME, "--data", str(args.data), "--gradings", str(args.gradings), "--seed", str(args.seed)]
            for opt, v in (("--epochs", args.epochs), ("--batch", args.batch), ("--out", args.out)):
                if v is not None:
                    words += [opt, str(v)]
            train_and_register(args.data, args.gradings, epochs=args.epochs, batch=args.batch, seed=args.seed,
                               out_dir=args.out, command="spineassist " + shlex.join(words))
            return 0
        report = evaluate(args.data, args.gradings, progress=print)
        table = markdown_table(report)
        print(table)
        if args.markdown:
            args.markdown.write_text(table, encoding="utf-8")
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        if args.update_manifest:
            store_in_manifest(report)
        return 0
    except SpineAssistError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
