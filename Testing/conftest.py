"""Shared pytest fixtures and markers for SpineAssist.

The tests mirror the library's packages (``Testing/<package>/test_<module or topic>.py``); helpers they
share are the package ``support`` (``Testing/support/``, importable through pytest's ``pythonpath``
setting in pyproject.toml). Fixtures used by tests of several packages are here; a package's own are in
its ``conftest.py``."""

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


# ---- the phantom study assessed with oracle models (pipeline, export, cli and training tests) -------------
# Session-scoped: writing the study and assessing it takes seconds, and the tests only read both.

@pytest.fixture(scope="session")
def study_dir(tmp_path_factory) -> Path:
    """A written phantom study (support/pipeline_study.py): DICOM files and truth."""
    from support.pipeline_study import write_pipeline_study

    return write_pipeline_study(tmp_path_factory.mktemp("phantom") / "study")


@pytest.fixture(scope="session")
def assessed(study_dir, tmp_path_factory):
    """(done, output folder, progress events) of ``study_dir`` assessed with oracle models (support/oracle_models.py)."""
    from support.oracle_models import oracle_for

    from SpineAssistLib.pipeline.run import run_assessment

    out = tmp_path_factory.mktemp("out")
    events = []
    done = run_assessment(study_dir, out, models=oracle_for(study_dir), progress=events.append)
    return done, out, events


# ---- a real Orthanc DICOMweb server (dicom and cli tests) -------------------------------------------------
# One per session: it starts in a fraction of a second but takes seconds to stop.

@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """A running Orthanc with its DICOMweb plugin on 127.0.0.1 and a random user (support/orthanc.py)."""
    from support.orthanc import orthanc_server

    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture(scope="session")
def pacs_study(orthanc, study_dir) -> str:
    """The StudyInstanceUID of ``study_dir``, uploaded to ``orthanc`` (through its REST API, not DICOMweb)."""
    import pydicom

    files = sorted(study_dir.rglob("*.dcm"))
    orthanc.upload(files)
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
