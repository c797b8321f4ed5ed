"""Training (training.train): weights and manifest entries, fine-tuning from given weights and its
lineage, and classifier checkpoints without torchvision transforms."""

from __future__ import annotations

import pytest
from support.toy_study import toy_study as _toy_study

from SpineAssistLib.models import registry


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
    from SpineAssistLib.models.networks import build_unet
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
