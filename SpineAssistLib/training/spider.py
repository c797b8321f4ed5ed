"""Return real sagittal lumbar MRI with manual masks (SPIDER) as the project's label maps, vertebral
corners and grades: training samples for every sagittal model, and truth for scoring the shipped
pipeline on real patients (``training.real_eval``).

SPIDER (van der Graaf et al., "Lumbar spine segmentation in MR images: a dataset and a public
benchmark", Scientific Data 2024; CC BY 4.0) is read in two layouts:

- as distributed: ``images/<patient>_<seq>.mha`` and ``masks/<patient>_<seq>.mha`` (vertebrae 1-25,
  spinal canal 100, discs 201-225) with ``radiological_gradings.csv``; the geometry is the header's;
- as PNG slices (a public mirror of the T2 SPACE series): ``images/<patient>_t2_SPACE_slice<n>.png``
  and ``masks/`` with the same names, grey 76 vertebra, 29 disc, 150 canal, no level numbers. The
  slices are already in the models' canonical view (head up, anterior on the left: checked on every
  patient by the canal lying behind the bodies), but their pixel spacing was lost in resizing. It
  is estimated per patient from the lumbar discs' spacing (``estimate_pixel_spacing``); the pixels
  are taken as square (the bodies' depth-to-height ratio is about 1.3 there, as in adult anatomy).

In both, level names come from the disc order counted up from the most caudal labelled disc,
L5-S1: SPIDER's ``IVD label`` 1 is that disc (label 0, where a patient has one, is a transitional
disc below it and is not used). The vertebral bodies are named by the disc below them; the corners
around each disc are where the disc meets the bodies' endplates. The masks of the PNG layout leave
the sacrum out: its top is drawn from the L5-S1 disc's lower edge (``paint_s1_top``), so that the
vertebra model still learns the sacrum that anchors the level count.

Usage::

    from SpineAssistLib.training.spider import read_png_patient, read_gradings, real_study
    case = read_png_patient("Data/t2_SPACE", "7", read_gradings("radiological_gradings.csv"))
    study = real_study(case)      # the ``phantom_cache`` form ``models.datasets.add_study`` writes
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from SpineAssistLib.anatomy import (
    DISC_LABELS,
    POSTERIOR_ELEMENTS_LABEL,
    THECAL_SAC_LABEL,
    UNNAMED_DISC_LABEL,
    VERTEBRA_LABELS,
    corner_name,
)
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.geometry import (
    affine_from_dicom,
    affine_from_itk,
    flip_index,
    pixel_spacing_xy,
    reorder_index,
    transpose_index,
)
from SpineAssistLib.pipeline.result import ImageStack
from SpineAssistLib.training.datasets import FolderWriter, YoloWriter, add_study, make_writers

# The fixed held-out test patients (issue #18): never trained on, never used to choose a setting.
HELD_OUT_PATIENTS: frozenset[str] = frozenset(
    {"7", "22", "41", "45", "57", "98", "127", "142", "162", "185", "209", "241"})
PNG_GREYS = {"vertebra": 76, "disc": 29, "canal": 150}
# Caudal to cranial: SPIDER's IVD label n is the n-th disc counted up from the lumbosacral one.
LEVELS_FROM_CAUDAL: tuple[str, ...] = ("L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2", "T12-L1", "T11-T12")
# Distance between neighbouring lumbar disc centres in an adult: a vertebral body (about 27 mm) and
# a disc (about 10 mm). Used only where the pixel spacing is lost (the PNG layout).
SEGMENT_PITCH_MM = 37.0
PNG_SLICE_MM = 1.0              # nominal slice distance of the PNG layout (not recorded there)
MIN_DISC_VOXELS = 150           # a smaller 3D disc component is a fragment of its nearest disc
CONTACT_PX = 2                  # a body pixel this close to a disc is on its endplate
MIN_CONTACT_PIXELS = 5
MIN_S1_PIXELS = 200            # a smaller piece below L5-S1 is not the sacrum's body: draw its top
S1_DEPTH_FRACTION = 0.8         # painted sacral top: this many disc widths deep
GRADING_COLUMNS = {             # our key: SPIDER's column (lower case)
    "pfirrmann": ("pfirrman grade", "pfirrmann grade"), "herniation": ("disc herniation",),
    "spondylolisthesis": ("spondylolisthesis",), "modic": ("modic",), "up_endplate": ("up endplate",),
    "low_endplate": ("low endplate",), "narrowing": ("disc narrowing",), "bulging": ("disc bulging",),
}
_PNG_NAME = re.compile(r"^(?P<patient>\d+)_(?P<seq>.+)_slice(?P<n>\d+)\.png$")


@dataclass
class RealCase:
    """One real sagittal series with manual masks, in the canonical view (head up, anterior left)."""

    patient: str
    images: np.ndarray               # (slices, rows, cols) float32, as stored
    labels: np.ndarray               # same shape, SpineAssist label values (anatomy)
    affine: np.ndarray               # "slice,row,col" -> LPS mm
    mid: int                         # mid-sagittal slice (largest disc area)
    corners_px: dict[int, dict[str, tuple[float, float]]]   # slice -> corner name -> (x = col, y = row)
    levels: list[str]                # named discs present, cranial to caudal
    gradings: dict[str, dict[str, int]] = field(default_factory=dict)   # level -> SPIDER's gradings
    source: str = ""
    spacing_estimated: bool = False

    @property
    def pixel_spacing(self) -> tuple[float, float]:
        """Return (column, row) mm per pixel."""
        return pixel_spacing_xy(self.affine, "slice,row,col")


# ---------------------------------------------------------------------------------------------
# Gradings
# ---------------------------------------------------------------------------------------------

def read_gradings(csv_path: str | Path) -> dict[str, dict[int, dict[str, int]]]:
    """Return SPIDER's ``radiological_gradings.csv`` as {patient: {IVD label: {grading: value}}}.

    ``pfirrmann`` and ``herniation`` are required; the other gradings are read where present."""
    path = Path(csv_path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise SpineAssistError(f"cannot read the gradings table {path}: {e.strerror or e}") from None
    if not rows:
        raise SpineAssistError(f"{path}: the gradings table has no rows")
    cols = {c.lower().strip(): c for c in rows[0] if c}
    for need in ("patient", "ivd label"):
        if need not in cols:
            raise SpineAssistError(f"{path}: expected a column {need!r}; found {', '.join(rows[0])}")
    found = {key: next((cols[n] for n in names if n in cols), None) for key, names in GRADING_COLUMNS.items()}
    for key in ("pfirrmann", "herniation"):
        if found[key] is None:
            raise SpineAssistError(f"{path}: expected a column {GRADING_COLUMNS[key][0]!r}; found {', '.join(rows[0])}")
    out: dict[str, dict[int, dict[str, int]]] = {}
    for i, r in enumerate(rows, start=2):
        try:
            ivd = int(float(r[cols["ivd label"]]))
            values = {k: int(float(r[c])) for k, c in found.items() if c is not None and str(r[c]).strip() != ""}
        except (TypeError, ValueError):
            raise SpineAssistError(f"{path}, line {i}: a value is not a number: {dict(r)}") from None
        out.setdefault(str(r[cols["patient"]]).strip(), {})[ivd] = values
    return out


def find_gradings(root: str | Path, given: str | Path | None = None) -> Path:
    """Return the gradings table to read: ``given``, or the first ``radiological_gradings.csv`` under ``root``."""
    found = Path(given) if given else next(iter(sorted(Path(root).glob("**/radiological_gradings.csv"))), None)
    if found is None:
        raise SpineAssistError(f"no radiological_gradings.csv under {root}; pass --gradings CSV (SPIDER's gradings: "
                               "without them no disc can be graded)")
    return found


def level_of_ivd(ivd: int) -> str | None:
    """Return the level of SPIDER's IVD label ``ivd`` (1 = L5-S1, counted up), or None (0, or above T11-T12)."""
    return LEVELS_FROM_CAUDAL[ivd - 1] if 1 <= ivd <= len(LEVELS_FROM_CAUDAL) else None


def patient_gradings(gradings: Mapping[str, Mapping[int, Mapping[str, int]]], patient: str) -> dict[str, dict[str, int]]:
    """Return one patient's gradings by level name."""
    return {lv: dict(g) for ivd, g in gradings.get(str(patient), {}).items() if (lv := level_of_ivd(ivd))}


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------

def png_patients(root: str | Path) -> dict[str, list[tuple[int, Path, Path]]]:
    """Return {patient: [(slice number, image, mask)] in slice order} of a PNG-slice folder."""
    root = Path(root)
    images, masks = root / "images", root / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise SpineAssistError(f"{root} is not a SPIDER PNG folder: it needs images/ and masks/ holding "
                               "<patient>_<sequence>_slice<n>.png files with the same names")
    out: dict[str, list[tuple[int, Path, Path]]] = {}
    for p in sorted(images.glob("*.png")):
        m = _PNG_NAME.match(p.name)
        if not m:
            raise SpineAssistError(f"{p}: not named <patient>_<sequence>_slice<n>.png; rename it or move it out")
        mask = masks / p.name
        if not mask.is_file():
            raise SpineAssistError(f"{p} has no mask {mask}")
        out.setdefault(m["patient"], []).append((int(m["n"]), p, mask))
    if not out:
        raise SpineAssistError(f"{images} holds no <patient>_<sequence>_slice<n>.png files")
    return {k: sorted(v) for k, v in sorted(out.items(), key=lambda kv: int(kv[0]))}


def read_png_patient(root: str | Path, patient: str,
                     gradings: Mapping[str, Mapping[int, Mapping[str, int]]] | None = None,
                     slices: list[tuple[int, Path, Path]] | None = None) -> RealCase:
    """Return one patient of a PNG-slice folder as a ``RealCase`` (pixel spacing estimated)."""
    import cv2

    slices = slices if slices is not None else png_patients(root).get(str(patient))
    if not slices:
        raise SpineAssistError(f"{root}: no slices of patient {patient}")
    images, masks = [], []
    for _, ip, mp in slices:
        img, msk = cv2.imread(str(ip), cv2.IMREAD_GRAYSCALE), cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE)
        if img is None or msk is None:
            raise SpineAssistError(f"{ip if img is None else mp}: not a readable PNG image")
        if img.shape != msk.shape:
            raise SpineAssistError(f"{mp}: mask size {msk.shape} differs from its image's {img.shape}")
        unknown = set(np.unique(msk).tolist()) - {0, *PNG_GREYS.values()}
        if unknown:
            raise SpineAssistError(f"{mp}: mask grey values {sorted(unknown)} are not SPIDER's (0, 76 vertebra, "
                                   "29 disc, 150 canal)")
        images.append(img)
        masks.append(msk)
    shapes = {x.shape for x in images}
    if len(shapes) != 1:
        raise SpineAssistError(f"{root}: the slices of patient {patient} differ in size ({sorted(shapes)})")
    vol, msk = np.stack(images).astype(np.float32), np.stack(masks)
    disc = msk == PNG_GREYS["disc"]
    named = _disc_components(disc)
    spacing = estimate_pixel_spacing(named, disc.shape)
    # rows run head to feet, columns front to back, slices left to right (their true order is not recorded)
    affine = affine_from_dicom((0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (spacing, spacing),
                               (PNG_SLICE_MM, 0.0, 0.0), "slice,row,col")
    return _case(str(patient), vol, msk == PNG_GREYS["vertebra"], named, msk == PNG_GREYS["canal"], affine,
                 gradings, source=f"SPIDER PNG slices {Path(root).name}", spacing_estimated=True, paint_s1=True)


def read_mha_patient(image_path: str | Path, mask_path: str | Path,
                     gradings: Mapping[str, Mapping[int, Mapping[str, int]]] | None = None) -> RealCase:
    """Return one SPIDER ``.mha`` image and mask as a ``RealCase`` (geometry from the header)."""
    image_path, mask_path = Path(image_path), Path(mask_path)
    try:
        vol, lab, affine = read_spider_case(image_path, mask_path)
    except RuntimeError as e:          # SimpleITK's reader
        raise SpineAssistError(f"{image_path} or its mask is not a readable .mha image: {str(e).splitlines()[0]}") from None
    except ValueError as e:
        raise SpineAssistError(str(e)) from None
    patient = image_path.name.split("_")[0]
    disc = (lab >= 201) & (lab <= 225)
    vertebra = (lab >= 1) & (lab <= 25)
    return _case(patient, vol, vertebra, _disc_components(disc), lab == 100, affine, gradings,
                 source=f"SPIDER {image_path.name}", spacing_estimated=False, paint_s1=True)


def read_spider_case(image_path: str | Path, mask_path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (images, labels, affine) of a SPIDER case as sagittal slices (slice, row, col), head up,
    anterior on the left, with the (slice, row, col) -> LPS affine."""
    import SimpleITK as sitk

    img = sitk.DICOMOrient(sitk.ReadImage(str(image_path)), "LPS")
    lab = sitk.DICOMOrient(sitk.ReadImage(str(mask_path)), "LPS")
    if img.GetSize() != lab.GetSize():
        raise ValueError(f"{mask_path}: mask size {lab.GetSize()} differs from image size {img.GetSize()}")
    a = sitk.GetArrayFromImage(img).astype(np.float32)    # (z, y, x): z head, y posterior, x left
    m = sitk.GetArrayFromImage(lab).astype(np.int32)
    images = np.transpose(a[::-1], (2, 0, 1))              # (x, -z, y)
    labels = np.transpose(m[::-1], (2, 0, 1))
    A = affine_from_itk(img.GetOrigin(), img.GetSpacing(), img.GetDirection(), "slice,row,col")   # of a
    return images, labels, transpose_index(flip_index(A, 0, a.shape[0]), (2, 0, 1))


def mha_patients(root: str | Path, sequence: str = "t2") -> list[tuple[Path, Path]]:
    """Return the (image, mask) pairs of a SPIDER folder as distributed, for one sequence."""
    root = Path(root)
    images = sorted((root / "images").glob(f"*_{sequence}.mha"))
    if not images:
        raise SpineAssistError(f"{root}/images holds no *_{sequence}.mha files; is this a SPIDER folder?")
    pairs = []
    for ip in images:
        mp = root / "masks" / ip.name
        if not mp.is_file():
            raise SpineAssistError(f"{ip} has no mask {mp}")
        pairs.append((ip, mp))
    return pairs


# ---------------------------------------------------------------------------------------------
# Masks -> named structures
# ---------------------------------------------------------------------------------------------

def _disc_components(disc: np.ndarray) -> list[np.ndarray]:
    """Return the discs of a (slices, rows, cols) disc mask, cranial to caudal: 3D connected
    components, each fragment smaller than ``MIN_DISC_VOXELS`` joined to the nearest disc."""
    from scipy import ndimage

    lab, n = ndimage.label(disc)
    if n == 0:
        return []
    sizes = ndimage.sum(disc, lab, range(1, n + 1))
    centres = np.array(ndimage.center_of_mass(disc, lab, range(1, n + 1)))
    big = [i for i in range(n) if sizes[i] >= MIN_DISC_VOXELS]
    if not big:
        return []
    groups = {i: [i] for i in big}
    for i in range(n):
        if i not in groups:
            d = [np.linalg.norm((centres[i] - centres[j])[1:]) for j in big]
            groups[big[int(np.argmin(d))]].append(i)
    order = sorted(big, key=lambda i: centres[i][1])      # rows run head to feet
    return [np.isin(lab, [k + 1 for k in groups[i]]) for i in order]


def estimate_pixel_spacing(discs: list[np.ndarray], shape: tuple[int, ...]) -> float:
    """Return mm per pixel from the median distance between neighbouring disc centres among the five
    lowest discs, taken as ``SEGMENT_PITCH_MM`` apart."""
    if len(discs) < 3:
        raise SpineAssistError("fewer than three discs are labelled: the pixel spacing cannot be estimated")
    low = discs[-5:]
    centres = [np.argwhere(d)[:, 1:].mean(axis=0) for d in low]
    pitch = float(np.median([np.linalg.norm(a - b) for a, b in zip(centres, centres[1:])]))
    return SEGMENT_PITCH_MM / pitch


def _case(patient: str, vol: np.ndarray, vertebra: np.ndarray, discs: list[np.ndarray], canal: np.ndarray,
          affine: np.ndarray, gradings: Mapping[str, Any] | None, source: str, spacing_estimated: bool,
          paint_s1: bool) -> RealCase:
    """Return the named label map, mid slice and corners of one case from its class masks."""
    from scipy import ndimage

    if not discs:
        raise SpineAssistError(f"patient {patient} ({source}): no disc is labelled in the mask")
    labels = np.zeros(vol.shape, np.uint8)
    labels[canal] = THECAL_SAC_LABEL
    patient_rows = (gradings or {}).get(patient, {})
    # IVD label 0 is a transitional disc below SPIDER's label 1 (L5-S1): the lowest labelled disc then
    # has no level name, and the vertebra between them is S1
    from_caudal = ([None] if 0 in patient_rows else []) + list(LEVELS_FROM_CAUDAL)
    names = [from_caudal[i] if i < len(from_caudal) else None for i in reversed(range(len(discs)))]
    for d, name in zip(discs, names):
        labels[d] = DISC_LABELS[name] if name else UNNAMED_DISC_LABEL
    disc_rows = {name: float(np.argwhere(d)[:, 1].mean()) for d, name in zip(discs, names) if name}
    corners: dict[int, dict[str, tuple[float, float]]] = {}
    for s in range(vol.shape[0]):
        comp, n = ndimage.label(vertebra[s])
        for i in range(1, n + 1):
            body = comp == i
            labels[s][body] = _body_label(body, labels[s], disc_rows)
        if paint_s1 and (labels[s] == VERTEBRA_LABELS["S1"]).sum() < MIN_S1_PIXELS:
            paint_s1_top(labels[s])
        corners[s] = disc_corners(labels[s])
    areas = np.isin(labels, list(DISC_LABELS.values())).reshape(len(vol), -1).sum(axis=1)
    near = np.flatnonzero(areas >= 0.9 * areas.max())
    mid = int(near[len(near) // 2])
    present = [n for n in names if n]
    return RealCase(patient, vol, labels, affine, mid, corners, present,
                    patient_gradings(gradings or {}, patient), source, spacing_estimated)


def _body_label(body: np.ndarray, slice_labels: np.ndarray, disc_rows: Mapping[str, float]) -> int:
    """Return the label of one vertebra component: the body above a disc it touches is that disc's
    upper vertebra, a body below L5-S1 is S1; a component touching no disc is posterior elements."""
    import cv2

    near = cv2.dilate(body.astype(np.uint8), np.ones((2 * CONTACT_PX + 1,) * 2, np.uint8)).astype(bool)
    touched = [lv for lv, v in DISC_LABELS.items() if lv in disc_rows and (near & (slice_labels == v)).any()]
    if not touched:
        return POSTERIOR_ELEMENTS_LABEL
    row = float(np.argwhere(body)[:, 0].mean())
    below = [lv for lv in touched if disc_rows[lv] > row]
    if below:
        upper = min(below, key=lambda lv: disc_rows[lv]).split("-")[0]
        return VERTEBRA_LABELS.get(upper, POSTERIOR_ELEMENTS_LABEL)
    lower = max(touched, key=lambda lv: disc_rows[lv]).split("-")[1]
    return VERTEBRA_LABELS.get(lower, POSTERIOR_ELEMENTS_LABEL)


def _disc_axes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (centre (x, y), unit anteroposterior axis pointing back, unit axis pointing down) of a disc."""
    rc = np.argwhere(mask)
    xy = rc[:, ::-1].astype(float)
    c = xy.mean(axis=0)
    w, v = np.linalg.eigh(np.cov((xy - c).T))
    u = v[:, int(np.argmax(w))]
    if u[0] < 0:
        u = -u
    down = np.array([-u[1], u[0]])
    if down[1] < 0:
        down = -down
    return c, u, down


def _extremes(points_xy: np.ndarray, c: np.ndarray, u: np.ndarray, prefer: np.ndarray
              ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Return the (anterior, posterior) extreme points along ``u``; among points within half a pixel of an
    extreme, the one farthest along ``prefer`` (towards the endplate line)."""
    t = (points_xy - c) @ u
    q = (points_xy - c) @ prefer
    out = []
    for ends in (t <= t.min() + 0.5, t >= t.max() - 0.5):
        idx = np.flatnonzero(ends)
        best = points_xy[idx[int(np.argmax(q[idx]))]]
        out.append((float(best[0]), float(best[1])))
    return out[0], out[1]


def _edge(mask: np.ndarray, c: np.ndarray, down: np.ndarray, lower: bool) -> np.ndarray:
    """Return the (x, y) outline pixels of a disc on its upper or lower side."""
    import cv2

    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    xy = np.argwhere(mask & ~inner)[:, ::-1].astype(float)
    side = (xy - c) @ down
    return xy[side > 0] if lower else xy[side < 0]


def disc_corners(slice_labels: np.ndarray) -> dict[str, tuple[float, float]]:
    """Return the vertebral corners (x = col, y = row) around every named disc of one canonical
    sagittal label slice: the ends of the contact between the disc and the body above (its
    inferior corners) and below (superior corners), or of the disc's own edge on that side where
    the body is not labelled there."""
    import cv2

    out: dict[str, tuple[float, float]] = {}
    kernel = np.ones((2 * CONTACT_PX + 1,) * 2, np.uint8)
    for level, value in DISC_LABELS.items():
        mask = slice_labels == value
        if mask.sum() < 20:
            continue
        upper, lower = level.split("-")
        c, u, down = _disc_axes(mask)
        near = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
        for vertebra, is_lower, names in ((upper, False, ("anterior-inferior", "posterior-inferior")),
                                          (lower, True, ("anterior-superior", "posterior-superior"))):
            pts = np.empty((0, 2))
            if vertebra != "S1":     # a labelled sacrum's edge is the disc's; a painted one is drawn from it
                body = near & (slice_labels == VERTEBRA_LABELS.get(vertebra, -1))
                pts = np.argwhere(body)[:, ::-1].astype(float)
            # body pixels: prefer those nearest the disc; the disc's own edge: those farthest out
            prefer = -down if is_lower else down
            if len(pts) < MIN_CONTACT_PIXELS:
                pts, prefer = _edge(mask, c, down, is_lower), -prefer
            if len(pts) < 2:
                continue
            a, p = _extremes(pts, c, u, prefer)
            out[corner_name(vertebra, names[0])] = a
            out[corner_name(vertebra, names[1])] = p
    return out


def paint_s1_top(slice_labels: np.ndarray) -> None:
    """Draw the top of the sacrum (S1 label) below the L5-S1 disc of one canonical sagittal label
    slice, in place: a quadrilateral from the disc's lower edge, ``S1_DEPTH_FRACTION`` of its width
    deep, over background only. For masks that leave the sacrum out."""
    import cv2

    mask = slice_labels == DISC_LABELS["L5-S1"]
    if mask.sum() < 20:
        return
    c, u, down = _disc_axes(mask)
    edge = _edge(mask, c, down, lower=True)
    if len(edge) < 2:
        return
    a, p = (np.array(x) for x in _extremes(edge, c, u, down))
    depth = S1_DEPTH_FRACTION * float(np.linalg.norm(p - a))
    poly = np.array([a, p, p + depth * down, a + depth * down]).round().astype(np.int32)
    top = np.zeros(slice_labels.shape, np.uint8)
    cv2.fillPoly(top, [poly], 1)
    slice_labels[(top > 0) & (slice_labels == 0)] = VERTEBRA_LABELS["S1"]


# ---------------------------------------------------------------------------------------------
# Into the training sets and the pipeline
# ---------------------------------------------------------------------------------------------

def real_study(case: RealCase) -> dict[str, Any]:
    """Return the case as a sagittal-only training study in ``phantom_cache`` form, for
    ``models.datasets.add_study`` (corners given per slice in pixels, Pfirrmann grades by level)."""
    h, w = case.images.shape[1:]
    pfirrmann = {lv: g["pfirrmann"] for lv, g in case.gradings.items() if lv in case.levels and 1 <= g["pfirrmann"] <= 5}
    return {
        "seed": int(case.patient) if case.patient.isdigit() else 0,
        "sag_images": case.images, "sag_labels": case.labels, "sag_affine": case.affine, "sag_mid": case.mid,
        "ax_images": np.zeros((0, h, w), np.float32), "ax_labels": np.zeros((0, h, w), np.uint8),
        "ax_affines": np.zeros((0, 4, 4)), "ax_levels": [], "corners": {}, "corners_px": case.corners_px,
        "axial_keypoints": [], "truth": None, "params": {"pfirrmann": pfirrmann},
    }


def image_stack(case: RealCase) -> Any:
    """Return the case as the sagittal ``ImageStack`` the pipeline assesses (no DICOM headers)."""
    A = reorder_index(case.affine, "slice,row,col", "col,row,slice")
    return ImageStack("sagittal", f"SPIDER {case.patient}", case.images, A)


def iter_cases(root: str | Path, gradings: Mapping[str, Any] | None, patients: Iterable[str] | None = None,
               exclude: Iterable[str] = ()) -> Iterable[RealCase]:
    """Yield the cases of a SPIDER folder in either layout (PNG slices or ``.mha``), by patient number."""
    root = Path(root)
    keep = None if patients is None else {str(p) for p in patients}
    skip = {str(p) for p in exclude}
    if (root / "images").is_dir() and any((root / "images").glob("*.png")):
        for patient, slices in png_patients(root).items():
            if (keep is None or patient in keep) and patient not in skip:
                yield read_png_patient(root, patient, gradings, slices)
        return
    for ip, mp in mha_patients(root):
        patient = ip.name.split("_")[0]
        if (keep is None or patient in keep) and patient not in skip:
            yield read_mha_patient(ip, mp, gradings)


SAGITTAL_MODELS: tuple[str, ...] = ("sag_disc_unet", "sag_vertebra_pose", "sag_disc_corners", "sag_pfirrmann_cls")
# Models whose sets SPIDER can also write when asked by name (not by default): the canal U-Net
# (``spineassist data spider --models sag_canal_unet``), from the masks' canal label.
ON_REQUEST_MODELS: tuple[str, ...] = ("sag_canal_unet",)


def build_real_sets(root: str | Path, out_dir: str | Path, gradings: Mapping[str, Any] | None,
                    models: Iterable[str] = SAGITTAL_MODELS, copies: int = 2, val_patients: int = 4, seed: int = 0,
                    progress: Any = None) -> dict[str, Any]:
    """Write (add to) the training sets of the sagittal ``models`` from a SPIDER folder, the held-out
    test patients left out; return {"patients": {"train", "val"}, "models": {name: counts}}.

    The last ``val_patients`` patients (by number) are the validation split, so a model is chosen
    on patients it was not trained on; existing samples under ``out_dir`` are kept (sets grow)."""
    models = list(models)
    bad = [m for m in models if m not in SAGITTAL_MODELS + ON_REQUEST_MODELS]
    if bad:
        raise SpineAssistError(f"SPIDER is sagittal: it trains {', '.join(SAGITTAL_MODELS + ON_REQUEST_MODELS)}; "
                               f"not {', '.join(bad)}")
    root, out = Path(root), Path(out_dir)
    cases = [c for c in iter_cases(root, gradings, exclude=HELD_OUT_PATIENTS)]
    if not cases:
        raise SpineAssistError(f"{root}: no patients outside the held-out test set")
    cases.sort(key=lambda c: _patient_key(c.patient))
    n_val = min(val_patients, len(cases) - 1) if len(cases) > 1 else 0
    writers = make_writers(out, models)
    rng = np.random.default_rng(seed)
    split_of = {c.patient: ("val" if i >= len(cases) - n_val else "train") for i, c in enumerate(cases)}
    for c in cases:
        split = split_of[c.patient]
        if progress:
            progress(f"patient {c.patient} ({split}): {len(c.images)} slices, levels {', '.join(c.levels)}")
        add_study(writers, real_study(c), split, copies if split == "train" else 1, rng, f"spider{c.patient}",
                  sag_pose_slices=1, augment=True,
                  crop_rng=np.random.default_rng([seed, int(c.patient) if c.patient.isdigit() else 0, 0xC0]))
    counts = {}
    for m, w in writers.items():
        path = w.finish() if isinstance(w, (YoloWriter, FolderWriter)) else w.root
        counts[m] = {"path": str(path), **w.counts}
    return {"patients": {s: sorted((p for p, x in split_of.items() if x == s), key=_patient_key) for s in ("train", "val")},
            "models": counts}


def _patient_key(patient: str) -> tuple[int, int, str]:
    return (0, int(patient), "") if patient.isdigit() else (1, 0, patient)
