"""Return images prepared the way every SpineAssist model sees them, and pixel <-> LPS conversions.

Per-image intensity normalisation makes the models independent of a scanner's signal scale:
the 0.5th-99.5th percentile range of the slice maps to 0-1 (``normalize_slice``), as 8-bit
grey for YOLO (``to_uint8``). Pixel coordinates are (x = column, y = row) with pixel centres at
integers, the numpy index convention; ``pixels_to_lps`` takes a slice's (row, col, 0) -> LPS affine.
"""

from __future__ import annotations

import numpy as np

LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


def normalize_slice(image: np.ndarray) -> np.ndarray:
    """Return a 2D slice as float32 in [0, 1]: its 0.5-99.5th percentile range stretched to 0-1."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be a 2D slice (rows, columns); got shape {img.shape}")
    lo, hi = np.percentile(img, (LOW_PERCENTILE, HIGH_PERCENTILE))
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("image holds NaN or infinite values")
    if hi - lo < 1e-6:
        return np.zeros_like(img)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)  # numpy 2: float64 percentiles promote


def to_uint8(image01: np.ndarray) -> np.ndarray:
    """Return a [0, 1] float image as uint8 grey."""
    return np.clip(np.rint(np.asarray(image01) * 255.0), 0, 255).astype(np.uint8)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Return a raw or normalised 2D slice as the 3-channel uint8 image YOLO takes."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = to_uint8(normalize_slice(img))
    return np.repeat(img[:, :, None], 3, axis=2)


def pixels_to_lps(xy: np.ndarray, index_to_lps: np.ndarray) -> np.ndarray:
    """Return (N, 3) LPS mm of (N, 2) pixel points (x = column, y = row) on a slice.

    ``index_to_lps`` is the 4x4 affine from (row, column, 0) - or, for a stack, (slice, row,
    column) with the slice index given by ``slice_index`` baked in - to LPS mm.
    """
    xy = np.asarray(xy, float).reshape(-1, 2)
    A = np.asarray(index_to_lps, float)
    idx = np.column_stack([xy[:, 1], xy[:, 0], np.zeros(len(xy)), np.ones(len(xy))])
    return (idx @ A.T)[:, :3]


def slice_spacing(slice_affine: np.ndarray) -> tuple[float, float]:
    """Return a slice's pixel spacing (column, row) in mm from its (row, col, 0) -> LPS affine."""
    A = np.asarray(slice_affine, float)
    return float(np.linalg.norm(A[:3, 1])), float(np.linalg.norm(A[:3, 0]))


def stack_slice_affine(stack_affine: np.ndarray, slice_index: int) -> np.ndarray:
    """Return the (row, col, 0) -> LPS affine of one slice of a (slice, row, col) -> LPS stack affine."""
    A = np.asarray(stack_affine, float)
    out = np.eye(4)
    out[:3, 0] = A[:3, 1]
    out[:3, 1] = A[:3, 2]
    out[:3, 2] = A[:3, 0]
    out[:3, 3] = A[:3, 3] + slice_index * A[:3, 0]
    return out


def lps_to_pixels(points: np.ndarray, index_to_lps: np.ndarray) -> np.ndarray:
    """Return (N, 3) (row, column, out-of-plane index) of LPS points on a slice's affine."""
    P = np.asarray(points, float).reshape(-1, 3)
    A = np.asarray(index_to_lps, float)
    return np.linalg.solve(A[:3, :3], (P - A[:3, 3]).T).T


# --- masks ------------------------------------------------------------------------------------
#
# Connected regions, their centroids and erosion of 2D masks, computed with OpenCV (which the models
# need anyway) and equal to scipy.ndimage's results with its default structuring element (edge
# neighbours): a run of the pipeline then never imports scipy, which took 0.45 s of a fresh process.
# Testing/test_models_crops.py checks them against scipy on random masks.

def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Return (labels, n) of a 2D mask's 4-connected regions, numbered 1..n in the order their first
    pixel comes in a row-by-row scan, 0 outside (as ``scipy.ndimage.label``)."""
    import cv2

    m = _mask2d(mask)
    n, labels = cv2.connectedComponents(m, connectivity=4, ltype=cv2.CV_32S)
    return labels, int(n) - 1


def region_centroids(mask: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Return (labels, n, centroids) of a 2D mask's regions (``label_regions``): ``centroids[j - 1]``
    is region j's mean (row, column) (as ``scipy.ndimage.center_of_mass`` per label)."""
    import cv2

    m = _mask2d(mask)
    n, labels, _, centroids = cv2.connectedComponentsWithStats(m, connectivity=4, ltype=cv2.CV_32S)
    return labels, int(n) - 1, np.asarray(centroids[1:, ::-1], float)


def erode(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Return a 2D mask eroded ``iterations`` times by the 3 x 3 cross, pixels beyond the border
    counting as outside (as ``scipy.ndimage.binary_erosion``)."""
    import cv2

    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    return cv2.erode(_mask2d(mask), cross, iterations=int(iterations), borderType=cv2.BORDER_CONSTANT,
                     borderValue=0).astype(bool)


def _mask2d(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2D (rows, columns); got shape {m.shape}")
    return np.ascontiguousarray(m != 0, dtype=np.uint8)
