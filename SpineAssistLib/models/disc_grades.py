"""Return the radiologists' per-disc gradings ``sag_disc_grades`` reads off the sagittal T2 window
around one disc: Modic type, upper and lower endplate defect, disc narrowing, bulging and herniation.

The model was trained on SPIDER's gradings (``training.disc_grades``); this module holds what
training and inference share, so that both see the same input:

- ``disc_window``: where the window lies, from the disc's mask on the middle slice (the disc
  centred, its anteroposterior axis along the window's rows, ``WINDOW_MM`` square: the endplates,
  the marrow of both adjacent bodies and the canal behind the disc are inside);
- ``neighbour_slices``: the middle slice and the slices ``NEIGHBOUR_MM`` either side of it;
- ``window_input`` / ``disc_grades_crop``: the three slices, each normalised whole as every model
  sees a slice (``imaging.normalize_slice``), cut to the window: a (3, ``INPUT_SIZE``, ``INPUT_SIZE``)
  float32 array in [0, 1];
- ``build_network``: the network (a strided convolution and three convolution blocks, global
  average and maximum pooling, one linear output per grading); torch is imported only there;
- ``DiscGradesModel``: the predictor. On a CPU the network runs in ONNX Runtime (``runtime``), on a
  GPU in torch; each crop is read in both slice orders and the probabilities averaged (which side
  of the mid-line a slice lies on is not recorded). Each binary grading is called present when its
  probability reaches its threshold, and a Modic change when 1 - p(type 0) reaches the
  ``modic_change`` threshold (then the most probable of types 1-3); the thresholds are stored in the
  manifest (chosen on validation patients, never on the held-out test patients).

Everything is in the canonical sagittal view (``models.orientation``: anterior left, head up);
pixel coordinates are (x = column, y = row). ``endplate_upper`` / ``endplate_lower`` are SPIDER's
"UP" / "LOW endplate": the endplates above and below the disc. How each grading does on the held-out
SPIDER patients, and which outputs are not learnt (herniation, Modic types 1 and 3), is in
``Resources/Models/MODEL_CARD.md``.

Usage::

    from SpineAssistLib.models import load_model
    from SpineAssistLib.models.disc_grades import disc_grades_crop, neighbour_slices
    model = load_model("sag_disc_grades")
    idx = neighbour_slices(len(volume), mid, slice_mm=3.3)           # (mid - 1, mid, mid + 1)
    crop = disc_grades_crop(volume[list(idx)], disc_mask, spacing=(0.6, 0.6))   # (column, row) mm
    grades = model.predict(crop[None])[0]
    grades["modic"]           # (2, (0.08, 0.01, 0.90, 0.01)): type 2 and the four types' probabilities
    grades["herniation"]      # (False, 0.04): present?, probability
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from SpineAssistLib.errors import ModelError
from SpineAssistLib.models import runtime
from SpineAssistLib.models.crops import Crop, sagittal_disc_crop
from SpineAssistLib.models.device import run_with_fallback, select_device
from SpineAssistLib.models.disc_grades_net import (
    BINARY_GRADINGS,
    CHANNELS,
    INPUT_SIZE,
    MODIC_TYPES,
    build_network,
    load_network,
)
from SpineAssistLib.models.imaging import normalize_slice

GRADINGS: tuple[str, ...] = ("modic", *BINARY_GRADINGS)
MODIC_CHANGE = "modic_change"   # threshold on 1 - p(type 0): a Modic change is called from it
THRESHOLD_NAMES: tuple[str, ...] = (MODIC_CHANGE, *BINARY_GRADINGS)
WINDOW_MM = 72.0                # the disc (35-50 mm deep), both endplates, the adjacent bodies' marrow, the canal
NEIGHBOUR_MM = 3.0              # the two side channels: slices this far either side of the middle one
DEFAULT_THRESHOLD = 0.5


# ---- the input ------------------------------------------------------------------------------

def neighbour_slices(n_slices: int, index: int, slice_mm: float, offset_mm: float = NEIGHBOUR_MM) -> tuple[int, int, int]:
    """Return the indices (one side, middle, other side) of the slices the model reads around slice
    ``index`` of a stack of ``n_slices`` slices ``slice_mm`` apart: the nearest slices ``offset_mm``
    either side, at least one slice away, the edge slice repeated at the stack's edge."""
    if n_slices < 1 or not 0 <= index < n_slices:
        raise ValueError(f"slice index {index} is outside a stack of {n_slices} slices")
    if not slice_mm > 0:
        raise ValueError(f"slice_mm (distance between slices) must be positive; got {slice_mm}")
    step = max(1, round(offset_mm / float(slice_mm)))
    return (max(index - step, 0), index, min(index + step, n_slices - 1))


def disc_window(disc_mask: np.ndarray, spacing: Sequence[float]) -> Crop:
    """Return the window around one disc of a canonical sagittal slice: centred on ``disc_mask``,
    rows along its anteroposterior axis, ``WINDOW_MM`` square at ``INPUT_SIZE`` px. ``spacing`` is
    (column, row) mm per pixel. ValueError where the mask is too small to place it."""
    return sagittal_disc_crop(np.asarray(disc_mask, bool), spacing, INPUT_SIZE, WINDOW_MM)


def window_input(slices01: np.ndarray | Sequence[np.ndarray], crop: Crop) -> np.ndarray:
    """Return the (3, size, size) float32 network input: the window ``crop`` of each of three
    normalised ([0, 1]) slices, in the order given."""
    if len(slices01) != CHANNELS:
        raise ValueError(f"the model reads {CHANNELS} slices (one side, middle, other side); got {len(slices01)}")
    return np.stack([crop.image(s) for s in slices01]).astype(np.float32)


def disc_grades_crop(slices: np.ndarray | Sequence[np.ndarray], disc_mask: np.ndarray,
                     spacing: Sequence[float]) -> np.ndarray:
    """Return the (3, ``INPUT_SIZE``, ``INPUT_SIZE``) float32 input of ``sag_disc_grades`` for one
    disc: ``slices`` are three canonical sagittal slices as stored (``neighbour_slices`` gives which;
    raw scanner values), ``disc_mask`` the disc on the middle one, ``spacing`` their (column, row)
    mm per pixel. Each slice is normalised whole (``normalize_slice``), then cut to ``disc_window``.
    Training cuts its inputs with the same two functions."""
    if len(slices) != CHANNELS:
        raise ValueError(f"slices must be {CHANNELS} sagittal slices (one side, middle, other side); got {len(slices)}")
    shapes = {np.shape(s) for s in slices} | {np.shape(disc_mask)}
    if len(shapes) != 1:
        raise ValueError(f"the three slices and the disc mask must have one shape (rows, columns); got {sorted(shapes)}")
    return window_input([normalize_slice(s) for s in slices], disc_window(disc_mask, spacing))


def as_batch(crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Return crops as the (N, 3, ``INPUT_SIZE``, ``INPUT_SIZE``) float32 batch the network takes:
    ``crops`` is a batch (N, 3, H, W), one crop (3, H, W), a list of crops, or one 2D image (H, W)
    taken as a crop whose three slices are the same. uint8 crops are divided by 255; float crops are
    taken as [0, 1] (as ``disc_grades_crop`` gives them) and clipped to it; another size than
    ``INPUT_SIZE`` is resampled to it."""
    if isinstance(crops, (list, tuple)):
        if not crops:
            return np.zeros((0, CHANNELS, INPUT_SIZE, INPUT_SIZE), np.float32)
        crops = np.stack([np.asarray(c) for c in crops])
    x = np.asarray(crops)
    if x.ndim == 2:
        x = np.repeat(x[None, None], CHANNELS, axis=1)
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != CHANNELS:
        raise ValueError(f"crops must be (N, {CHANNELS}, H, W), one ({CHANNELS}, H, W) crop or one 2D image; "
                         f"got shape {np.shape(crops)}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("crops hold NaN or infinite values")
    x = np.clip(x, 0.0, 1.0)
    if x.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
        import cv2

        x = np.stack([np.stack([cv2.resize(c, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA
                                           if c.shape[0] > INPUT_SIZE else cv2.INTER_LINEAR) for c in crop])
                      for crop in x]).astype(np.float32)
    return np.ascontiguousarray(x)


def modic_type(probs: Sequence[float], threshold: float = DEFAULT_THRESHOLD) -> int:
    """Return the Modic type called from the four types' probabilities: 0 where the probability of a
    change, 1 - p0, is below ``threshold``, else the most probable of types 1-3."""
    p = np.asarray(probs, float)
    if 1.0 - p[0] < threshold:
        return MODIC_TYPES[0]
    return MODIC_TYPES[1 + int(np.argmax(p[1:]))]


def grades_from_probabilities(modic: np.ndarray, binary: np.ndarray,
                              thresholds: Mapping[str, float]) -> list[dict[str, tuple[Any, Any]]]:
    """Return one dict per disc from the network's outputs (``modic`` (N, 4), ``binary`` (N, 5)):
    ``{"modic": (type, (p0, p1, p2, p3)), "endplate_upper": (present, p), ...}``: the type by
    ``modic_type`` with the ``modic_change`` threshold, a binary grading present where its
    probability p >= its threshold (0.5 for any not given)."""
    out = []
    t_modic = thresholds.get(MODIC_CHANGE, DEFAULT_THRESHOLD)
    for m, b in zip(np.asarray(modic, float), np.asarray(binary, float)):
        d: dict[str, tuple[Any, Any]] = {"modic": (modic_type(m, t_modic), tuple(float(v) for v in m))}
        for name, p in zip(BINARY_GRADINGS, b):
            d[name] = (bool(p >= thresholds.get(name, DEFAULT_THRESHOLD)), float(p))
        out.append(d)
    return out


def check_thresholds(thresholds: Mapping[str, float]) -> dict[str, float]:
    """Return the thresholds as floats after checking each names a binary grading (or ``modic_change``)
    and lies in [0, 1]."""
    out = {}
    for name, t in thresholds.items():
        if name not in THRESHOLD_NAMES:
            raise ModelError(f"threshold for {name!r}: not a binary grading of sag_disc_grades "
                             f"({', '.join(THRESHOLD_NAMES)})")
        try:
            value = float(t)
        except (TypeError, ValueError):
            raise ModelError(f"threshold for {name!r} must be a number in [0, 1]; got {t!r}") from None
        if not 0.0 <= value <= 1.0:
            raise ModelError(f"threshold for {name!r} must be in [0, 1]; got {value}")
        out[name] = value
    return out


class DiscGradesModel:
    """``sag_disc_grades`` with weights loaded from its state-dict file and its binary gradings'
    thresholds (default: the manifest's); the network runs in ONNX Runtime on a CPU and in torch
    on a GPU (``runtime``)."""

    def __init__(self, weights: str | Path, device: str = "auto", name: str = "sag_disc_grades", spec: Any = None,
                 thresholds: Mapping[str, float] | None = None):
        self.name = name
        self.weights = Path(weights)
        self.device = select_device(device)
        given = thresholds if thresholds is not None else getattr(spec, "thresholds", None) or {}
        self.thresholds = {n: DEFAULT_THRESHOLD for n in THRESHOLD_NAMES} | check_thresholds(given)
        self._net: Any = None
        self._onnx = runtime.OnnxNetwork.for_model(spec, self.weights, self.device)
        if self._onnx is None:
            self._net = load_network(self.weights)

    @property
    def runtime(self) -> str:
        return "onnx" if self._onnx is not None else "torch"

    @property
    def net(self) -> Any:
        """The torch network (loaded on first use where ONNX Runtime runs the model)."""
        if self._net is None:
            self._net = load_network(self.weights)
        return self._net

    def probabilities(self, crops: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Return (Modic type probabilities (N, 4), binary gradings' probabilities (N, 5) in
        ``BINARY_GRADINGS`` order) of crops (``as_batch`` says which forms): the mean over the
        crops' two slice orders."""
        x = as_batch(crops)
        if not len(x):
            return np.zeros((0, len(MODIC_TYPES)), np.float32), np.zeros((0, len(BINARY_GRADINGS)), np.float32)
        both = np.concatenate([x, x[:, ::-1]])
        if self.runtime == "onnx":
            modic, binary = self._onnx(both)[:2]
        else:
            (modic, binary), used = run_with_fallback(lambda dev: self._forward(both, dev), self.device)
            self.device = used
        return (both_orders(np.asarray(modic, np.float32), len(x)),
                both_orders(np.asarray(binary, np.float32), len(x)))

    def predict(self, crops: np.ndarray | Sequence[np.ndarray]) -> list[dict[str, tuple[Any, Any]]]:
        """Return one dict per crop: ``{"modic": (type 0-3, (p0, p1, p2, p3)), "endplate_upper":
        (present, p), "endplate_lower": ..., "narrowing": ..., "bulging": ..., "herniation": ...}``.

        ``crops``: ``disc_grades_crop`` outputs as a batch (N, 3, 112, 112), one crop (3, 112, 112)
        or a list of crops (``as_batch``)."""
        return grades_from_probabilities(*self.probabilities(crops), self.thresholds)

    def _forward(self, x: np.ndarray, device: str) -> tuple[np.ndarray, np.ndarray]:
        import torch

        net = self.net.to(device)
        with torch.inference_mode():
            modic, binary = net(torch.from_numpy(x).to(device))
        return modic.float().cpu().numpy(), binary.float().cpu().numpy()


def both_orders(p: np.ndarray, n: int) -> np.ndarray:
    """Return the mean of the first ``n`` rows of ``p`` (crops) and the next ``n`` (the same crops'
    slices in reverse order)."""
    return ((p[:n] + p[n:2 * n]) / 2).astype(np.float32)


__all__ = [
    "BINARY_GRADINGS",
    "GRADINGS",
    "INPUT_SIZE",
    "MODIC_CHANGE",
    "MODIC_TYPES",
    "NEIGHBOUR_MM",
    "THRESHOLD_NAMES",
    "WINDOW_MM",
    "DiscGradesModel",
    "as_batch",
    "both_orders",
    "build_network",
    "disc_grades_crop",
    "disc_window",
    "grades_from_probabilities",
    "load_network",
    "modic_type",
    "neighbour_slices",
    "window_input",
]
