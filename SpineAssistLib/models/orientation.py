"""Show every model its slices the way round it was trained, whatever the acquisition did.

Scanners store a sagittal slice with the patient's front on the left or on the right, and an axial
slice feet-first (patient's left on the image left) as readily as head-first; a 2D network trained
mostly on one way round fails on the other. The slice's geometry says which way round it is, so
the models are given a canonical view and their answers are mapped back:

- sagittal: rows run head to feet (LPS -z), columns front to back (LPS +y): anterior on the left;
- axial: rows run front to back (LPS +y), columns the patient's right to left (LPS +x): the
  radiological view (the patient's right on the image left).

Only flips and a transpose are used: no resampling, so pixels map one to one.

Usage::

    o = SliceOrientation.of(stack.slice_numpy_affine(k), "sagittal")
    model = Oriented(load_model("sag_vertebra_pose"), o)
    r = model.predict(stack.voxels[k])        # boxes, keypoints, masks in the slice's own pixels
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from SpineAssistLib.geometry import reorder_index, slice_affine
from SpineAssistLib.models.predictor import Predictor

_TARGETS = {   # (row direction, column direction) in LPS
    "sagittal": (np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0])),
    "axial": (np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])),
}


@dataclass(frozen=True)
class SliceOrientation:
    """How to turn one slice into the canonical view: transpose first, then flip rows / columns."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @classmethod
    def of(cls, slice_affine: np.ndarray, plane: str) -> "SliceOrientation":
        """Return the orientation of a slice from its "row,col,slice" -> LPS affine."""
        if plane not in _TARGETS:
            raise ValueError(f"plane must be sagittal or axial; got {plane!r}")
        A = np.asarray(slice_affine, float)
        r, c = A[:3, 0] / np.linalg.norm(A[:3, 0]), A[:3, 1] / np.linalg.norm(A[:3, 1])
        t_row, t_col = _TARGETS[plane]
        if abs(r @ t_row) + abs(c @ t_col) >= abs(c @ t_row) + abs(r @ t_col):
            return cls(False, bool(r @ t_row < 0), bool(c @ t_col < 0))
        return cls(True, bool(c @ t_row < 0), bool(r @ t_col < 0))

    @property
    def identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def image(self, image: np.ndarray) -> np.ndarray:
        """Return a 2D slice (or mask) in the canonical view."""
        out = np.asarray(image)
        if self.transpose:
            out = out.T
        if self.flip_rows:
            out = out[::-1]
        if self.flip_cols:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def image_back(self, image: np.ndarray) -> np.ndarray:
        """Return a canonical-view 2D array (or a stack (N, H, W)) in the slice's own pixels."""
        out = np.asarray(image)
        if self.flip_cols:
            out = out[..., ::-1]
        if self.flip_rows:
            out = out[..., ::-1, :]
        if self.transpose:
            out = np.swapaxes(out, -1, -2)
        return np.ascontiguousarray(out)

    def xy_back(self, xy: np.ndarray, canonical_shape: tuple[int, int]) -> np.ndarray:
        """Return pixel points (..., 2) as (x = column, y = row) of the canonical view in the slice's own pixels."""
        h, w = canonical_shape
        p = np.array(xy, dtype=float, copy=True)
        if self.flip_cols:
            p[..., 0] = (w - 1) - p[..., 0]
        if self.flip_rows:
            p[..., 1] = (h - 1) - p[..., 1]
        if self.transpose:
            p = p[..., ::-1].copy()
        return p

    def canonical_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return (shape[1], shape[0]) if self.transpose else (shape[0], shape[1])

    def xy(self, xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Return pixel points (..., 2) (x = column, y = row) of a slice of ``shape`` in the canonical view."""
        p = np.array(xy, dtype=float, copy=True)
        if self.transpose:
            p = p[..., ::-1].copy()
        h, w = self.canonical_shape(shape)
        if self.flip_rows:
            p[..., 1] = (h - 1) - p[..., 1]
        if self.flip_cols:
            p[..., 0] = (w - 1) - p[..., 0]
        return p

    def box(self, box: Any, shape: tuple[int, int]) -> tuple[float, float, float, float]:
        """Return one box x1, y1, x2, y2 of a slice of ``shape`` in the canonical view."""
        b = np.asarray(box, float)
        a, z = self.xy(b[:2], shape), self.xy(b[2:], shape)
        lo, hi = np.minimum(a, z), np.maximum(a, z)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def affine(self, slice_affine: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Return the "row,col,slice" -> LPS affine of the canonical view of a slice of ``shape``."""
        A = np.asarray(slice_affine, float)
        back = self.xy_back(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), self.canonical_shape(shape))

        # point by point, not geometry.xy_to_world: the two round the last bit differently, and the
        # crops placed from this affine must stay exactly those the models were trained and tested on
        def lps(p: np.ndarray) -> np.ndarray:
            return A[:3, :3] @ np.array([p[1], p[0], 0.0]) + A[:3, 3]

        out = A.copy()
        origin = lps(back[0])
        out[:3, 0] = lps(back[2]) - origin     # canonical rows
        out[:3, 1] = lps(back[1]) - origin     # canonical columns
        out[:3, 3] = origin
        return out

    def roi(self, roi: tuple[slice, slice], shape: tuple[int, int]) -> tuple[slice, slice]:
        """Return a region (rows, columns) of a slice of ``shape`` as the same region of the canonical view."""
        rows, cols = (roi[0].indices(shape[0])[:2], roi[1].indices(shape[1])[:2])
        if self.transpose:
            rows, cols = cols, rows
        h, w = self.canonical_shape(shape)
        if self.flip_rows:
            rows = (h - rows[1], h - rows[0])
        if self.flip_cols:
            cols = (w - cols[1], w - cols[0])
        return slice(*rows), slice(*cols)

    def box_back(self, boxes: np.ndarray, canonical_shape: tuple[int, int]) -> np.ndarray:
        """Return boxes (N, 4) x1, y1, x2, y2 of the canonical view in the slice's own pixels."""
        b = np.asarray(boxes, float).reshape(-1, 4)
        a = self.xy_back(b[:, :2], canonical_shape)
        z = self.xy_back(b[:, 2:], canonical_shape)
        return np.column_stack([np.minimum(a, z), np.maximum(a, z)])


class Oriented:
    """A loaded model that sees slices in the canonical view and answers in the slice's own pixels."""

    def __init__(self, model: Predictor, orientation: SliceOrientation):
        self.model = model
        self.orientation = orientation

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict(self, image: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        o = self.orientation
        if o.identity:
            return self.model.predict(image, *args, **kwargs)
        view = o.image(image)
        if kwargs.get("roi") is not None:
            kwargs["roi"] = o.roi(kwargs["roi"], np.shape(image)[:2])
        return self._back(self.model.predict(view, *args, **kwargs), view.shape[:2])

    def predict_many(self, images: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """``predict`` of several slices of one stack, run as one batch (a model's ``predict_many``)."""
        o = self.orientation
        if o.identity:
            return self.model.predict_many(images, *args, **kwargs)
        views = [o.image(image) for image in images]
        return [self._back(r, v.shape[:2]) for r, v in zip(self.model.predict_many(views, *args, **kwargs), views)]

    def _back(self, r: Any, shape: tuple[int, int]) -> Any:
        o = self.orientation
        changes: dict[str, Any] = {}
        for name in ("mask", "probability", "masks"):
            v = getattr(r, name, None)
            if isinstance(v, np.ndarray) and v.ndim >= 2:
                changes[name] = o.image_back(v)
        if isinstance(getattr(r, "boxes", None), np.ndarray) and len(r.boxes):
            changes["boxes"] = o.box_back(r.boxes, shape)
        if isinstance(getattr(r, "keypoints", None), np.ndarray) and r.keypoints.size:
            changes["keypoints"] = o.xy_back(r.keypoints, shape)
        return dataclasses.replace(r, **changes) if changes else r


def canonical_study(st: Mapping[str, Any]) -> dict[str, Any]:
    """Return a training study (``phantom_cache`` form) with its slices, labels, affines and pixel
    boxes in the canonical view, so that training sees what inference (``Oriented``) shows."""
    out = dict(st)
    sag = np.asarray(st["sag_images"])
    first = slice_affine(st["sag_affine"], 0, "slice,row,col")
    o = SliceOrientation.of(first, "sagittal")
    if not o.identity and len(sag):
        shape = sag.shape[1:]
        out["sag_images"] = np.stack([o.image(x) for x in sag])
        out["sag_labels"] = np.stack([o.image(x) for x in st["sag_labels"]])
        # slice_affine keeps the slice step as its third column, so the stack's comes back unchanged
        out["sag_affine"] = reorder_index(o.affine(first, shape), "row,col,slice", "slice,row,col")
        out["vertebra_boxes"] = {k: o.box(b, shape) for k, b in (st.get("vertebra_boxes") or {}).items()}
    ax = np.asarray(st["ax_images"])
    if len(ax):
        images, labels, affines = [], [], []
        for i in range(len(ax)):
            oi = SliceOrientation.of(st["ax_affines"][i], "axial")
            images.append(oi.image(ax[i]))
            labels.append(oi.image(st["ax_labels"][i]))
            affines.append(oi.affine(st["ax_affines"][i], ax[i].shape))
        if len({x.shape for x in images}) == 1:
            out["ax_images"], out["ax_labels"] = np.stack(images), np.stack(labels)
        else:   # mixed shapes after a transpose: keep a list
            out["ax_images"], out["ax_labels"] = images, labels
        out["ax_affines"] = np.array(affines)
    return out


__all__ = ["Oriented", "SliceOrientation", "canonical_study"]
