"""Assessment <-> Slicer MRML nodes. Runs inside 3D Slicer and, without Qt, with the ``slicer-core`` wheel.

``slicer`` is imported inside functions only, so this module can be imported anywhere.

Usage (Slicer's Python console or a terminal with slicer-core)::

    from SpineAssistLib import mrml
    scene = mrml.new_scene()      # terminal only; in Slicer use slicer.mrmlScene
"""

from __future__ import annotations

from typing import Any

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
