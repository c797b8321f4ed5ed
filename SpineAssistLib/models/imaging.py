"""Return images prepared the way every SpineAssist model sees them, and the masks' regions.

Per-image intensity normalisation makes the models independent of a scanner's signal scale:
the 0.5th-99.5th percentile range of the slice maps to 0-1 (``normalize_slice``), as 8-bit
grey for YOLO (``to_uint8``). Pixel <-> LPS conversions are in ``SpineAssistLib.geometry``.
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


# --- masks ------------------------------------------------------------------------------------
#
# Connected regions, their centroids and erosion of 2D masks, computed with OpenCV (which the models
# need anyway) and equal to scipy.ndimage's results with its default structuring element (edge
# neighbours): a run of the pipeline then never imports scipy, a large share of a fresh process's start.
# Testing/models/test_crops.py checks them against scipy on random masks.

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
