"""Shared pytest fixtures and markers for SpineAssist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Nothing a test runs may reach the network or write to the user's home.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLCONFIGDIR", str(REPO / ".cache" / "matplotlib"))


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def mrml_scene():
    """A fresh, real MRML scene from the slicer-core wheel, with the logics saving needs."""
    from SpineAssistLib.mrml import new_scene

    scene = new_scene()
    yield scene
    scene.Clear(1)


@pytest.fixture
def repo_root() -> Path:
    return REPO
