"""Rigid motions, scaling and mirroring for the grading property tests (tested in grading/test_transforms.py).

The grading rules must give the same grade when the patient (all input points together) is
rotated, moved or scaled; mirroring left-right (LPS x -> -x) must swap the side and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


def rotation_matrix(axis, angle_deg: float) -> np.ndarray:
    """Return the 3x3 rotation by ``angle_deg`` about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, dtype=float)
    k = k / np.linalg.norm(k)
    a = np.radians(angle_deg)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


@dataclass(frozen=True)
class Similarity:
    """x -> scale * R x + shift, applied to LPS points."""

    rotation: np.ndarray
    shift: np.ndarray
    scale: float

    def __call__(self, p):
        return self.scale * (self.rotation @ np.asarray(p, dtype=float)) + self.shift

    def points(self, pts):
        return self.scale * (np.asarray(pts, dtype=float) @ self.rotation.T) + self.shift

    def vector(self, v):
        return self.rotation @ np.asarray(v, dtype=float)


def mirror_left_right(p):
    """Reflect across the patient's mid-sagittal plane: LPS x -> -x."""
    q = np.array(p, dtype=float)
    q[..., 0] = -q[..., 0]
    return q


@st.composite
def similarities(draw, max_angle_deg: float = 180.0, scale: bool = True) -> Similarity:
    axis = draw(st.tuples(*[st.floats(-1, 1) for _ in range(3)]).filter(lambda v: np.linalg.norm(v) > 0.2))
    angle = draw(st.floats(-max_angle_deg, max_angle_deg))
    shift = np.array(draw(st.tuples(*[st.floats(-300, 300) for _ in range(3)])))
    s = draw(st.floats(0.5, 2.0)) if scale else 1.0
    return Similarity(rotation_matrix(axis, angle), shift, s)
