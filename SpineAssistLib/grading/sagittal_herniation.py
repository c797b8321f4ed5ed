"""Disc herniation on the sagittal view: how far the disc protrudes behind the posterior vertebral
line, measured on one sagittal slice, and herniated or not by a threshold on that depth.

For a study without an axial series (no MSU grade), this says per disc whether it is herniated, as
a radiologist reads it on the mid-sagittal T2 image: disc material behind the line joining the
posterior corners of the vertebral bodies above and below.

What ``sagittal_protrusion`` measures (mm on the slice, pixels scaled by their spacing; the slice
in the canonical view, head up, anterior on the left):

1. R is the upper body's posterior-inferior corner, P the lower body's posterior-superior corner
   (names of ``anatomy.disc_space_corners``, e.g. "L4 posterior-inferior" and "L5
   posterior-superior" for L4-L5). The posterior line runs from R to P; its unit direction is
   ``d = (P - R) / |P - R|`` and its posterior normal ``n`` is the perpendicular pointing away from
   the disc's centre (the disc mask's centroid lies in front of the line).
2. Each disc-mask pixel q (its centre) has ``t = (q - R) . d`` along the line and
   ``s = (q - R) . n`` behind it. Only pixels with ``0 <= t <= |P - R|`` count: the disc space
   between the two endplates' posterior ends (material that migrated above or below the disc space
   is not measured).
3. Depth = ``max(0, max s)`` over those pixels: the posterior protrusion in mm. The apex is the
   pixel of the maximum (among ties, the one nearest the middle of the line); its foot is
   ``R + t_apex d``, on the line; apex-foot is the measurement line a reader draws.
4. Extent = the length along the line (max t - min t) of the pixels at least half the depth behind
   it (0 when the depth is 0): a focal herniation is short, a broad bulge long.
5. Herniated = depth >= ``threshold_mm`` (default ``DEFAULT_THRESHOLD_MM``).

Depths are to pixel centres: a disc whose outline pixels lie on the line measures 0, and the depth
is exact to within a pixel of the mask's outline.

The threshold (0.63 mm) was chosen on SPIDER (van der Graaf et al., Scientific Data 2024): the
radiologists' "Disc herniation" grading of the lumbar discs, measured on the manual masks of the 29
development patients (the 12 held-out test patients excluded), the depth maximised over the
mid-sagittal slice +- 2 slices, maximising the balanced accuracy
(``training.sagittal_herniation_eval``). It does NOT work as a classifier there: the depth's AUC
was 0.53 on the development and 0.48 on the held-out patients (balanced accuracy 0.39 held-out,
against the issue's 0.80), with 5 and 8 herniated discs; bulging discs protrude as far
(Resources/Models/MODEL_CARD.md, "Herniation on the sagittal view (measured rule)"). The SPIDER
pixel spacing used is estimated (``training.spider.estimate_pixel_spacing``). The depth is a
measurement for a reader to check, not a diagnosis.

Usage::

    from SpineAssistLib.grading.sagittal_herniation import sagittal_protrusion
    m = sagittal_protrusion(disc_mask, (0.5, 0.5), corners_px, "L4-L5")   # corners: name -> (x, y) px
    m.depth_mm, m.present, m.apex_xy, m.foot_xy        # e.g. 4.5, True, (x, y), (x, y)
    finding = m.to_finding(slice_affine)              # a findings.SagittalHerniationFinding
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from SpineAssistLib.anatomy import disc_space_corners
from SpineAssistLib.findings import (
    Geometry,
    Measurement,
    Presence,
    SagittalHerniationFinding,
)
from SpineAssistLib.geometry import checked_spacing, xy_to_world
from SpineAssistLib.grading.vectors import pixel_point

# Chosen on SPIDER's 29 development patients (``training.sagittal_herniation_eval``; 5 herniations
# there, so barely determined): see the module docstring and the model card.
DEFAULT_THRESHOLD_MM = 0.63
MIN_LINE_MM = 1.0               # posterior corners closer than this cannot carry a line
MIN_DISC_PIXELS = 5

PixelToLps = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SagittalProtrusion:
    """The disc's posterior protrusion beyond the posterior vertebral line on one sagittal slice.

    ``depth_mm`` (None when not measured, with ``reason``); ``apex_xy`` / ``foot_xy``: the most
    posterior disc pixel and its foot on the line, pixels (x = column, y = row); ``line_xy``: the
    posterior line's ends (R, P) in pixels; ``extent_mm``: the length along the line of the disc
    at least half the depth behind it; ``present``: depth >= ``threshold_mm``.
    """

    depth_mm: float | None
    apex_xy: tuple[float, float] | None
    foot_xy: tuple[float, float] | None
    line_xy: tuple[tuple[float, float], tuple[float, float]] | None
    extent_mm: float | None
    threshold_mm: float
    level: str | None = None
    reason: str = ""

    @property
    def assessed(self) -> bool:
        return self.depth_mm is not None

    @property
    def present(self) -> bool | None:
        """Herniated (depth >= threshold), or None when not measured."""
        return None if self.depth_mm is None else bool(self.depth_mm >= self.threshold_mm)

    def to_finding(self, slice_affine: Any = None, source: Mapping[str, str] | None = None,
                   pixel_to_lps: PixelToLps | None = None) -> SagittalHerniationFinding:
        """Return the ``findings.SagittalHerniationFinding`` of this measure (not assessed, with the
        reason, when it was not measured).

        The geometry (apex, its foot on the posterior line, the measurement line and the posterior
        line, LPS mm) is filled from ``slice_affine`` (the slice's "row,col,slice" affine,
        ``geometry.slice_affine``) or ``pixel_to_lps`` ((N, 2) pixels x, y -> (N, 3) LPS mm); with
        neither it is left empty."""
        if not self.assessed:
            return SagittalHerniationFinding(status="not_assessed", reason=self.reason)
        to_lps = pixel_to_lps
        if to_lps is None and slice_affine is not None:

            def to_lps(xy: np.ndarray) -> np.ndarray:
                return xy_to_world(xy, slice_affine)
        geometry = Geometry(source=dict(source or {}))
        if to_lps is not None and self.apex_xy is not None and self.foot_xy is not None and self.line_xy is not None:
            pts = np.asarray(to_lps(np.array([self.apex_xy, self.foot_xy, *self.line_xy], float)), float)
            if pts.shape != (4, 3):
                raise ValueError(f"pixel_to_lps must map (N, 2) pixels to (N, 3) LPS mm; got shape {pts.shape} for N = 4")
            apex, foot, r, p = (tuple(float(v) for v in q) for q in pts)
            geometry = Geometry(points={"protrusion apex": apex, "posterior line foot": foot},
                                lines={"protrusion": (foot, apex), "posterior vertebral line": (r, p)},
                                source=dict(source or {}))
        measurements = [
            Measurement("posterior_protrusion_mm", float(self.depth_mm), "mm",
                        "disc behind the line joining the posterior corners above and below, perpendicular to it"),
            Measurement("protrusion_threshold_mm", float(self.threshold_mm), "mm", "at or above this: herniated"),
        ]
        if self.extent_mm is not None:
            measurements.append(Measurement("protrusion_extent_mm", float(self.extent_mm), "mm",
                                            "length along the line of the disc at least half the depth behind it"))
        return SagittalHerniationFinding(model=Presence(bool(self.present)), measurements=measurements,
                                         geometry=geometry)


def _spacing_xy(spacing_xy: Any) -> np.ndarray:
    return np.array(checked_spacing(spacing_xy, "spacing_xy", "x = between columns", "y = between rows"))




def posterior_corner_names(level: str) -> tuple[str, str]:
    """Return the names of the two corners the posterior line joins at disc ``level``: the upper
    body's posterior-inferior and the lower body's posterior-superior corner (e.g. "L4
    posterior-inferior", "L5 posterior-superior")."""
    names = disc_space_corners(level)
    return names[1], names[3]


def protrusion_from_points(disc_mask: np.ndarray, spacing_xy: Sequence[float], upper_posterior_xy: Sequence[float],
                           lower_posterior_xy: Sequence[float], *, threshold_mm: float = DEFAULT_THRESHOLD_MM,
                           level: str | None = None) -> SagittalProtrusion:
    """Return the disc's posterior protrusion (the module docstring's measurement) from the disc mask
    of one sagittal slice (rows, columns; nonzero = disc), its pixel spacing (x = between columns,
    y = between rows, mm) and the two posterior corners R (upper body's posterior-inferior) and P
    (lower body's posterior-superior) in pixels (x = column, y = row)."""
    mask = np.asarray(disc_mask)
    if mask.ndim != 2:
        raise ValueError(f"disc_mask must be a 2D mask of one slice (rows, columns); got shape {mask.shape}")
    mask = mask != 0
    s = _spacing_xy(spacing_xy)
    thr = float(threshold_mm)
    if not math.isfinite(thr) or thr < 0:
        raise ValueError(f"threshold_mm must be a finite depth of 0 mm or more; got {threshold_mm!r}")
    r_px = pixel_point("upper_posterior_xy", upper_posterior_xy)
    p_px = pixel_point("lower_posterior_xy", lower_posterior_xy)

    def not_assessed(reason: str) -> SagittalProtrusion:
        return SagittalProtrusion(None, None, None, None, None, thr, level=level, reason=reason)

    rows, cols = np.nonzero(mask)
    if len(rows) < MIN_DISC_PIXELS:
        return not_assessed("no disc segmented on the slice")
    r_mm, p_mm = r_px * s, p_px * s
    length = float(np.linalg.norm(p_mm - r_mm))
    if length < MIN_LINE_MM:
        return not_assessed(f"the posterior corners are less than {MIN_LINE_MM:g} mm apart: no posterior line")
    d = (p_mm - r_mm) / length
    n = np.array([-d[1], d[0]])
    q = np.column_stack([cols, rows]).astype(float) * s[None, :] - r_mm[None, :]
    if float(q.mean(axis=0) @ n) > 0:       # the disc's centre lies in front of the line
        n = -n
    t, depth = q @ d, q @ n
    inside = (t >= 0.0) & (t <= length)
    if not inside.any():
        return not_assessed("no disc pixel lies between the two posterior corners along the posterior line")
    t, depth = t[inside], depth[inside]
    top = float(depth.max())
    ties = np.flatnonzero(depth >= top - 1e-9)
    i = int(ties[np.argmin(np.abs(t[ties] - 0.5 * length))])
    apex = r_mm + t[i] * d + depth[i] * n
    foot = r_mm + t[i] * d
    value = max(0.0, top)
    behind = t[depth >= 0.5 * value] if value > 0 else np.empty(0)
    extent = float(behind.max() - behind.min()) if len(behind) else 0.0
    px = lambda v: (float(v[0] / s[0]), float(v[1] / s[1]))
    return SagittalProtrusion(value, px(apex), px(foot), (px(r_mm), px(p_mm)), extent, thr, level=level)


def sagittal_protrusion(disc_mask: np.ndarray, spacing_xy: Sequence[float],
                        corners: Mapping[str, Sequence[float] | None], level: str, *,
                        threshold_mm: float = DEFAULT_THRESHOLD_MM) -> SagittalProtrusion:
    """Return the posterior protrusion of disc ``level`` on one sagittal slice and herniated or not.

    ``disc_mask``: the disc's mask on the slice (rows, columns; nonzero = disc); ``spacing_xy``:
    (x = between columns, y = between rows) mm per pixel; ``corners``: vertebral corners in pixels
    (x = column, y = row) keyed as the pipeline keys them (``anatomy.corner_name``); the two used are
    ``posterior_corner_names(level)``, e.g. "L4 posterior-inferior" and "L5 posterior-superior" for
    "L4-L5" (other keys are ignored). Missing corners give a measure that is not assessed, naming
    them; malformed inputs raise ValueError / TypeError naming the argument."""
    upper, lower = posterior_corner_names(level)
    missing = [n for n in (upper, lower) if corners.get(n) is None]
    if missing:
        mask = np.asarray(disc_mask)
        if mask.ndim != 2:
            raise ValueError(f"disc_mask must be a 2D mask of one slice (rows, columns); got shape {mask.shape}")
        _spacing_xy(spacing_xy)
        return SagittalProtrusion(None, None, None, None, None, float(threshold_mm), level=level,
                                  reason=f"vertebral corners not found: {', '.join(missing)}")
    return protrusion_from_points(disc_mask, spacing_xy, corners[upper], corners[lower],  # type: ignore[arg-type]
                                  threshold_mm=threshold_mm, level=level)


def to_finding(measure: SagittalProtrusion, slice_affine: Any = None, source: Mapping[str, str] | None = None,
               pixel_to_lps: PixelToLps | None = None) -> SagittalHerniationFinding:
    """Return ``measure.to_finding(...)``: the ``findings.SagittalHerniationFinding`` of a measure."""
    return measure.to_finding(slice_affine, source, pixel_to_lps)


__all__ = ["DEFAULT_THRESHOLD_MM", "SagittalProtrusion", "posterior_corner_names", "protrusion_from_points",
           "sagittal_protrusion", "to_finding"]
