"""Return the bundled models' torch networks: YOLO networks out of ultralytics' checkpoints (after
pointing ultralytics at offline settings) and the disc U-Net from its state dict.

``runtime`` exports these to ONNX for the CPU; ``yolo`` and ``unet`` run them in torch on a GPU.
torch, ultralytics and MONAI are imported inside the functions, so importing this module is light.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from SpineAssistLib.resources import cache_root

_CONFIGURED: Path | None = None


def configure_offline() -> Path:
    """Return the folder ultralytics uses for settings, after making it work offline.

    Sets ``YOLO_OFFLINE=1``, ``YOLO_CONFIG_DIR`` (holding ``Ultralytics/Arial.ttf``, a copy of
    matplotlib's DejaVu Sans, so no font is fetched) and ``MPLCONFIGDIR``. Call before importing
    ultralytics; calling again is free.
    """
    global _CONFIGURED
    if _CONFIGURED is not None:
        return _CONFIGURED
    root = Path(os.environ.get("YOLO_CONFIG_DIR") or cache_root() / "ultralytics")
    font_dir = root / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(root)
    os.environ.setdefault("MPLCONFIGDIR", str(root.parent / "matplotlib"))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = font_dir / name
        if not target.is_file():
            try:
                import matplotlib

                src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
                shutil.copyfile(src, target)
            except (ImportError, OSError):  # no font: ultralytics only needs it for plots we never draw
                pass
    _CONFIGURED = root
    return root


def yolo_outputs(y: Any, task: str) -> list[Any]:
    """Return the arrays a YOLO network's eval output holds, in the order ``runtime``'s module docstring gives."""
    if task == "classify":
        return [y[0] if isinstance(y, (tuple, list)) else y]
    first = y[0] if isinstance(y, (tuple, list)) else y
    return list(first) if isinstance(first, (tuple, list)) else [first]


def load_yolo_network(weights: Path, task: str) -> Any:
    """Return the fused eval-mode torch network of a YOLO ``.pt`` file (as ultralytics' predictor fuses it)."""
    configure_offline()
    from ultralytics import YOLO

    net = YOLO(str(weights), task=task).model
    net = net.fuse() if hasattr(net, "fuse") else net
    return net.float().eval()


UNET_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256)
UNET_STRIDES: tuple[int, ...] = (2, 2, 2, 2)
UNET_RES_UNITS = 2


def build_unet() -> Any:
    """Return a fresh MONAI 2D U-Net: 1 input channel, 2 output classes (background, disc) - for training."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=UNET_CHANNELS, strides=UNET_STRIDES,
                num_res_units=UNET_RES_UNITS)


def build_inference_unet() -> Any:
    """Return the same network built without importing MONAI (``unet_net``: MONAI's import is slow)."""
    from SpineAssistLib.models.unet_net import ResidualUNet2D

    return ResidualUNet2D(1, 2, UNET_CHANNELS, UNET_STRIDES, UNET_RES_UNITS)


def load_unet_network(weights: str | Path) -> Any:
    """Return the eval-mode torch U-Net with the state dict of ``weights``."""
    import torch

    net = build_inference_unet()
    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return net.eval()
