"""The MONAI 2D U-Net that segments discs on sagittal slices, and its inference on whole slices.

The network is fully convolutional: it is trained on 256 x 256 patches and runs on a whole slice
at its own resolution (padded to a multiple of 16), so it does not depend on the matrix size.

Usage::

    from SpineAssistLib.models import load_model
    unet = load_model("sag_disc_unet")
    r = unet.predict(sagittal_slice)      # r.mask (rows, cols) bool, r.probability float32
    discs = r.instances()                  # one bool mask per connected disc, cranial first
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from SpineAssistLib.models import runtime
from SpineAssistLib.models.device import run_with_fallback, select_device
from SpineAssistLib.models.imaging import label_regions, normalize_slice
from SpineAssistLib.models.networks import load_unet_network
from SpineAssistLib.models.predictor import Predictor

PAD_MULTIPLE = 16
MIN_DISC_PIXELS = 20


@dataclass
class UNetResult:
    """A slice's disc segmentation: ``mask`` (rows, cols) bool and the disc ``probability`` (float32)."""

    mask: np.ndarray
    probability: np.ndarray

    def instances(self, min_pixels: int = MIN_DISC_PIXELS) -> list[np.ndarray]:
        """Return one bool mask per connected disc region of at least ``min_pixels``, top of the image first."""
        lab, n = label_regions(self.mask)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        out = [lab == k for k in range(1, n + 1) if sizes[k] >= min_pixels]
        out.sort(key=lambda m: float(np.argwhere(m)[:, 0].mean()))
        return out


class UNetModel:
    """The disc U-Net with weights loaded from a state-dict file; its network runs in ONNX Runtime
    on a CPU and in torch on a GPU (``runtime``)."""

    def __init__(self, weights: str | Path, device: str = "auto", name: str = "sag_disc_unet", spec: Any = None):
        self.name = name
        self.weights = Path(weights)
        self.device = select_device(device)
        self._net: Any = None
        self._onnx = runtime.OnnxNetwork.for_model(spec, self.weights, self.device)
        if self._onnx is None:
            self._net = load_unet_network(self.weights, self.name)

    @property
    def runtime(self) -> str:
        return "onnx" if self._onnx is not None else "torch"

    @property
    def net(self) -> Any:
        """The torch network (loaded on first use where ONNX Runtime runs the model)."""
        if self._net is None:
            self._net = load_unet_network(self.weights, self.name)
        return self._net

    def predict(self, image: np.ndarray, threshold: float = 0.5,
                roi: tuple[slice, slice] | None = None) -> UNetResult:
        """Return the disc mask of one 2D slice (raw scanner values, any size).

        ``roi`` (rows, columns): run the network on that part only (the rest of the mask is empty).
        The slice is normalised whole before it is cropped, as in training (whole slices cut into
        256 x 256 patches).
        """
        img = normalize_slice(image)
        prob = self.foreground(img if roi is None else img[roi])
        if roi is not None:
            whole = np.zeros(img.shape, np.float32)
            whole[roi] = prob
            prob = whole
        return UNetResult(prob >= threshold, prob)

    def foreground(self, image01: np.ndarray) -> np.ndarray:
        """Return the network's probability of its foreground class (softmax of class 1) for each
        pixel of a normalised 2D image, padded to the network's multiple and cropped back."""
        h, w = image01.shape
        x = np.pad(image01, ((0, (-h) % PAD_MULTIPLE), (0, (-w) % PAD_MULTIPLE)), mode="constant")[None, None]
        x = x.astype(np.float32)
        if self.runtime == "onnx":
            logits = self._onnx(x)[0]
        else:
            logits, used = run_with_fallback(lambda dev: self._forward(x, dev), self.device)
            self.device = used
        e = np.exp(logits[0] - logits[0].max(axis=0))
        return (e[1] / e.sum(axis=0))[:h, :w].astype(np.float32)

    def _forward(self, x: np.ndarray, device: str) -> np.ndarray:
        import torch

        net = self.net.to(device)
        with torch.inference_mode():
            return net(torch.from_numpy(x).to(device)).float().cpu().numpy()


CENTRAL_SLICES = 2          # slices either side of the centre always segmented
MIN_DISC_SLICE_PIXELS = 20  # a slice with fewer disc pixels shows no disc
DISC_ROI_MARGIN_MM = 30.0   # margin around the central slices' discs where the other slices are segmented


def segment_sagittal_stack(unet: Predictor, voxels: np.ndarray, pixel_spacing_mm: tuple[float, float],
                           on_slice: Callable[[int], None] | None = None,
                           margin_mm: float | None = DISC_ROI_MARGIN_MM) -> np.ndarray:
    """Return the disc masks (slices, rows, cols) of a sagittal stack, as the pipeline segments it.

    The central slices are run, then outwards on each side until a slice shows no disc (slices
    beyond the discs' lateral edge stay empty and are not run, about a fifth of a lumbar series).
    The central slices are run whole; the others only inside the box around their discs widened
    by ``margin_mm`` (None: every slice whole), a third of the pixels and of the time. ``unet`` is a
    UNetModel, or one wrapped by ``orientation.Oriented``; ``on_slice(done)`` is called before each
    slice.
    """
    n = voxels.shape[0]
    masks = np.zeros(voxels.shape, bool)
    done = 0
    roi: tuple[slice, slice] | None = None

    def run(k: int) -> bool:
        nonlocal done, roi
        if on_slice is not None:
            on_slice(done)
        done += 1
        masks[k] = unet.predict(voxels[k], roi=roi).mask
        return int(masks[k].sum()) >= MIN_DISC_SLICE_PIXELS

    centre = range(max(0, n // 2 - CENTRAL_SLICES), min(n, n // 2 + CENTRAL_SLICES + 1))
    found = [k for k in centre if run(k)]
    lo, hi = centre.start, centre.stop - 1
    if not found:                 # no disc near the centre (an off-centre spine): run every slice
        for k in [*range(0, lo), *range(hi + 1, n)]:
            run(k)
        return masks
    if margin_mm is not None:
        roi = _disc_roi(masks[lo:hi + 1].any(axis=0), pixel_spacing_mm, margin_mm)
    for k in range(lo - 1, -1, -1):
        if not run(k):
            break
    for k in range(hi + 1, n):
        if not run(k):
            break
    return masks


def _disc_roi(mask: np.ndarray, spacing_mm: tuple[float, float], margin_mm: float) -> tuple[slice, slice]:
    """Return the rows and columns around the discs of one slice's mask, widened by ``margin_mm``."""
    rows, cols = np.nonzero(mask)
    out = []
    for idx, size, mm in ((rows, mask.shape[0], spacing_mm[0]), (cols, mask.shape[1], spacing_mm[1])):
        pad = int(np.ceil(margin_mm / max(float(mm), 1e-3)))
        out.append(slice(max(0, int(idx.min()) - pad), min(size, int(idx.max()) + 1 + pad)))
    return out[0], out[1]
