"""Return the square, disc-aligned windows the keypoint models see, and map points in and out of them.

A whole slice at a YOLO model's 256 px puts 0.7-1.3 mm in an input pixel, so a keypoint model
that is two pixels off is two millimetres off; the Meyerding and MSU rules need better than one
(a 5 % slip of a 35 mm endplate is 1.75 mm). The keypoint models therefore look at a window a
few centimetres wide around one disc, resampled to their input size (0.3 mm a pixel):

- sagittal (``sag_disc_corners``): centred on the disc's segmentation, turned so that its
  anteroposterior axis runs along the window's rows (endplates horizontal), ``SAGITTAL_CROP_MM``
  wide: the four vertebral-body corners that bound the disc lie inside it;
- axial (``ax_msu_pose``): centred ``AXIAL_CROP_BEHIND_MM`` behind the posterior disc margin at the
  mid-line, turned so that the disc's left-right axis runs along the rows, ``AXIAL_CROP_MM`` wide:
  the facets, the disc margin, a herniation and the canal lie inside it.

The window is found from a disc mask (the models' segmentation at inference; the truth label
map, or the reader's corrected mask, in training), or, on an axial slice without a mask (a
reviewed case: axial masks are not exported), from the facets and the disc margin. Everything is in the canonical view
(``models.orientation``): sagittal anterior left, axial anterior up. Pixel coordinates are
(x = column, y = row) with pixel centres at integers; windows are square in millimetres, so a
slice with non-square pixels is resampled correctly.

Usage::

    crop = sagittal_disc_crop(disc_mask, spacing=(0.7, 0.7))    # (column, row) mm per pixel
    window = crop.image(normalize_slice(slice_image))           # (192, 192) float, 0-1
    xy = crop.from_crop(model.predict(to_uint8(window)).keypoints[0])   # back to slice pixels
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from SpineAssistLib.geometry import pixel_spacing_xy
from SpineAssistLib.models.imaging import normalize_slice, to_uint8
from SpineAssistLib.models.orientation import SliceOrientation
from SpineAssistLib.models.predictor import BatchPredictor, WindowPredictor

CROP_SIZE = 192                  # px: the keypoint models' input
SAGITTAL_CROP_MM = 64.0          # holds the four corners of a disc space, slips up to grade II included
AXIAL_CROP_MM = 72.0
AXIAL_CROP_BEHIND_MM = 10.0      # window centre behind the posterior disc margin (towards the canal)
# The segmentation window holds the whole disc, a herniation behind it, the sac and the facets:
# centred on the posterior disc margin at the mid-line: the disc before it, the canal and facets behind.
AXIAL_SEGMENTATION_CROP_MM = 84.0
AXIAL_SEGMENTATION_CROP_BEHIND_MM = 0.0
AXIAL_SEGMENTATION_SIZE = 256
MIDLINE_BAND_MM = 3.0            # disc pixels this near the mid-line give the posterior disc margin
MIN_MASK_PIXELS = 20
PFIRRMANN_CROP_FACTOR = 1.8     # Pfirrmann classifier's crop side / disc anteroposterior width


@dataclass(frozen=True)
class Crop:
    """A square window of a 2D slice: centre (x, y) in slice pixels, rotation (radians, the
    window's rows along (cos, sin) of the slice's (x, y) in millimetres), side in mm, output
    size in pixels and the slice's pixel spacing (column, row) in mm."""

    cx: float
    cy: float
    angle: float
    side_mm: float
    size: int = CROP_SIZE
    spacing: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if not (self.side_mm > 0 and self.size >= 8):
            raise ValueError(f"a crop needs side_mm > 0 and size >= 8; got {self.side_mm} mm, {self.size} px")
        if not all(s > 0 for s in self.spacing):
            raise ValueError(f"pixel spacing must be positive (column, row) mm; got {self.spacing}")
        if not all(math.isfinite(v) for v in (self.cx, self.cy, self.angle)):
            raise ValueError(f"crop centre and angle must be finite; got ({self.cx}, {self.cy}), {self.angle}")

    @property
    def mm_per_pixel(self) -> float:
        """Return the window's pixel size in mm."""
        return self.side_mm / self.size

    def _matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (A, b) with slice_xy = A @ crop_xy + b."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        R = np.array([[c, -s], [s, c]])
        A = np.diag([1.0 / self.spacing[0], 1.0 / self.spacing[1]]) @ R * self.mm_per_pixel
        half = (self.size - 1) / 2.0
        b = np.array([self.cx, self.cy]) - A @ np.array([half, half])
        return A, b

    def from_crop(self, xy: np.ndarray) -> np.ndarray:
        """Return window pixel points (..., 2) in the slice's pixels."""
        A, b = self._matrix()
        p = np.asarray(xy, float)
        return p @ A.T + b

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """Return slice pixel points (..., 2) in the window's pixels."""
        A, b = self._matrix()
        p = np.asarray(xy, float)
        return (p - b) @ np.linalg.inv(A).T

    def image(self, image: np.ndarray, order: int = 1) -> np.ndarray:
        """Return the window of a 2D slice (float32; outside the slice 0): bilinear (``order=1``)
        or nearest (``order=0``, for label maps)."""
        import cv2

        img = np.asarray(image)
        src = img.astype(np.float32)
        A, b = self._matrix()
        shrink = 1.0 / max(abs(np.linalg.det(A)), 1e-9) ** 0.5     # output pixels per input pixel
        if order == 1 and shrink < 0.8:   # a window smaller than the slice region: low-pass first
            sigma = 0.4 / shrink
            src = cv2.GaussianBlur(src, (0, 0), sigmaX=sigma, sigmaY=sigma)
        M = np.hstack([A, b[:, None]]).astype(np.float64)
        flags = (cv2.INTER_LINEAR if order == 1 else cv2.INTER_NEAREST) | cv2.WARP_INVERSE_MAP
        return cv2.warpAffine(src, M, (self.size, self.size), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0.0)

    def to_slice(self, window: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Return a window-sized label map or mask (``size`` x ``size``) on the slice's pixel grid of
        ``shape`` (nearest; outside the window 0): a window model's mask as the slice's own."""
        import cv2

        A, b = self._matrix()
        Ainv = np.linalg.inv(A)
        M = np.hstack([Ainv, (-Ainv @ b)[:, None]]).astype(np.float64)     # slice xy -> window xy
        src = np.asarray(window)
        out = cv2.warpAffine(src.astype(np.uint8), M, (int(shape[1]), int(shape[0])),
                             flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out.astype(src.dtype)

    def jittered(self, rng: np.random.Generator, shift_mm: float, angle_deg: float, scale: float = 0.0) -> "Crop":
        """Return this window moved by up to ``shift_mm``, turned by up to ``angle_deg`` and scaled
        by up to ``scale`` (a fraction): the training copies that make a model tolerate an imprecise
        segmentation at inference."""
        dx, dy = rng.uniform(-shift_mm, shift_mm, 2)
        return Crop(self.cx + dx / self.spacing[0], self.cy + dy / self.spacing[1],
                    self.angle + math.radians(float(rng.uniform(-angle_deg, angle_deg))),
                    self.side_mm * float(1.0 + rng.uniform(-scale, scale)), self.size, self.spacing)


def _principal_axis(mask: np.ndarray, spacing: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Return (centroid (x, y) px, unit major axis (x, y) in mm with x >= 0) of a mask's pixels."""
    rows, cols = np.nonzero(mask)
    if len(rows) < MIN_MASK_PIXELS:
        raise ValueError(f"the disc mask has {len(rows)} pixels; at least {MIN_MASK_PIXELS} are needed to place a crop")
    xy = np.column_stack([cols, rows]).astype(float)
    centre = xy.mean(axis=0)
    mm = (xy - centre) * np.asarray(spacing, float)
    w, v = np.linalg.eigh(mm.T @ mm)
    axis = v[:, int(np.argmax(w))]
    return centre, axis if axis[0] >= 0 else -axis


def sagittal_disc_crop(disc_mask: np.ndarray, spacing: Sequence[float], size: int = CROP_SIZE,
                       side_mm: float = SAGITTAL_CROP_MM) -> Crop:
    """Return the window around one disc on a canonical sagittal slice (anterior left, head up):
    centred on the disc mask, its rows along the disc's anteroposterior (long) axis.
    ``spacing`` is (column, row) mm per pixel."""
    sp = (float(spacing[0]), float(spacing[1]))
    centre, axis = _principal_axis(disc_mask, sp)
    return Crop(float(centre[0]), float(centre[1]), math.atan2(axis[1], axis[0]), side_mm, size, sp)


def axial_disc_crop(disc_mask: np.ndarray, spacing: Sequence[float], size: int = CROP_SIZE,
                    side_mm: float = AXIAL_CROP_MM, behind_mm: float = AXIAL_CROP_BEHIND_MM) -> Crop:
    """Return the MSU window on a canonical axial slice (anterior up): rows along the disc's
    left-right (long) axis, centred ``behind_mm`` behind the disc mask's posterior margin at the
    mid-line (the disc's pixels within ``MIDLINE_BAND_MM`` of its centre, left to right)."""
    sp = (float(spacing[0]), float(spacing[1]))
    centre, axis = _principal_axis(disc_mask, sp)
    back = np.array([-axis[1], axis[0]])          # the minor axis, pointing posteriorly (down the image)
    if back[1] < 0:
        back = -back
    rows, cols = np.nonzero(disc_mask)
    rel = (np.column_stack([cols, rows]) - centre) * np.asarray(sp)
    lateral, posterior = rel @ axis, rel @ back
    band = np.abs(lateral) <= MIDLINE_BAND_MM
    margin_mm = float(posterior[band].max()) if band.any() else float(posterior.max())
    c = centre + (back * (margin_mm + behind_mm)) / np.asarray(sp)
    return Crop(float(c[0]), float(c[1]), math.atan2(axis[1], axis[0]), side_mm, size, sp)


def axial_segmentation_crop(disc_mask: np.ndarray, spacing: Sequence[float]) -> Crop:
    """Return the window ``ax_disc_window_seg`` segments on a canonical axial slice: the whole disc,
    the canal and the facets, aligned with the disc (``axial_disc_crop`` with its own size)."""
    return axial_disc_crop(disc_mask, spacing, AXIAL_SEGMENTATION_SIZE, AXIAL_SEGMENTATION_CROP_MM,
                           AXIAL_SEGMENTATION_CROP_BEHIND_MM)


def axial_crop_from_keypoints(left_facet: Sequence[float], right_facet: Sequence[float], disc_margin: Sequence[float],
                              spacing: Sequence[float], size: int = CROP_SIZE, side_mm: float = AXIAL_CROP_MM,
                              behind_mm: float = AXIAL_CROP_BEHIND_MM) -> Crop:
    """Return the MSU window from the facets and the posterior disc margin (x, y px), where no disc
    mask is at hand: rows along the intra-facet line, centred ``behind_mm`` behind the margin."""
    sp = np.array([float(spacing[0]), float(spacing[1])])
    a, b, m = (np.asarray(p, float) for p in (left_facet, right_facet, disc_margin))
    d = (b - a) * sp
    if d[0] < 0:
        d = -d
    d /= np.linalg.norm(d)
    back = np.array([-d[1], d[0]])
    if back[1] < 0:
        back = -back
    c = m + back * behind_mm / sp
    return Crop(float(c[0]), float(c[1]), math.atan2(d[1], d[0]), side_mm, size, (float(sp[0]), float(sp[1])))


@dataclass
class WindowKeypoints:
    """What a window model found around one disc: keypoints (K, 2) as (x, y) in the slice's own
    pixels, their scores (K,), the detection's score, and the window (in the canonical view)."""

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    score: float
    crop: Crop


def _placed_windows(items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], plane: str,
                    place: Any) -> list[tuple[int, Any, np.ndarray, Crop]]:
    """Return (item index, the slice's orientation, its canonical image, the window) of every item
    (slice image as stored, its (row, col, 0) -> LPS affine, the disc's mask on it) whose mask can
    place a window (``place``: a crop function of a canonical mask and its spacing)."""
    views: dict[int, tuple[Any, np.ndarray]] = {}
    out = []
    for i, (image, affine, mask) in enumerate(items):
        o = SliceOrientation.of(affine, plane)
        if id(image) not in views:
            views[id(image)] = (o, o.image(image))
        try:
            crop = place(o.image(mask), pixel_spacing_xy(o.affine(affine, np.shape(image)), "row,col,slice"))
        except ValueError:
            continue
        out.append((i, *views[id(image)], crop))
    return out


def window_keypoints(model: WindowPredictor, items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], plane: str,
                     conf: float = 0.1) -> list[WindowKeypoints | None]:
    """Return the keypoints a window model (``sag_disc_corners``, ``ax_msu_pose``) finds around each
    disc, one per item (slice image as stored, its (row, col, 0) -> LPS affine, the disc's mask on
    it): the window is placed from the mask in the slice's canonical view and the answer mapped back
    to the slice's pixels. None where the mask is too small to place a window or nothing is found.
    All windows go to the model as one batch (``model.predict_windows``)."""
    place = {"sagittal": sagittal_disc_crop, "axial": axial_disc_crop}.get(plane)
    if place is None:
        raise ValueError(f"plane must be sagittal or axial; got {plane!r}")
    placed = _placed_windows(items, plane, place)
    out: list[WindowKeypoints | None] = [None] * len(items)
    if not placed:
        return out
    results = model.predict_windows([(canon, crop) for _, _, canon, crop in placed], conf=conf)
    for (i, o, canon, crop), r in zip(placed, results):
        if not len(r):
            continue
        j = int(np.argmax(r.scores))
        kp = o.xy_back(crop.from_crop(r.keypoints[j]), canon.shape)
        out[i] = WindowKeypoints(kp, np.asarray(r.keypoint_scores[j], float), float(r.scores[j]), crop)
    return out


def window_segmentation(model: WindowPredictor, items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[Any]:
    """Return, per item (axial slice image as stored, its (row, col, 0) -> LPS affine, the disc's mask
    on it from a whole-slice segmentation), the masks a window segmentation model
    (``ax_disc_window_seg``) finds on the window around that disc, as a ``YoloResult`` in the slice's
    own pixels (masks on the slice grid, boxes around them), or None where the mask is too small to
    place a window. All windows go to the model as one batch (``model.predict_windows``)."""
    import dataclasses

    placed = _placed_windows(items, "axial", axial_segmentation_crop)
    out: list[Any] = [None] * len(items)
    if not placed:
        return out
    results = model.predict_windows([(canon, crop) for _, _, canon, crop in placed], conf=0.25, max_det=30)
    for (i, o, canon, crop), r in zip(placed, results):
        masks = np.zeros((0, *np.shape(items[i][0])), bool) if r.masks is None or not len(r) else \
            np.stack([o.image_back(crop.to_slice(m, canon.shape)) for m in r.masks]).astype(bool)
        keep = [j for j, m in enumerate(masks) if m.any()]    # a mask can fall outside the slice
        boxes = np.zeros((len(keep), 4))
        for row, j in enumerate(keep):
            rows, cols = np.nonzero(masks[j])
            boxes[row] = cols.min(), rows.min(), cols.max(), rows.max()
        out[i] = dataclasses.replace(r, masks=masks[keep], boxes=boxes, scores=np.asarray(r.scores)[keep],
                                     classes=np.asarray(r.classes)[keep])
    return out


def refined_segmentations(window_model: WindowPredictor, images: Sequence[np.ndarray], affines: Sequence[np.ndarray],
                          whole: Sequence[Any]) -> list[Any]:
    """Return each axial slice's segmentation (disc, herniation, thecal sac) in the slice's pixels:
    the window model's on the window around the disc the whole-slice model found (``whole``: its
    results, one per slice), or the whole-slice result where no window could be placed or the
    window shows no disc."""
    refined = window_segmentation(window_model, [(img, A, w.mask_of("disc")) for img, A, w in zip(images, affines, whole)])
    return [r if r is not None and r.mask_of("disc").any() else w for r, w in zip(refined, whole)]


def disc_segmentations(whole_model: BatchPredictor, window_model: WindowPredictor, images: Sequence[np.ndarray],
                       affines: Sequence[np.ndarray]) -> list[Any]:
    """Return the segmentations of the axial slices through one disc (parallel slices of one stack, a
    few millimetres apart, in order), as ``refined_segmentations`` gives them, but with the
    whole-slice model (``whole_model``: ``ax_disc_seg``, oriented to the stack) run on the central
    slice only. Each other slice's window is placed from the window model's disc mask on its
    neighbour towards the centre: the disc moves little from one slice to the next, and that mask is
    finer than the whole-slice model's. A slice whose window cannot be placed or shows no disc falls
    back to its own whole-slice segmentation and the window placed from it. The whole-slice model
    took half the time of the axial models when it ran on every slice."""
    n = len(images)
    if not n:
        return []
    c = n // 2
    out: list[Any] = [None] * n
    out[c] = refined_segmentations(window_model, [images[c]], [affines[c]], whole_model.predict_many([images[c]]))[0]
    for d in range(1, max(c, n - 1 - c) + 1):       # outwards, both sides in one batch
        pairs = [(k, k + (1 if k < c else -1)) for k in (c - d, c + d) if 0 <= k < n]
        placed = [(k, out[near].mask_of("disc")) for k, near in pairs]
        found = window_segmentation(window_model, [(images[k], affines[k], mask) for k, mask in placed])
        lost = []
        for (k, _), r in zip(placed, found):
            if r is not None and r.mask_of("disc").any():
                out[k] = r
            else:
                lost.append(k)
        if lost:                                     # as refined_segmentations, from the slice's own mask
            wholes = whole_model.predict_many([images[k] for k in lost])
            for k, r in zip(lost, refined_segmentations(window_model, [images[k] for k in lost],
                                                        [affines[k] for k in lost], wholes)):
                out[k] = r
    return out


__all__ = ["AXIAL_CROP_MM", "CROP_SIZE", "Crop", "SAGITTAL_CROP_MM", "WindowKeypoints", "axial_crop_from_keypoints",
           "axial_disc_crop", "axial_segmentation_crop", "disc_segmentations", "refined_segmentations",
           "disc_crop", "pfirrmann_crop", "sagittal_disc_crop", "window_keypoints", "window_segmentation"]


# ---- the Pfirrmann classifier's crop ----------------------------------------------------------

def pfirrmann_crop(slice_image: np.ndarray, disc_mask: np.ndarray) -> np.ndarray:
    """Return the uint8 crop ``sag_pfirrmann_cls`` takes for one disc: the whole slice normalised
    (so the disc keeps its brightness relative to CSF and the rest of the slice), then cropped by
    ``disc_crop``. Pass the raw slice; give the result to the classifier's ``predict`` as is."""
    return to_uint8(disc_crop(normalize_slice(slice_image), disc_mask))


def disc_crop(image01: np.ndarray, disc_mask: np.ndarray) -> np.ndarray:
    """Return the square crop the Pfirrmann classifier sees: centred on the disc, side 1.8 x its width."""
    rows, cols = np.nonzero(disc_mask)
    cy, cx = rows.mean(), cols.mean()
    side = int(max(16, PFIRRMANN_CROP_FACTOR * max(np.ptp(cols) + 1, np.ptp(rows) + 1)))
    half = side // 2
    pad = np.pad(image01, half, mode="constant")
    y0, x0 = int(round(cy)), int(round(cx))
    return pad[y0:y0 + 2 * half, x0:x0 + 2 * half]
