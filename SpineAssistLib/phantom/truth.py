"""Return the phantom's ground truth: named keypoints (LPS mm) and every level's grades as a
findings ``Assessment``, measured on the phantom's geometry the way GRADING.md measures them.

Keypoints:

- sagittal: the four corners of every vertebral body T11-L5 (S1: superior corners only), named
  ``anatomy.corner_name``; each sits ``CORNER_INSET_MM`` inside the sharp corner, on the body.
- axial: on every slice whose plane cuts its block's disc, the five ``anatomy.MSU_KEYPOINTS``:
  the medial end of each facet joint line, the mid-line posterior disc margin and the posterior
  margin of the thecal sac at the mid-line (each ``KEYPOINT_INSET_MM`` inside its structure), and
  the herniation apex (the herniation's point furthest behind the disc margin) or None.

The sagittal findings of schema 2 are the drawn ones (Modic type, endplate notches, narrowing,
bulge), the herniation seen on the sagittal view by ``spine.seen_on_sagittal``'s rule, and the
canal's AP diameter measured on the label map (``canal.measure_canal``), each with the numbers and
geometry it came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from SpineAssistLib.anatomy import CORNERS, HERNIATION_LABEL, MSU_KEYPOINTS, NEURAL_LABEL, THECAL_SAC_LABEL, corner_name
from SpineAssistLib.findings import (
    Assessment,
    CanalDiameter,
    Finding,
    Geometry,
    Level,
    Measurement,
    MeyerdingGrade,
    ModicType,
    PfirrmannGrade,
    Presence,
)
from SpineAssistLib.phantom.canal import CanalLine
from SpineAssistLib.phantom.params import NARROWED_HEIGHT_LOSS
from SpineAssistLib.phantom.spine import (
    KEYPOINT_INSET_MM,
    MODIC_BAND_MM,
    MODIC_SIGNAL,
    SAGITTAL_HERNIATION_HALF_WIDTH_MM,
    SAGITTAL_HERNIATION_MIN_DEPTH_MM,
    Disc,
    Spine,
    herniation_midline_depth,
    seen_on_sagittal,
)
from SpineAssistLib.phantom.tissues import TissueModel

LEFT_FACET, RIGHT_FACET, DISC_MARGIN, APEX, CANAL = MSU_KEYPOINTS
NO_LISTHESIS_PERCENT = 5.0


@dataclass
class AxialKeypoints:
    """The MSU keypoints of one axial slice (LPS mm) and what they measure."""

    slice_index: int
    level: str
    points: dict[str, list[float] | None]
    depth_mm: float | None = None
    facet_line_distance_mm: float = 0.0
    depth_ratio: float | None = None


def sagittal_corners(spine: Spine) -> dict[str, list[float]]:
    """Return every vertebral-body corner keypoint (T11-S1) in LPS mm, by ``anatomy.corner_name``."""
    out: dict[str, list[float]] = {}
    for v in spine.vertebrae:
        if v.label == 0 or v.sacral_index > 1:
            continue
        for c in CORNERS:
            if v.sacral_index == 1 and c.endswith("inferior"):
                continue
            out[corner_name(v.name, c)] = [float(q) for q in v.corner(c)]
    return out


def _ray_labels(model: TissueModel, d: Disc, a: float, bs: np.ndarray, n: float) -> np.ndarray:
    pts = d.center[None, :] + np.outer(np.full_like(bs, a), d.R[:, 0]) + np.outer(bs, d.R[:, 1]) + n * d.R[:, 2]
    _, lab = model.evaluate(pts[:, 0], pts[:, 1], pts[:, 2])
    return lab


def axial_keypoints(model: TissueModel, d: Disc, n: float) -> dict[str, list[float] | None] | None:
    """Return the MSU keypoints on the plane parallel to disc ``d`` at offset ``n`` mm, or None
    when that plane does not cut the disc at the mid-line."""
    step = 0.05
    bs = np.arange(0.0, 60.0, step)
    lab = _ray_labels(model, d, 0.0, bs, n)
    if lab[0] != d.label:
        return None
    end = int(np.argmax(lab != d.label))
    pdm_b = bs[end - 1] - KEYPOINT_INSET_MM
    sac = np.isin(lab, (THECAL_SAC_LABEL, NEURAL_LABEL))
    sac[: end] = False
    if sac.any():
        last = len(sac) - 1 - int(np.argmax(sac[::-1]))
        canal_b = bs[last] - KEYPOINT_INSET_MM
        # stay on the sac: step inwards past any root lying on its dorsal margin
        while canal_b > pdm_b and lab[int(round((canal_b - bs[0]) / step))] not in (THECAL_SAC_LABEL, NEURAL_LABEL):
            canal_b -= step
    else:
        # the sac is squeezed shut at the mid-line: take the canal's posterior part behind the herniation
        canal_b = d.canal_offset[1] + 0.6 * d.canal_ap
    canal_b = max(canal_b, pdm_b + 3.0)
    fa, fb = d.facet_medial
    a_off = d.canal_offset[0]
    th = d.facet_angle
    pts: dict[str, list[float] | None] = {}
    for name, side in ((LEFT_FACET, 1.0), (RIGHT_FACET, -1.0)):
        a = side * fa + a_off + 0.4 * side * math.sin(th)
        b = fb + 0.4 * math.cos(th)
        pts[name] = [float(q) for q in d.to_lps(a, b, n)]
    pts[DISC_MARGIN] = [float(q) for q in d.to_lps(0.0, pdm_b, n)]
    pts[APEX] = None
    h = d.herniation
    if h is not None:
        aa = np.arange(h.center_a - h.half_width, h.center_a + h.half_width, 0.1)
        bb = np.arange(pdm_b - 6.0, h.apex_b + 1.0, 0.1)
        A, B = np.meshgrid(aa, bb, indexing="ij")
        P = d.center + A.ravel()[:, None] * d.R[:, 0] + B.ravel()[:, None] * d.R[:, 1] + n * d.R[:, 2]
        _, hl = model.evaluate(P[:, 0], P[:, 1], P[:, 2])
        hit = hl == HERNIATION_LABEL
        if hit.any():
            bh = B.ravel()[hit]
            ah = A.ravel()[hit]
            best = bh.max()
            top = np.abs(bh - best) < 0.05
            peak = h.center_a if h.peak_a is None else h.peak_a
            a_apex = float(ah[top][np.argmin(np.abs(ah[top] - peak))])
            b_apex = best - KEYPOINT_INSET_MM
            if b_apex - pdm_b > 1.0:
                pts[APEX] = [float(q) for q in d.to_lps(a_apex, b_apex, n)]
    pts[CANAL] = [float(q) for q in d.to_lps(0.0, canal_b, n)]
    return {k: pts[k] for k in MSU_KEYPOINTS}


def msu_ratio(points: dict[str, Any]) -> tuple[float | None, float, float | None]:
    """Return (depth mm, disc margin -> intra-facet line mm, r) from one slice's MSU keypoints."""
    FL, FR = np.array(points[LEFT_FACET]), np.array(points[RIGHT_FACET])
    D, C = np.array(points[DISC_MARGIN]), np.array(points[CANAL])
    lateral = (FL - FR) / np.linalg.norm(FL - FR)
    post = (C - D) - ((C - D) @ lateral) * lateral
    post /= np.linalg.norm(post)
    h = float((0.5 * (FL + FR) - D) @ post)
    if points[APEX] is None:
        return None, h, None
    depth = float((np.array(points[APEX]) - D) @ post)
    return depth, h, depth / h


def meyerding(upper_pi: np.ndarray, lower_ps: np.ndarray, lower_as: np.ndarray) -> tuple[float, float, float]:
    """Return (slip mm, signed slip %, endplate mm) from corners R, P, Q as GRADING.md defines them."""
    u = lower_as - lower_ps
    endplate = float(np.linalg.norm(u))
    u = u / endplate
    slip = float((upper_pi - lower_ps) @ u)
    return slip, 100.0 * slip / endplate, endplate


def meyerding_grade(slip_percent: float) -> int:
    x = abs(slip_percent)
    if x < NO_LISTHESIS_PERCENT:
        return 0
    for g, bound in enumerate((25.0, 50.0, 75.0, 100.0), start=1):
        if x <= bound:
            return g
    return 5


def _disc_height_index(d: Disc) -> tuple[float, float]:
    """Return (mean disc height mm at anterior/middle/posterior thirds, DHI)."""
    lo, up = d.lower, d.upper
    heights = []
    for f in (-0.6, 0.0, 0.6):
        b = f * 0.5 * (lo.half_depth + up.half_depth)
        t = math.tan(lo.wedge / 2)
        p_lo = lo.to_lps(0.0, f * lo.half_depth, lo.height / 2 - f * lo.half_depth * t)
        tu = math.tan(up.wedge / 2)
        p_up = up.to_lps(0.0, f * up.half_depth, -up.height / 2 + f * up.half_depth * tu)
        heights.append(float(np.linalg.norm(p_up - p_lo)))
        del b
    mean_h = float(np.mean(heights))
    return mean_h, mean_h / (0.5 * (lo.height + up.height))


@dataclass
class Truth:
    """Keypoints and grades of one phantom study."""

    sagittal: dict[str, list[float]]
    axial: list[dict[str, Any]] = field(default_factory=list)   # one per slice with a level
    assessment: Assessment | None = None


def _truth(finding: Finding, value: Any, measurements: list[Measurement] | None = None,
           geometry: Geometry | None = None) -> None:
    """Set ``finding``'s model value to the truth, assessed, with its evidence."""
    finding.model = value
    finding.status, finding.reason = "assessed", ""
    finding.measurements = list(measurements or [])
    finding.geometry = geometry or Geometry()


def _lps(p) -> tuple[float, float, float]:
    return tuple(float(q) for q in p)  # type: ignore[return-value]


def sagittal_findings(lv: Level, d: Disc, canal: CanalLine | None, disc_height_mm: float, sag_uid: str,
                      sop_at: Callable[[Any], str]) -> None:
    """Set ``lv``'s Modic, endplate, narrowing, bulging, sagittal herniation and canal truth from
    disc ``d``; ``canal`` is its measured canal line (None: the sac is closed there), ``sop_at`` the
    SOP Instance UID of the sagittal slice nearest an LPS point."""
    def source(p) -> dict[str, str]:
        return {"series_instance_uid": sag_uid, "sop_instance_uid": sop_at(p)}

    t = d.modic_type
    _truth(lv.modic, ModicType(t), [Measurement(
        "band_signal_ratio", MODIC_SIGNAL[t], "1",
        f"T2 signal of the marrow within {MODIC_BAND_MM:g} mm of both endplates / normal marrow")] if t else [])
    for which, v in (("upper", d.upper), ("lower", d.lower)):
        notch = getattr(d, f"defect_{which}")
        finding = getattr(lv, f"endplate_{which}")
        if notch is None:
            _truth(finding, Presence(False))
            continue
        centre = _lps(notch.center(v))
        _truth(finding, Presence(True), [
            Measurement("defect_depth_mm", notch.depth, "mm", "notch depth into the body, from the endplate"),
            Measurement("defect_width_mm", 2 * notch.half_width, "mm", "notch extent across the endplate, left-right"),
            Measurement("defect_length_mm", 2 * notch.half_length, "mm", "notch extent along the endplate, antero-posterior"),
        ], Geometry(points={"endplate defect": centre}, source=source(centre)))
    _truth(lv.narrowing, Presence(bool(d.narrowed)), [
        Measurement("height_loss", d.height_loss, "1",
                    f"fraction of the healthy disc height lost; narrowed from {NARROWED_HEIGHT_LOSS:g}"),
        Measurement("disc_height_mm", disc_height_mm, "mm", "mean of anterior, middle, posterior disc heights"),
    ])
    bulging = d.msu.size == 0 and d.msu.bulge
    _truth(lv.bulging, Presence(bool(bulging)),
           [Measurement("bulge_mm", d.bulge_mm, "mm", "disc beyond its margin all round, at mid-height")] if bulging else [])
    depth, a, b = herniation_midline_depth(d)
    seen = seen_on_sagittal(d)
    geometry = Geometry()
    if seen:
        apex = _lps(d.to_lps(a, b, 0.0))
        geometry = Geometry(points={"herniation apex": apex}, source=source(apex))
    _truth(lv.herniation_sag, Presence(bool(seen)), [Measurement(
        "midline_depth_mm", depth, "mm", f"herniation depth behind the posterior disc margin within "
        f"{SAGITTAL_HERNIATION_HALF_WIDTH_MM:g} mm of the mid-line; seen from {SAGITTAL_HERNIATION_MIN_DEPTH_MM:g} mm")],
        geometry)
    if canal is None:
        _truth(lv.canal, CanalDiameter("absolute"), [Measurement(
            "canal_ap_mm", 0.0, "mm", "the sac is closed on the canal line at this disc")])
        return
    ant, post = _lps(canal.anterior), _lps(canal.posterior)
    _truth(lv.canal, CanalDiameter.measured(canal.ap_mm), [Measurement(
        "canal_ap_mm", canal.ap_mm, "mm", "thecal sac antero-posterior diameter on the disc's mid-sagittal plane, "
        "from the posterior disc margin perpendicular to the canal")],
        Geometry(points={"canal anterior wall": ant, "canal posterior wall": post}, lines={"canal AP": (ant, post)},
                 source=source(np.add(ant, post) / 2)))


def build_assessment(spine: Spine, study_uid: str, sag_uid: str, ax_uid: str,
                     corners: dict[str, list[float]], axial: list[dict[str, Any]], sag_mid_sop: str,
                     canal: dict[str, CanalLine | None] | None = None,
                     sop_at: Callable[[Any], str] | None = None) -> Assessment:
    """Return the truth Assessment: every level from T12-L1 down, model value = truth value.

    ``canal`` (each level's measured canal line) and ``sop_at`` (the sagittal slice nearest an LPS
    point) give the sagittal findings of schema 2; without them those stay not assessed."""
    p = spine.params
    levels = []
    for d in spine.discs:
        if d.label == 0 or d.name.startswith("T11"):
            continue
        lv = Level(d.name, disc_center=tuple(float(q) for q in d.center))
        # Pfirrmann: the drawn grade, with the numbers it was drawn from
        mean_h, dhi = _disc_height_index(d)
        lv.pfirrmann.model = PfirrmannGrade(d.grade)
        lv.pfirrmann.measurements = [
            Measurement("disc_height_mm", mean_h, "mm", "mean of anterior, middle, posterior disc heights"),
            Measurement("dhi", dhi, "1", "disc height / mean adjacent vertebral body height"),
            Measurement("height_loss", d.height_loss, "1", "fraction of the healthy disc height lost"),
            Measurement("nucleus_signal_ratio", d.nucleus_signal, "1", "phantom nucleus T2 signal / CSF signal"),
        ]
        # listhesis from the corners
        upper, lower = d.upper.name, d.lower.name
        R = np.array(corners[corner_name(upper, "posterior-inferior")])
        P = np.array(corners[corner_name(lower, "posterior-superior")])
        Q = np.array(corners[corner_name(lower, "anterior-superior")])
        slip_mm, slip_pct, endplate = meyerding(R, P, Q)
        grade = meyerding_grade(slip_pct)
        direction = None if grade == 0 else ("antero" if slip_pct > 0 else "retro")
        lv.listhesis.model = MeyerdingGrade(grade, slip_pct, direction)
        lv.listhesis.measurements = [
            Measurement("slip_mm", slip_mm, "mm", "(R - P) . u, + anterolisthesis"),
            Measurement("slip_percent", slip_pct, "%", "100 * slip / |Q - P|"),
            Measurement("endplate_mm", endplate, "mm", "|Q - P|, lower body's superior endplate"),
        ]
        lv.listhesis.geometry = Geometry(points={"P": tuple(P), "Q": tuple(Q), "R": tuple(R)},
                                         lines={"lower superior endplate": (tuple(P), tuple(Q))},
                                         source={"series_instance_uid": sag_uid, "sop_instance_uid": sag_mid_sop})
        # herniation: the drawn MSU grade, measured on the slice of maximal extrusion
        slices = [s for s in axial if s["level"] == d.name]
        if d.name not in p.lumbar_levels or not slices:
            lv.ldh.status = "not_assessed"
            lv.ldh.reason = "no axial slice through this disc"
        else:
            lv.ldh.model = d.msu
            best = max(slices, key=lambda s: (s["depth_ratio"] or -1.0, -abs(s["offset_mm"])))
            ms = [Measurement("facet_line_distance_mm", best["facet_line_distance_mm"], "mm",
                              "posterior disc margin to intra-facet line at the mid-line")]
            if best["depth_mm"] is not None:
                ms += [Measurement("depth_mm", best["depth_mm"], "mm", "disc margin to herniation apex, perpendicular to the intra-facet line"),
                       Measurement("depth_ratio", best["depth_ratio"], "1", "r = depth / facet line distance")]
            lv.ldh.measurements = ms
            pts = {k: tuple(v) for k, v in best["keypoints"].items() if v is not None}
            lines = {"intra-facet line": (pts[LEFT_FACET], pts[RIGHT_FACET])}
            lv.ldh.geometry = Geometry(points=pts, lines=lines,
                                       source={"series_instance_uid": ax_uid, "sop_instance_uid": best["sop_instance_uid"]})
        if canal is not None and sop_at is not None:
            sagittal_findings(lv, d, canal.get(d.name), mean_h, sag_uid, sop_at)
        levels.append(lv)
    return Assessment(study_instance_uid=study_uid, levels=levels, sagittal_series_uid=sag_uid, axial_series_uid=ax_uid,
                      created=f"{p.study_date[:4]}-{p.study_date[4:6]}-{p.study_date[6:]}T12:00:00+00:00",
                      settings={"source": "SpineAssist phantom", "seed": p.seed,
                                "no_listhesis_percent": NO_LISTHESIS_PERCENT})
