"""Return the bundled models' torch networks: YOLO networks out of ultralytics' checkpoints (after
pointing ultralytics at offline settings) and the U-Nets (discs, canal) from their state dicts.

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
# Each U-Net model's (channels, strides, residual units): its state dict loads only into this shape.
# The canal U-Net has half the disc U-Net's channels and one residual unit a level (an eighth of its
# weights, a quarter of its computation): a bright tube behind the bodies needs less than the discs'
# varied degeneration, and it was trained in half an hour on a 2-core CPU.
UNET_ARCHITECTURES: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    "sag_disc_unet": (UNET_CHANNELS, UNET_STRIDES, UNET_RES_UNITS),
    "sag_canal_unet": ((8, 16, 32, 64, 128), (2, 2, 2, 2), 1),
}


def unet_architecture(name: str = "sag_disc_unet") -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Return (channels, strides, residual units) of the U-Net model ``name``; a name not listed (a
    site's own U-Net, a test's) has the disc U-Net's shape, the only one there was before."""
    return UNET_ARCHITECTURES.get(name, UNET_ARCHITECTURES["sag_disc_unet"])


def build_unet(name: str = "sag_disc_unet") -> Any:
    """Return a fresh MONAI 2D U-Net of model ``name``: 1 input channel, 2 output classes (background,
    the structure) - for training."""
    from monai.networks.nets import UNet

    channels, strides, res_units = unet_architecture(name)
    return UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=channels, strides=strides,
                num_res_units=res_units)


def build_inference_unet(name: str = "sag_disc_unet") -> Any:
    """Return the same network built without importing MONAI (``unet_net``: MONAI's import is slow)."""
    from SpineAssistLib.models.unet_net import ResidualUNet2D

    channels, strides, res_units = unet_architecture(name)
    return ResidualUNet2D(1, 2, channels, strides, res_units)


def load_unet_network(weights: str | Path, name: str = "sag_disc_unet") -> Any:
    """Return the eval-mode torch U-Net of model ``name`` with the state dict of ``weights``."""
    import torch

    net = build_inference_unet(name)
    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return net.eval()
