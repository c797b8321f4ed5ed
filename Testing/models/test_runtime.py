"""Where the networks run: ONNX Runtime on a CPU (copies exported here once), torch elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from SpineAssistLib.errors import ModelError


@pytest.fixture(scope="module")
def sagittal_slice():
    from SpineAssistLib.training.phantom_cache import render_training_phantom

    st = render_training_phantom(11, sag_slices=1, ax_blocks=1, extra_block=False)
    return st["sag_images"][0]


def test_the_unet_gives_the_same_masks_in_onnx_runtime_and_torch(sagittal_slice, monkeypatch):
    from SpineAssistLib.models import load_model

    onnx = load_model("sag_disc_unet", device="cpu")
    monkeypatch.setenv("SPINEASSIST_CPU_RUNTIME", "torch")
    torch_model = load_model("sag_disc_unet", device="cpu")
    assert (onnx.runtime, torch_model.runtime) == ("onnx", "torch")
    roi = (slice(40, 200), slice(30, 230))       # not a multiple of 16: the padding is cut off again
    for kwargs in ({}, {"roi": roi}):
        a, b = onnx.predict(sagittal_slice, **kwargs), torch_model.predict(sagittal_slice, **kwargs)
        assert a.mask.shape == sagittal_slice.shape and a.mask.sum() > 100
        np.testing.assert_allclose(a.probability, b.probability, atol=1e-4)
        assert (a.mask != b.mask).sum() <= 2


def test_the_classifier_gives_the_same_probabilities_in_onnx_runtime_and_torch(sagittal_slice, monkeypatch):
    from SpineAssistLib.models import load_model

    crops = [sagittal_slice[100:164, 100:164], sagittal_slice[80:240, 90:250]]
    a = load_model("sag_pfirrmann_cls", device="cpu").predict_many(crops)
    monkeypatch.setenv("SPINEASSIST_CPU_RUNTIME", "torch")
    b = load_model("sag_pfirrmann_cls", device="cpu").predict_many(crops)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.probs, y.probs, atol=1e-5)


def test_a_cpu_process_runs_every_model_without_torch_or_ultralytics(repo_root):
    """torch and ultralytics take 4-5 s to import on the project's CPU machines: with the ONNX
    copies made, loading and running every model on the CPU imports neither (``auto`` included)."""
    subprocess.run([sys.executable, "-m", "SpineAssistLib.cli", "prepare"], cwd=repo_root, check=True,
                   capture_output=True)
    code = ("import sys, numpy as np; from SpineAssistLib.models import load_model, model_names; "
            "ms = [load_model(n, device='auto') for n in model_names()]; "
            "[m.predict(np.random.rand(96, 96) * 500) for m in ms]; "
            "print([m.runtime for m in ms].count('onnx'), len(ms), "
            "sorted(m for m in ('torch', 'ultralytics', 'monai', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    onnx, n, imported = out.stdout.strip().split(" ", 2)
    assert onnx == n and int(n) >= 7 and imported == "[]", out.stdout


def test_an_altered_onnx_copy_is_made_again(tmp_path, monkeypatch):
    from SpineAssistLib.models import model_spec, verified_path
    from SpineAssistLib.models import runtime

    monkeypatch.setenv("SPINEASSIST_ONNX_DIR", str(tmp_path))
    spec = model_spec("sag_pfirrmann_cls")
    assert runtime.cached_onnx(spec) is None
    path = runtime.ensure_onnx(spec, verified_path(spec))
    assert path.parent == tmp_path and runtime.cached_onnx(spec) == path
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["source_sha256"] == spec.sha256 and record["opset"] == runtime.ONNX_OPSET
    with open(path, "r+b") as f:        # one flipped byte in the copy
        f.seek(2000)
        byte = f.read(1)
        f.seek(2000)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert runtime.cached_onnx(spec) is None
    again = runtime.ensure_onnx(spec, verified_path(spec))
    assert again == path and runtime.cached_onnx(spec) == path
    assert runtime.prepare([spec], verified_path, report=lambda line: None)[0][0] == spec.name
    optimized = runtime.optimized_onnx(spec, verified_path(spec))     # made by prepare, for this CPU
    assert optimized.parent == tmp_path and ".opt-" in optimized.name
    stamp = optimized.stat().st_mtime_ns
    assert runtime.optimized_onnx(spec, verified_path(spec)) == optimized and optimized.stat().st_mtime_ns == stamp
    optimized.write_bytes(optimized.read_bytes()[:-10])               # cut short: made again
    assert runtime.optimized_onnx(spec, verified_path(spec)) == optimized
    assert optimized.stat().st_mtime_ns != stamp
    probs = runtime.OnnxNetwork.for_model(spec, verified_path(spec), "cpu")(np.zeros((1, 3, 128, 128), np.float32))[0]
    assert probs.shape == (1, 5) and abs(float(probs.sum()) - 1) < 1e-4
    assert runtime.OnnxNetwork.for_model(spec, verified_path(spec), "cuda:0") is None     # torch runs a GPU
    assert runtime.OnnxNetwork.for_model(None, verified_path(spec), "cpu") is None
    monkeypatch.setenv(runtime.RUNTIME_ENV, "torch")
    assert runtime.OnnxNetwork.for_model(spec, verified_path(spec), "cpu") is None


def test_an_unreadable_onnx_copy_says_what_to_do(tmp_path):
    from SpineAssistLib.models.runtime import OnnxNetwork

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="Delete the file"):
        OnnxNetwork(bad)


def test_the_cpu_runtime_setting(monkeypatch):
    from SpineAssistLib.models import runtime

    for value, expected in (("auto", "onnx"), ("onnx", "onnx"), ("torch", "torch"), (" Torch ", "torch")):
        monkeypatch.setenv(runtime.RUNTIME_ENV, value)
        assert runtime.cpu_runtime() == expected
    monkeypatch.setenv(runtime.RUNTIME_ENV, "tensorrt")
    with pytest.raises(ModelError, match="auto, onnx or torch"):
        runtime.cpu_runtime()
    monkeypatch.setattr(runtime, "onnx_runtime_installed", lambda: False)
    monkeypatch.setenv(runtime.RUNTIME_ENV, "auto")
    assert runtime.cpu_runtime() == "torch"
    monkeypatch.setenv(runtime.RUNTIME_ENV, "onnx")
    with pytest.raises(ModelError, match="onnxruntime is not installed"):
        runtime.cpu_runtime()


def test_auto_device_without_a_gpu_driver_does_not_import_torch(repo_root):
    code = ("import sys; from SpineAssistLib.models import device; "
            "print(device.select_device('auto'), device.accelerator_possible(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    chosen, possible, imported = out.stdout.split()
    if possible == "False":
        assert (chosen, imported) == ("cpu", "False")
    else:                                    # a machine with a GPU driver asks torch
        assert imported == "True"


def test_nms_and_letterbox_geometry():
    """The numpy NMS keeps the best of overlapping boxes per class, keeps classes apart, and the
    letterbox maps a box back to the pixels it came from."""
    from SpineAssistLib.models.yolo import _letterbox_geometry, non_max_suppression, scale_boxes

    # (x, y, w, h, score class 0, score class 1, extra) for 4 anchors
    pred = np.array([[50, 52, 50, 120], [52, 50, 50, 120], [20, 20, 20, 40], [20, 20, 20, 40],
                     [0.9, 0.8, 0.1, 0.05], [0.1, 0.1, 0.7, 0.02], [1, 2, 3, 4]], np.float32)
    rows = non_max_suppression(pred, conf=0.25, iou=0.5, max_det=10, nc=2)
    assert rows.shape == (2, 7)
    assert rows[:, 4].tolist() == pytest.approx([0.9, 0.7]) and rows[:, 5].tolist() == [0, 1]
    assert rows[:, 6].tolist() == [1, 3]                      # the extra values travel with their box
    np.testing.assert_allclose(rows[0, :4], [40, 42, 60, 62])
    assert non_max_suppression(pred, conf=0.95, iou=0.5, max_det=10, nc=2).shape == (0, 7)
    assert len(non_max_suppression(pred, conf=0.25, iou=0.5, max_det=1, nc=2)) == 1
    (new_w, new_h), top, bottom, left, right = _letterbox_geometry((200, 100), 256)
    assert (new_w, new_h) == (128, 256) and (top, bottom) == (0, 0) and left + right == 0   # 128 is a stride multiple
    (new_w, new_h), top, bottom, left, right = _letterbox_geometry((300, 210), 256)
    assert new_h == 256 and (new_w + left + right) % 32 == 0
    shape_in = (new_h + top + bottom, new_w + left + right)
    box = np.array([[left + 10, top + 20, left + 50, top + 100]], np.float32)
    back = scale_boxes(shape_in, box.copy(), (300, 210))
    gx, gy = new_w / 210, new_h / 300                          # each side's own gain, as the letterbox rounds it
    np.testing.assert_allclose(back[0], [10 / gx, 20 / gy, 50 / gx, 100 / gy], rtol=1e-5)


def test_a_model_whose_onnx_copy_cannot_be_made_runs_in_torch_with_a_warning(tmp_path, monkeypatch, caplog):
    from SpineAssistLib.models import load_model, runtime

    monkeypatch.setenv("SPINEASSIST_ONNX_DIR", str(tmp_path))        # no copies here yet

    def no_export(spec, weights):
        raise ModelError("making the ONNX copies of the models needs the onnx package")

    monkeypatch.setattr(runtime, "export_onnx", no_export)
    with caplog.at_level("WARNING"):
        model = load_model("sag_vertebra_pose", device="cpu")
        unet = load_model("sag_disc_unet", device="cpu")
    assert (model.runtime, unet.runtime) == ("torch", "torch")
    assert "runs in torch instead" in caplog.text and "onnx package" in caplog.text
    assert model.predict(np.random.default_rng(0).uniform(0, 500, (128, 96))).boxes.shape[1] == 4


def test_prepare_prune_removes_only_the_copies_of_other_weights_and_cpus(tmp_path, monkeypatch):
    from SpineAssistLib.models import model_spec, runtime, verified_path

    monkeypatch.setenv("SPINEASSIST_ONNX_DIR", str(tmp_path))
    spec = model_spec("sag_pfirrmann_cls")
    runtime.prepare([spec], verified_path, report=lambda line: None)
    current = sorted(p.name for p in tmp_path.iterdir())
    assert len(current) == 4                      # plain and optimised copies, each with its record
    stale = [f"{spec.name}-0123456789abcdef.onnx", f"{spec.name}-0123456789abcdef.json",
             f"{spec.name}-{spec.sha256[:16]}.opt-ffffffffff.onnx", f"{spec.name}-{spec.sha256[:16]}.opt-ffffffffff.json"]
    other = ["sag_pfirrmann_cls_notes.txt", "ax_disc_seg-0123456789abcdef.onnx"]   # not this model's, or not a copy
    for name in stale + other:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in runtime.stale_copies([spec])] == sorted(stale)
    lines = []
    runtime.prepare([spec], verified_path, report=lines.append, prune=True)
    assert lines[0] == "removed 4 stale file(s) (2 ONNX copies)"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(current + other)
    assert runtime.cached_onnx(spec) is not None
