"""Sagittal -> axial level mapping through patient-space geometry (GRADING.md).

Each axial slice is a plane in LPS mm (origin and unit normal, as DICOM ImagePositionPatient and
ImageOrientationPatient give them). A slice is assigned to the disc whose sagittal segmentation its
plane cuts: a disc is cut when its points lie on both sides of the plane, allowing each point
``tolerance_mm`` (by default, for a label mask, half a voxel along the normal: a plane through a
voxel cuts it even if it misses the voxel's centre). A slice that cuts no disc lies between discs
(``level`` None); one that cuts two or more is ambiguous (``level`` None, ``discs_cut`` names them).

Usage::

    from SpineAssistLib.grading import SlicePlane, disc_point_clouds, map_axial_slices
    planes = [SlicePlane.from_dicom(ds.ImagePositionPatient, ds.ImageOrientationPatient) for ds in axial]
    mapping = map_axial_slices(planes, label_mask=disc_labels, index_to_lps=affine)
    mapping.slices_of("L4-L5"), mapping.between_discs, mapping.ambiguous
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from SpineAssistLib.anatomy import DISC_LABELS
from SpineAssistLib.findings import validate_level_name
from SpineAssistLib.geometry import orientation_normal
from SpineAssistLib.grading.vectors import (
    FloatArray,
    Point,
    as_point,
    index_to_lps_affine,
    lps_point,
    lps_points,
    voxel_centers_lps,
    voxel_half_extent,
)


@dataclass(frozen=True)
class SlicePlane:
    """One axial slice's plane: a point on it and its unit normal, both LPS (mm)."""

    origin: Point
    normal: Point

    def __post_init__(self) -> None:
        o = lps_point("slice origin", self.origin)
        n = lps_point("slice normal", self.normal)
        length = float(np.linalg.norm(n))
        if length < 1e-9:
            raise ValueError("slice normal is a zero vector; expected the slice plane's normal in LPS")
        object.__setattr__(self, "origin", as_point(o))
        object.__setattr__(self, "normal", as_point(n / length))

    @classmethod
    def from_dicom(cls, image_position_patient: Sequence[float], image_orientation_patient: Sequence[float]
                   ) -> "SlicePlane":
        """Return the plane of a DICOM slice: origin = ImagePositionPatient, normal = row x column cosines."""
        iop = np.asarray(image_orientation_patient, dtype=float)
        if iop.shape != (6,) or not np.all(np.isfinite(iop)):
            raise ValueError(f"image_orientation_patient must be 6 finite direction cosines; got {list(iop.ravel())}")
        normal = orientation_normal(iop)
        if np.linalg.norm(normal) < 1e-6:
            raise ValueError("image_orientation_patient: row and column directions are parallel or zero")
        return cls(as_point(lps_point("image_position_patient", image_position_patient)), as_point(normal))

    def signed_distance(self, points: FloatArray) -> FloatArray:
        """Return each point's signed distance (mm) from the plane, + along the normal."""
        return (points - np.asarray(self.origin)) @ np.asarray(self.normal)


@dataclass(frozen=True)
class SliceAssignment:
    """Which disc(s) one axial slice cuts.

    ``level`` is the disc's name when exactly one is cut, else None; ``center_offset_mm`` gives,
    for each disc cut, the signed distance (mm, + along the normal) from the plane to its centroid:
    the slice nearest 0 passes through the disc's middle.
    """

    slice_index: int
    level: str | None
    discs_cut: tuple[str, ...]
    center_offset_mm: dict[str, float]

    @property
    def status(self) -> str:
        """``"assigned"``, ``"between discs"`` (cuts none) or ``"ambiguous"`` (cuts two or more)."""
        if len(self.discs_cut) == 1:
            return "assigned"
        return "between discs" if not self.discs_cut else "ambiguous"


@dataclass(frozen=True)
class SliceMapping:
    """The assignment of every axial slice, in input order."""

    slices: tuple[SliceAssignment, ...]

    def slices_of(self, level: str) -> tuple[int, ...]:
        """Return the indices of the slices assigned to ``level`` (e.g. ``"L4-L5"``)."""
        return tuple(s.slice_index for s in self.slices if s.level == level)

    @property
    def between_discs(self) -> tuple[int, ...]:
        """Indices of slices that cut no disc."""
        return tuple(s.slice_index for s in self.slices if not s.discs_cut)

    @property
    def ambiguous(self) -> tuple[int, ...]:
        """Indices of slices that cut two or more discs."""
        return tuple(s.slice_index for s in self.slices if len(s.discs_cut) > 1)

    @property
    def by_level(self) -> dict[str, tuple[int, ...]]:
        """Every level that has slices, with their indices."""
        out: dict[str, list[int]] = {}
        for s in self.slices:
            if s.level is not None:
                out.setdefault(s.level, []).append(s.slice_index)
        return {k: tuple(v) for k, v in out.items()}


def disc_point_clouds(label_mask: Any, index_to_lps: Any, labels: Mapping[int, str] | None = None
                      ) -> dict[str, FloatArray]:
    """Return each disc's voxel centres (N, 3) in LPS mm from a disc label mask.

    ``labels`` maps label values to level names (default: ``anatomy.DISC_LABELS``); other values
    (vertebrae, background) are ignored. ``index_to_lps`` maps numpy indices (i, j, k) to LPS mm.
    """
    mask = np.asarray(label_mask)
    if mask.ndim != 3:
        raise ValueError(f"label_mask must be a 3D label array; got {mask.ndim} dimensions")
    names = dict(labels) if labels is not None else {v: k for k, v in DISC_LABELS.items()}
    out = {}
    for value, name in names.items():
        validate_level_name(name)
        points = voxel_centers_lps(mask == value, index_to_lps, name="label_mask")
        if points.shape[0]:
            out[name] = points
    return out


def map_axial_slices(
    planes: Sequence[SlicePlane],
    discs: Mapping[str, Any] | None = None,
    *,
    label_mask: Any = None,
    index_to_lps: Any = None,
    labels: Mapping[int, str] | None = None,
    tolerance_mm: float | None = None,
    core_radius_mm: float | None = None,
) -> SliceMapping:
    """Return which disc each axial slice's plane cuts.

    Give the discs either as ``discs`` (level name -> (N, 3) points in LPS mm) or as ``label_mask``
    with its 4x4 ``index_to_lps`` affine. ``tolerance_mm``: how far a point may lie from the plane
    and still count as cut (default: half a voxel along the normal for a mask, 0 for points).
    ``core_radius_mm``: a disc counts as cut only where the plane cuts its core, the points within
    this distance of the disc's centroid measured along the plane; a slice that only grazes the
    rim of a neighbouring disc (an oblique block, a disc segmented too wide) does not show that
    disc's posterior margin at the mid-line, where MSU is measured. None: the whole disc.
    """
    if (discs is None) == (label_mask is None):
        raise ValueError("give the discs either as discs (name -> LPS points) or as label_mask with "
                         "index_to_lps, not both and not neither")
    affine = None
    if label_mask is not None:
        if index_to_lps is None:
            raise ValueError("label_mask needs index_to_lps: the 4x4 matrix from voxel index to LPS mm")
        affine = index_to_lps_affine("index_to_lps", index_to_lps)
        clouds = disc_point_clouds(label_mask, affine, labels)
    else:
        assert discs is not None
        clouds = {validate_level_name(name): lps_points(f"discs[{name!r}]", pts) for name, pts in discs.items()}
    if tolerance_mm is not None and (not np.isfinite(tolerance_mm) or tolerance_mm < 0):
        raise ValueError(f"tolerance_mm must be a finite number >= 0 mm; got {tolerance_mm!r}")
    if core_radius_mm is not None and (not np.isfinite(core_radius_mm) or core_radius_mm <= 0):
        raise ValueError(f"core_radius_mm must be a finite number > 0 mm; got {core_radius_mm!r}")
    centroids = {name: pts.mean(axis=0) for name, pts in clouds.items()}

    out = []
    for index, plane in enumerate(planes):
        if not isinstance(plane, SlicePlane):
            raise TypeError(f"planes[{index}] must be a SlicePlane; got {type(plane).__name__}")
        normal = np.asarray(plane.normal)
        tol = tolerance_mm if tolerance_mm is not None else (
            voxel_half_extent(affine, normal) if affine is not None else 0.0)
        cut = []
        offsets = {}
        for name, pts in clouds.items():
            if core_radius_mm is not None:
                rel = pts - centroids[name]
                along = rel - np.outer(rel @ normal, normal)
                core = pts[np.einsum("ij,ij->i", along, along) <= core_radius_mm ** 2]
                pts = core if len(core) else pts
            d = plane.signed_distance(pts)
            if d.min() <= tol and d.max() >= -tol:
                cut.append(name)
                offsets[name] = float(plane.signed_distance(centroids[name][None, :])[0])
        cut.sort(key=lambda n: abs(offsets[n]))
        out.append(SliceAssignment(index, cut[0] if len(cut) == 1 else None, tuple(cut), offsets))
    return SliceMapping(tuple(out))
