"""Return the torch device a model runs on (``auto``: CUDA, then Apple MPS, then CPU), and run a
model call with a fall-back to the CPU when the GPU runs out of memory.

Usage::

    from SpineAssistLib.models.device import select_device, run_with_fallback
    device = select_device("auto")                 # "cuda:0", "mps" or "cpu"
    result, used = run_with_fallback(lambda dev: model.predict(img, device=dev), device)
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import Any, Callable

from SpineAssistLib.errors import ModelError

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def select_device(requested: str = "auto") -> str:
    """Return the device string to use: ``"cuda:0"``, ``"mps"`` or ``"cpu"``.

    ``auto`` picks CUDA when torch sees a GPU, then MPS, then the CPU (without importing torch
    where ``accelerator_possible`` says there can be no GPU). An explicit ``cuda``,
    ``cuda:N`` or ``mps`` that torch cannot use raises ModelError saying so.
    """
    req = str(requested).strip().lower()
    if not _DEVICE_RE.match(req):
        raise ModelError(f"--device must be auto, cpu, cuda, cuda:N or mps; got {requested!r}")
    if req == "cpu" or (req == "auto" and not accelerator_possible()):
        return "cpu"
    import torch

    cuda = bool(torch.cuda.is_available())
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    if req == "auto":
        return "cuda:0" if cuda else "mps" if mps else "cpu"
    if req.startswith("cuda"):
        if not cuda:
            raise ModelError(f"--device {requested}: torch sees no CUDA GPU on this machine; use --device auto or cpu")
        index = int(req.split(":")[1]) if ":" in req else 0
        if index >= torch.cuda.device_count():
            raise ModelError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) present")
        return f"cuda:{index}"
    if not mps:
        raise ModelError(f"--device {requested}: Apple MPS is not available here; use --device auto or cpu")
    return "mps"


def accelerator_possible() -> bool:
    """Return False when this machine surely has no GPU torch could use, so ``auto`` need not import
    torch (seconds) to learn it: Linux without an NVIDIA or AMD driver's device files. Elsewhere
    (macOS: MPS; Windows) only torch can tell."""
    if not sys.platform.startswith("linux"):
        return True
    signs = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
    return any(os.path.exists(p) for p in signs)


def is_out_of_memory(error: BaseException) -> bool:
    """Return True when ``error`` is a GPU out-of-memory error (CUDA or MPS)."""
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def run_with_fallback(call: Callable[[str], Any], device: str) -> tuple[Any, str]:
    """Return ``(call(device), device_used)``; on GPU out-of-memory, warn and return ``call("cpu")``."""
    try:
        return call(device), device
    except Exception as e:  # noqa: BLE001 - only out-of-memory is handled, everything else re-raised
        if device == "cpu" or not is_out_of_memory(e):
            raise
        message = f"the GPU ({device}) ran out of memory; running this model on the CPU instead (slower)"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        log.warning(message)
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass
        return call("cpu"), "cpu"
