"""A real MRML scene outside Slicer: converter rules, the logics .mrb files need, and reading them back."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

_converters_registered = False


def register_segmentation_converters() -> None:
    """Register the labelmap <-> closed-surface converter rules (Slicer does this at start-up; slicer-core does not)."""
    global _converters_registered
    if _converters_registered:
        return
    import slicer

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    known = {factory.GetConverterRules()[i].GetName() for i in range(len(factory.GetConverterRules()))} \
        if hasattr(factory, "GetConverterRules") else set()
    for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule(),
                 slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule()):
        if rule.GetName() not in known:
            factory.RegisterConverterRule(rule)
    _converters_registered = True


def new_scene() -> Any:
    """Return a fresh MRML scene with the logics that saving and loading .mrb files need (no Qt).

    The application, markups and segmentations logics are attached in that order; they are kept
    alive on the scene object (``scene._spineassist_logics``) as long as the scene lives.
    """
    import slicer

    register_segmentation_converters()
    scene = slicer.vtkMRMLScene()
    logics = []
    for cls in (slicer.vtkMRMLApplicationLogic, slicer.vtkSlicerMarkupsLogic, slicer.vtkSlicerSegmentationsModuleLogic):
        logic = cls()
        logic.SetMRMLScene(scene)
        logics.append(logic)
    scene._spineassist_logics = logics  # noqa: SLF001 - keeps the VTK logics from being collected
    return scene


def segmentations_logic(scene: Any) -> Any:
    """Return a segmentations logic for ``scene``: the one new_scene attached, Slicer's, or a new one."""
    import slicer

    for logic in getattr(scene, "_spineassist_logics", ()):
        if logic.IsA("vtkSlicerSegmentationsModuleLogic"):
            return logic
    modules = getattr(slicer, "modules", None)
    if modules is not None and hasattr(modules, "segmentations"):
        return modules.segmentations.logic()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    scene._spineassist_logics = [*getattr(scene, "_spineassist_logics", ()), logic]  # noqa: SLF001
    return logic


def write_mrb(scene: Any, path: str | Path, errors_out: list[str] | None = None) -> bool:
    """Write ``scene`` as a Slicer bundle (``.mrb``) at ``path`` (made absolute: Slicer's bundle
    writer refuses relative paths); return whether Slicer wrote it. Slicer's log lines go to the
    debug log, not the terminal; its error messages are added to ``errors_out`` when given.

    The image volumes are stored as raw NRRD (no gzip), the segmentations and label maps
    compressed: gzip took most of the bundle's time and shrinks noisy MR voxels little, while masks
    shrink a few hundred times. A volume that already has a storage node keeps its setting.
    """
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetStorageNode() is not None:
            continue
        if node.AddDefaultStorageNode():
            node.GetStorageNode().SetUseCompression(0)
    with _vtk_messages() as messages:
        ok = bool(scene.WriteToMRB(str(Path(path).resolve())))
    errors = [m for m in messages if "ERR|" in m or "ERROR" in m]
    for line in messages:
        log.debug("Slicer, writing %s: %s", Path(path).name, line)
    if errors_out is not None:
        # Slicer's words without its log prefix (time, thread, source line) and object address
        errors_out.extend(OBJECT_PREFIX.sub("", e.split("ERR|", 1)[-1].strip()) for e in errors)
    return ok


OBJECT_PREFIX = re.compile(r"^\w+ \(0x[0-9a-fA-F]+\): ")


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@contextlib.contextmanager
def _vtk_messages() -> Iterator[list[str]]:
    """Collect what VTK and Slicer print on stderr meanwhile (colour codes removed) instead of
    letting their log lines reach a terminal user; yields the list the lines are put in."""
    lines: list[str] = []
    try:
        capture = tempfile.TemporaryFile()
        saved = os.dup(2)
    except OSError:             # no temporary file (the disk is full): let the messages through
        yield lines
        return
    with capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            lines.extend(ANSI_ESCAPE.sub("", line).strip() for line in text.splitlines() if line.strip())


def read_mrb(path: str | Path, scene: Any | None = None) -> Any:
    """Return a scene read from a Slicer bundle (``.mrb``): a new one from new_scene() unless ``scene`` is given.

    Reading needs the remote-IO logic's data IO manager on the scene (slicer-core has no
    application to set it up); its cache folder is a fresh temporary folder.
    """
    import slicer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no scene bundle at {path}; expected a .mrb file written by Slicer or SpineAssist")
    scene = scene if scene is not None else new_scene()
    if scene.GetDataIOManager() is None:
        remote_io = slicer.vtkMRMLRemoteIOLogic()
        remote_io.SetMRMLScene(scene)
        remote_io.AddDataIOToScene()
        cache = Path(tempfile.mkdtemp(prefix="spineassist-mrb-cache-"))
        (cache / ".slicer-cache").touch()  # the cache manager's sentinel: without it, it warns on every read
        remote_io.GetCacheManager().SetRemoteCacheDirectory(str(cache))
        scene._spineassist_logics = [*getattr(scene, "_spineassist_logics", ()), remote_io]  # noqa: SLF001
    # VTK's unzip changes the working directory and, when the bundle is broken, does not change it
    # back: keep the caller's, or every later .mrb read in this process fails.
    cwd = os.getcwd()
    try:
        ok = scene.ReadFromMRB(str(path.resolve()))
    finally:
        os.chdir(cwd)
    if not ok:
        raise ValueError(f"{path} could not be read as a Slicer scene bundle (.mrb); is it a zip written by Slicer?")
    return scene
