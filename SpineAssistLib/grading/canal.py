"""Central canal stenosis: the canal's antero-posterior (AP) diameter at a disc, measured on a canal
mask of one sagittal slice, and its grade by Verbiest's rule.

What ``canal_ap_at_disc`` measures (all in mm on the slice, pixels scaled by their spacing):

1. The disc gives P, a point of its posterior margin, and C, its centre. From the four vertebral
   corners around it (``canal_ap_from_corners``, names of ``anatomy.disc_space_corners``): C is the
   mean of the four; P is the midpoint of the upper body's posterior-inferior and the lower body's
   posterior-superior corner, moved back along C -> P as deep as the deeper of the two (a corner
   found short of the body's posterior wall would otherwise put P inside the disc).
2. A first line from P along the disc's antero-posterior axis (C -> P) finds the canal behind the
   disc (below). Within 10 mm of P along the canal, the canal's centre line (the middle of the mask's
   run across the canal nearest that first stretch, in 1 mm bands) is fitted by a straight line: the canal's local direction. At
   least 5 bands are needed and the fitted direction must be within 45 degrees of perpendicular to
   the disc's axis; otherwise the disc's axis is used (``axis_source`` says which).
3. The measurement line runs from P perpendicular to that direction, pointing back (away from C).
   Along it, the canal's first stretch reached from the disc - the one P lies in, else the first
   beginning behind P, at most 10 mm behind it - is the canal at this disc; stretches of mask
   separated by at most 1 mm are one, and a stretch under 1.5 mm with more mask behind it is a speck
   (of a mask in the disc or the ligament), passed over. It enters at the canal's anterior wall (where the disc, a
   herniation or the posterior longitudinal ligament bounds it) and leaves at its posterior wall
   (the ligamentum flavum, the laminae). AP = the distance between the two, the line's endpoints.

A mask pixel is the square around its centre (the line's samples take the nearest pixel), and each
wall is located to 0.001 mm along the line, so a straight canal 20 pixels of 0.5 mm across measures
10.0 mm.

The grade (``stenosis_grade``, the thresholds in ``findings``): Verbiest's midsagittal AP
diameter, absolute stenosis below 10 mm, relative from 10 to 12 mm, none above 12 mm (Verbiest H.
"Results of surgical treatment of idiopathic developmental stenosis of the lumbar vertebral canal:
a review of twenty-seven years' experience." J Bone Joint Surg Br 1977;59-B(2):181-188; Verbiest H.
"Pathomorphologic aspects of developmental lumbar stenosis." Orthop Clin North Am 1975;6(1):177-196).
Verbiest defined these for the bony canal (myelography, plain films and measurements at surgery;
later applied to CT). Here they are applied to the canal as segmented on sagittal T2 MRI, the
bright dural sac with its CSF as SPIDER's annotators outlined it: that soft-tissue canal is narrower
than the bony canal (ligamentum flavum, epidural fat and the disc bulge lie inside the bony canal),
so the same thresholds call stenosis more often than on the bone; MRI studies that derived their own
cut-offs found a normal T2 canal of about 11-16 mm at the discs (Chatha & Schweitzer, Bull NYU Hosp
Jt Dis 2011;69(4):303-307). A grade here is a measurement to check, not a diagnosis: clinical
central stenosis is usually judged on axial images (dural sac area, e.g. Schizas' morphological grade).

Usage::

    from SpineAssistLib.grading.canal import canal_ap_from_corners, stenosis_grade
    m = canal_ap_from_corners(canal_mask, (0.5, 0.5), corners_px, "L4-L5")   # corners: name -> (x, y) px
    m.ap_mm, m.grade, m.endpoints          # e.g. 11.2, 'relative', ((x_a, y_a), (x_p, y_p)) in pixels
    m.reason                               # why it was not measured, when m.ap_mm is None
    stenosis_grade(9.5)                    # 'absolute'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from SpineAssistLib.anatomy import disc_space_corners
from SpineAssistLib.findings import (
    ABSOLUTE_STENOSIS_BELOW_MM,
    RELATIVE_STENOSIS_UP_TO_MM,
    CanalDiameter,
    CanalFinding,
    Geometry,
    Measurement,
)
from SpineAssistLib.findings import stenosis_grade as _verbiest
from SpineAssistLib.geometry import checked_spacing, xy_to_world
from SpineAssistLib.grading.vectors import pixel_point

# How far from the disc's posterior margin P the canal is looked for along the measurement line:
# in front of P (corners placed a little behind the canal's anterior wall) and behind it (a disc
# bulge or herniation between the corners' line and the canal).
SEARCH_FRONT_MM = 8.0
SEARCH_BEHIND_MM = 10.0
MAX_AP_MM = 40.0            # no lumbar canal is deeper: the line ends here
MAX_GAP_MM = 1.0            # stretches of mask this close along the line are one canal (holes, nerve roots)
MIN_STRETCH_MM = 1.5        # a thinner stretch with more mask behind it is a speck, not the canal
CENTRELINE_HALF_MM = 10.0   # the canal's direction is fitted this far either side of P, along the canal
CENTRELINE_BAND_MM = 1.0
MIN_CENTRELINE_BANDS = 5
MAX_TILT_DEG = 45.0         # a fitted direction farther from perpendicular to the disc's axis is not believed
WALL_PRECISION_MM = 1e-3


@dataclass(frozen=True)
class CanalMeasure:
    """The canal's AP diameter at one disc and what it was measured from.

    ``ap_mm`` (None when not measured, with ``reason``); ``anterior_xy`` / ``posterior_xy``: the
    measurement line's ends on the canal's anterior and posterior walls, in the slice's pixels
    (x = column, y = row, floats); ``grade``: "none" | "relative" | "absolute" (Verbiest);
    ``axis_source``: "canal" (perpendicular to the fitted canal direction) or "disc" (the disc's
    own axis, C -> P); ``tilt_deg``: the angle between the measurement line and the disc's axis.
    """

    ap_mm: float | None
    anterior_xy: tuple[float, float] | None
    posterior_xy: tuple[float, float] | None
    grade: str | None
    level: str | None = None
    reason: str = ""
    axis_source: str | None = None
    tilt_deg: float | None = None

    @property
    def assessed(self) -> bool:
        return self.ap_mm is not None

    @property
    def endpoints(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """The measurement line (anterior wall, posterior wall) in pixels (x = column, y = row)."""
        if self.anterior_xy is None or self.posterior_xy is None:
            return None
        return self.anterior_xy, self.posterior_xy

    def to_finding(self, slice_affine: Any = None, source: Mapping[str, str] | None = None) -> CanalFinding:
        """Return the ``findings.CanalFinding`` of this measure (not assessed, with the reason, when
        it was not measured). ``slice_affine``: the slice's "row,col,slice" affine
        (``geometry.slice_affine``), to give the line in LPS mm for the report and Slicer."""
        if not self.assessed:
            return CanalFinding(status="not_assessed", reason=self.reason)
        geometry = Geometry(source=dict(source or {}))
        if slice_affine is not None and self.endpoints is not None:

            a, p = (tuple(float(v) for v in q) for q in xy_to_world(np.array(self.endpoints), slice_affine))
            geometry = Geometry(points={"canal anterior wall": a, "canal posterior wall": p},
                                lines={"canal AP": (a, p)}, source=dict(source or {}))
        measurements = [Measurement("canal_ap_mm", float(self.ap_mm), "mm",
                                    "canal antero-posterior diameter at the disc, perpendicular to the canal")]
        return CanalFinding(model=CanalDiameter.measured(float(self.ap_mm)), measurements=measurements,
                            geometry=geometry)


def stenosis_grade(ap_mm: float) -> str:
    """Return the central canal stenosis grade of an AP diameter in mm by Verbiest's rule:
    "absolute" below 10 mm, "relative" from 10 to 12 mm (both included), "none" above 12 mm."""
    if isinstance(ap_mm, bool) or not isinstance(ap_mm, (int, float, np.integer, np.floating)):
        raise TypeError(f"ap_mm must be a number (mm); got {type(ap_mm).__name__} {ap_mm!r}")
    ap = float(ap_mm)
    if not math.isfinite(ap) or ap <= 0:
        raise ValueError(f"ap_mm must be a finite diameter above 0 mm; got {ap_mm!r}")
    return _verbiest(ap)


def _spacing(pixel_spacing_mm: Any) -> np.ndarray:
    """Return (x = column, y = row) mm per pixel from DICOM-ordered (between rows, between columns)."""
    sy, sx = checked_spacing(pixel_spacing_mm)
    return np.array([sx, sy])




def _mask(canal_mask: Any) -> np.ndarray:
    m = np.asarray(canal_mask)
    if m.ndim != 2:
        raise ValueError(f"canal_mask must be a 2D mask of one slice (rows, columns); got shape {m.shape}")
    return m != 0


class _Line:
    """The mask sampled along P + t u (mm): pixel (row, col) is the square around its centre."""

    def __init__(self, mask: np.ndarray, spacing_xy: np.ndarray, p_mm: np.ndarray, u: np.ndarray):
        self.mask, self.s, self.p, self.u = mask, spacing_xy, p_mm, u

    def inside(self, t: np.ndarray) -> np.ndarray:
        xy = (self.p[None, :] + np.asarray(t, float)[:, None] * self.u[None, :]) / self.s[None, :]
        col, row = np.floor(xy[:, 0] + 0.5).astype(int), np.floor(xy[:, 1] + 0.5).astype(int)
        h, w = self.mask.shape
        ok = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        out = np.zeros(len(xy), bool)
        out[ok] = self.mask[row[ok], col[ok]]
        return out

    def wall(self, t_out: float, t_in: float) -> float:
        """Return where the line crosses the mask's border between an outside and an inside sample."""
        while abs(t_in - t_out) > WALL_PRECISION_MM:
            mid = 0.5 * (t_in + t_out)
            if self.inside(np.array([mid]))[0]:
                t_in = mid
            else:
                t_out = mid
        return 0.5 * (t_in + t_out)

    def canal_stretch(self) -> tuple[float, float] | str:
        """Return (t of the anterior wall, t of the posterior wall) of the canal at the disc, or why none."""
        step = float(min(self.s)) / 8.0
        t = np.arange(-SEARCH_FRONT_MM, MAX_AP_MM + step, step)
        inside = self.inside(t)
        idx = np.flatnonzero(inside)
        if len(idx) == 0:
            return f"no canal within {SEARCH_BEHIND_MM:g} mm behind the disc's posterior margin"
        # stretches of consecutive inside samples, those less than MAX_GAP_MM apart joined
        breaks = np.flatnonzero(np.diff(idx) * step > MAX_GAP_MM)
        starts = np.r_[idx[0], idx[breaks + 1]]
        ends = np.r_[idx[breaks], idx[-1]]
        # wholly in front of P: not the canal behind this disc; beginning too far behind P: not at it
        candidates = [(a, b) for a, b in zip(starts, ends) if t[b] >= 0 and t[a] <= SEARCH_BEHIND_MM]
        if not candidates:
            return f"no canal within {SEARCH_BEHIND_MM:g} mm behind the disc's posterior margin"
        # a stretch thinner than MIN_STRETCH_MM with more canal behind it is a speck of mask in the disc
        # or the ligament, not the canal (a canal pinched that thin has nothing behind it on the line)
        a, b = next(((a, b) for a, b in candidates if t[b] - t[a] >= MIN_STRETCH_MM), candidates[0])
        if a == 0:
            return (f"the canal reaches more than {SEARCH_FRONT_MM:g} mm in front of the disc's posterior "
                    "margin: the disc's corners and the canal do not fit together")
        if b == len(t) - 1:
            return f"the canal is deeper than {MAX_AP_MM:g} mm behind the disc: not a canal outline"
        return self.wall(t[a - 1], t[a]), self.wall(t[b + 1], t[b])


def _canal_axis(mask: np.ndarray, spacing_xy: np.ndarray, p_mm: np.ndarray, u0: np.ndarray,
                stretch: tuple[float, float]) -> np.ndarray | None:
    """Return the unit measurement axis perpendicular to the canal's centre line near P (pointing
    like ``u0``), or None where too little canal is there to fit it."""
    along0 = np.array([-u0[1], u0[0]])
    rows, cols = np.nonzero(mask)
    xy = np.column_stack([cols, rows]).astype(float) * spacing_xy[None, :] - p_mm[None, :]
    s, d = xy @ along0, xy @ u0
    # across: the first line's stretch widened by as much as a canal tilted by MAX_TILT_DEG moves
    # over the fitted length, so that the canal is not cut where it is farthest from the line
    margin = CENTRELINE_HALF_MM * math.tan(math.radians(MAX_TILT_DEG))
    near = (np.abs(s) <= CENTRELINE_HALF_MM) & (d >= stretch[0] - margin) & (d <= stretch[1] + margin)
    s, d = s[near], d[near]
    if len(s) == 0:
        return None
    band = np.floor(s / CENTRELINE_BAND_MM).astype(int)
    middle = 0.5 * (stretch[0] + stretch[1])
    gap = MAX_GAP_MM + float(max(spacing_xy))
    centres_s, centres_d = [], []
    for b in np.unique(band):
        sel = band == b
        ds = np.sort(d[sel])
        # the band's runs of mask across the canal; the canal's is the one nearest the first line's
        # stretch (a speck of mask in front of or behind the canal would move the middle)
        cuts = np.flatnonzero(np.diff(ds) > gap)
        runs = [(r[0], r[-1]) for r in np.split(ds, cuts + 1)]
        lo, hi = min(runs, key=lambda r: 0.0 if r[0] <= middle <= r[1] else min(abs(r[0] - middle), abs(r[1] - middle)))
        centres_s.append(float(s[sel].mean()))
        centres_d.append(0.5 * float(lo + hi))
    if len(centres_s) < MIN_CENTRELINE_BANDS:
        return None
    slope = float(np.polyfit(centres_s, centres_d, 1)[0])      # across per along
    if abs(math.degrees(math.atan(slope))) > MAX_TILT_DEG:
        return None
    direction = along0 + slope * u0
    direction /= np.linalg.norm(direction)
    u = np.array([direction[1], -direction[0]])
    return u if u @ u0 > 0 else -u


def canal_ap_at_disc(canal_mask: np.ndarray, pixel_spacing_mm: Sequence[float], disc_centre_xy: Sequence[float],
                     posterior_margin_xy: Sequence[float], *, level: str | None = None) -> CanalMeasure:
    """Return the canal's AP diameter (mm) at a disc, its endpoints and its Verbiest grade.

    ``canal_mask``: one sagittal slice's canal mask (rows, columns; nonzero = canal);
    ``pixel_spacing_mm``: (between rows, between columns) mm, as DICOM's PixelSpacing;
    ``disc_centre_xy``, ``posterior_margin_xy``: the disc's centre C and a point P of its posterior
    margin, pixels (x = column, y = row) of the same slice. The measurement is the module
    docstring's. Where the slice shows no canal at the disc, the measure is not assessed and
    ``reason`` says why; bad inputs raise ValueError / TypeError naming the argument.
    """
    mask = _mask(canal_mask)
    spacing = _spacing(pixel_spacing_mm)
    c_mm = pixel_point("disc_centre_xy", disc_centre_xy) * spacing
    p_mm = pixel_point("posterior_margin_xy", posterior_margin_xy) * spacing
    axis = p_mm - c_mm
    if np.linalg.norm(axis) < 1e-6:
        raise ValueError("disc_centre_xy and posterior_margin_xy are the same point: the disc's "
                         "antero-posterior axis cannot be drawn")
    u0 = axis / np.linalg.norm(axis)

    def not_assessed(reason: str) -> CanalMeasure:
        return CanalMeasure(None, None, None, None, level=level, reason=reason)

    if not mask.any():
        return not_assessed("no canal segmented on the slice")
    first = _Line(mask, spacing, p_mm, u0).canal_stretch()
    if isinstance(first, str):
        return not_assessed(first)
    fitted = _canal_axis(mask, spacing, p_mm, u0, first)
    u, source = (fitted, "canal") if fitted is not None else (u0, "disc")
    found = _Line(mask, spacing, p_mm, u).canal_stretch() if fitted is not None else first
    if isinstance(found, str):
        return not_assessed(found)
    t_a, t_p = found
    ap = float(t_p - t_a)
    ends = [tuple(float(v) for v in (p_mm + t * u) / spacing) for t in (t_a, t_p)]
    tilt = math.degrees(math.acos(float(np.clip(u @ u0, -1.0, 1.0))))
    return CanalMeasure(ap, ends[0], ends[1], stenosis_grade(ap), level=level, axis_source=source,
                        tilt_deg=tilt)


def disc_axis_from_corners(corners_xy: Mapping[str, Sequence[float]], level: str
                           ) -> tuple[np.ndarray, np.ndarray] | str:
    """Return (disc centre C, posterior margin P) in pixels from the four corners around disc
    ``level`` (names of ``anatomy.disc_space_corners``, e.g. "L4 posterior-inferior"), or, where
    corners are missing, a reason naming them."""
    names = disc_space_corners(level)
    missing = [n for n in names if corners_xy.get(n) is None]
    if missing:
        return f"vertebral corners not found: {', '.join(missing)}"
    pts = {n: pixel_point(f"corner {n!r}", corners_xy[n]) for n in names}
    centre = np.mean([pts[n] for n in names], axis=0)
    middle = 0.5 * (pts[names[1]] + pts[names[3]])
    axis = middle - centre
    if np.linalg.norm(axis) < 1e-6:
        return centre, middle           # canal_ap_at_disc says the axis cannot be drawn
    axis /= np.linalg.norm(axis)
    # a corner found short of the body's posterior wall (where the disc's contact with the endplate
    # ends early) must not put P inside the disc: P goes as deep as the deeper posterior corner
    depth = max(float((pts[names[1]] - middle) @ axis), float((pts[names[3]] - middle) @ axis), 0.0)
    return centre, middle + depth * axis


def canal_ap_from_corners(canal_mask: np.ndarray, pixel_spacing_mm: Sequence[float],
                          corners_xy: Mapping[str, Sequence[float]], level: str) -> CanalMeasure:
    """Return ``canal_ap_at_disc`` for disc ``level`` placed by its four vertebral corners
    (pixels x = column, y = row, keyed as the pipeline keys them: ``anatomy.disc_space_corners``).
    Missing corners give a measure that is not assessed, naming them."""
    axis = disc_axis_from_corners(corners_xy, level)
    if isinstance(axis, str):
        _mask(canal_mask)           # bad inputs raise whether or not the corners are there
        _spacing(pixel_spacing_mm)
        return CanalMeasure(None, None, None, None, level=level, reason=axis)
    return canal_ap_at_disc(canal_mask, pixel_spacing_mm, axis[0], axis[1], level=level)


__all__ = ["ABSOLUTE_STENOSIS_BELOW_MM", "RELATIVE_STENOSIS_UP_TO_MM", "CanalMeasure", "canal_ap_at_disc",
           "canal_ap_from_corners", "disc_axis_from_corners", "stenosis_grade"]
