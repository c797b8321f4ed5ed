"""What an assessment run produces besides the findings: the images it read, the masks, keypoints
and boxes the models found, and the timings. The outputs (report, SEG, SR, Slicer scene) are made
from this."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from SpineAssistLib.anatomy import DISC_LABELS
from SpineAssistLib.findings import Assessment
from SpineAssistLib.geometry import index_to_world, reorder_index, slice_affine, slice_normal, world_to_index

Point = tuple[float, float, float]


@dataclass
class ImageStack:
    """One stack of parallel slices: voxels shaped (k, j, i) = (slices, rows, columns) and a 4x4
    "col,row,slice" affine mapping (i, j, k, 1) to patient LPS mm (``SpineAssistLib.geometry``), with the
    DICOM headers of its slices in k order.

    ``labels`` is the label map the models predicted on it (values from ``anatomy``), same shape.
    """

    role: str                       # "sagittal" or "axial"
    name: str                       # e.g. "sagittal", "axial L4-L5"
    voxels: np.ndarray
    affine: np.ndarray
    datasets: Sequence[Any] = ()    # pydicom Datasets, k order
    labels: np.ndarray | None = None
    level: str | None = None        # for an axial block: the disc it was mapped to

    def __post_init__(self) -> None:
        self.voxels = np.asarray(self.voxels)
        self.affine = np.asarray(self.affine, dtype=float)
        if self.voxels.ndim != 3:
            raise ValueError(f"{self.name}: voxels must be 3D (slices, rows, columns); got shape {self.voxels.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"{self.name}: affine must be 4x4; got {self.affine.shape}")
        if self.labels is not None and self.labels.shape != self.voxels.shape:
            raise ValueError(f"{self.name}: labels shape {self.labels.shape} differs from voxels {self.voxels.shape}")
        if self.datasets and len(self.datasets) != self.voxels.shape[0]:
            raise ValueError(f"{self.name}: {len(self.datasets)} DICOM headers for {self.voxels.shape[0]} slices")

    def disc_labels(self) -> np.ndarray:
        """Return the label map with everything but disc labels set to 0."""
        if self.labels is None:
            raise ValueError(f"{self.name} has no label map")
        keep = np.isin(self.labels, list(DISC_LABELS.values()))
        return np.where(keep, self.labels, 0).astype(np.uint16)

    def numpy_affine(self) -> np.ndarray:
        """Return the "slice,row,col" affine: numpy indices (k, j, i, 1) of ``voxels`` to LPS mm (the grading package's order)."""
        return reorder_index(self.affine, "col,row,slice", "slice,row,col")

    def slice_numpy_affine(self, k: int) -> np.ndarray:
        """Return the "row,col,slice" affine of slice ``k`` to LPS mm (for a 2D mask of that slice); its third
        column is the unit normal."""
        return slice_affine(self.affine, k, "col,row,slice", unit_normal=True)

    def slice_plane(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (origin, unit normal) of slice ``k`` in LPS mm."""
        return index_to_world((0.0, 0.0, float(k)), self.affine), slice_normal(self.affine, "col,row,slice")

    def pixel_to_lps(self, k: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Return LPS mm of pixel centres (row, col) on slice ``k``; arrays of equal shape → (..., 3)."""
        rows = np.asarray(rows, dtype=float)
        cols = np.asarray(cols, dtype=float)
        return index_to_world(np.stack([cols, rows, np.full_like(rows, float(k))], axis=-1), self.affine)

    def lps_to_index(self, points: np.ndarray) -> np.ndarray:
        """Return continuous (i, j, k) indices of LPS points (..., 3)."""
        return world_to_index(points, self.affine)

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(getattr(ds, "SOPInstanceUID", "")) for ds in self.datasets]


@dataclass
class Box:
    """A detection box on one slice, in LPS mm corners, with its class and level."""

    label: str
    corner_a_lps: Point
    corner_b_lps: Point
    level: str | None = None
    confidence: float | None = None
    series: str = "sagittal"
    slice_index: int = 0
    pixel_box: tuple[float, float, float, float] = (0, 0, 0, 0)   # row_min, col_min, row_max, col_max


@dataclass
class AssessmentResult:
    """An assessment and everything it was made from."""

    assessment: Assessment
    sagittal: ImageStack | None = None
    axial: list[ImageStack] = field(default_factory=list)
    keypoints: dict[str, dict[str, Point]] = field(default_factory=dict)   # series name → keypoint name → LPS
    boxes: list[Box] = field(default_factory=list)
    key_slices: dict[str, int] = field(default_factory=dict)              # stack name → slice index to show
    timings: dict[str, float] = field(default_factory=dict)               # stage → seconds

    def stacks(self) -> list[ImageStack]:
        return ([self.sagittal] if self.sagittal is not None else []) + list(self.axial)

    def source_datasets(self) -> list[Any]:
        return [ds for s in self.stacks() for ds in s.datasets]
