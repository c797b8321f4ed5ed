"""Return randomly altered copies of a normalised slice, so that models trained on the phantom
meet real scans' variety: contrast, gamma, noise, blur, coil bias field, lower resolution, and
(for dense labels) rotation and elastic deformation.

Usage::

    rng = np.random.default_rng(0)
    img2 = augment_intensity(img01, rng)                     # same geometry: YOLO labels stay valid
    img3, lab3 = augment_geometry(img2, labels, rng)         # for U-Net patches
"""

from __future__ import annotations

import numpy as np


def augment_intensity(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Return a [0, 1] slice with random contrast, gamma, bias field, resolution loss, blur and noise."""
    from scipy import ndimage

    x = np.asarray(img, np.float32)
    h, w = x.shape
    if rng.random() < 0.8 * strength:           # coil bias field: a smooth multiplicative ramp
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        yy, xx = yy / h - 0.5, xx / w - 0.5
        c = rng.normal(0, 0.35 * strength, 5)
        field = np.exp(c[0] * xx + c[1] * yy + c[2] * xx * yy + c[3] * xx ** 2 + c[4] * yy ** 2)
        x = x * field
    if rng.random() < 0.4 * strength:           # lower acquired resolution
        f = rng.uniform(1.2, 2.0)
        small = ndimage.zoom(x, 1.0 / f, order=1)
        x = ndimage.zoom(small, (h / small.shape[0], w / small.shape[1]), order=1)[:h, :w]
        if x.shape != (h, w):
            x = np.pad(x, ((0, h - x.shape[0]), (0, w - x.shape[1])), mode="edge")
    if rng.random() < 0.3 * strength:
        x = ndimage.gaussian_filter(x, rng.uniform(0.3, 1.2))
    if rng.random() < 0.6 * strength:           # Rician-like noise at a random SNR
        sigma = rng.uniform(0.005, 0.06) * strength
        x = np.sqrt((x + rng.normal(0, sigma, x.shape)) ** 2 + rng.normal(0, sigma, x.shape) ** 2)
    lo, hi = np.percentile(x, (0.5, 99.5))
    x = np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)
    if rng.random() < 0.8 * strength:
        x = x ** float(np.exp(rng.normal(0, 0.3 * strength)))
    if rng.random() < 0.6 * strength:
        a = rng.uniform(0.75, 1.25)
        x = np.clip(a * (x - 0.5) + 0.5 + rng.normal(0, 0.05), 0, 1)
    return x.astype(np.float32)


def scale_brightness(img: np.ndarray, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Return a [0, 1] slice multiplied by a random factor in [low, high] and clipped to [0, 1].

    What another scanner, sequence or set of tissue signals does to a slice normalised to its own
    brightest tissue: every structure brighter or darker by one factor, contrasts between them kept.
    """
    return np.clip(np.asarray(img, np.float32) * float(rng.uniform(low, high)), 0, 1).astype(np.float32)


def augment_geometry(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator, max_rotation_deg: float = 12.0,
                     elastic_mm: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Return the slice and its label map rotated and elastically deformed together (labels nearest)."""
    from scipy import ndimage

    h, w = img.shape
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    scale = rng.uniform(0.9, 1.1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ca, sa = np.cos(angle) / scale, np.sin(angle) / scale
    sy = cy + ca * (yy - cy) - sa * (xx - cx)
    sx = cx + sa * (yy - cy) + ca * (xx - cx)
    if elastic_mm > 0 and rng.random() < 0.5:
        for arr in (sy, sx):
            d = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)).astype(np.float32), 12)
            d *= elastic_mm / max(float(np.abs(d).max()), 1e-6)
            arr += d
    out = ndimage.map_coordinates(img, [sy, sx], order=1, mode="nearest")
    lab = ndimage.map_coordinates(labels, [sy, sx], order=0, mode="constant", cval=0)
    return out.astype(np.float32), lab.astype(labels.dtype)


def randomise_contrast(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return a [0, 1] slice whose every labelled structure has a random brightness (as SynthSeg renders
    label maps), its texture kept at a random strength, and the unlabelled rest a random gamma of itself.

    For training on the phantom without learning its painted tissue contrasts: a model then has to
    find a disc by its shape and place, as it must on a scanner or sequence it has not seen. Not for
    the Pfirrmann classifier, whose grade is the disc's signal."""
    x = np.asarray(img, np.float32)
    out = np.clip(x, 1e-6, 1) ** float(np.exp(rng.normal(0, 0.4)))
    for value in np.unique(labels):
        if value == 0:
            continue
        m = labels == value
        texture = x[m] - float(x[m].mean())
        out[m] = rng.uniform(0.05, 1.0) + rng.uniform(0.3, 1.2) * texture
    return np.clip(out, 0, 1).astype(np.float32)
