"""Load the study's chosen sagittal and axial T2 series as ``ImageStack``s (voxels, affine, DICOM headers).

The series are found and chosen by ``SpineAssistLib.dicom.index`` when it is present; this module turns
what it loads into the pipeline's stacks, one per set of parallel slices (angled axial blocks are
separate stacks, each with its own plane).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from SpineAssistLib.dicom import index as study
from SpineAssistLib.errors import StudyError
from SpineAssistLib.geometry import affine_from_dicom, orientation_normal
from SpineAssistLib.pipeline.result import ImageStack


@dataclass
class LoadedStacks:
    study_instance_uid: str
    sagittal: ImageStack
    axial: list[ImageStack] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _affine(datasets: list[Any]) -> np.ndarray:
    """Return the "col,row,slice" (i, j, k, 1) → LPS affine of slices sorted along their normal."""
    first = datasets[0]
    origin = np.asarray(first.ImagePositionPatient, float)
    if len(datasets) > 1:
        # the mean step from first to last slice, which also holds for a stack whose slices are not
        # stepped along their normal
        last = np.asarray(datasets[-1].ImagePositionPatient, float)
        step: Any = (last - origin) / (len(datasets) - 1)
    else:
        step = float(getattr(first, "SpacingBetweenSlices", None) or getattr(first, "SliceThickness", 1.0))
    return affine_from_dicom(origin, first.ImageOrientationPatient, first.PixelSpacing, step, "col,row,slice")


def consistent_run(datasets: list[Any]) -> tuple[list[Any], str | None]:
    """Return the longest run of evenly spaced slices (a missing slice splits the stack) and a warning, if any.

    Slices must be sorted along their normal. Spacing counts as even within 10 % of the median step,
    so one affine maps every kept slice exactly.
    """
    if len(datasets) < 3:
        return datasets, None
    normal = orientation_normal(datasets[0].ImageOrientationPatient)
    pos = np.array([float(np.asarray(d.ImagePositionPatient, float) @ normal) for d in datasets])
    steps = np.diff(pos)
    step = float(np.median(steps))
    breaks = [i + 1 for i, d in enumerate(steps) if abs(d - step) > 0.1 * abs(step)]
    if not breaks:
        return datasets, None
    bounds = [0, *breaks, len(datasets)]
    runs = [(a, b) for a, b in zip(bounds, bounds[1:])]
    a, b = max(runs, key=lambda r: r[1] - r[0])
    return datasets[a:b], (f"uneven slice spacing ({np.round(steps, 2).tolist()} mm): loaded the {b - a} evenly "
                           f"spaced slices {a + 1}-{b} of {len(datasets)}")


def _to_stack(datasets: list[Any], role: str, name: str, warnings: list[str] | None = None) -> ImageStack:
    warnings = warnings if warnings is not None else []
    shapes = [(int(d.Rows), int(d.Columns)) for d in datasets]
    common = max(set(shapes), key=shapes.count)
    if len(set(shapes)) > 1:
        warnings.append(f"{name}: mixed image sizes {sorted(set(shapes))}; loaded the {shapes.count(common)} "
                        f"slices of {common[0]}x{common[1]}")
        datasets = [d for d, sh in zip(datasets, shapes) if sh == common]
    datasets, gap = consistent_run(datasets)
    if gap:
        warnings.append(f"{name}: {gap}")
    voxels = []
    for ds in datasets:
        try:
            px = ds.pixel_array.astype(np.float32)
        except Exception as e:  # pydicom raises many kinds for broken pixel data
            raise StudyError(f"the pixel data of {getattr(ds, 'filename', 'a file')} cannot be decoded ({e}); "
                             f"re-export the series from the scanner or PACS") from None
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        voxels.append(px * slope + intercept)
    return ImageStack(role, name, np.stack(voxels), _affine(datasets), datasets)


def load_stacks(study_dir: Path, *, sagittal_uid: str | None = None, axial_uid: str | None = None,
                use_axial: bool = True, study_uid: str | None = None) -> LoadedStacks:
    """Return the chosen sagittal stack and the axial stacks of one study in ``study_dir``.

    The study is ``study_uid``, else that of a named series, else the folder's only one; a folder
    holding several studies and no choice raises StudyError (see ``index.select_series``).
    """
    index = study.index_folder(study_dir)
    choice = study.select_series(index, sagittal_uid=sagittal_uid, axial_uid=axial_uid, study_uid=study_uid)
    warnings = list(choice.notes)
    sag_stacks = choice.sagittal.stacks
    if len(sag_stacks) > 1:
        warnings.append(f"the sagittal series has {len(sag_stacks)} orientations; the largest stack is used")
    biggest = max(sag_stacks, key=lambda st: len(st.slices))
    sag_ds = study.read_series_datasets(choice.sagittal, biggest)
    sagittal = _to_stack(sag_ds, "sagittal", "sagittal", warnings)
    axial: list[ImageStack] = []
    if use_axial and choice.axial is not None:
        for i, stack in enumerate(choice.axial.stacks, start=1):
            axial.append(_to_stack(study.read_series_datasets(choice.axial, stack), "axial", f"axial block {i}", warnings))
    return LoadedStacks(str(sag_ds[0].StudyInstanceUID), sagittal, axial, warnings)
