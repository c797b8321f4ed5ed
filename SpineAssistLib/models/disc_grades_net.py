"""The network of ``sag_disc_grades``: its definition, for training and for the ONNX export, and
its weights' loader. Apart from ``models.disc_grades`` (input and predictor) so the runtime that
exports it imports no predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from SpineAssistLib.errors import ModelError

MODIC_TYPES: tuple[int, ...] = (0, 1, 2, 3)
BINARY_GRADINGS: tuple[str, ...] = ("endplate_upper", "endplate_lower", "narrowing", "bulging", "herniation")
PFIRRMANN_GRADES = 5            # auxiliary training output (the bundled sag_pfirrmann_cls grades discs)
INPUT_SIZE = 112                # px: the window's side at the network's input (0.64 mm a pixel)
CHANNELS = 3
WIDTHS: tuple[int, ...] = (16, 32, 64, 128)


# ---- the network ----------------------------------------------------------------------------

def build_network(widths: Sequence[int] = WIDTHS, dropout: float = 0.3) -> Any:
    """Return a fresh network: a stride-2 3x3 convolution to ``widths[0]`` channels, then per further
    width a block of two 3x3 convolutions (batch norm, ReLU) and a 2x2 max pool, then global average
    and maximum pooling and one linear output per grading (Modic: 4 types; each binary grading: 1
    logit; auxiliary Pfirrmann: 5 grades, training only).

    ``net(x)`` returns (Modic type probabilities (B, 4), binary gradings' probabilities (B, 5) in
    ``BINARY_GRADINGS`` order): what the ONNX copy outputs. ``net.logits(x)`` returns the three
    outputs' logits for training."""
    import torch
    from torch import nn

    def conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    class DiscGradesNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(*conv(CHANNELS, widths[0], stride=2))
            blocks, cin = [], widths[0]
            for w in widths[1:]:
                blocks.append(nn.Sequential(*conv(cin, w), *conv(w, w), nn.MaxPool2d(2)))
                cin = w
            self.blocks = nn.Sequential(*blocks)
            self.dropout = nn.Dropout(dropout)
            self.modic = nn.Linear(2 * cin, len(MODIC_TYPES))
            self.binary = nn.Linear(2 * cin, len(BINARY_GRADINGS))     # one logit per binary grading
            self.pfirrmann = nn.Linear(2 * cin, PFIRRMANN_GRADES)

        def logits(self, x: Any) -> tuple[Any, Any, Any]:
            f = self.blocks(self.stem(x))
            f = self.dropout(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1))
            return self.modic(f), self.binary(f), self.pfirrmann(f)

        def forward(self, x: Any) -> tuple[Any, Any]:
            modic, binary, _ = self.logits(x)
            return torch.softmax(modic, dim=1), torch.sigmoid(binary)

    return DiscGradesNet()


def network_widths(state: Mapping[str, Any]) -> tuple[int, ...]:
    """Return the ``widths`` a state dict of ``build_network`` was made with."""
    if "stem.0.weight" not in state:
        raise ModelError("not sag_disc_grades weights (no stem.0.weight)")
    widths = [int(state["stem.0.weight"].shape[0])]
    while f"blocks.{len(widths) - 1}.0.weight" in state:
        widths.append(int(state[f"blocks.{len(widths) - 1}.0.weight"].shape[0]))
    return tuple(widths)


def load_network(weights: str | Path) -> Any:
    """Return the eval-mode network with the state dict of ``weights`` (an fp16 ``.pt`` state dict)."""
    import torch

    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    try:
        return network_from_state(state)
    except (ModelError, RuntimeError) as e:
        raise ModelError(f"{weights}: not sag_disc_grades weights ({str(e).splitlines()[0]})") from None


def network_from_state(state: Mapping[str, Any]) -> Any:
    """Return the eval-mode network holding a (possibly fp16) state dict of ``build_network``."""
    net = build_network(network_widths(state))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return net.eval()


# ---- the predictor --------------------------------------------------------------------------
