"""Model registry: the shipped manifest and weights, SHA-256 verification, bad manifests, and that
the registry loads without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from SpineAssistLib.errors import ModelError
from SpineAssistLib.models import registry
from SpineAssistLib.models.catalog import MODEL_DEFS

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "Resources" / "Models"


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


def test_altered_shipped_weights_refuse_to_load(tmp_path):
    from SpineAssistLib.models import load_model

    spec = registry.model_spec("ax_msu_pose")
    (tmp_path / spec.file).write_bytes(b"not a model")
    manifest = registry.load_manifest()
    manifest["ax_msu_pose"] = registry.ModelSpec(**{**spec.__dict__, "models_dir": tmp_path})
    with pytest.raises(ModelError, match="ax_msu_pose.pt"):
        load_model("ax_msu_pose", manifest=manifest)
