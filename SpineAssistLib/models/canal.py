"""The spinal canal U-Net (``sag_canal_unet``) on one sagittal slice, and the resampling it needs.

The network works at one pixel size, ``CANAL_PIXEL_MM`` (0.6 mm), whatever the scan's: a slice is
normalised whole (0.5-99.5th percentile, as for every model), resampled to that pixel size, padded
to a multiple of 16, segmented, and the canal probability resampled back to the slice's own pixels,
where it is thresholded. Training samples are made the same way (``to_model_grid``), so the
canal's width in pixels the network sees does not depend on the scanner's matrix. Like the disc
U-Net it runs in ONNX Runtime on a CPU and in torch on a GPU (``runtime``).

The slice must be in the canonical sagittal view (head up, anterior on the image left), as every
sagittal model takes it; ``orientation.Oriented`` turns another slice round and the mask back.

Usage::

    from SpineAssistLib.models import load_model
    canal = load_model("sag_canal_unet")                  # SHA-256 checked against the manifest
    mask = canal.segment(sagittal_slice, (0.55, 0.55))   # (rows, cols) bool; spacing (rows, cols) mm
    r = canal.predict(sagittal_slice, (0.55, 0.55))      # r.mask and r.probability (float32)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from SpineAssistLib.geometry import checked_spacing
from SpineAssistLib.models.imaging import normalize_slice
from SpineAssistLib.models.unet import UNetModel, UNetResult

CANAL_MODEL = "sag_canal_unet"
CANAL_PIXEL_MM = 0.6      # the pixel size the canal U-Net was trained at (catalog: ``pixel_mm``)
# Canal where its probability is at least this (manifest ``thresholds``): chosen on the validation
# patients for the smallest AP error (a lower threshold draws the canal wider than its annotators
# did; the figures are in the model card).
CANAL_THRESHOLD = 0.8


def _spacing(pixel_spacing_mm: Sequence[float]) -> tuple[float, float]:
    """Return (row, column) mm per pixel, checked: two finite numbers above 0."""
    return checked_spacing(pixel_spacing_mm)


def model_grid_shape(shape: tuple[int, int], pixel_spacing_mm: Sequence[float],
                     pixel_mm: float = CANAL_PIXEL_MM) -> tuple[int, int]:
    """Return the (rows, columns) of a slice of ``shape`` resampled to ``pixel_mm`` a pixel."""
    sy, sx = _spacing(pixel_spacing_mm)
    return max(1, round(shape[0] * sy / pixel_mm)), max(1, round(shape[1] * sx / pixel_mm))


def to_model_grid(image: np.ndarray, pixel_spacing_mm: Sequence[float], pixel_mm: float = CANAL_PIXEL_MM,
                  mask: bool = False) -> np.ndarray:
    """Return a 2D slice (float32) or mask (bool, ``mask=True``) resampled to ``pixel_mm`` a pixel.

    ``pixel_spacing_mm``: (between rows, between columns) in mm, as DICOM's PixelSpacing. Images
    are averaged over the pixels they shrink from (area) or interpolated linearly when enlarged; a
    mask is resampled as a 0/1 image and kept where it is 0.5 or more (a border moves by under half
    a pixel, where nearest-neighbour sampling moves it by up to one)."""
    import cv2

    img = np.asarray(image, np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be a 2D slice (rows, columns); got shape {img.shape}")
    rows, cols = model_grid_shape(img.shape, pixel_spacing_mm, pixel_mm)
    shrink = rows * cols < img.shape[0] * img.shape[1]
    out = cv2.resize(img, (cols, rows), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out >= 0.5 if mask else out.astype(np.float32)


def from_model_grid(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return float values on the model's grid resampled (linearly) back to a slice of ``shape``."""
    import cv2

    return cv2.resize(np.asarray(values, np.float32), (int(shape[1]), int(shape[0])),
                      interpolation=cv2.INTER_LINEAR).astype(np.float32)


class CanalModel(UNetModel):
    """The canal U-Net: ``segment(image, pixel_spacing_mm)`` -> canal mask of one sagittal slice."""

    def __init__(self, weights: str | Path, device: str = "auto", name: str = CANAL_MODEL, spec: Any = None):
        super().__init__(weights, device=device, name=name, spec=spec)
        self.pixel_mm = float((spec.input if spec is not None else {}).get("pixel_mm", CANAL_PIXEL_MM))
        self.threshold = float((getattr(spec, "thresholds", None) or {}).get("spinal canal", CANAL_THRESHOLD))

    def predict(self, image: np.ndarray, pixel_spacing_mm: Sequence[float] = (CANAL_PIXEL_MM, CANAL_PIXEL_MM),
                threshold: float | None = None, roi: tuple[slice, slice] | None = None) -> UNetResult:
        """Return the canal mask and probability of one 2D sagittal slice (raw scanner values, any
        size, canonical view) in the slice's own pixels.

        ``pixel_spacing_mm``: (between rows, between columns) in mm; ``threshold``: the canal
        probability kept (default the model's, ``CANAL_THRESHOLD``). ``roi`` is not supported (the
        network sees the whole slice); it is accepted so the pipeline's U-Net callers can pass it as None.
        """
        if roi is not None:
            raise ValueError("the canal U-Net segments whole slices; roi must be None")
        img = normalize_slice(image)
        prob = self.foreground(to_model_grid(img, pixel_spacing_mm, self.pixel_mm))
        prob = np.clip(from_model_grid(prob, img.shape), 0.0, 1.0)
        return UNetResult(prob >= (self.threshold if threshold is None else float(threshold)), prob)

    def segment(self, image: np.ndarray, pixel_spacing_mm: Sequence[float]) -> np.ndarray:
        """Return the canal mask (rows, cols) bool of one sagittal slice whose pixels are
        ``pixel_spacing_mm`` (between rows, between columns) mm apart."""
        return self.predict(image, pixel_spacing_mm).mask

