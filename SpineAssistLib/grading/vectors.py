"""Point, vector and mask helpers shared by the grading rules (patient LPS millimetres).

Every helper validates its input and raises a ``ValueError`` (or ``TypeError``) that names the
argument and says what was expected, so a rule's error tells the user which keypoint was bad.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np
import numpy.typing as npt

from SpineAssistLib.geometry import index_to_world

FloatArray = npt.NDArray[np.float64]
PointLike = Union[Sequence[float], FloatArray]
Point = tuple[float, float, float]

# Two keypoints closer than this (mm) are the same point: no line or direction can be drawn through
# them. Far below any voxel size (0.3-5 mm), far above float round-off at body-sized coordinates.
COINCIDENT_MM = 1e-6

# Grade boundaries are inclusive ("grade I <= 25 %"); a ratio computed from rotated or scaled
# points differs from the exact value by round-off (~1e-13), so comparisons allow this much.
BOUNDARY_TOLERANCE = 1e-9


def lps_point(name: str, value: Any) -> FloatArray:
    """Return ``value`` as a float array of shape (3,) (LPS mm); raise naming ``name`` if it is not one."""
    if value is None:
        raise ValueError(f"{name} is missing: expected a point (x, y, z) in LPS mm")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a point (x, y, z) in LPS mm; got {value!r}") from None
    if arr.shape != (3,):
        raise ValueError(f"{name} must be a point with 3 coordinates (x, y, z) in LPS mm; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has a non-finite coordinate (NaN or infinity): {arr.tolist()}; expected LPS mm")
    return arr


def pixel_point(name: str, value: Any) -> FloatArray:
    """Return ``value`` as a float array of shape (2,) (pixels, x = column, y = row); raise naming ``name``
    if it is not one."""
    if value is None:
        raise ValueError(f"{name} is missing: expected a pixel point (x = column, y = row)")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pixel point (x = column, y = row); got {value!r}") from None
    if arr.shape != (2,):
        raise ValueError(f"{name} must be a pixel point with 2 coordinates (x = column, y = row); "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has a non-finite coordinate: {arr.tolist()}")
    return arr


def lps_points(name: str, value: Any) -> FloatArray:
    """Return ``value`` as a float array of shape (N, 3), N >= 1 (LPS mm); raise naming ``name`` otherwise."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of points (N, 3) in LPS mm; got {type(value).__name__}") from None
    if arr.size == 0:
        raise ValueError(f"{name} is empty: expected at least one point (N, 3) in LPS mm")
    if arr.ndim == 1 and arr.shape == (3,):
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must be an array of points of shape (N, 3) in LPS mm; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ValueError(f"{name}[{bad}] has a non-finite coordinate (NaN or infinity): {arr[bad].tolist()}")
    return arr


def as_point(p: FloatArray) -> Point:
    """Return a point as a plain tuple of three floats, the form ``findings.Geometry`` keeps."""
    return (float(p[0]), float(p[1]), float(p[2]))


def direction(name: str, start: FloatArray, end: FloatArray, what: str) -> tuple[FloatArray, float]:
    """Return the unit vector from ``start`` to ``end`` and their distance (mm); raise if they coincide."""
    v = end - start
    length = float(np.linalg.norm(v))
    if length < COINCIDENT_MM:
        raise ValueError(f"{name}: {what} coincide ({start.tolist()}); expected two distinct points in LPS mm")
    return v / length, length


def index_to_lps_affine(name: str, value: Any) -> FloatArray:
    """Return a validated 4x4 voxel-index -> LPS mm affine (last row 0 0 0 1, invertible)."""
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 4x4 index -> LPS mm matrix; got {type(value).__name__}") from None
    if a.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 index -> LPS mm matrix; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite entries; expected a 4x4 index -> LPS mm matrix")
    if not np.allclose(a[3], (0.0, 0.0, 0.0, 1.0)):
        raise ValueError(f"{name} last row must be (0, 0, 0, 1); got {a[3].tolist()}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError(f"{name} is singular (a voxel of zero size); check its spacing and direction columns")
    return a


def voxel_centers_lps(mask: Any, index_to_lps: Any, name: str = "mask") -> FloatArray:
    """Return the LPS mm centres (N, 3) of the true voxels of a 2D or 3D boolean ``mask``.

    ``index_to_lps`` maps array indices in numpy order, (i, j[, k], 1), to LPS mm ("slice,row,col" for
    a 3D mask, "row,col,slice" for a 2D one, taken as the slice k = 0). May return an empty (0, 3)
    array when the mask has no true voxel.
    """
    m = np.asarray(mask)
    if m.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D or 3D array; got {m.ndim} dimensions")
    a = index_to_lps_affine(f"{name} index_to_lps", index_to_lps)
    idx = np.argwhere(m.astype(bool)).astype(float)
    if m.ndim == 2:
        idx = np.hstack([idx, np.zeros((idx.shape[0], 1))])
    return index_to_world(idx, a)


def voxel_half_extent(index_to_lps: FloatArray, normal: FloatArray) -> float:
    """Return half a voxel's extent (mm) along the unit ``normal``: how far a voxel centre can lie
    from a plane that still passes through the voxel."""
    return 0.5 * float(np.sum(np.abs(normal @ index_to_lps[:3, :3])))


def finite_positive(name: str, value: Any, unit: str) -> float:
    """Return ``value`` as a float if it is finite and > 0, else raise naming ``name`` and ``unit``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in {unit}; got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0 {unit}; got {v!r}")
    return v
