"""The bundled models: registry (manifest + SHA-256), device choice, YOLO and U-Net wrappers,
dataset builders, training and evaluation. torch, ultralytics and monai are imported only inside
the functions that need them, so importing this package is light.

Usage::

    from SpineAssistLib.models import load_model, model_names
    model_names()        # ['ax_disc_seg', 'ax_msu_pose', 'sag_disc_corners', 'sag_disc_grades', ...]
    pose = load_model("sag_vertebra_pose", device="auto")   # verified against its SHA-256
    result = pose.predict(slice_2d)
    grades = load_model("sag_disc_grades").predict(crops)   # models.disc_grades: one dict per disc
"""

from __future__ import annotations

from SpineAssistLib.models.canal import CANAL_MODEL, CanalModel
from SpineAssistLib.models.disc_grades import DiscGradesModel
from SpineAssistLib.models.predictor import Predictor
from SpineAssistLib.models.registry import (
    ModelSpec,
    load_manifest,
    model_spec,
    model_versions,
    sha256_file,
    verified_path,
)
from SpineAssistLib.models.unet import UNetModel
from SpineAssistLib.models.yolo import YoloModel


def model_names() -> list[str]:
    """Return the names of the bundled models, sorted."""
    return sorted(load_manifest())


def load_model(name: str, device: str = "auto", manifest: dict[str, ModelSpec] | None = None) -> Predictor:
    """Return a ready model (``YoloModel``, ``UNetModel`` or, for the canal, ``CanalModel``) after
    verifying its weights' SHA-256.

    Raises ModelError when the file is missing or altered (the message names the file and how to
    restore it) or when the device cannot be used.
    """
    spec = model_spec(name, manifest)
    path = verified_path(spec)
    if spec.name == CANAL_MODEL:
        return CanalModel(path, device=device, name=spec.name, spec=spec)
    if spec.task == "unet-segment":
        return UNetModel(path, device=device, name=spec.name, spec=spec)
    if spec.task == "disc-grades":
        return DiscGradesModel(path, device=device, name=spec.name, spec=spec)

    return YoloModel(path, spec.task, names=spec.classes, keypoints=spec.keypoints, imgsz=spec.input_size,
                     device=device, name=spec.name, spec=spec)


__all__ = ["ModelSpec", "load_manifest", "load_model", "model_names", "model_spec", "model_versions",
           "sha256_file", "verified_path"]
