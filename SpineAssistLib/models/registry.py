"""Return the bundled models listed in ``Resources/Models/manifest.json`` and their verified
weight files. Nothing is downloaded: a missing or altered file is a ModelError naming the file
and how to restore it.

The manifest (``schema: spineassist.models/1``) lists, per model: ``name``, ``file``, ``sha256``,
``size_bytes``, ``task`` (detect/segment/pose/classify/unet-segment/disc-grades), ``architecture``,
``input`` (plane, size in px, normalisation), ``classes``, ``keypoints``, ``training`` (data,
command, seeds, settings), ``metrics`` (from ``spineassist evaluate``) and ``version``; a model
with present/absent outputs also lists its decision ``thresholds`` ({output: probability}) and
``outputs``.

Usage::

    from SpineAssistLib.models import registry
    spec = registry.model_spec("ax_msu_pose")
    path = registry.verified_path(spec)      # raises ModelError if missing or hash differs
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

from SpineAssistLib.errors import ModelError
from SpineAssistLib.resources import resource_path

MANIFEST_SCHEMA = "spineassist.models/1"
ModelTask = Literal["detect", "segment", "pose", "classify", "unet-segment", "disc-grades"]
TASKS: tuple[str, ...] = get_args(ModelTask)
REQUIRED_FIELDS = ("name", "file", "sha256", "task", "architecture", "input", "version", "training", "metrics")


@dataclass(frozen=True)
class ModelSpec:
    """One manifest entry: what a bundled model does and where its weights are."""

    name: str
    file: str
    sha256: str
    task: ModelTask
    architecture: str
    input: Mapping[str, Any]
    version: str
    training: Mapping[str, Any]
    metrics: Mapping[str, Any]
    classes: tuple[str, ...] = ()
    keypoints: tuple[str, ...] = ()
    size_bytes: int | None = None
    description: str = ""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    # held-out real-patient figures, with the sha256 of the weights they were measured with
    real_metrics: Mapping[str, Any] = field(default_factory=dict)
    models_dir: Path = field(default=Path("."), compare=False)

    @property
    def path(self) -> Path:
        return self.models_dir / self.file

    @property
    def input_size(self) -> int:
        return int(self.input.get("size", 256))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], models_dir: Path) -> "ModelSpec":
        missing = [k for k in REQUIRED_FIELDS if k not in d]
        if missing:
            raise ModelError(f"model manifest entry {d.get('name', '?')!r} lacks {', '.join(missing)}")
        if d["task"] not in TASKS:
            raise ModelError(f"model {d['name']!r}: task must be one of {', '.join(TASKS)}; got {d['task']!r}")
        sha = str(d["sha256"]).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ModelError(f"model {d['name']!r}: sha256 must be 64 hex digits; got {d['sha256']!r}")
        if Path(d["file"]).name != d["file"]:
            raise ModelError(f"model {d['name']!r}: file must be a plain file name in Resources/Models; got {d['file']!r}")
        thresholds = d.get("thresholds", {})
        if not isinstance(thresholds, Mapping) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in thresholds.values()):
            raise ModelError(f"model {d['name']!r}: thresholds must map each output to a probability in [0, 1]; "
                             f"got {thresholds!r}")
        return cls(name=d["name"], file=d["file"], sha256=sha, task=d["task"], architecture=d["architecture"],
                   input=dict(d["input"]), version=str(d["version"]), training=dict(d["training"]),
                   metrics=dict(d["metrics"]), classes=tuple(d.get("classes", ())),
                   keypoints=tuple(d.get("keypoints", ())), size_bytes=d.get("size_bytes"),
                   description=d.get("description", ""),
                   thresholds={str(k): float(v) for k, v in thresholds.items()},
                   outputs=dict(d.get("outputs", {})), real_metrics=dict(d.get("real_metrics", {})),
                   models_dir=models_dir)


def models_dir() -> Path:
    """Return the folder of the bundled weights (``Resources/Models``)."""
    return resource_path("Models")


def load_manifest(path: str | Path | None = None) -> dict[str, ModelSpec]:
    """Return the manifest's models by name (default: the bundled ``Resources/Models/manifest.json``)."""
    path = Path(path) if path is not None else models_dir() / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"the model manifest {path} is missing; restore it with "
                         f"`git checkout -- Resources/Models/manifest.json` or reinstall SpineAssist") from None
    except json.JSONDecodeError as e:
        raise ModelError(f"the model manifest {path} is not valid JSON ({e}); restore it with "
                         f"`git checkout -- Resources/Models/manifest.json`") from None
    if data.get("schema") != MANIFEST_SCHEMA:
        raise ModelError(f"{path}: schema must be {MANIFEST_SCHEMA!r}; got {data.get('schema')!r}")
    specs = {}
    for d in data.get("models", []):
        spec = ModelSpec.from_dict(d, path.parent)
        if spec.name in specs:
            raise ModelError(f"{path}: model {spec.name!r} is listed twice")
        specs[spec.name] = spec
    return specs


def model_spec(name: str, manifest: Mapping[str, ModelSpec] | None = None) -> ModelSpec:
    """Return the manifest entry of model ``name``; ModelError lists the known names otherwise."""
    specs = load_manifest() if manifest is None else manifest
    if name not in specs:
        raise ModelError(f"no bundled model named {name!r}; models are {', '.join(sorted(specs)) or '(none)'}")
    return specs[name]


def held_out_figures(name: str, sha256: str, manifest: Mapping[str, ModelSpec] | None = None) -> Mapping[str, Any]:
    """Return the held-out real-patient figures the manifest records for model ``name`` measured with
    the weights ``sha256``; empty where there are none for those weights (a site's own model, weights
    retrained and not yet scored, no manifest)."""
    try:
        specs = load_manifest() if manifest is None else manifest
    except ModelError:
        return {}
    spec = specs.get(name)
    if spec is None or spec.real_metrics.get("sha256") != sha256:
        return {}
    return spec.real_metrics


def sha256_file(path: str | Path) -> str:
    """Return the SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def restore_hint(spec: ModelSpec) -> str:
    """Return how a user gets back a model's weights."""
    return (f"restore it with `git checkout -- Resources/Models/{spec.file}` (source checkout), reinstall "
            f"SpineAssist, or retrain it with `spineassist train {spec.name}`")


def verified_path(spec: ModelSpec) -> Path:
    """Return the weight file of ``spec`` after checking it exists and matches the manifest SHA-256."""
    path = spec.path
    if not path.is_file():
        raise ModelError(f"model {spec.name!r}: weight file {path} is missing; {restore_hint(spec)}")
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise ModelError(f"model {spec.name!r}: weight file {path} does not match the manifest (SHA-256 "
                         f"{digest[:12]}... instead of {spec.sha256[:12]}...): it was altered or is incomplete; "
                         f"{restore_hint(spec)}")
    return path


def model_versions(manifest: Mapping[str, ModelSpec] | None = None) -> list[dict[str, str]]:
    """Return ``[{"name", "sha256", "version"}]`` of every bundled model, for findings.json's software block."""
    specs = load_manifest() if manifest is None else manifest
    return [{"name": s.name, "sha256": s.sha256, "version": s.version} for s in specs.values()]
