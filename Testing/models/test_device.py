"""Device choice (auto: CUDA, then MPS, then CPU) and the fall-back to the CPU when a GPU runs out of memory."""

from __future__ import annotations

import pytest

from SpineAssistLib.errors import ModelError


def _fake_backends(monkeypatch, cuda: bool, mps: bool):
    import torch

    monkeypatch.setattr("SpineAssistLib.models.device.accelerator_possible", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if cuda else 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda:0"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    from SpineAssistLib.models.device import select_device

    _fake_backends(monkeypatch, cuda, mps)
    assert select_device("auto") == expected


def test_explicit_devices(monkeypatch):
    from SpineAssistLib.models.device import select_device

    _fake_backends(monkeypatch, False, False)
    assert select_device("cpu") == "cpu"
    with pytest.raises(ModelError, match="no CUDA GPU"):
        select_device("cuda")
    with pytest.raises(ModelError, match="MPS is not available"):
        select_device("mps")
    with pytest.raises(ModelError, match="auto, cpu, cuda"):
        select_device("tpu")
    _fake_backends(monkeypatch, True, False)
    assert select_device("cuda") == "cuda:0"
    with pytest.raises(ModelError, match="only 1 CUDA device"):
        select_device("cuda:3")


def test_gpu_out_of_memory_falls_back_to_cpu_with_a_warning():
    import torch

    from SpineAssistLib.models.device import run_with_fallback

    calls = []

    def runner(device):
        calls.append(device)
        if device.startswith("cuda"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "ran"

    with pytest.warns(RuntimeWarning, match="ran out of memory"):
        result, used = run_with_fallback(runner, "cuda:0")
    assert (result, used, calls) == ("ran", "cpu", ["cuda:0", "cpu"])


def test_other_errors_and_cpu_out_of_memory_are_not_swallowed():
    from SpineAssistLib.models.device import run_with_fallback

    def bad(device):
        raise ValueError("wrong shape")

    with pytest.raises(ValueError, match="wrong shape"):
        run_with_fallback(bad, "cuda:0")

    def oom(device):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        run_with_fallback(oom, "cpu")
