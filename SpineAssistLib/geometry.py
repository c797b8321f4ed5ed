"""Return voxel index <-> patient mm conversions: every affine SpineAssist builds, reorders or applies.

An affine is a 4x4 matrix mapping a voxel index (a, b, c, 1) to patient mm, pixel centres at whole
indices (DICOM's ImagePositionPatient is the centre of the first pixel). Which index is which is
the affine's *index convention*, named in every signature that takes or returns one:

- ``"col,row,slice"``: (i, j, k) as DICOM and Slicer count them (i the column, j the row, k the
  slice). ``ImageStack.affine`` and Slicer's IJKToRAS use it.
- ``"slice,row,col"``: numpy order of a stack ``voxels[slice, row, col]``: the phantom's series, the
  SPIDER cases and the training studies' ``sag_affine``.
- ``"row,col,slice"``: numpy order of one 2D slice ``image[row, col]``, the slice itself at slice
  index 0: the slice affines the models, crops and 2D masks take (``slice_affine``).

Pixel points the models return are (x, y) = (column, row) (``xy_to_world``). Patient coordinates
are LPS mm (DICOM) everywhere but in Slicer's nodes, which are RAS: x and y negated (``lps_to_ras``).

Usage::

    from SpineAssistLib.geometry import affine_from_dicom, index_to_world, lps_to_ras
    A = affine_from_dicom(ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing,
                          slice_step=4.0, index_convention="slice,row,col")
    lps = index_to_world([2, 10, 20], A)        # slice 2, row 10, column 20 -> LPS mm
    ras = lps_to_ras(lps)
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence, get_args

import numpy as np
import numpy.typing as npt

IndexConvention = Literal["col,row,slice", "slice,row,col", "row,col,slice"]
INDEX_CONVENTIONS: tuple[str, ...] = get_args(IndexConvention)

# which column of an affine each index axis is, per convention
_AXES: dict[str, dict[str, int]] = {
    "col,row,slice": {"col": 0, "row": 1, "slice": 2},
    "slice,row,col": {"slice": 0, "row": 1, "col": 2},
    "row,col,slice": {"row": 0, "col": 1, "slice": 2},
}
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_FLIP_XY = np.array([-1.0, -1.0, 1.0])


def _axes(index_convention: str) -> dict[str, int]:
    try:
        return _AXES[index_convention]
    except (KeyError, TypeError):
        raise ValueError(f"index_convention must be one of {', '.join(repr(c) for c in INDEX_CONVENTIONS)}; "
                         f"got {index_convention!r}") from None


def _affine(name: str, affine: npt.ArrayLike) -> np.ndarray:
    try:
        a = np.asarray(affine, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 4x4 index -> mm matrix; got {type(affine).__name__}") from None
    if a.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 index -> mm matrix; got shape {a.shape}")
    return a


def _points(name: str, points: npt.ArrayLike) -> np.ndarray:
    p = np.asarray(points, dtype=float)
    if p.ndim == 0 or p.shape[-1] != 3:
        raise ValueError(f"{name} must be 3 coordinates or an array (..., 3); got shape {p.shape}")
    return p


# --- building affines ---------------------------------------------------------------------------

def orientation_normal(orientation: npt.ArrayLike) -> np.ndarray:
    """Return row direction x column direction of an ImageOrientationPatient (6 numbers): the slice
    normal, unit for a valid orientation (not renormalised)."""
    iop = np.asarray(orientation, dtype=float)
    if iop.shape != (6,):
        raise ValueError(f"orientation must be 6 direction cosines (ImageOrientationPatient); got shape {iop.shape}")
    return np.cross(iop[:3], iop[3:])


def affine_from_dicom(position: npt.ArrayLike, orientation: npt.ArrayLike, spacing: Sequence[float],
                      slice_step: float | npt.ArrayLike, index_convention: IndexConvention) -> np.ndarray:
    """Return the 4x4 index -> LPS mm affine of a DICOM slice or stack.

    ``position``: ImagePositionPatient of the first slice (mm); ``orientation``: ImageOrientationPatient
    (row direction, then column direction); ``spacing``: PixelSpacing (between rows, between columns,
    mm); ``slice_step``: mm from one slice to the next, a number (along the normal) or an LPS vector.
    """
    iop = np.asarray(orientation, dtype=float)
    normal = orientation_normal(iop)
    row_mm, col_mm = (float(v) for v in spacing)
    step = normal * float(slice_step) if np.ndim(slice_step) == 0 else np.asarray(slice_step, dtype=float)
    if step.shape != (3,):
        raise ValueError(f"slice_step must be a number (mm along the normal) or an LPS vector of 3; got {slice_step!r}")
    ax = _axes(index_convention)
    a = np.eye(4)
    a[:3, ax["col"]] = iop[:3] * col_mm        # along a row the column index grows
    a[:3, ax["row"]] = iop[3:] * row_mm        # down a column the row index grows
    a[:3, ax["slice"]] = step
    a[:3, 3] = np.asarray(position, dtype=float)
    return a


def affine_from_itk(origin: Sequence[float], spacing: Sequence[float], direction: Sequence[float],
                    index_convention: IndexConvention) -> np.ndarray:
    """Return the 4x4 index -> LPS mm affine of an ITK / SimpleITK image (origin, spacing (x, y, z) mm,
    direction as 9 numbers row by row). ITK's (x, y, z) index is "col,row,slice"; its numpy array
    (``GetArrayFromImage``) is "slice,row,col"."""
    D = np.asarray(direction, dtype=float).reshape(3, 3)
    a = np.eye(4)
    for i, s in enumerate(spacing):      # x, y, z: "col,row,slice"
        a[:3, i] = D[:, i] * s
    a[:3, 3] = np.asarray(origin, dtype=float)
    return reorder_index(a, "col,row,slice", index_convention)


def itk_geometry(affine: npt.ArrayLike, index_convention: IndexConvention
                 ) -> tuple[list[float], list[float], list[float]]:
    """Return (origin, spacing (x, y, z) mm, direction as 9 numbers row by row) of an affine, as a
    SimpleITK image takes them (``SetOrigin``, ``SetSpacing``, ``SetDirection``)."""
    a = reorder_index(affine, index_convention, "col,row,slice")
    spacing = [float(np.linalg.norm(a[:3, k])) for k in range(3)]
    cols = [a[:3, k] / np.linalg.norm(a[:3, k]) for k in range(3)]
    return [float(v) for v in a[:3, 3]], spacing, [float(v) for v in np.column_stack(cols).ravel()]


def reorder_index(affine: npt.ArrayLike, from_convention: IndexConvention,
                  to_convention: IndexConvention) -> np.ndarray:
    """Return the same affine for indices given in ``to_convention`` instead of ``from_convention``
    (its first three columns permuted; the origin stays)."""
    a = _affine("affine", affine)
    src, dst = _axes(from_convention), _axes(to_convention)
    perm = [0, 0, 0]
    for axis, column in dst.items():
        perm[column] = src[axis]
    out = a.copy()
    out[:, :3] = a[:, perm]
    return out


def transpose_index(affine: npt.ArrayLike, axes: Sequence[int]) -> np.ndarray:
    """Return the affine of ``np.transpose(array, axes)`` from that of the 3D ``array`` (numpy order)."""
    a = _affine("affine", affine)
    if sorted(axes) != [0, 1, 2]:
        raise ValueError(f"axes must be a permutation of (0, 1, 2); got {tuple(axes)}")
    out = a.copy()
    out[:, :3] = a[:, list(axes)]
    return out


def flip_index(affine: npt.ArrayLike, axis: int, size: int) -> np.ndarray:
    """Return the affine of the array reversed along index ``axis`` (``size`` voxels long): the last
    voxel becomes the first, so the origin moves there and that axis's step turns round."""
    a = _affine("affine", affine)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2; got {axis!r}")
    out = a.copy()
    out[:3, 3] = a[:3, 3] + (size - 1) * a[:3, axis]
    out[:3, axis] = -a[:3, axis]
    return out


def slice_normal(affine: npt.ArrayLike, index_convention: IndexConvention) -> np.ndarray:
    """Return the unit normal (LPS) of the slices of an affine: column step x row step, as
    row direction x column direction in DICOM."""
    a = _affine("affine", affine)
    ax = _axes(index_convention)
    n = np.cross(a[:3, ax["col"]], a[:3, ax["row"]])
    return n / np.linalg.norm(n)


def slice_affine(stack_affine: npt.ArrayLike, k: int, index_convention: IndexConvention,
                 unit_normal: bool = False) -> np.ndarray:
    """Return the "row,col,slice" affine of slice ``k`` of a stack (slice ``k`` at slice index 0).

    Its third column is the stack's slice step (mm per slice), or with ``unit_normal`` the unit
    normal, so that ``world_to_index``'s third value is the distance (mm) from the slice plane.
    """
    a = _affine("stack_affine", stack_affine)
    ax = _axes(index_convention)
    out = np.eye(4)
    out[:3, 0] = a[:3, ax["row"]]
    out[:3, 1] = a[:3, ax["col"]]
    out[:3, 2] = slice_normal(a, index_convention) if unit_normal else a[:3, ax["slice"]]
    out[:3, 3] = a[:3, 3] + k * a[:3, ax["slice"]]
    return out


def pixel_spacing(affine: npt.ArrayLike, index_convention: IndexConvention) -> tuple[float, float]:
    """Return (between rows, between columns) in mm, as DICOM PixelSpacing, of an affine's slices."""
    a = _affine("affine", affine)
    ax = _axes(index_convention)
    return float(np.linalg.norm(a[:3, ax["row"]])), float(np.linalg.norm(a[:3, ax["col"]]))


def pixel_spacing_xy(affine: npt.ArrayLike, index_convention: IndexConvention) -> tuple[float, float]:
    """Return (x = between columns, y = between rows) in mm, the order the models' crops take, of an
    affine's slices."""
    row_mm, col_mm = pixel_spacing(affine, index_convention)
    return col_mm, row_mm


# --- applying affines ---------------------------------------------------------------------------

def index_to_world(indices: npt.ArrayLike, affine: npt.ArrayLike) -> np.ndarray:
    """Return the mm points (..., 3) (LPS for SpineAssist's affines) of voxel indices (..., 3) given
    in the affine's own index convention."""
    a = _affine("affine", affine)
    idx = _points("indices", indices)
    h = np.concatenate([idx, np.ones(idx.shape[:-1] + (1,))], axis=-1)
    return (h @ a.T)[..., :3]


def world_to_index(points: npt.ArrayLike, affine: npt.ArrayLike) -> np.ndarray:
    """Return the continuous voxel indices (..., 3), in the affine's own index convention, of mm
    points (..., 3)."""
    a = _affine("affine", affine)
    p = _points("points", points)
    flat = p.reshape(-1, 3)
    return np.linalg.solve(a[:3, :3], (flat - a[:3, 3]).T).T.reshape(p.shape)


def xy_to_world(xy: npt.ArrayLike, slice_affine: npt.ArrayLike) -> np.ndarray:
    """Return (N, 3) mm points of (N, 2) pixel points (x = column, y = row) on a slice whose
    "row,col,slice" affine is ``slice_affine``."""
    p = np.asarray(xy, dtype=float).reshape(-1, 2)
    return index_to_world(np.column_stack([p[:, 1], p[:, 0], np.zeros(len(p))]), slice_affine)


def project_to_xy(points: npt.ArrayLike, position: npt.ArrayLike, row_direction: npt.ArrayLike,
                  column_direction: npt.ArrayLike, spacing: Sequence[float]) -> np.ndarray:
    """Return (N, 2) pixel points (x = column, y = row) of LPS mm points projected onto a DICOM slice
    plane (their distance from it dropped). ``row_direction`` and ``column_direction`` are unit and
    perpendicular (ImageOrientationPatient); ``spacing`` is PixelSpacing (between rows, between columns)."""
    p = np.asarray(points, dtype=float).reshape(-1, 3) - np.asarray(position, dtype=float)
    col = p @ np.asarray(row_direction, dtype=float) / spacing[1]
    row = p @ np.asarray(column_direction, dtype=float) / spacing[0]
    return np.stack([col, row], axis=1)


# --- LPS <-> RAS --------------------------------------------------------------------------------

def lps_to_ras(points: npt.ArrayLike) -> np.ndarray:
    """Return RAS mm points (Slicer) of LPS mm points (DICOM), shape (..., 3) kept: x and y negated."""
    return _points("points", points) * _FLIP_XY


def ras_to_lps(points: npt.ArrayLike) -> np.ndarray:
    """Return LPS mm points (DICOM) of RAS mm points (Slicer), shape (..., 3) kept: x and y negated."""
    return _points("points", points) * _FLIP_XY


def affine_lps_to_ras(affine: npt.ArrayLike) -> np.ndarray:
    """Return the index -> RAS mm affine (Slicer's IJKToRAS for a "col,row,slice" affine) of an
    index -> LPS mm affine; the index convention is kept."""
    return _LPS_TO_RAS @ _affine("affine", affine)


def affine_ras_to_lps(affine: npt.ArrayLike) -> np.ndarray:
    """Return the index -> LPS mm affine of an index -> RAS mm affine (e.g. Slicer's IJKToRAS); the
    index convention is kept."""
    return _LPS_TO_RAS @ _affine("affine", affine)


__all__ = [
    "INDEX_CONVENTIONS", "IndexConvention", "affine_from_dicom", "affine_from_itk", "affine_lps_to_ras",
    "affine_ras_to_lps", "flip_index", "index_to_world", "itk_geometry", "lps_to_ras", "orientation_normal",
    "pixel_spacing", "pixel_spacing_xy", "project_to_xy", "ras_to_lps", "reorder_index", "slice_affine", "slice_normal",
    "transpose_index", "world_to_index", "xy_to_world",
]


def checked_spacing(value: Any, name: str = "pixel_spacing_mm", first: str = "between rows",
                    second: str = "between columns") -> tuple[float, float]:
    """Return two pixel sizes in mm as given (``first``, ``second``: what each is, for the message),
    checked: two finite numbers above 0. ValueError naming ``name`` otherwise."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers ({first}, {second}) in mm; got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0):
        raise ValueError(f"{name} must be two finite sizes above 0 mm ({first}, {second}); got {(a, b)}")
    return a, b
