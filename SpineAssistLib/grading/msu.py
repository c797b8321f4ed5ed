"""Lumbar disc herniation: the MSU (Michigan State University) size, zone and side (GRADING.md).

Inputs are the axial keypoints in LPS mm (left and right medial facet margins, mid-line posterior
disc margin, herniation apex, posterior canal point at mid-line) and, for the zone, the points of
the herniation mask. Everything is measured in the slice's own 2D frame, built from the keypoints
so that the reading does not change when the patient (or the slice) is rotated, moved or scaled:

- lateral axis ``l``: along the intra-facet line, pointing to the patient's left (LPS +x). If the
  intra-facet line is exactly anteroposterior, x cannot tell the sides and the labels are used.
- posterior axis ``a``: the part of (posterior canal - posterior disc margin) perpendicular to ``l``
  (and to ``slice_normal`` when given), so depths are measured perpendicular to the intra-facet line.

Size: r = depth / h, depth = (apex - disc margin) . a, h = (facet midpoint - disc margin) . a, the
distance from the disc margin to the intra-facet line at mid-line. Size 1 if r <= 0.5, 2 if
r <= 1, 3 if r > 1; size 0 (none, or bulge when ``bulge=True``) without an apex, or when the apex
lies less than ``min_depth_mm`` behind the disc margin (at or in front of it included).

Zone: the intra-facet line (width w, quarter q = w / 4) is split at s = -2q, -q, q, 2q along
``l`` from its midpoint: A = |s| <= q, B = q < |s| <= 2q, C = |s| > 2q (beyond the medial facet
margin). The herniation's lateral extent [s_min, s_max] (mask points and apex) touches a zone when
it overlaps it by more than ``MIN_ZONE_OVERLAP_FRACTION`` of a quarter; touching A and B gives AB,
B and C gives BC; touching all three gives the pair that holds the apex (from B: the pair with the
larger overlap). Without mask points the extent is the apex alone.

Side (patient terms): B, BC, C: the side of the lateral zone touched (both sides: the side with the
larger lateral overlap, with a warning). AB: the side of the B zone touched; ``"bilateral"`` when
it reaches B on both sides. A: ``None`` (central) when the extent's centre lies within
``MIDLINE_BAND_FRACTION`` of a quarter from the mid-line, else the side of that centre.

Mirroring: reflecting the patient across the mid-sagittal plane (LPS x -> -x for every point, and
the left/right keypoint labels swapped) swaps left and right and keeps size and zone.

Usage::

    from SpineAssistLib.grading import msu_grade
    r = msu_grade(left_facet=(20, 30, 0), right_facet=(-20, 30, 0), posterior_disc_margin=(0, 20, 0),
                  posterior_canal=(0, 45, 0), herniation_apex=(-12, 25, 0),
                  herniation_points=[(-16, 22, 0), (-6, 22, 0)])
    r.value.label, r.depth_ratio      # ('1-AB right', 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from SpineAssistLib.anatomy import MSU_KEYPOINTS
from SpineAssistLib.findings import Geometry, HerniationFinding, Measurement, MSUGrade
from SpineAssistLib.grading.vectors import (
    BOUNDARY_TOLERANCE,
    COINCIDENT_MM,
    FloatArray,
    PointLike,
    as_point,
    direction,
    lps_point,
    lps_points,
)

LEFT_FACET, RIGHT_FACET, DISC_MARGIN, APEX, CANAL = MSU_KEYPOINTS

# Size 1 up to half the way to the intra-facet line, 2 up to the line, 3 beyond (GRADING.md).
SIZE_UPPER_BOUNDS: tuple[float, ...] = (0.5, 1.0)

# Below 1 mm an "apex" is within a voxel of the disc margin: keypoint noise, not a herniation.
DEFAULT_MIN_DEPTH_MM = 1.0

# A mask that spills a few pixels over a zone boundary has not reached that zone: a tenth of a
# quarter of the intra-facet line (~1 mm on a 40 mm line, i.e. about one axial pixel).
MIN_ZONE_OVERLAP_FRACTION = 0.1

# A zone-A herniation whose centre lies within a quarter of a quarter (the middle eighth of the
# intra-facet line, ±2.5 mm on 40 mm) of the mid-line reads as central rather than paracentral.
MIDLINE_BAND_FRACTION = 0.25

# Below this |x| component the intra-facet line runs anteroposterior and LPS x cannot tell sides.
_SIDE_AXIS_MIN = 1e-9

# Zone intervals along the lateral axis, in quarters of the intra-facet line from its midpoint.
_ZONES: tuple[tuple[str, str | None, float, float], ...] = (
    ("C", "right", -np.inf, -2.0), ("B", "right", -2.0, -1.0), ("A", None, -1.0, 1.0),
    ("B", "left", 1.0, 2.0), ("C", "left", 2.0, np.inf),
)


def msu_size(depth_ratio: float) -> int:
    """Return the MSU size 1-3 of a herniation with depth ratio r (boundaries inclusive: 0.5 is 1)."""
    for size, bound in enumerate(SIZE_UPPER_BOUNDS, start=1):
        if depth_ratio <= bound + BOUNDARY_TOLERANCE:
            return size
    return 3


@dataclass(frozen=True)
class MSUResult:
    """An MSU reading on one axial slice and what it was measured from.

    Lengths in mm: ``depth_mm`` (disc margin -> apex, perpendicular to the intra-facet line; None
    without an apex), ``facet_line_distance_mm`` (h), ``intra_facet_width_mm`` (w),
    ``extent_left_mm`` / ``extent_right_mm`` (how far the herniation reaches from the mid-line to
    each patient side; negative when it stays on the other side). ``depth_ratio`` is r = depth / h.
    ``zones_touched`` names the zone intervals the extent touched, e.g. ``("A", "B right")``.
    """

    size: int
    zone: str | None
    side: str | None
    bulge: bool
    depth_mm: float | None
    depth_ratio: float | None
    facet_line_distance_mm: float
    intra_facet_width_mm: float
    extent_left_mm: float | None
    extent_right_mm: float | None
    zones_touched: tuple[str, ...]
    warnings: tuple[str, ...] = field(compare=False)
    geometry: Geometry = field(compare=False)

    @property
    def value(self) -> MSUGrade:
        """The reading as the findings model keeps it."""
        return MSUGrade(self.size, self.zone, self.side, self.bulge)

    @property
    def measurements(self) -> list[Measurement]:
        """The numbers a reader can check, with units."""
        out = [
            Measurement("facet_line_distance_mm", self.facet_line_distance_mm, "mm",
                        "posterior disc margin to the intra-facet line at mid-line (h)"),
            Measurement("intra_facet_width_mm", self.intra_facet_width_mm, "mm", "between the medial facet margins"),
        ]
        if self.depth_mm is not None and self.depth_ratio is not None:
            out[:0] = [
                Measurement("depth_ratio", self.depth_ratio, "1", "herniation depth / h: size 1 <= 0.5 < 2 <= 1 < 3"),
                Measurement("herniation_depth_mm", self.depth_mm, "mm",
                            "posterior disc margin to apex, perpendicular to the intra-facet line"),
            ]
        if self.extent_left_mm is not None and self.extent_right_mm is not None:
            out += [
                Measurement("extent_left_mm", self.extent_left_mm, "mm", "herniation's reach left of the mid-line"),
                Measurement("extent_right_mm", self.extent_right_mm, "mm", "herniation's reach right of the mid-line"),
            ]
        return out

    def to_finding(self, confidence: float | None = None) -> HerniationFinding:
        """Return a ``HerniationFinding`` with this reading as the model's value and its evidence."""
        return HerniationFinding(model=self.value, measurements=self.measurements,
                                 geometry=self.geometry, confidence=confidence)


def msu_grade(
    left_facet: PointLike,
    right_facet: PointLike,
    posterior_disc_margin: PointLike,
    posterior_canal: PointLike,
    herniation_apex: PointLike | None = None,
    herniation_points: Any = None,
    *,
    bulge: bool = False,
    min_depth_mm: float = DEFAULT_MIN_DEPTH_MM,
    slice_normal: PointLike | None = None,
    source: Mapping[str, str] | None = None,
) -> MSUResult:
    """Return the MSU size, zone and side of one axial slice from its keypoints (LPS mm).

    ``herniation_points`` (N, 3) are the herniation mask's points in LPS mm (e.g. from
    ``voxel_centers_lps(mask, index_to_lps)``); without them the zone comes from the apex alone.
    ``bulge`` is reported when there is no herniation (size 0). ``slice_normal`` fixes the slice
    plane when the keypoints alone should not define it. ``source`` names the image (UIDs).
    """
    FL = lps_point(f"left_facet ({LEFT_FACET} margin)", left_facet)
    FR = lps_point(f"right_facet ({RIGHT_FACET} margin)", right_facet)
    D = lps_point(f"posterior_disc_margin ({DISC_MARGIN} at mid-line)", posterior_disc_margin)
    C = lps_point(f"posterior_canal ({CANAL} point at mid-line)", posterior_canal)
    apex = None if herniation_apex is None else lps_point(f"herniation_apex ({APEX})", herniation_apex)
    points = None if herniation_points is None else lps_points("herniation_points", herniation_points)
    if not isinstance(bulge, bool):
        raise TypeError(f"bulge must be true or false; got {bulge!r}")
    min_depth = float(min_depth_mm)
    if not np.isfinite(min_depth) or min_depth < 0:
        raise ValueError(f"min_depth_mm must be a finite number >= 0 mm; got {min_depth_mm!r}")
    warnings: list[str] = []

    lateral, _ = direction("left_facet and right_facet", FR, FL, "the two medial facet margins")
    normal = None
    if slice_normal is not None:
        normal = _unit_or_raise(lps_point("slice_normal", slice_normal),
                                "slice_normal is a zero vector; expected the slice plane's normal in LPS")
        lateral = _unit_or_raise(lateral - (lateral @ normal) * normal,
                                 "left_facet and right_facet: the intra-facet line runs along slice_normal; "
                                 "expected it to lie in the axial slice")
    if abs(lateral[0]) > _SIDE_AXIS_MIN:
        if lateral[0] < 0:
            lateral = -lateral
            warnings.append("left_facet lies to the patient's right of right_facet (LPS x); "
                            "sides follow the patient's x axis, not the keypoint labels")
    else:
        warnings.append("the intra-facet line runs anteroposterior; sides follow the left/right keypoint labels")

    posterior = (C - D) - ((C - D) @ lateral) * lateral
    if normal is not None:
        posterior = posterior - (posterior @ normal) * normal
    posterior = _unit_or_raise(posterior, "posterior_canal and posterior_disc_margin: posterior_canal must lie "
                                          "posterior to the disc margin, off the intra-facet line's direction")

    mid = 0.5 * (FL + FR)
    width = abs(float((FL - FR) @ lateral))
    if width < COINCIDENT_MM:
        raise ValueError("left_facet and right_facet: the medial facet margins coincide in the slice plane; "
                         "expected two distinct points")
    quarter = width / 4.0
    h = float((mid - D) @ posterior)
    if h < COINCIDENT_MM:
        raise ValueError(f"posterior_disc_margin: the intra-facet line must lie posterior to the posterior disc "
                         f"margin; it lies {-h:.2f} mm anterior to it (are the facet or disc keypoints swapped?)")

    def s_of(x: FloatArray) -> FloatArray:
        return (x - mid) @ lateral

    origin = D - float((D - mid) @ lateral) * lateral  # mid-line, at the disc margin's depth

    def at(s: float, t: float) -> tuple[float, float, float]:
        return as_point(origin + s * lateral + t * posterior)

    depth = ratio = None
    size = 0
    if apex is not None:
        depth = float((apex - D) @ posterior)
        ratio = depth / h
        if depth >= min_depth - BOUNDARY_TOLERANCE * max(1.0, min_depth):
            size = msu_size(ratio)

    extent: tuple[float, float] | None = None
    if points is not None or apex is not None:
        s_values = [] if points is None else list(s_of(points))
        if apex is not None:
            s_values.append(float(s_of(apex)))
        extent = (float(min(s_values)), float(max(s_values)))

    zone = side = None
    touched: tuple[str, ...] = ()
    if size > 0:
        assert extent is not None and apex is not None
        zone, side, touched, zone_warnings = _zone_and_side(extent, float(s_of(apex)), quarter)
        warnings.extend(zone_warnings)

    geometry = Geometry(
        points={
            LEFT_FACET: as_point(FL), RIGHT_FACET: as_point(FR), DISC_MARGIN: as_point(D), CANAL: as_point(C),
            **({APEX: as_point(apex)} if apex is not None else {}),
            "intra-facet midpoint": as_point(mid),
            "quarter point left": as_point(mid + quarter * lateral),
            "quarter point right": as_point(mid - quarter * lateral),
        },
        lines={
            "intra-facet line": (as_point(FR), as_point(FL)),
            "facet line distance": (at(0.0, 0.0), at(0.0, h)),
            **({"herniation depth": (at(0.0, 0.0), at(0.0, depth))} if depth is not None else {}),
            **{f"zone boundary {name}": (at(k * quarter, 0.0), at(k * quarter, max(h, depth or 0.0)))
               for name, k in (("A|B left", 1), ("B|C left", 2), ("A|B right", -1), ("B|C right", -2))},
            **({"herniation extent": (at(extent[0], depth or 0.0), at(extent[1], depth or 0.0))}
               if extent is not None and size > 0 else {}),
        },
        source=dict(source or {}),
    )
    return MSUResult(
        size=size, zone=zone, side=side, bulge=bulge if size == 0 else False,
        depth_mm=depth, depth_ratio=ratio, facet_line_distance_mm=h, intra_facet_width_mm=width,
        extent_left_mm=None if extent is None else extent[1],
        extent_right_mm=None if extent is None else -extent[0],
        zones_touched=touched, warnings=tuple(warnings), geometry=geometry,
    )


def select_maximal_extrusion(results: Sequence[MSUResult]) -> MSUResult:
    """Return the reading of the slice of maximal extrusion: the largest depth ratio (ties: the
    larger depth in mm, then the first given). Slices without an apex count as no extrusion."""
    if not results:
        raise ValueError("results is empty: expected the MSU readings of at least one axial slice")

    def key(i: int) -> tuple[float, float, int]:
        r = results[i]
        ratio = -np.inf if r.depth_ratio is None else round(r.depth_ratio, 9)
        depth = -np.inf if r.depth_mm is None else round(r.depth_mm, 9)
        return (ratio, depth, -i)

    return results[max(range(len(results)), key=key)]


def _unit_or_raise(v: FloatArray, message: str) -> FloatArray:
    n = float(np.linalg.norm(v))
    if n < 1e-9:
        raise ValueError(message)
    return v / n


def _zone_and_side(extent: tuple[float, float], apex_s: float, quarter: float
                   ) -> tuple[str, str | None, tuple[str, ...], list[str]]:
    """Return (zone, side, zones touched, warnings) for a lateral extent in mm from the mid-line."""
    lo, hi = extent[0] / quarter, extent[1] / quarter  # in quarters
    overlaps = [max(0.0, min(hi, b) - max(lo, a)) for _, _, a, b in _ZONES]
    touched = [k for k, o in enumerate(overlaps) if o > MIN_ZONE_OVERLAP_FRACTION]
    if not touched:  # a sliver: the zone of its centre
        touched = [_zone_index(0.5 * (lo + hi))]
    letters = {_ZONES[k][0] for k in touched}
    apex_letter = _ZONES[_zone_index(apex_s / quarter)][0]
    if letters == {"A", "B", "C"}:
        if apex_letter == "B":
            a_overlap = overlaps[2]
            c_overlap = overlaps[0] + overlaps[4]
            zone = "AB" if a_overlap >= c_overlap else "BC"
        else:
            zone = "AB" if apex_letter == "A" else "BC"
    else:
        zone = "".join(sorted(letters))
    names = tuple(_ZONES[k][0] + (f" {_ZONES[k][1]}" if _ZONES[k][1] else "") for k in touched)

    warnings: list[str] = []
    lateral_sides = {_ZONES[k][1] for k in touched if _ZONES[k][0] in zone and _ZONES[k][0] != "A"}
    if zone == "A":
        centre = 0.5 * (lo + hi)
        side = None if abs(centre) <= MIDLINE_BAND_FRACTION else ("left" if centre > 0 else "right")
    elif zone == "AB" and lateral_sides == {"left", "right"}:
        side = "bilateral"
    elif len(lateral_sides) == 1:
        side = lateral_sides.pop()
    else:
        left = sum(overlaps[k] for k in (3, 4))
        right = sum(overlaps[k] for k in (0, 1))
        side = "left" if left >= right else "right"
        warnings.append(f"the herniation reaches zone {zone[-1]} on both sides; reported on the {side}, "
                        f"where it covers more of them")
    return zone, side, names, warnings


def _zone_index(s_quarters: float) -> int:
    """Return the index in ``_ZONES`` of the zone holding a lateral position (in quarters)."""
    if abs(s_quarters) <= 1.0 + BOUNDARY_TOLERANCE:
        return 2
    if abs(s_quarters) <= 2.0 + BOUNDARY_TOLERANCE:
        return 3 if s_quarters > 0 else 1
    return 4 if s_quarters > 0 else 0


# ---- herniation or bulge, from masks -----------------------------------------------------------

# Lumbar disc nomenclature 2.0 (Fardon et al., Spine J 2014): disc material beyond the disc space
# over more than 25 % (90°) of the circumference is a bulge, not a herniation; a herniation is
# localised (less than 25 %).
BULGE_MIN_CIRCUMFERENCE = 0.25
_ANGLE_BINS = 72   # 5° sectors


@dataclass(frozen=True)
class DiscMaterial:
    """Disc material beyond the disc space on one axial slice, read from masks.

    ``circumference``: fraction of the disc's circumference (about its centre) it covers;
    ``bulge``: True when that exceeds 25 %; ``apex``: the herniation's most posterior point (LPS)
    when it is a herniation, else None; ``points``: the material's points (LPS) for its extent.
    """

    circumference: float
    bulge: bool
    apex: tuple[float, float, float] | None
    points: np.ndarray | None


def disc_material(disc_points: Any, material_points: Any, posterior: PointLike,
                  min_points: int = 4) -> DiscMaterial:
    """Return whether the material beyond the disc (``material_points``, LPS mm) is a bulge or a
    herniation, by how much of the disc's circumference it covers (``disc_points``: the disc's
    own points, LPS mm); ``posterior``: the patient's posterior direction in the slice.

    A herniation's apex is its point furthest along ``posterior``. When a herniation rides on a
    bulge (material all round plus a focal protrusion), only the part deeper than the bulge's
    typical thickness is taken as the herniation. Only material in the posterior half of the disc
    (towards the canal and foramina, lateral included) is a herniation for MSU; anterior material
    alone gives no apex.
    """
    disc = lps_points("disc_points", disc_points)
    material = None if material_points is None else lps_points("material_points", material_points)
    post = _unit_or_raise(lps_point("posterior", posterior), "posterior is a zero vector")
    if material is None or len(material) < min_points or len(disc) < min_points:
        return DiscMaterial(0.0, False, None, None)
    centre = disc.mean(axis=0)
    rel_d, rel_m = disc - centre, material - centre
    # the slice plane: the disc's points spread least along its normal
    normal = np.linalg.svd(rel_d, full_matrices=False)[2][-1]
    post = _unit_or_raise(post - (post @ normal) * normal, "posterior runs along the slice normal")
    lateral = np.cross(normal, post)
    angles = np.arctan2(rel_m @ post, rel_m @ lateral)
    bins = np.unique(_sector(angles))
    circumference = len(bins) / _ANGLE_BINS
    if circumference > BULGE_MIN_CIRCUMFERENCE:
        # a bulge; a focal protrusion beyond it is still a herniation
        radius_d = _radius_by_angle(rel_d, post, lateral)
        beyond = np.hypot(rel_m @ post, rel_m @ lateral) - radius_d(angles)
        thickness = float(np.median(beyond))
        focal = beyond > thickness + max(2.0, thickness)
        focal_bins = np.unique(_sector(angles[focal]))
        if focal.sum() < min_points or len(focal_bins) / _ANGLE_BINS > BULGE_MIN_CIRCUMFERENCE:
            return DiscMaterial(circumference, True, None, None)
        material, rel_m = material[focal], rel_m[focal]
    # MSU grades material towards the canal and foramina: the posterior half of the disc (lateral
    # included); an anterior protrusion has no depth beyond the intra-facet line to measure
    material = material[rel_m @ post >= 0.0]
    if len(material) < min_points:
        return DiscMaterial(circumference, circumference > BULGE_MIN_CIRCUMFERENCE, None, None)
    apex = material[int(np.argmax(material @ post))]
    return DiscMaterial(circumference, circumference > BULGE_MIN_CIRCUMFERENCE, as_point(apex), material)


def _sector(angles: FloatArray) -> np.ndarray:
    """Return the 5° sector (0-71) of each angle in radians (-pi..pi)."""
    return ((np.asarray(angles) + np.pi) / (2 * np.pi) * _ANGLE_BINS).astype(int) % _ANGLE_BINS


def _radius_by_angle(rel: FloatArray, post: FloatArray, lateral: FloatArray):
    """Return f(angles) -> the disc's outer radius in each 5° sector (its largest point there)."""
    ang = np.arctan2(rel @ post, rel @ lateral)
    r = np.hypot(rel @ post, rel @ lateral)
    idx = _sector(ang)
    radius = np.zeros(_ANGLE_BINS)
    np.maximum.at(radius, idx, r)
    if (radius > 0).any():   # fill empty sectors from their neighbours
        filled = np.where(radius > 0)[0]
        radius = np.interp(np.arange(_ANGLE_BINS), filled, radius[filled], period=_ANGLE_BINS)

    def at(angles: FloatArray) -> FloatArray:
        return radius[_sector(angles)]

    return at


def herniation_from_masks(disc_points: Any, material_points: Any, posterior_disc_margin: PointLike,
                          posterior_canal: PointLike, model_apex: PointLike | None = None
                          ) -> tuple[tuple[float, float, float] | None, np.ndarray | None, bool]:
    """Return (apex, herniation points, bulge) for ``msu_grade`` from one slice's segmentation.

    The masks decide whether there is a herniation (``disc_material``: localised material) and
    where its deepest point is: a segmented disc with no material beyond it has none, whatever a
    keypoint model placed. Only where the slice has no disc segmentation at all is ``model_apex``
    (a keypoint model's apex, trusted only by the caller) used as is.
    """
    if disc_points is None:
        return (None if model_apex is None else as_point(lps_point("model_apex", model_apex))), None, False
    if material_points is None:
        return None, None, False
    posterior = lps_point("posterior_canal", posterior_canal) - lps_point("posterior_disc_margin", posterior_disc_margin)
    m = disc_material(disc_points, material_points, posterior)
    return m.apex, m.points, m.bulge
