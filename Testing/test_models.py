"""Model registry, device choice, out-of-memory fall-back, dataset formats, SPIDER reader, and the
shipped models (each loads and predicts on a phantom slice)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from SpineAssistLib.anatomy import DISC_LABELS, VERTEBRA_LABELS, corner_name
from SpineAssistLib.errors import ModelError, SpineAssistError
from SpineAssistLib.models import registry
from SpineAssistLib.models.catalog import MODEL_DEFS

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "Resources" / "Models"


# --------------------------------------------------------------------------------------------
# Manifest and SHA-256 verification
# --------------------------------------------------------------------------------------------

def _manifest(tmp_path: Path, content: bytes = b"weights", sha: str | None = None) -> Path:
    (tmp_path / "m.pt").write_bytes(content)
    import hashlib

    entry = {"name": "toy", "file": "m.pt", "sha256": sha or hashlib.sha256(content).hexdigest(), "task": "pose",
             "architecture": "YOLOv8n-pose", "input": {"size": 256}, "version": "1", "training": {}, "metrics": {}}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"schema": registry.MANIFEST_SCHEMA, "models": [entry]}))
    return path


def test_shipped_manifest_lists_every_model_with_its_fields():
    specs = registry.load_manifest()
    assert sorted(specs) == sorted(MODEL_DEFS)
    data = json.loads((MODELS / "manifest.json").read_text())
    for m in data["models"]:
        for key in registry.REQUIRED_FIELDS + ("size_bytes", "classes"):
            assert key in m, f"{m['name']} lacks {key}"
        assert m["training"]["seed"] is not None and m["training"]["settings"]["epochs"] >= 1
        assert m["training"]["command"].startswith("spineassist train")
        assert m["input"]["size"] == MODEL_DEFS[m["name"]].imgsz
        assert tuple(m["keypoints"]) == MODEL_DEFS[m["name"]].keypoints


def test_shipped_weights_match_their_hashes_and_fit_40_mb():
    specs = registry.load_manifest()
    total = 0
    for spec in specs.values():
        path = registry.verified_path(spec)
        assert path.stat().st_size == spec.size_bytes
        total += spec.size_bytes
    assert total <= 40 * 1024 * 1024


def test_missing_weight_file_names_the_file_and_how_to_restore_it(tmp_path):
    spec = registry.load_manifest(_manifest(tmp_path))["toy"]
    (tmp_path / "m.pt").unlink()
    with pytest.raises(ModelError) as e:
        registry.verified_path(spec)
    msg = str(e.value)
    assert "m.pt" in msg and "missing" in msg
    assert "git checkout -- Resources/Models/m.pt" in msg and "spineassist train toy" in msg


def test_altered_weight_file_is_refused(tmp_path):
    spec = registry.load_manifest(_manifest(tmp_path))["toy"]
    (tmp_path / "m.pt").write_bytes(b"weightz")
    with pytest.raises(ModelError) as e:
        registry.verified_path(spec)
    msg = str(e.value)
    assert "m.pt" in msg and "does not match" in msg and "git checkout -- Resources/Models/m.pt" in msg


def test_intact_weight_file_passes(tmp_path):
    spec = registry.load_manifest(_manifest(tmp_path))["toy"]
    assert registry.verified_path(spec) == tmp_path / "m.pt"


@pytest.mark.parametrize("change, words", [
    ({"sha256": "abc"}, "64 hex digits"),
    ({"task": "dance"}, "task must be one of"),
    ({"file": "../x.pt"}, "plain file name"),
])
def test_bad_manifest_entries_are_named(tmp_path, change, words):
    path = _manifest(tmp_path)
    data = json.loads(path.read_text())
    data["models"][0].update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=words):
        registry.load_manifest(path)


def test_missing_manifest_and_unknown_model(tmp_path):
    with pytest.raises(ModelError, match="manifest.json"):
        registry.load_manifest(tmp_path / "manifest.json")
    with pytest.raises(ModelError, match="no bundled model named 'nope'"):
        registry.model_spec("nope", registry.load_manifest(_manifest(tmp_path)))


def test_importing_models_does_not_import_torch():
    code = ("import sys, SpineAssistLib.models, SpineAssistLib.models.registry, SpineAssistLib.training.metrics; "
            "print(any(m in sys.modules for m in ('torch', 'ultralytics', 'monai')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# Device choice and out-of-memory fall-back
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Dataset builders
# --------------------------------------------------------------------------------------------

def _toy_study(seed: int = 1) -> dict:
    """A 3-slice sagittal and 2-slice axial study of rectangles: L4, L5, S1 bodies and two discs."""
    S, H, W = 3, 96, 80
    sag = np.full((S, H, W), 300, np.uint16)
    lab = np.zeros((S, H, W), np.uint8)
    bodies = {"L4": (10, 30), "L5": (40, 60), "S1": (70, 95)}
    for name, (r0, r1) in bodies.items():
        lab[:, r0:r1, 20:50] = VERTEBRA_LABELS[name]
        sag[:, r0:r1, 20:50] = 900
    lab[:, 31:39, 20:50] = DISC_LABELS["L4-L5"]
    lab[:, 61:69, 20:50] = DISC_LABELS["L5-S1"]
    sag[:, 31:39, 22:48] = 1800
    A = np.eye(4)   # (slice, row, col) -> LPS: slices along x (2 mm), rows down (-z), columns posterior (+y)
    A[:3, 0] = (2.0, 0, 0)
    A[:3, 1] = (0, 0, -1.0)
    A[:3, 2] = (0, 1.0, 0)
    corners = {}
    for name, (r0, r1) in bodies.items():
        for c, (r, col) in {"anterior-superior": (r0 + 1, 21), "posterior-superior": (r0 + 1, 48),
                            "anterior-inferior": (r1 - 2, 21), "posterior-inferior": (r1 - 2, 48)}.items():
            if name == "S1" and c.endswith("inferior"):
                continue
            corners[corner_name(name, c)] = [2.0, float(col), -float(r)]
    ax = np.full((2, 64, 64), 200, np.uint16)
    axl = np.zeros((2, 64, 64), np.uint8)
    axl[:, 20:36, 16:48] = DISC_LABELS["L4-L5"]
    axl[:, 36:40, 26:34] = 150
    axl[:, 42:52, 24:40] = 100
    ax[axl > 0] = 1500
    aff = np.eye(4)     # (row, col, 0) -> LPS: rows posterior (+y), columns patient left (+x)
    aff[:3, 0] = (0, 1.0, 0)
    aff[:3, 1] = (1.0, 0, 0)
    kp = {"left medial facet": [44.0, 44.0, 0.0], "right medial facet": [20.0, 44.0, 0.0],
          "posterior disc margin": [32.0, 35.0, 0.0], "herniation apex": [30.0, 39.0, 0.0],
          "posterior canal": [32.0, 51.0, 0.0]}
    return {"seed": seed, "sag_images": sag, "sag_labels": lab, "sag_affine": A, "sag_mid": 1,
            "ax_images": ax, "ax_labels": axl, "ax_affines": np.stack([aff, aff]), "ax_levels": ["L4-L5"] * 2,
            "corners": corners, "axial_keypoints": [{"slice_index": 0, "level": "L4-L5", "keypoints": kp}],
            "truth": None, "params": {"pfirrmann": {"L4-L5": 2, "L5-S1": 4}}}


def test_phantom_builder_writes_parseable_yolo_labels(tmp_path):
    from SpineAssistLib.training.datasets import build_from_phantoms, parse_label_line

    result = build_from_phantoms([_toy_study(1), _toy_study(2)], tmp_path, copies=1, val_fraction=0.5)
    assert set(result) == set(MODEL_DEFS)
    pose = tmp_path / "sag_vertebra_pose"
    yaml = (pose / "data.yaml").read_text()
    assert "kpt_shape: [4, 3]" in yaml and "1: sacrum" in yaml
    lines = (pose / "labels" / "train" / "s000001_sag01_0.txt").read_text().splitlines()
    assert len(lines) == 3          # L4, L5, sacrum
    for line in lines:
        obj = parse_label_line(line, 4)
        assert 0 <= obj["box"].min() and obj["box"].max() <= 1
        assert np.all((obj["keypoints"][:, :2] >= 0) & (obj["keypoints"][:, :2] <= 1))
    l4 = parse_label_line(lines[0], 4)
    # L4's anterior-superior corner at row 11, column 21 of a 96 x 80 image: pixel centres (x + 0.5) / W
    assert l4["keypoints"][0, :2] == pytest.approx([21.5 / 80, 11.5 / 96], abs=1e-6)
    sacrum = parse_label_line(lines[2], 4)
    assert sacrum["class"] == 1 and list(sacrum["keypoints"][2:, 2]) == [0, 0]   # no inferior corners
    seg = (tmp_path / "ax_disc_seg" / "labels" / "train" / "s000001_ax00_0.txt").read_text().splitlines()
    assert sorted({parse_label_line(s)["class"] for s in seg}) == [0, 1, 2]
    msu = parse_label_line((tmp_path / "ax_msu_pose" / "labels" / "train" / "s000001_ax00_0.txt").read_text(), 5)
    k = msu["keypoints"]
    assert k[0, 0] < k[1, 0]        # facets named by image side: the image-left one first
    assert k[3, 2] == 2 and np.all((k[:, :2] >= 0) & (k[:, :2] <= 1))
    assert (tmp_path / "sag_pfirrmann_cls" / "train" / "grade2").is_dir()
    assert any((tmp_path / "sag_pfirrmann_cls" / "train" / "grade4").iterdir())
    with np.load(next((tmp_path / "sag_disc_unet" / "train").glob("*.npz"))) as z:
        assert z["image"].dtype == np.float32 and 0 <= z["image"].min() and z["image"].max() <= 1
        assert set(np.unique(z["mask"])) == {0, 1}


def test_brightness_scaled_pfirrmann_crops_change_only_the_classifier_set(tmp_path):
    """--pfirrmann-brightness: the classifier's training crops come from rescaled slices (their own
    random stream); every other training set, and the classifier's validation crops, stay the same."""
    from PIL import Image

    from SpineAssistLib.training.datasets import build_from_phantoms

    studies = [_toy_study(1), _toy_study(2)]
    build_from_phantoms(studies, tmp_path / "plain", copies=2, val_fraction=0.5)
    build_from_phantoms(studies, tmp_path / "scaled", copies=2, val_fraction=0.5, pfirrmann_brightness=(0.5, 0.7))

    def files(root):     # data.yaml names its own folder
        return {p.relative_to(root): p.read_bytes().replace(str(root).encode(), b"ROOT")
                for p in root.rglob("*") if p.is_file() and p.name != "datasets.json"}

    plain, scaled = files(tmp_path / "plain"), files(tmp_path / "scaled")
    assert plain.keys() == scaled.keys()
    differ = {k for k in plain if plain[k] != scaled[k]}
    assert differ and all(k.parts[:2] == ("sag_pfirrmann_cls", "train") for k in differ)
    for k in differ:     # darker by the factor (0.5-0.7): the disc's grey falls, its place does not move
        a = np.asarray(Image.open(tmp_path / "plain" / k), float)
        b = np.asarray(Image.open(tmp_path / "scaled" / k), float)
        assert a.shape == b.shape and 0.45 * a.max() <= b.max() <= 0.75 * a.max()
    assert json.loads((tmp_path / "scaled" / "datasets.json").read_text())["pfirrmann_brightness"] == [0.5, 0.7]


def test_tissue_jitter_widens_only_the_background_tissue_signals():
    """--tissue-jitter: training phantoms' fat, marrow, muscle ... signals vary far more than the
    phantom's own +-8 % (other scanners and patients); CSF and the disc keep theirs (grades)."""
    from SpineAssistLib.cli.train import _training_overrides
    from SpineAssistLib.phantom.params import BACKGROUND_TISSUES, TISSUE_SIGNAL, jittered_tissue_signal, sample_params

    draws = [jittered_tissue_signal(seed, 0.25) for seed in range(1000, 1060)]
    assert draws[0] == jittered_tissue_signal(1000, 0.25)                       # from the seed alone
    assert all(set(d) == set(BACKGROUND_TISSUES) for d in draws)
    ratios = np.array([[d[t] / TISSUE_SIGNAL[t] for t in ("fat", "marrow", "muscle")] for d in draws])
    assert ratios.min() >= np.exp(-0.5) - 1e-9 and all(max(d.values()) <= 0.98 for d in draws)
    assert ratios[:, 1].max() > 1.25 and ratios[:, 0].min() < 0.8             # beyond the phantom's +-20 % clip
    p = sample_params(1000, **_training_overrides(1000, None, 0.25))
    assert p.signal("marrow") == pytest.approx(draws[0]["marrow"])
    assert p.signal("csf") == 1.0 and p.signal("nucleus") == sample_params(1000).signal("nucleus")
    both = _training_overrides(1000, 0.5, 0.25)
    assert set(both) == {"msu", "tissue_signal"} and _training_overrides(1000, None, None) is None


def test_label_line_parser_rejects_wrong_counts():
    from SpineAssistLib.training.datasets import parse_label_line

    with pytest.raises(ValueError, match="needs 16 numbers"):
        parse_label_line("0 0.5 0.5 0.1 0.1 0.2 0.2 2", 4)
    with pytest.raises(ValueError, match="even count"):
        parse_label_line("0 0.1 0.2 0.3")


def _spider_folder(root: Path) -> None:
    import SimpleITK as sitk

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    arr = np.full((40, 32, 6), 100, np.float32)          # numpy (z, y, x): 6 sagittal slices along x
    lab = np.zeros(arr.shape, np.uint8)
    lab[8:12, 8:24, 1:5] = 201                             # lowest disc (L5-S1)
    lab[20:24, 8:24, 1:5] = 202                            # L4-L5
    lab[13:19, 8:24, 1:5] = 1
    arr[lab > 0] = 800
    arr[36:40, :, :] = 2000                                # bright band at the top (superior, +z)
    for a, name in ((arr, "images"), (lab, "masks")):
        img = sitk.GetImageFromArray(a)
        img.SetSpacing((3.3, 0.8, 0.8))
        sitk.WriteImage(img, str(root / name / "7_t2.mha"))
    with open(root / "radiological_gradings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Patient", "IVD label", "Modic", "UP endplate", "LOW endplate", "Spondylolisthesis",
                    "Disc herniation", "Disc narrowing", "Disc bulging", "Pfirrman grade"])
        w.writerow([7, 1, 0, 0, 0, 0, 1, 1, 0, 4])
        w.writerow([7, 2, 0, 0, 0, 0, 0, 0, 0, 2])


def test_spider_mha_reader_and_train_builds_all_four_sagittal_sets(tmp_path):
    from SpineAssistLib.training.spider import build_real_sets, level_of_ivd, read_gradings, read_spider_case

    _spider_folder(tmp_path / "spider")
    g = read_gradings(tmp_path / "spider" / "radiological_gradings.csv")
    assert g["7"][1]["pfirrmann"] == 4 and g["7"][1]["herniation"] == 1 and g["7"][2]["pfirrmann"] == 2
    assert (level_of_ivd(1), level_of_ivd(2), level_of_ivd(0), level_of_ivd(20)) == ("L5-S1", "L4-L5", None, None)
    images, labels, A = read_spider_case(tmp_path / "spider" / "images" / "7_t2.mha",
                                         tmp_path / "spider" / "masks" / "7_t2.mha")
    assert images.shape == (6, 40, 32)               # sagittal slices, head up
    assert images[0, :4].mean() == 2000               # the superior band is on the top rows
    # row 0 is the most superior voxel: its LPS z is the largest
    assert (A @ [0, 0, 0, 1])[2] > (A @ [0, 39, 0, 1])[2]
    assert np.isin(labels[2], [201]).sum() == 4 * 16
    # patient 7 is a held-out test patient: nothing of it may be written
    with pytest.raises(SpineAssistError, match="no patients outside the held-out test set"):
        build_real_sets(tmp_path / "spider", tmp_path / "sets", g)
    for name in ("images", "masks"):
        (tmp_path / "spider" / name / "7_t2.mha").rename(tmp_path / "spider" / name / "3_t2.mha")
    g = {"3": g["7"]}
    out = build_real_sets(tmp_path / "spider", tmp_path / "sets", g, copies=1, val_patients=0)
    assert out["models"]["sag_disc_unet"]["train"] == 4          # slices 1-4 hold discs
    assert any((tmp_path / "sets" / "sag_pfirrmann_cls" / "train" / "grade4").iterdir())
    assert any((tmp_path / "sets" / "sag_pfirrmann_cls" / "train" / "grade2").iterdir())
    with pytest.raises(SpineAssistError, match="SPIDER is sagittal"):
        build_real_sets(tmp_path / "spider", tmp_path / "x", g, ["ax_msu_pose"])


def test_pixels_and_lps_round_trip():
    from SpineAssistLib.models.imaging import lps_to_pixels, pixels_to_lps, stack_slice_affine

    A = _toy_study()["sag_affine"]
    S = stack_slice_affine(A, 1)
    p = pixels_to_lps([[21.0, 11.0]], S)[0]           # x = column 21, y = row 11 on slice 1
    assert p == pytest.approx([2.0, 21.0, -11.0])
    assert lps_to_pixels(p, S)[0] == pytest.approx([11.0, 21.0, 0.0])


def test_phantom_cache_is_keyed_by_the_render_code(tmp_path, monkeypatch):
    """A render cached by other phantom code is rendered anew, and a partial (training) render is
    never replaced by a cached whole study of the same seed."""
    from SpineAssistLib.training import phantom_cache as pc

    calls: list[tuple[str, int]] = []

    def fake(kind):
        def render(seed, overrides=None, **kw):
            calls.append((kind, seed))
            arrays = {k: np.full((1, 2, 2), len(calls), np.uint16) for k in pc._ARRAYS}
            return {"seed": seed, "render": kind, **arrays}
        return render

    monkeypatch.setattr(pc, "render_training_phantom", fake("partial"))
    monkeypatch.setattr(pc, "render_phantom", fake("whole"))
    monkeypatch.setattr(pc, "_RENDER_VERSION", "aaaaaaaa")
    assert pc.load_phantom(7, cache_dir=tmp_path)["render"] == "whole"
    first = pc.load_phantom(7, cache_dir=tmp_path, partial=True)
    assert first["render"] == "partial" and calls == [("whole", 7), ("partial", 7)]
    again = pc.load_phantom(7, cache_dir=tmp_path, partial=True)          # read from the cache
    assert calls == [("whole", 7), ("partial", 7)] and int(again["sag_images"][0, 0, 0]) == 2
    monkeypatch.setattr(pc, "_RENDER_VERSION", "bbbbbbbb")                # the phantom code changed
    newer = pc.load_phantom(7, cache_dir=tmp_path, partial=True)
    assert calls[-1] == ("partial", 7) and int(newer["sag_images"][0, 0, 0]) == 3
    monkeypatch.setattr(pc, "_RENDER_VERSION", None)
    v = pc.render_version()
    assert len(v) == 8 and int(v, 16) >= 0 and v == pc.render_version()


# --------------------------------------------------------------------------------------------
# The shipped models on a phantom slice
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantom_slices():
    from SpineAssistLib.training.phantom_cache import render_training_phantom

    return render_training_phantom(11, sag_slices=1, ax_blocks=1, extra_block=False)


def test_shipped_models_predict_on_a_phantom(phantom_slices):
    from SpineAssistLib.models import load_model

    sag = phantom_slices["sag_images"][0]
    ax = phantom_slices["ax_images"][len(phantom_slices["ax_images"]) // 2]
    pose = load_model("sag_vertebra_pose", device="cpu").predict(sag)
    assert pose.keypoints.shape == (len(pose), 4, 2) and pose.boxes.shape == (len(pose), 4)
    assert len(pose) >= 3 and set(pose.classes) <= {0, 1}
    unet = load_model("sag_disc_unet", device="cpu").predict(sag)
    assert unet.mask.shape == sag.shape and unet.mask.dtype == bool and unet.mask.any()
    cls = load_model("sag_pfirrmann_cls", device="cpu").predict(sag[100:164, 100:164])
    assert cls.probs.shape == (5,) and cls.probs.sum() == pytest.approx(1.0, abs=1e-3)
    seg = load_model("ax_disc_seg", device="cpu").predict(ax)
    assert seg.masks is not None and seg.masks.shape[1:] == ax.shape and len(seg) >= 1


def test_shipped_window_models_find_their_points_near_the_truth(phantom_slices):
    """The corner and MSU window models, each on windows placed from the phantom's own disc labels,
    put their points within a couple of millimetres of the truth (median; no point wildly off): the
    window geometry, the canonical view and the mapping back to the slice all hold (a slip anywhere
    puts every point tens of millimetres off)."""
    from SpineAssistLib.anatomy import MSU_KEYPOINTS, disc_space_corners
    from SpineAssistLib.models import load_model
    from SpineAssistLib.models.crops import window_keypoints
    from SpineAssistLib.training.datasets import DISC_NAMES
    from SpineAssistLib.models.imaging import lps_to_pixels, pixels_to_lps, stack_slice_affine

    st = phantom_slices
    k = int(st["sag_mid"])
    A = stack_slice_affine(st["sag_affine"], k)
    discs = {lv: st["sag_labels"][k] == v for v, lv in DISC_NAMES.items() if (st["sag_labels"][k] == v).sum() >= 40}
    assert len(discs) >= 3
    found = window_keypoints(load_model("sag_disc_corners", device="cpu"),
                             [(st["sag_images"][k], A, m) for m in discs.values()], "sagittal")
    errors = []
    for level, w in zip(discs, found):
        assert w is not None and w.keypoints.shape == (4, 2) and w.keypoint_scores.shape == (4,)
        for name, p in zip(disc_space_corners(level), pixels_to_lps(w.keypoints, A)):
            if name in st["corners"] and abs(lps_to_pixels(np.array(st["corners"][name]), A)[0, 2]) < 0.5:
                errors.append(float(np.linalg.norm(p - np.array(st["corners"][name]))))
    assert len(errors) >= 6 and np.median(errors) < 2.0 and max(errors) < 15.0, errors
    pose = load_model("ax_msu_pose", device="cpu")
    with_keypoints = {a["slice_index"]: a["keypoints"] for a in st["axial_keypoints"]}
    items = [(st["ax_images"][i], st["ax_affines"][i], np.isin(st["ax_labels"][i], list(DISC_LABELS.values())))
             for i in with_keypoints]
    msu_errors = []
    for i, w in zip(with_keypoints, window_keypoints(pose, items, "axial")):
        assert w is not None and w.keypoints.shape == (5, 2)
        lps = pixels_to_lps(w.keypoints, st["ax_affines"][i])
        truth = with_keypoints[i]
        left, right = (lps[0], lps[1]) if lps[0][0] > lps[1][0] else (lps[1], lps[0])   # LPS +x: patient's left
        for p, name in ((left, MSU_KEYPOINTS[0]), (right, MSU_KEYPOINTS[1]), (lps[2], MSU_KEYPOINTS[2])):
            msu_errors.append(float(np.linalg.norm(p - np.array(truth[name]))))
    assert len(msu_errors) >= 6 and np.median(msu_errors) < 2.0 and max(msu_errors) < 15.0, msu_errors


def test_shipped_window_segmentation_outlines_the_disc(phantom_slices):
    """ax_disc_window_seg, on windows placed from the whole-slice model's discs (as the pipeline),
    gives disc masks in the slice's pixels that overlap the truth well (IoU) and better than or
    as well as the whole slice's: a slip in the window's placement or the way back to the slice
    would put the mask off the disc."""
    from SpineAssistLib.training import metrics as M
    from SpineAssistLib.models import load_model
    from SpineAssistLib.models.crops import refined_segmentations
    from SpineAssistLib.models.orientation import Oriented, SliceOrientation

    st = phantom_slices
    whole_model, window_model = load_model("ax_disc_seg", device="cpu"), load_model("ax_disc_window_seg", device="cpu")
    idx = [i for i, lab in enumerate(st["ax_labels"]) if np.isin(lab, list(DISC_LABELS.values())).sum() >= 200]
    assert len(idx) >= 3
    images, affines = [st["ax_images"][i] for i in idx], [st["ax_affines"][i] for i in idx]
    whole = [Oriented(whole_model, SliceOrientation.of(A, "axial")).predict(x) for x, A in zip(images, affines)]
    refined = refined_segmentations(window_model, images, affines, whole)
    ious_whole, ious_window = [], []
    for i, w, r in zip(idx, whole, refined):
        truth = np.isin(st["ax_labels"][i], list(DISC_LABELS.values()))
        assert r.mask_of("disc").shape == truth.shape and r is not w   # the window answered
        ious_whole.append(M.iou(w.mask_of("disc"), truth))
        ious_window.append(M.iou(r.mask_of("disc"), truth))
    assert np.mean(ious_window) > 0.8 and np.mean(ious_window) >= np.mean(ious_whole) - 0.02, (ious_window, ious_whole)


def test_the_monai_free_unet_is_monais_unet():
    """Inference rebuilds MONAI's U-Net from torch.nn (no 7 s MONAI import): same keys, same output."""
    import torch

    from SpineAssistLib.models.unet import build_inference_unet, build_unet
    from SpineAssistLib.resources import resource_path

    torch.manual_seed(3)
    monai_net, ours = build_unet().eval(), build_inference_unet().eval()
    assert list(monai_net.state_dict()) == list(ours.state_dict())
    x = torch.rand(2, 1, 96, 128)
    for state in (monai_net.state_dict(), torch.load(resource_path("Models", "sag_disc_unet.pt"), weights_only=True)):
        monai_net.load_state_dict(state)
        ours.load_state_dict(state, strict=True)
        with torch.inference_mode():
            assert torch.equal(monai_net(x), ours(x))


def test_loading_the_disc_unet_does_not_import_monai(repo_root):
    import subprocess
    import sys

    code = ("import sys; from SpineAssistLib.models import load_model; "
            "import numpy as np; load_model('sag_disc_unet', device='cpu').predict(np.random.rand(64, 64)); "
            "print('monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_running_the_models_does_not_import_torchvision(repo_root):
    """torchvision's import pulls in torch._dynamo: 2 s of every run. Ultralytics imports it for
    its NMS warm-up and the classifier's transforms; inference here needs neither."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from SpineAssistLib.models import load_model; "
            "[load_model(n, device='cpu').predict(np.random.rand(96, 96) * 500) for n in "
            "('sag_vertebra_pose', 'sag_pfirrmann_cls', 'ax_disc_seg', 'ax_msu_pose')]; "
            "print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_classifier_gives_ultralytics_probabilities(phantom_slices):
    """The classifier is called directly (no torchvision transforms): the same probabilities as
    ultralytics' predictor, for crops smaller, larger, and not square."""
    import torchvision  # noqa: F401 - ultralytics' classify predictor needs it (here only)

    from SpineAssistLib.models import load_model

    sag = phantom_slices["sag_images"][0]
    model = load_model("sag_pfirrmann_cls", device="cpu")
    crops = [sag[100:164, 100:164], sag[80:240, 90:250], sag[100:190, 60:200], sag[50:250, 120:180]]
    ours = model.predict_many(crops)
    for crop, r in zip(crops, ours):
        ref = model.predict_ultralytics([crop])[0].probs
        np.testing.assert_allclose(r.probs, ref, atol=1e-5)
        assert r.top_class == int(np.argmax(ref))
    assert len({r.top_class for r in ours}) >= 1 and all(r.probs.shape == (5,) for r in ours)


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
@pytest.mark.parametrize("name", ["sag_vertebra_pose", "sag_disc_corners", "ax_disc_seg", "ax_disc_window_seg",
                                  "ax_msu_pose"])
def test_the_direct_network_call_gives_ultralytics_answers(phantom_slices, name, runtime, monkeypatch):
    """Detect, segment and pose run the network (ONNX Runtime or torch) with their own letterbox,
    NMS and mask and keypoint scaling, without ultralytics' predictor: the same boxes, scores,
    classes, masks and keypoints as its predictor, on square and non-square slices, with several
    answers per slice and with none."""
    monkeypatch.setenv("SPINEASSIST_CPU_RUNTIME", runtime)
    from SpineAssistLib.models import load_model
    from SpineAssistLib.models.crops import axial_disc_crop, axial_segmentation_crop, sagittal_disc_crop
    from SpineAssistLib.models.imaging import normalize_slice, slice_spacing, stack_slice_affine, to_uint8

    st = phantom_slices
    if name.startswith("sag"):
        k = int(st["sag_mid"])
        image, labels, affine = st["sag_images"][k], st["sag_labels"][k], stack_slice_affine(st["sag_affine"], k)
    else:
        k = max(range(len(st["ax_labels"])), key=lambda i: np.isin(st["ax_labels"][i], list(DISC_LABELS.values())).sum())
        image, labels, affine = st["ax_images"][k], st["ax_labels"][k], st["ax_affines"][k]
    place = {"sag_disc_corners": sagittal_disc_crop, "ax_disc_window_seg": axial_segmentation_crop,
             "ax_msu_pose": axial_disc_crop}.get(name)
    if place is not None:    # a window model sees a window around a disc, as ``predict_windows`` cuts it
        disc = labels == DISC_LABELS["L4-L5"] if name.startswith("sag") else np.isin(labels, list(DISC_LABELS.values()))
        image = to_uint8(place(disc, slice_spacing(affine)).image(normalize_slice(image)))
    model = load_model(name, device="cpu")
    assert model.runtime == runtime
    cases = [[image, np.ascontiguousarray(image[::-1])], [np.ascontiguousarray(image[20:200, 10:])],
             [np.zeros((120, 90))]]
    found = 0
    for images in cases:
        for conf in (0.25, 0.05):
            ours = model.predict_many(images, conf=conf)
            ref = model.predict_ultralytics(images, conf=conf)
            for a, b in zip(ours, ref):
                assert len(a) == len(b)
                found += len(a)
                np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
                np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
                assert (a.classes == b.classes).all()
                if model.task == "segment":
                    assert a.masks.shape == b.masks.shape and (not a.masks.size or (a.masks == b.masks).mean() > 0.9999)
                if model.task == "pose":
                    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
                    np.testing.assert_allclose(a.keypoint_scores, b.keypoint_scores, atol=1e-5)
    assert found >= 2
    assert not len(model.predict_many([np.zeros((120, 90))], conf=0.9)[0])


def test_classifier_checkpoints_lose_their_torchvision_transforms(tmp_path):
    import shutil

    import torch
    from ultralytics.data.augment import classify_transforms

    from SpineAssistLib.training.train import drop_classify_transforms
    from SpineAssistLib.resources import resource_path

    path = tmp_path / "cls.pt"
    shutil.copyfile(resource_path("Models", "sag_pfirrmann_cls.pt"), path)
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert getattr(ckpt["model"], "transforms", None) is None          # the shipped file has none
    ckpt["model"].transforms = classify_transforms(128)                  # as ultralytics' training saves it
    torch.save(ckpt, path)
    assert drop_classify_transforms(path) is True
    again = torch.load(path, map_location="cpu", weights_only=False)
    assert again["model"].transforms is None
    for a, b in zip(ckpt["model"].state_dict().values(), again["model"].state_dict().values()):
        assert torch.equal(a, b)
    assert drop_classify_transforms(path) is False


def test_a_batch_of_slices_gets_the_answers_of_one_by_one(phantom_slices):
    from SpineAssistLib.models import load_model

    sag = phantom_slices["sag_images"][0]
    for name, images in (("ax_disc_seg", list(phantom_slices["ax_images"][:3])),
                         ("sag_vertebra_pose", [sag, np.ascontiguousarray(sag[:, ::-1]), sag])):
        model = load_model(name, device="cpu")
        one = [model.predict(x, max_det=1) for x in images]
        many = model.predict_many(images, max_det=1)
        assert [len(r) for r in many] == [len(r) for r in one] and sum(len(r) for r in one) >= 1
        for a, b in zip(one, many):
            np.testing.assert_allclose(a.boxes, b.boxes, atol=0.01)
            if a.keypoints is not None:
                np.testing.assert_allclose(a.keypoints, b.keypoints, atol=0.01)
            if a.masks is not None:
                assert (a.masks == b.masks).all()
    with pytest.raises(ValueError, match="one shape"):
        model.predict_many([images[0], images[0][:100]])


@pytest.mark.gpu
def test_models_run_on_the_gpu(phantom_slices):
    from SpineAssistLib.models import load_model

    r = load_model("sag_vertebra_pose", device="cuda").predict(phantom_slices["sag_images"][0])
    assert r.keypoints.shape[1:] == (4, 2)


def test_altered_shipped_weights_refuse_to_load(tmp_path):
    from SpineAssistLib.models import load_model

    spec = registry.model_spec("ax_msu_pose")
    (tmp_path / spec.file).write_bytes(b"not a model")
    manifest = registry.load_manifest()
    manifest["ax_msu_pose"] = registry.ModelSpec(**{**spec.__dict__, "models_dir": tmp_path})
    with pytest.raises(ModelError, match="ax_msu_pose.pt"):
        load_model("ax_msu_pose", manifest=manifest)


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------

def test_train_and_evaluate_commands_are_listed_and_check_their_input(capsys, tmp_path):
    from SpineAssistLib.cli import main

    assert main(["train", "--list"]) == 0
    assert "ax_msu_pose" in capsys.readouterr().out
    assert main(["train", "nope", "--data", str(tmp_path)]) == 2
    assert "no model named 'nope'" in capsys.readouterr().err
    assert main(["train", "ax_msu_pose", "--data", str(tmp_path)]) == 2
    assert "holds no training set for ax_msu_pose" in capsys.readouterr().err
    assert main(["train", "sag_pfirrmann_cls", "--data", str(tmp_path), "--phantoms", "2",
                 "--pfirrmann-brightness", "1.3", "0.7"]) == 2
    assert "--pfirrmann-brightness needs 0 < LOW <= HIGH" in capsys.readouterr().err
    assert main(["train", "sag_pfirrmann_cls", "--data", str(tmp_path), "--phantoms", "2", "--tissue-jitter", "0"]) == 2
    assert "--tissue-jitter needs 0 < S <= 1" in capsys.readouterr().err
    assert main(["evaluate", "--studies", "0"]) == 2
    assert "--studies must be 1 or more" in capsys.readouterr().err


@pytest.mark.slow
def test_training_a_model_writes_weights_and_a_manifest_entry(tmp_path):
    from SpineAssistLib.training.datasets import build_from_phantoms
    from SpineAssistLib.training.train import train_model

    sets = build_from_phantoms([_toy_study(1), _toy_study(2)], tmp_path / "sets", ["sag_disc_unet", "ax_msu_pose"],
                               copies=1, val_fraction=0.5)
    for name in ("sag_disc_unet", "ax_msu_pose"):
        entry = train_model(name, sets[name]["path"], epochs=1, batch=2, out_dir=tmp_path / "models",
                            work_dir=tmp_path / "work")
        assert (tmp_path / "models" / f"{name}.pt").stat().st_size == entry["size_bytes"]
    specs = registry.load_manifest(tmp_path / "models" / "manifest.json")
    assert sorted(specs) == ["ax_msu_pose", "sag_disc_unet"]
    for spec in specs.values():
        registry.verified_path(spec)


def test_the_disc_unet_fine_tunes_from_given_weights(tmp_path):
    import torch

    from SpineAssistLib.training.datasets import build_from_phantoms
    from SpineAssistLib.training.train import sha256_file, train_model, train_unet
    from SpineAssistLib.models.unet import build_unet
    from SpineAssistLib.errors import ModelError

    sets = build_from_phantoms([_toy_study(1), _toy_study(2)], tmp_path / "sets", ["sag_disc_unet"], copies=1,
                               val_fraction=0.5)
    data = sets["sag_disc_unet"]["path"]
    torch.manual_seed(5)
    start = {k: v.half() for k, v in build_unet().state_dict().items()}
    torch.save(start, tmp_path / "start.pt")
    train_unet(data, tmp_path / "a.pt", epochs=0, patch=32, init=tmp_path / "start.pt")    # no step: the start itself
    kept = torch.load(tmp_path / "a.pt", weights_only=True)
    assert all(torch.equal(kept[k], start[k]) for k in start)
    entry = train_model("sag_disc_unet", data, epochs=1, batch=2, out_dir=tmp_path / "models",
                        work_dir=tmp_path / "work", init=tmp_path / "start.pt")
    assert entry["training"]["initialised_from"]["sha256"] == sha256_file(tmp_path / "start.pt")
    assert "best_val_dice" in entry["training"]
    (tmp_path / "bad.pt").write_bytes(b"not weights")
    with pytest.raises(ModelError, match="not sag_disc_unet weights"):
        train_unet(data, tmp_path / "b.pt", epochs=1, init=tmp_path / "bad.pt")


def test_fine_tuning_hands_the_init_weights_to_ultralytics(monkeypatch, tmp_path):
    """ultralytics rebuilds a .pt model from its yaml when pretrained=False: --init must name the file."""
    import ultralytics

    from SpineAssistLib.models.catalog import MODEL_DEFS
    from SpineAssistLib.training.train import train_yolo

    seen = {}

    class FakeYOLO:
        def __init__(self, model, task=None):
            seen["model"] = model

        def train(self, **kw):
            seen.update(kw)
            weights = tmp_path / "run" / "weights"
            weights.mkdir(parents=True)
            (weights / "best.pt").write_bytes(b"w")
            self.trainer = type("T", (), {"save_dir": tmp_path / "run"})()

    monkeypatch.setattr(ultralytics, "YOLO", FakeYOLO)
    init = tmp_path / "start.pt"
    init.write_bytes(b"x")
    train_yolo(MODEL_DEFS["ax_msu_pose"], tmp_path / "data.yaml", tmp_path, epochs=1, init=init)
    assert seen["model"] == str(init) and seen["pretrained"] == str(init)
    seen.clear()
    (tmp_path / "run").rename(tmp_path / "run-1")
    train_yolo(MODEL_DEFS["ax_msu_pose"], tmp_path / "data.yaml", tmp_path, epochs=1)
    assert seen["model"].endswith(".yaml") and seen["pretrained"] is False


def test_fine_tune_records_how_its_starting_weights_were_trained(tmp_path):
    """A fine-tune's manifest entry carries the parent's training record when a manifest knows the parent."""
    import json

    from SpineAssistLib.training.train import _lineage, sha256_file

    parent = tmp_path / "parent.pt"
    parent.write_bytes(b"parent weights")
    record = _lineage(parent)
    assert record == {"file": "parent.pt", "sha256": sha256_file(parent)}   # unknown weights: file and hash only
    training = {"command": "spineassist train ax_msu_pose --epochs 30", "seed": 0}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [
        {"name": "ax_msu_pose", "sha256": "0" * 64, "training": {"command": "other"}},
        {"name": "ax_msu_pose", "sha256": sha256_file(parent), "training": training}]}))
    assert _lineage(parent)["training"] == training


# ---- canonical view (models.orientation) ------------------------------------------------------

def _slice_affine(row_dir, col_dir, origin=(5.0, -3.0, 7.0), spacing=(0.7, 0.6)):
    A = np.eye(4)
    A[:3, 0] = np.array(row_dir, float) * spacing[0]
    A[:3, 1] = np.array(col_dir, float) * spacing[1]
    A[:3, 2] = np.cross(row_dir, col_dir)
    A[:3, 3] = origin
    return A


@pytest.mark.parametrize("row_dir,col_dir,plane,expected", [
    ((0, 0, -1), (0, 1, 0), "sagittal", (False, False, False)),    # anterior on the left: as trained
    ((0, 0, -1), (0, -1, 0), "sagittal", (False, False, True)),    # anterior on the right
    ((0, 1, 0), (0, 0, -1), "sagittal", (True, False, False)),     # rows and columns swapped
    ((0, 1, 0), (1, 0, 0), "axial", (False, False, False)),        # radiological (head first)
    ((0, 1, 0), (-1, 0, 0), "axial", (False, False, True)),        # feet first: patient's left on the image left
    ((0, -1, 0), (-1, 0, 0), "axial", (False, True, True)),        # prone
])
def test_slice_orientation_from_the_geometry(row_dir, col_dir, plane, expected):
    from SpineAssistLib.models.orientation import SliceOrientation

    o = SliceOrientation.of(_slice_affine(row_dir, col_dir), plane)
    assert (o.transpose, o.flip_rows, o.flip_cols) == expected


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("flip_rows", [False, True])
@pytest.mark.parametrize("flip_cols", [False, True])
def test_canonical_view_round_trips_pixels_boxes_and_lps(transpose, flip_rows, flip_cols):
    from SpineAssistLib.models.imaging import pixels_to_lps
    from SpineAssistLib.models.orientation import SliceOrientation

    o = SliceOrientation(transpose, flip_rows, flip_cols)
    img = np.zeros((30, 50))
    img[7, 41] = 1.0                                   # row 7, column 41
    view = o.image(img)
    r, c = np.argwhere(view == 1.0)[0]
    assert o.xy_back(np.array([c, r]), view.shape).tolist() == [41, 7]
    assert o.xy(np.array([41, 7]), img.shape).tolist() == [c, r]
    assert np.array_equal(o.image_back(view), img)
    box = o.box_back(np.array([[c - 2, r - 1, c + 3, r + 4]]), view.shape)[0]
    assert box[0] <= 41 <= box[2] and box[1] <= 7 <= box[3]
    A = _slice_affine((0, 0, -1), (0, 1, 0))
    Ac = o.affine(A, img.shape)
    assert np.allclose(pixels_to_lps(np.array([[c, r]]), Ac), pixels_to_lps(np.array([[41, 7]]), A))


def test_a_model_sees_the_canonical_view_and_answers_in_the_slice_pixels():
    from SpineAssistLib.models.orientation import Oriented, SliceOrientation
    from SpineAssistLib.models.yolo import YoloResult

    class BrightestPixel:          # a "model" that boxes and points at the brightest pixel it is shown
        def predict(self, image, **_):
            r, c = np.unravel_index(np.argmax(image), image.shape)
            self.shown = image
            return YoloResult(("disc",), np.array([[c - 1.0, r - 1.0, c + 1.0, r + 1.0]]), np.ones(1), np.zeros(1, int),
                              keypoints=np.array([[[float(c), float(r)]]]), keypoint_scores=np.ones((1, 1)))

    img = np.zeros((20, 40))
    img[5, 30] = 1.0
    model = BrightestPixel()
    o = SliceOrientation.of(_slice_affine((0, 0, -1), (0, -1, 0)), "sagittal")   # anterior on the right
    r = Oriented(model, o).predict(img)
    assert np.argwhere(model.shown == 1.0)[0].tolist() == [5, 40 - 1 - 30]     # it saw the mirror image
    assert r.keypoints[0, 0].tolist() == [30.0, 5.0]                            # and answers in the slice's pixels
    assert r.boxes[0].tolist() == [29.0, 4.0, 31.0, 6.0]
