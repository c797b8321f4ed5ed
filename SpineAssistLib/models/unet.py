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
from typing import Any

import numpy as np

from .device import run_with_fallback, select_device
from .imaging import normalize_slice

UNET_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256)
UNET_STRIDES: tuple[int, ...] = (2, 2, 2, 2)
UNET_RES_UNITS = 2
PAD_MULTIPLE = 16
MIN_DISC_PIXELS = 20


def build_unet() -> Any:
    """Return a fresh MONAI 2D U-Net: 1 input channel, 2 output classes (background, disc)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=UNET_CHANNELS, strides=UNET_STRIDES,
                num_res_units=UNET_RES_UNITS)


@dataclass
class UNetResult:
    """A slice's disc segmentation: ``mask`` (rows, cols) bool and the disc ``probability`` (float32)."""

    mask: np.ndarray
    probability: np.ndarray

    def instances(self, min_pixels: int = MIN_DISC_PIXELS) -> list[np.ndarray]:
        """Return one bool mask per connected disc region of at least ``min_pixels``, top of the image first."""
        from scipy import ndimage

        lab, n = ndimage.label(self.mask)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        out = [lab == k for k in range(1, n + 1) if sizes[k] >= min_pixels]
        out.sort(key=lambda m: float(np.argwhere(m)[:, 0].mean()))
        return out


class UNetModel:
    """The disc U-Net with weights loaded from a state-dict file."""

    def __init__(self, weights: str | Path, device: str = "auto", name: str = "sag_disc_unet"):
        import torch

        self.name = name
        self.device = select_device(device)
        self.net = build_unet()
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        self.net.load_state_dict({k: v.float() for k, v in state.items()})
        self.net.eval()

    def predict(self, image: np.ndarray, threshold: float = 0.5) -> UNetResult:
        """Return the disc mask of one 2D slice (raw scanner values, any size)."""
        img = normalize_slice(image)
        prob, used = run_with_fallback(lambda dev: self._forward(img, dev), self.device)
        self.device = used
        return UNetResult(prob >= threshold, prob)

    def _forward(self, img: np.ndarray, device: str) -> np.ndarray:
        import torch

        h, w = img.shape
        ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        x = np.pad(img, ((0, ph), (0, pw)), mode="constant")
        net = self.net.to(device)
        with torch.inference_mode():
            t = torch.from_numpy(x)[None, None].to(device)
            p = torch.softmax(net(t), dim=1)[0, 1]
        return p.cpu().numpy()[:h, :w].astype(np.float32)
