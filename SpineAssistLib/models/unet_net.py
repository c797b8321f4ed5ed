"""MONAI's 2D residual U-Net, rebuilt from torch.nn alone, for inference without importing MONAI.

``import monai`` loads every MONAI sub-package (and torchvision with it): seconds of CPU paid by
every ``spineassist assess`` process and so by every run from the Slicer module. The
disc U-Net is trained with ``monai.networks.nets.UNet`` (``unet.build_unet``); this module builds
the same network - same layers, same order, same state-dict keys - so the trained weights load into
it with ``strict=True``, and ``Testing/models/test_unet.py`` checks that both give the same output.

The architecture (MONAI 1.x, ``UNet(spatial_dims=2, num_res_units=2)``, norm INSTANCE, act PReLU,
ADN order norm-dropout-activation, dropout 0): each level is ``down -> skip(subnet) -> up`` where
``down`` is a residual unit of two 3x3 convolutions (the first strided), the skip concatenates the
input with the subnet's output on the channel axis, and ``up`` is a strided 3x3 transposed
convolution followed by a one-convolution residual unit; the innermost level is a stride-1
residual unit. The top ``up`` block ends in a plain convolution (no norm, no activation).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class _ADN(nn.Sequential):
    """Instance norm then PReLU (dropout 0 is the identity and holds no weights)."""

    def __init__(self, channels: int):
        super().__init__()
        self.add_module("N", nn.InstanceNorm2d(channels))
        self.add_module("A", nn.PReLU())


class _Convolution(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int, conv_only: bool = False, transposed: bool = False):
        super().__init__()
        if transposed:
            conv: nn.Module = nn.ConvTranspose2d(cin, cout, 3, stride=stride, padding=1, output_padding=stride - 1)
        else:
            conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.add_module("conv", conv)
        if not conv_only:
            self.add_module("adn", _ADN(cout))


class _ResidualUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, subunits: int, last_conv_only: bool = False):
        super().__init__()
        self.conv = nn.Sequential()
        c, s = cin, stride
        for su in range(subunits):
            self.conv.add_module(f"unit{su}", _Convolution(c, cout, s, conv_only=last_conv_only and su == subunits - 1))
            c, s = cout, 1
        if stride != 1 or cin != cout:
            k = 3 if stride != 1 else 1
            self.residual: nn.Module = nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2)
        else:
            self.residual = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.residual(x)


class _SkipConnection(nn.Module):
    def __init__(self, submodule: nn.Module):
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.submodule(x)], dim=1)


def _level(cin: int, cout: int, channels: Sequence[int], strides: Sequence[int], res_units: int, top: bool) -> nn.Module:
    c, s = channels[0], strides[0]
    if len(channels) > 2:
        sub = _level(c, c, channels[1:], strides[1:], res_units, False)
        up_in = c * 2
    else:
        sub = _ResidualUnit(c, channels[1], 1, res_units)
        up_in = c + channels[1]
    down = _ResidualUnit(cin, c, s, res_units)
    up = nn.Sequential(_Convolution(up_in, cout, s, transposed=True),
                       _ResidualUnit(cout, cout, 1, 1, last_conv_only=top))
    return nn.Sequential(down, _SkipConnection(sub), up)


class ResidualUNet2D(nn.Module):
    """``monai.networks.nets.UNet(spatial_dims=2, ..., num_res_units=res_units)`` with MONAI's defaults."""

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int], strides: Sequence[int],
                 res_units: int = 2):
        super().__init__()
        if res_units < 1:
            raise ValueError("only the residual variant (res_units >= 1) is rebuilt here")
        if len(channels) != len(strides) + 1:
            raise ValueError("channels must have one more entry than strides")
        self.model = _level(in_channels, out_channels, channels, strides, res_units, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
