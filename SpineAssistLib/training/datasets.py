"""Return training sets for the bundled models, written in the formats their trainers read:

- YOLO (detect / segment / pose): ``images/{train,val}/*.png``, ``labels/{train,val}/*.txt``
  (one object a line: ``class cx cy w h`` normalised to [0, 1], then ``x y v`` per keypoint
  (pose) or a polygon ``x1 y1 x2 y2 ...`` (segment)) and ``data.yaml``;
- YOLO classify: ``{train,val}/<class>/*.png`` (an image folder);
- MONAI U-Net: ``{train,val}/*.npz`` each holding ``image`` (float32, [0, 1]) and ``mask`` (uint8);
  the canal U-Net's are resampled to its pixel size (``models.canal.to_model_grid``).

Sources: phantom studies (``build_from_phantoms``, from ``phantom_cache`` renders); real scans with
manual masks (SPIDER) go through ``training.spider`` into the same writers (``add_study``). A
site's own data in these formats trains the same way (``spineassist train NAME --data DIR``).

Every image is normalised per slice (``imaging.normalize_slice``) and written in ``copies``
randomly altered versions (``augment.augment_intensity``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from SpineAssistLib.anatomy import (
    CORNERS,
    DISC_LABELS,
    HERNIATION_LABEL,
    MSU_KEYPOINTS,
    NEURAL_LABEL,
    THECAL_SAC_LABEL,
    UNNAMED_DISC_LABEL,
    VERTEBRA_LABELS,
    corner_name,
    disc_space_corners,
)
from SpineAssistLib.geometry import pixel_spacing_xy, slice_affine, world_to_index
from SpineAssistLib.models.canal import CANAL_PIXEL_MM, to_model_grid
from SpineAssistLib.models.catalog import MODEL_DEFS, PFIRRMANN_CLASSES
from SpineAssistLib.models.crops import (
    MIN_MASK_PIXELS,
    Crop,
    axial_crop_from_keypoints,
    axial_disc_crop,
    axial_segmentation_crop,
    disc_crop,
    sagittal_disc_crop,
)
from SpineAssistLib.models.imaging import normalize_slice, to_uint8
from SpineAssistLib.models.orientation import canonical_study
from SpineAssistLib.training.augment import augment_intensity, randomise_contrast, scale_brightness

DISC_NAMES = {v: k for k, v in DISC_LABELS.items()}
MIN_POLYGON_PIXELS = 6
# Training windows of the keypoint models are moved, turned and scaled by up to this much, so that
# a window placed from an imperfect segmentation at inference still gives the right points.
CROP_JITTER = {"sagittal": {"shift_mm": 3.0, "angle_deg": 6.0, "scale": 0.06},
               "axial": {"shift_mm": 4.0, "angle_deg": 6.0, "scale": 0.06}}
CROP_STREAM = 0xC0         # the seed word of the windows' jitter stream
KEYPOINT_BOX_PAD = 4.0          # px of a window around its keypoints: the pose label's box


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------

class YoloWriter:
    """Writes one YOLO dataset (images + label files + data.yaml)."""

    def __init__(self, root: Path, model_name: str):
        self.root = Path(root)
        self.defn = MODEL_DEFS[model_name]
        self.counts = {"train": 0, "val": 0}
        for split in ("train", "val"):
            (self.root / "images" / split).mkdir(parents=True, exist_ok=True)
            (self.root / "labels" / split).mkdir(parents=True, exist_ok=True)

    def add(self, split: str, stem: str, image01: np.ndarray, lines: Sequence[str]) -> None:
        import cv2

        cv2.imwrite(str(self.root / "images" / split / f"{stem}.png"), to_uint8(image01))
        (self.root / "labels" / split / f"{stem}.txt").write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
        self.counts[split] += 1

    def finish(self) -> Path:
        d = self.defn
        lines = [f"path: {self.root.resolve()}", "train: images/train", "val: images/val",
                 "names:"] + [f"  {i}: {n}" for i, n in enumerate(d.classes)]
        if d.keypoints:
            lines += [f"kpt_shape: [{len(d.keypoints)}, 3]", f"flip_idx: [{', '.join(map(str, d.flip_idx))}]"]
        path = self.root / "data.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path


class FolderWriter:
    """Writes an image-folder classification set (``split/class/stem.png``)."""

    def __init__(self, root: Path, classes: Sequence[str]):
        self.root = Path(root)
        self.counts = {"train": 0, "val": 0}
        for split in ("train", "val"):
            for c in classes:
                (self.root / split / c).mkdir(parents=True, exist_ok=True)

    def add(self, split: str, cls: str, stem: str, image01: np.ndarray) -> None:
        import cv2

        cv2.imwrite(str(self.root / split / cls / f"{stem}.png"), to_uint8(image01))
        self.counts[split] += 1

    def finish(self, borrow: bool = True) -> Path:
        """Return the root, after giving every empty class folder one image from the other split
        (ultralytics needs each class in both splits; rare grades may miss one in a small set).
        ``borrow=False`` leaves the splits apart (a set that grows case by case; training borrows)."""
        import shutil

        if not borrow:
            return self.root
        for split, other in (("train", "val"), ("val", "train")):
            for d in sorted((self.root / split).iterdir()):
                if not any(d.iterdir()):
                    donor = next(iter(sorted((self.root / other / d.name).glob("*.png"))), None)
                    if donor is not None:
                        shutil.copyfile(donor, d / f"borrowed_{donor.name}")
                        self.counts[split] += 1
        return self.root


class NpzWriter:
    """Writes U-Net samples (``split/stem.npz`` with ``image`` float32 [0, 1] and ``mask`` uint8)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.counts = {"train": 0, "val": 0}
        for split in ("train", "val"):
            (self.root / split).mkdir(parents=True, exist_ok=True)

    def add(self, split: str, stem: str, image01: np.ndarray, mask: np.ndarray) -> None:
        np.savez_compressed(self.root / split / f"{stem}.npz", image=image01.astype(np.float32),
                            mask=mask.astype(np.uint8))
        self.counts[split] += 1


# ---------------------------------------------------------------------------------------------
# Label lines
# ---------------------------------------------------------------------------------------------

def box_of(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Return the (x1, y1, x2, y2) pixel-edge box of a mask's True pixels, or None when empty."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return None
    return float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)


def _union(box, pts: Iterable[Sequence[float]], pad: float) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    for x, y in pts:
        x1, y1, x2, y2 = min(x1, x - pad), min(y1, y - pad), max(x2, x + 1 + pad), max(y2, y + 1 + pad)
    return x1, y1, x2, y2


def pose_line(cls: int, box, keypoints: Sequence[tuple[float, float] | None], shape: tuple[int, int]) -> str:
    """Return one YOLO pose label line; keypoints are pixel centres (x = column, y = row) or None (absent)."""
    h, w = shape
    x1, y1, x2, y2 = max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)
    parts = [str(cls), f"{(x1 + x2) / 2 / w:.6f}", f"{(y1 + y2) / 2 / h:.6f}", f"{(x2 - x1) / w:.6f}", f"{(y2 - y1) / h:.6f}"]
    for kp in keypoints:
        if kp is None or not (0 <= kp[0] < w and 0 <= kp[1] < h):
            parts += ["0", "0", "0"]
        else:
            parts += [f"{(kp[0] + 0.5) / w:.6f}", f"{(kp[1] + 0.5) / h:.6f}", "2"]
    return " ".join(parts)


def polygon_lines(cls: int, mask: np.ndarray) -> list[str]:
    """Return YOLO segment label lines (one polygon per outer contour) of a mask."""
    import cv2

    h, w = mask.shape
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        if cv2.contourArea(c) < MIN_POLYGON_PIXELS or len(c) < 3:
            continue
        pts = c.reshape(-1, 2).astype(float)
        coords = " ".join(f"{(x + 0.5) / w:.6f} {(y + 0.5) / h:.6f}" for x, y in pts)
        out.append(f"{cls} {coords}")
    return out


def parse_label_line(line: str, n_keypoints: int = 0) -> dict[str, Any]:
    """Return a YOLO label line as {"class", "box" (cx, cy, w, h), "keypoints" (K, 3) or "polygon" (N, 2)}."""
    v = line.split()
    out: dict[str, Any] = {"class": int(v[0])}
    nums = np.array([float(x) for x in v[1:]])
    if n_keypoints:
        if len(nums) != 4 + 3 * n_keypoints:
            raise ValueError(f"pose line needs {4 + 3 * n_keypoints} numbers after the class; got {len(nums)}")
        out["box"] = nums[:4]
        out["keypoints"] = nums[4:].reshape(n_keypoints, 3)
    else:
        if len(nums) < 6 or len(nums) % 2:
            raise ValueError(f"polygon line needs an even count >= 6 of coordinates; got {len(nums)}")
        out["polygon"] = nums.reshape(-1, 2)
    return out


# ---------------------------------------------------------------------------------------------
# Per-slice samples from one phantom study
# ---------------------------------------------------------------------------------------------

def _corner_pixels(study: Mapping[str, Any], slice_index: int) -> dict[str, tuple[float, float]]:
    """Return the corners (x = col, y = row) on one sagittal slice: the study's LPS corners projected
    onto it, or a real scan's corners found on that slice (``corners_px``)."""
    if "corners_px" in study:
        return dict(study["corners_px"].get(slice_index, {}))
    A = slice_affine(study["sag_affine"], slice_index, "slice,row,col")
    names = list(study["corners"])
    if not names:
        return {}
    rc = world_to_index(np.array([study["corners"][n] for n in names]), A)
    return {n: (float(c), float(r)) for n, (r, c, _) in zip(names, rc)}


def sagittal_pose_lines(study: Mapping[str, Any], slice_index: int) -> list[str]:
    """Return the vertebra-pose label lines of one sagittal slice (corners projected onto it)."""
    lab = study["sag_labels"][slice_index]
    shape = lab.shape
    px = _corner_pixels(study, slice_index)
    given = (study.get("vertebra_boxes") or {}) if slice_index == int(study["sag_mid"]) else {}
    lines = []
    for name, value in VERTEBRA_LABELS.items():
        kps = [px.get(corner_name(name, c)) for c in CORNERS]
        if name == "S1":
            kps[2] = kps[3] = None
        if name in given:
            if any(k is not None for k in kps):
                box = _union(given[name], [k for k in kps if k is not None], 2.0)
                lines.append(pose_line(1 if name == "S1" else 0, box, kps, shape))
            continue
        m = lab == value
        if m.sum() < 30:
            continue
        if name == "S1":
            box = _union(box_of(m), [k for k in kps if k is not None], 2.0)
            # the sacrum label is the whole sacrum: box the S1 body's top part only
            top = min(k[1] for k in kps if k is not None) if any(kps) else box[1]
            box = (box[0], box[1], box[2], min(box[3], top + 0.9 * (box[2] - box[0])))
            cls = 1
        else:
            if all(k is None for k in kps):
                continue
            box = _union(box_of(m), [k for k in kps if k is not None], 2.0)
            cls = 0
        lines.append(pose_line(cls, box, kps, shape))
    return lines


def axial_seg_lines(labels: np.ndarray) -> list[str]:
    """Return the disc / herniation / thecal-sac polygon lines of one axial label slice."""
    disc = np.isin(labels, list(DISC_LABELS.values()))
    hern = labels == HERNIATION_LABEL
    sac = np.isin(labels, (THECAL_SAC_LABEL, NEURAL_LABEL))
    return polygon_lines(0, disc) + polygon_lines(1, hern) + polygon_lines(2, sac)


def pfirrmann_crops(image01: np.ndarray, labels: np.ndarray, grades: Mapping[str, int]) -> list[tuple[str, int, np.ndarray]]:
    """Return (level, grade, crop) of every disc on a sagittal slice, crops square around each disc."""
    out = []
    for value, level in DISC_NAMES.items():
        if level not in grades:
            continue
        m = labels == value
        if m.sum() < 40:
            continue
        out.append((level, int(grades[level]), disc_crop(image01, m)))
    return out


def _window_line(crop: Crop, keypoints: Sequence[tuple[float, float] | None]) -> str | None:
    """Return the pose label line of one window: keypoints (slice px or None) mapped into it, boxed."""
    inside = []
    for kp in keypoints:
        q = None if kp is None else crop.to_crop(np.asarray(kp, float))
        inside.append(None if q is None or not (0 <= q[0] < crop.size and 0 <= q[1] < crop.size)
                      else (float(q[0]), float(q[1])))
    seen = [q for q in inside if q is not None]
    if len(seen) < 2:
        return None
    xs, ys = [q[0] for q in seen], [q[1] for q in seen]
    box = (min(xs) - KEYPOINT_BOX_PAD, min(ys) - KEYPOINT_BOX_PAD, max(xs) + 1 + KEYPOINT_BOX_PAD,
           max(ys) + 1 + KEYPOINT_BOX_PAD)
    return pose_line(0, box, inside, (crop.size, crop.size))


def disc_corner_windows(labels: np.ndarray, corner_px: Mapping[str, tuple[float, float]],
                        spacing: tuple[float, float]) -> list[tuple[str, Crop, list[tuple[float, float] | None]]]:
    """Return (level, window, the four corners in slice px or None) of every disc space on a canonical
    sagittal slice, each disc that is labelled: the window from its label
    (``crops.sagittal_disc_crop``); ``sag_disc_corners``' training samples."""
    out = []
    for value, level in DISC_NAMES.items():
        kps = [corner_px.get(name) for name in disc_space_corners(level)]
        if sum(k is not None for k in kps) < 2:
            continue
        mask = labels == value
        # only a labelled disc: a level name alone may join two vertebrae that are not neighbours
        # (L4-S1 where there are five lumbar vertebrae)
        if mask.sum() >= MIN_MASK_PIXELS:
            out.append((level, sagittal_disc_crop(mask, spacing), kps))
    return out


def msu_window(labels: np.ndarray, affine: np.ndarray, keypoints: Mapping[str, Any]
               ) -> tuple[Crop, list[tuple[float, float] | None]] | None:
    """Return (window, the five MSU keypoints in slice px, facets ordered by image column) of one
    canonical axial slice: the window from its disc label (``crops.axial_disc_crop``), or from the
    facets and disc margin where the slice has no label (a reviewed case); None without facets."""
    pts: list[tuple[float, float] | None] = []
    for name in MSU_KEYPOINTS:
        p = keypoints.get(name)
        if p is None:
            pts.append(None)
            continue
        r, c, _ = world_to_index(p, affine)
        pts.append((float(c), float(r)))
    if pts[0] is None or pts[1] is None:
        return None
    if pts[0][0] > pts[1][0]:
        pts[0], pts[1] = pts[1], pts[0]
    spacing = pixel_spacing_xy(affine, "row,col,slice")
    disc = np.isin(labels, list(DISC_LABELS.values()))
    if disc.sum() >= MIN_MASK_PIXELS:
        crop = axial_disc_crop(disc, spacing)
    elif pts[2] is not None:
        crop = axial_crop_from_keypoints(pts[0], pts[1], pts[2], spacing)
    else:
        return None
    return crop, pts


def segmentation_window(labels: np.ndarray, affine: np.ndarray) -> Crop | None:
    """Return the ``ax_disc_window_seg`` window of one canonical axial slice, placed from its disc
    label (``crops.axial_segmentation_crop``), or None where the slice shows too little disc."""
    disc = np.isin(labels, list(DISC_LABELS.values()))
    return axial_segmentation_crop(disc, pixel_spacing_xy(affine, "row,col,slice")) if disc.sum() >= MIN_MASK_PIXELS else None


def _ordered_by_column(crop: Crop, pts: list[tuple[float, float] | None]) -> list[tuple[float, float] | None]:
    """Return MSU keypoints with the two facets ordered by the window's column (image-left first)."""
    a, b = pts[0], pts[1]
    if a is not None and b is not None and crop.to_crop(np.asarray(a))[0] > crop.to_crop(np.asarray(b))[0]:
        return [b, a] + list(pts[2:])
    return list(pts)


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------

def _split(i: int, n: int, val_fraction: float) -> str:
    n_val = max(1, int(round(n * val_fraction))) if n > 1 and val_fraction > 0 else 0
    return "val" if i >= n - n_val else "train"


# The models whose training sets these builders write: sag_disc_grades learns SPIDER's gradings in a
# loop of its own (``training.disc_grades``), from the SPIDER folder itself.
SET_MODELS: tuple[str, ...] = tuple(n for n, d in MODEL_DEFS.items() if d.task != "disc-grades")


def make_writers(out: Path, models: Sequence[str]) -> dict[str, Any]:
    """Return a writer per model under ``out/<model>`` (existing files there are kept: sets grow)."""
    writers: dict[str, Any] = {}
    for m in models:
        d = MODEL_DEFS[m]
        if m not in SET_MODELS:
            raise ValueError(f"{m} has no training set to write: it trains on a SPIDER folder (training.disc_grades)")
        if d.task == "classify":
            writers[m] = FolderWriter(out / m, d.classes)
        elif d.task == "unet-segment":
            writers[m] = NpzWriter(out / m)
        else:
            writers[m] = YoloWriter(out / m, m)
    return writers


def build_from_phantoms(studies: Sequence[Mapping[str, Any]], out_dir: str | Path, models: Sequence[str] | None = None,
                        copies: int = 2, val_fraction: float = 0.1, seed: int = 0, sag_pose_slices: int = 1,
                        pfirrmann_brightness: tuple[float, float] | None = None,
                        synthetic_contrast: float = 0.0) -> dict[str, dict[str, Any]]:
    """Write the training sets of ``models`` (default: all) from phantom studies; return per model
    ``{"path", "train", "val"}`` (data.yaml for YOLO detect/segment/pose, else the folder).

    ``studies`` are ``phantom_cache`` dicts; the last ``val_fraction`` of them are validation.
    ``sag_pose_slices``: slices either side of the mid-sagittal one also used for the corner model.
    ``pfirrmann_brightness`` (low, high): the Pfirrmann classifier's training crops are cut from
    the slice scaled by a random factor in that range (``augment.scale_brightness``), so that the
    grade is learnt from the disc's contrast with its surroundings rather than its brightness
    after normalisation; its own random stream, so every other set is as without it.
    """
    out = Path(out_dir)
    models = list(models or SET_MODELS)
    unknown = [m for m in models if m not in SET_MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; models are {', '.join(SET_MODELS)}")
    rng = np.random.default_rng(seed)
    writers = make_writers(out, models)
    n = len(studies)
    for i, st in enumerate(studies):
        split = _split(i, n, val_fraction)
        add_study(writers, st, split, copies if split == "train" else 1, rng, f"s{int(st['seed']):06d}",
                  sag_pose_slices, augment=True, pfirrmann_brightness=pfirrmann_brightness,
                  brightness_rng=np.random.default_rng([seed, int(st["seed"])]),
                  crop_rng=np.random.default_rng([seed, int(st["seed"]), CROP_STREAM]),
                  synthetic_contrast=synthetic_contrast)
    result = {}
    for m, w in writers.items():
        path = w.finish() if isinstance(w, (YoloWriter, FolderWriter)) else w.root
        result[m] = {"path": str(path), **w.counts}
    (out / "datasets.json").write_text(json.dumps({"source": "phantom", "seeds": [int(s["seed"]) for s in studies],
                                                   "copies": copies, "val_fraction": val_fraction, "seed": seed,
                                                   "pfirrmann_brightness": list(pfirrmann_brightness)
                                                   if pfirrmann_brightness else None,
                                                   "synthetic_contrast": synthetic_contrast,
                                                   "models": result}, indent=1), encoding="utf-8")
    return result


def add_study(writers: Mapping[str, Any], st: Mapping[str, Any], split: str, copies: int, rng: np.random.Generator,
              tag: str, sag_pose_slices: int = 1, augment: bool = True,
              pfirrmann_brightness: tuple[float, float] | None = None,
              brightness_rng: np.random.Generator | None = None, crop_rng: np.random.Generator | None = None,
              synthetic_contrast: float = 0.0) -> None:
    """Add one study (a ``phantom_cache`` dict, or ``export.training_data.training_case``) to ``writers``.

    ``copies``: versions of each image (the first one plain unless ``augment`` and ``split`` is train);
    ``tag``: the file-name prefix of this study. A study may carry ``vertebra_boxes`` (name -> pixel
    box on its mid slice) instead of vertebra masks, and axial slices without labels, as a reviewed
    assessment does (the MSU windows are then placed from the keypoints). Slices are written in the
    canonical view the models see at inference (``orientation.canonical_study``); the keypoint
    models' samples are windows of them (``models.crops``), moved by ``crop_rng`` in training.
    ``synthetic_contrast``: the share of training copies of the sagittal slices whose structures get
    random brightness (``augment.randomise_contrast``) for every sagittal model but the Pfirrmann
    classifier; its own random stream.
    """
    st = canonical_study(st)
    # the keypoint windows' jitter has its own stream: every other set is as it was without them
    crop_rng = crop_rng or np.random.default_rng([CROP_STREAM, int(st.get("seed") or 0)])
    sag, lab = st["sag_images"], st["sag_labels"]
    mid = int(st["sag_mid"])
    grades = {lv: int(g) for lv, g in st["params"]["pfirrmann"].items()}
    sag_spacing = pixel_spacing_xy(st["sag_affine"], "slice,row,col")
    disc_any = np.isin(lab, [*DISC_LABELS.values(), UNNAMED_DISC_LABEL])
    canal = lab == THECAL_SAC_LABEL
    canal_mm = MODEL_DEFS["sag_canal_unet"].pixel_mm or CANAL_PIXEL_MM
    contrast_rng = np.random.default_rng([0x5C, int(st.get("seed") or 0)])
    for s in range(len(sag)):
        base = normalize_slice(sag[s])
        near_mid = abs(s - mid) <= sag_pose_slices
        windows = disc_corner_windows(lab[s], _corner_pixels(st, s), sag_spacing) \
            if near_mid and "sag_disc_corners" in writers else []
        for c in range(copies):
            img = augment_intensity(base, rng) if augment and (c or split == "train") else base
            shape_img = img
            if synthetic_contrast and split == "train" and contrast_rng.random() < synthetic_contrast:
                shape_img = randomise_contrast(img, lab[s], contrast_rng)
            stem = f"{tag}_sag{s:02d}_{c}"
            if "sag_disc_unet" in writers and disc_any[s].any():
                writers["sag_disc_unet"].add(split, stem, shape_img, disc_any[s])
            # slices through the discs beside the canal teach it where there is none
            if "sag_canal_unet" in writers and (canal[s].any() or disc_any[s].any()):
                spacing = (sag_spacing[1], sag_spacing[0])       # (rows, columns)
                writers["sag_canal_unet"].add(split, stem, to_model_grid(shape_img, spacing, canal_mm),
                                              to_model_grid(canal[s], spacing, canal_mm, mask=True))
            if near_mid and "sag_vertebra_pose" in writers:
                writers["sag_vertebra_pose"].add(split, stem, shape_img, sagittal_pose_lines(st, s))
            if near_mid and "sag_disc_corners" in writers:
                for level, crop, kps in windows:
                    if augment and split == "train":
                        crop = crop.jittered(crop_rng, **CROP_JITTER["sagittal"])
                    line = _window_line(crop, kps)
                    if line:
                        writers["sag_disc_corners"].add(split, f"{stem}_{level}", crop.image(shape_img), [line])
            if near_mid and "sag_pfirrmann_cls" in writers:
                src = img
                if pfirrmann_brightness is not None and split == "train":
                    src = scale_brightness(img, brightness_rng or rng, *pfirrmann_brightness)
                for level, g, crop in pfirrmann_crops(src, lab[s], grades):
                    writers["sag_pfirrmann_cls"].add(split, PFIRRMANN_CLASSES[g - 1], f"{stem}_{level}", crop)
    kp_by_slice = {a["slice_index"]: a for a in st["axial_keypoints"]}
    for s in range(len(st["ax_images"])):
        if "ax_disc_seg" not in writers and "ax_disc_window_seg" not in writers and s not in kp_by_slice:
            continue
        base = normalize_slice(st["ax_images"][s])
        window = msu_window(st["ax_labels"][s], st["ax_affines"][s], kp_by_slice[s]["keypoints"]) \
            if "ax_msu_pose" in writers and s in kp_by_slice else None
        seg_window = segmentation_window(st["ax_labels"][s], st["ax_affines"][s]) \
            if "ax_disc_window_seg" in writers else None
        for c in range(copies):
            img = augment_intensity(base, rng) if augment and (c or split == "train") else base
            stem = f"{tag}_ax{s:02d}_{c}"
            if "ax_disc_seg" in writers:
                writers["ax_disc_seg"].add(split, stem, img, axial_seg_lines(st["ax_labels"][s]))
            if seg_window is not None:
                crop = seg_window.jittered(crop_rng, **CROP_JITTER["axial"]) if augment and split == "train" \
                    else seg_window
                writers["ax_disc_window_seg"].add(split, stem, crop.image(img),
                                                  axial_seg_lines(crop.image(st["ax_labels"][s], order=0).astype(np.uint8)))
            if window is not None:
                crop, pts = window
                if augment and split == "train":
                    crop = crop.jittered(crop_rng, **CROP_JITTER["axial"])
                line = _window_line(crop, _ordered_by_column(crop, pts))
                if line:
                    writers["ax_msu_pose"].add(split, stem, crop.image(img), [line])
