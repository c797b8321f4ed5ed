"""The Qt panel and the sample-data hook load without Qt or Slicer; their logic lives in tested modules."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from SpineAssistLib.ui import sample_data


def test_widget_module_imports_without_qt_or_heavy_packages():
    import subprocess

    # a fresh interpreter: other tests in this process import torch on purpose
    code = ("import sys, SpineAssistLib.ui.widget as w; "
            "assert hasattr(w, 'SpineAssistPanel') and hasattr(w, 'QtProcessRunner'); "
            "print(','.join(m for m in ('qt', 'torch', 'ultralytics', 'monai', 'slicer') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_sample_study_is_generated_locally_into_a_temporary_folder(monkeypatch, tmp_path):
    calls = {}

    def fake_generate(seed):
        calls["seed"] = seed
        return SimpleNamespace(uids={"sagittal": "2.25.1", "axial": "2.25.2", "study": "2.25.0"})

    def fake_write(study, folder):
        calls["folder"] = folder
        folder.mkdir(parents=True)
        return folder

    import SpineAssistLib.phantom as phantom

    monkeypatch.setattr(phantom, "generate_study", fake_generate)
    monkeypatch.setattr(phantom, "write_study", fake_write)
    folder, series = sample_data.write_sample_study(tmp_path / "study")
    assert (folder, series, calls["seed"]) == (tmp_path / "study", ["2.25.1", "2.25.2"], sample_data.SAMPLE_SEED)
    folder, _ = sample_data.write_sample_study()
    assert folder.name == "study" and folder.parent.name.startswith("spineassist-sample-")


def test_real_sample_is_the_bundled_scan():
    folder, series = sample_data.real_sample()
    assert folder.name == "DICOM" and len(list(folder.glob("*.dcm"))) == 24
    assert series == ["1.2.826.0.1.3680043.8.498.77.1.2"]
