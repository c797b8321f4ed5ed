"""What an assessment run produces besides the findings: the images it read, the masks, keypoints
and boxes the models found, and the timings. The outputs (report, SEG, SR, Slicer scene) are made
from this."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from SpineAssistLib.anatomy import DISC_LABELS
from SpineAssistLib.findings import Assessment

Point = tuple[float, float, float]


@dataclass
class ImageStack:
    """One stack of parallel slices: voxels shaped (k, j, i) = (slices, rows, columns) and a 4x4
    affine mapping (i, j, k, 1) to patient LPS mm, with the DICOM headers of its slices in k order.

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
        """Return the 4x4 affine mapping numpy indices (k, j, i, 1) of ``voxels`` to LPS mm (the grading package's order)."""
        a = self.affine.copy()
        a[:3, :3] = self.affine[:3, [2, 1, 0]]
        return a

    def slice_numpy_affine(self, k: int) -> np.ndarray:
        """Return the affine mapping (row, col, 0, 1) of slice ``k`` to LPS mm (for a 2D mask of that slice)."""
        a = np.eye(4)
        origin, normal = self.slice_plane(k)
        a[:3, 0], a[:3, 1], a[:3, 2], a[:3, 3] = self.affine[:3, 1], self.affine[:3, 0], normal, origin
        return a

    def slice_plane(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (origin, unit normal) of slice ``k`` in LPS mm."""
        origin = (self.affine @ np.array([0.0, 0.0, float(k), 1.0]))[:3]
        normal = np.cross(self.affine[:3, 0], self.affine[:3, 1])
        return origin, normal / np.linalg.norm(normal)

    def pixel_to_lps(self, k: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Return LPS mm of pixel centres (row, col) on slice ``k``; arrays of equal shape → (..., 3)."""
        rows = np.asarray(rows, dtype=float)
        cols = np.asarray(cols, dtype=float)
        ijk1 = np.stack([cols, rows, np.full_like(rows, float(k)), np.ones_like(rows)], axis=-1)
        return (ijk1 @ self.affine.T)[..., :3]

    def lps_to_index(self, points: np.ndarray) -> np.ndarray:
        """Return continuous (i, j, k) indices of LPS points (..., 3)."""
        pts = np.asarray(points, dtype=float)
        inv = np.linalg.inv(self.affine)
        h = np.concatenate([pts, np.ones(pts.shape[:-1] + (1,))], axis=-1)
        return (h @ inv.T)[..., :3]

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

    def scene_inputs(self) -> dict[str, Any]:
        """Return the keyword arguments of ``mrml.show_assessment`` for this result."""
        from SpineAssistLib.mrml import DetectionBox

        volumes = {s.name: (s.voxels, s.affine) for s in self.stacks()}
        label_maps = {}
        if self.sagittal is not None and self.sagittal.labels is not None:
            label_maps[self.sagittal.name] = (self.sagittal.labels, self.sagittal.affine)
        boxes: dict[str, list[Any]] = {}
        for b in self.boxes:
            boxes.setdefault(b.series, []).append(
                DetectionBox(b.label, b.corner_a_lps, b.corner_b_lps, b.level, b.confidence))
        return {"volumes": volumes, "label_maps": label_maps, "keypoints": self.keypoints, "boxes": boxes}

    def key_images(self) -> list[Any]:
        """Return the report's key images: the chosen sagittal slice and one axial slice per level."""
        from SpineAssistLib.export.key_images import Box as KeyBox
        from SpineAssistLib.export.key_images import KeyImage

        images = []
        for stack in self.stacks():
            if stack.name not in self.key_slices:
                continue
            k = self.key_slices[stack.name]
            boxes = [KeyBox(b.label, *b.pixel_box, confidence=b.confidence)
                     for b in self.boxes if b.series == stack.name and b.slice_index == k]
            title = f"{stack.role} slice {k + 1}/{stack.voxels.shape[0]}" + (f" — {stack.level}" if stack.level else "")
            uid = stack.sop_instance_uids[k] if stack.datasets else ""
            images.append(KeyImage.from_volume(stack.voxels, stack.affine, k, stack.role, labels=stack.labels,
                                               level=stack.level, title=title, boxes=boxes, sop_instance_uid=uid))
        return images
