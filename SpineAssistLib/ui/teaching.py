"""Teaching mode: how each grade is built, step by step, from the finding's own lines and numbers.

Herniation (MSU): intra-facet line -> quarters (zones A, B, C) -> herniation extent (zone, side)
-> depth ratio (size). Spondylolisthesis (Meyerding): corners -> slip line -> percentage.
Disc degeneration (Pfirrmann): disc and CSF signal -> their ratio and contrast -> height -> the rule.
Central canal (Verbiest): the antero-posterior line on the mid-sagittal slice -> its length against
the rule's thresholds. The classifications of the sagittal series (Modic, endplate defects,
narrowing, bulging, herniation on the sagittal view): what the grade means, then the result.

Each step names the geometry lines and points to show (cumulative: a step shows what the earlier
steps built, too) and the measurement it explains. Names are the ones ``SpineAssistLib.grading``
writes into findings.

Usage::

    from SpineAssistLib.ui.teaching import teaching_steps
    for step in teaching_steps(level, "listhesis"):
        print(step.title, "-", step.text)      # Corners - P is the posterior-superior corner ...
"""

from __future__ import annotations

from dataclasses import dataclass

from SpineAssistLib.anatomy import MSU_KEYPOINTS
from SpineAssistLib.findings import (
    ABSOLUTE_STENOSIS_BELOW_MM,
    FINDING_KINDS,
    FINDING_TITLES,
    RELATIVE_STENOSIS_UP_TO_MM,
    SAGITTAL_GRADING_KINDS,
    Finding,
    FindingKind,
    Level,
)
from SpineAssistLib.ui.panel_model import value_text

LEFT_FACET, RIGHT_FACET, DISC_MARGIN, APEX, CANAL = MSU_KEYPOINTS
ZONE_BOUNDARIES = ("zone boundary A|B left", "zone boundary B|C left", "zone boundary A|B right",
                   "zone boundary B|C right")


@dataclass(frozen=True)
class TeachingStep:
    """One step: a title, a short text, the lines and points to show, and the measurement it explains."""

    title: str
    text: str
    lines: tuple[str, ...] = ()
    points: tuple[str, ...] = ()
    measurement: str | None = None


def _num(f: Finding, name: str, fmt: str = "{:.1f}") -> str | None:
    m = f.measurement(name)
    return None if m is None else fmt.format(m.value)


def _present(f: Finding, names: tuple[str, ...], lines: bool = True) -> tuple[str, ...]:
    have = f.geometry.lines if lines else f.geometry.points
    return tuple(n for n in names if n in have)


def _herniation_steps(level: Level) -> list[TeachingStep]:
    f = level.ldh
    v = f.value
    width = _num(f, "intra_facet_width_mm")
    h = _num(f, "facet_line_distance_mm")
    depth = _num(f, "herniation_depth_mm")
    ratio = _num(f, "depth_ratio", "{:.2f}")
    left, right = _num(f, "extent_left_mm"), _num(f, "extent_right_mm")
    s1 = ("intra-facet line",)
    s2 = s1 + ZONE_BOUNDARIES
    s3 = s2 + ("herniation extent",)
    s4 = s3 + ("facet line distance", "herniation depth")
    zone = f"zone {v.zone}" + (f", {v.side}" if v.side else "") if v is not None and v.size > 0 else "no zone"
    return [
        TeachingStep(
            "Intra-facet line",
            "On the axial slice of maximal extrusion, join the medial margins of the left and right facet joints."
            + (f" Here it is {width} mm long." if width else ""),
            _present(f, s1), _present(f, (LEFT_FACET, RIGHT_FACET), lines=False), "intra_facet_width_mm"),
        TeachingStep(
            "Quarters: zones A, B, C",
            "Split the line into quarters from its midpoint. The middle two quarters are zone A (central), the "
            "outer quarters zone B (paracentral); beyond the facet margins is zone C (foraminal).",
            _present(f, s2), _present(f, ("intra-facet midpoint", "quarter point left", "quarter point right"),
                                      lines=False)),
        TeachingStep(
            "Herniation extent: zone and side",
            "Mark how far the herniation reaches to each side of the mid-line; the zones it covers give the zone "
            "(A, AB, B, BC, C) and the side it reaches gives left, right or bilateral."
            + (f" It reaches {left} mm left and {right} mm right of the mid-line: {zone}." if left and right
               else f" Result: {zone}."),
            _present(f, s3), _present(f, (APEX,), lines=False), "extent_left_mm"),
        TeachingStep(
            "Depth ratio: size",
            "Measure h, from the posterior disc margin to the intra-facet line, and the herniation depth, from the "
            "disc margin to its apex, both perpendicular to the line. Size 1 if depth/h <= 0.5, 2 up to 1, 3 beyond."
            + (f" Here {depth} mm / {h} mm = {ratio}." if depth and h and ratio else
               f" Here h is {h} mm and there is no apex: no herniation." if h else ""),
            _present(f, s4), _present(f, (DISC_MARGIN, APEX, CANAL), lines=False), "depth_ratio"),
        _result_step(level, "ldh", _present(f, s4)),
    ]


def _listhesis_steps(level: Level) -> list[TeachingStep]:
    f = level.listhesis
    upper, _, lower = level.name.partition("-")
    slip_mm, endplate, pct = _num(f, "slip_mm"), _num(f, "endplate_mm"), _num(f, "slip_percent")
    s2 = ("lower superior endplate", "R perpendicular", "slip")
    return [
        TeachingStep(
            "Corners",
            f"On the mid-sagittal slice mark P, the posterior-superior corner of {lower}, Q, its anterior-superior "
            f"corner, and R, the posterior-inferior corner of {upper}.",
            (), _present(f, ("P", "Q", "R"), lines=False)),
        TeachingStep(
            "Slip line",
            "Draw the superior endplate of the lower body (P to Q) and drop R perpendicular onto it; the slip is "
            "the distance from P to that foot, forward (anterolisthesis) or backward (retrolisthesis)."
            + (f" Here {slip_mm} mm on a {endplate} mm endplate." if slip_mm and endplate else ""),
            _present(f, s2), _present(f, ("P", "Q", "R", "R on endplate line"), lines=False), "slip_mm"),
        TeachingStep(
            "Percentage: Meyerding grade",
            "Slip % = 100 x slip / endplate length. Below the no-listhesis threshold (5 %): none; up to 25 % grade I, "
            "50 % II, 75 % III, 100 % IV, beyond V (spondyloptosis)."
            + (f" Here {pct} %." if pct else ""),
            _present(f, s2), _present(f, ("P", "Q", "R", "R on endplate line"), lines=False), "slip_percent"),
        _result_step(level, "listhesis", _present(f, s2)),
    ]


def _pfirrmann_steps(level: Level) -> list[TeachingStep]:
    f = level.pfirrmann
    sir, contrast = _num(f, "signal_intensity_ratio", "{:.2f}"), _num(f, "nucleus_annulus_contrast", "{:.2f}")
    cv, dhi = _num(f, "nucleus_cv", "{:.2f}"), _num(f, "disc_height_index", "{:.2f}")
    heights = tuple(sorted(n for n in f.geometry.lines if "height" in n))
    rule = f.measurement("rule_grade")
    return [
        TeachingStep(
            "Disc and CSF signal",
            "On the mid-sagittal T2 slice compare the nucleus with the cerebrospinal fluid: a healthy nucleus is "
            "bright, nearly as bright as CSF (ratio 0.7 or more); below about 0.35 it is dark (grade IV-V)."
            + (f" Here nucleus / CSF = {sir}." if sir else ""),
            (), (), "signal_intensity_ratio"),
        TeachingStep(
            "Nucleus and annulus",
            "Is the nucleus clearly brighter than the annulus (contrast 0.2 or more), and is it homogeneous "
            "(grade I) or banded (grade II)?"
            + (f" Here contrast {contrast}, nucleus variation {cv}." if contrast and cv else ""),
            (), (), "nucleus_annulus_contrast"),
        TeachingStep(
            "Disc height",
            "Disc height index = mean disc height / mean height of the adjacent bodies, at the anterior, middle and "
            "posterior thirds: about 0.3-0.45 is normal, below 0.25 decreased, below 0.15 collapsed (grade V)."
            + (f" Here {dhi}." if dhi else ""),
            heights, (), "disc_height_index"),
        TeachingStep(
            "The rule",
            (rule.description if rule is not None and rule.description else
             "The grade follows from signal, contrast, homogeneity and height (Pfirrmann 2001).")
            + " A classifier's grade may differ from the rule's; the reader decides.",
            heights, (), "rule_grade"),
        _result_step(level, "pfirrmann", heights),
    ]


def _mm(x: float) -> str:
    return f"{x:g}"


def _canal_steps(level: Level) -> list[TeachingStep]:
    f = level.canal
    lines, points = tuple(f.geometry.lines), tuple(f.geometry.points)
    measured = f.model if f.model is not None and f.model.ap_mm is not None else f.value
    ap = measured.ap_mm if measured is not None else None
    if lines:
        here = f" Here the line is {ap:.1f} mm long." if ap is not None else ""
    elif ap is not None:
        here = f" No line was kept for this level; the diameter recorded is {ap:.1f} mm."
    else:
        here = " No diameter was measured at this level."
    absolute, relative = _mm(ABSOLUTE_STENOSIS_BELOW_MM), _mm(RELATIVE_STENOSIS_UP_TO_MM)
    rule = (f"Verbiest's rule grades the diameter: below {absolute} mm absolute stenosis, {absolute} to {relative} mm "
            f"relative stenosis, above {relative} mm no stenosis. Verbiest measured the bony canal; the canal seen on "
            "T2 is narrower, so the rule finds stenosis more often there: a measurement to check.")
    if ap is not None:
        grade = measured.stenosis  # type: ignore[union-attr]
        rule += f" Here {ap:.1f} mm: {'no' if grade == 'none' else grade} stenosis."
    return [
        TeachingStep(
            "Canal AP line",
            "On the mid-sagittal slice at the disc, measure the central canal from front to back, perpendicular to "
            "the canal: from its anterior wall (the posterior margin of the disc) to its posterior wall (the "
            "ligamentum flavum)." + here,
            lines, points, "canal_ap_mm"),
        TeachingStep("Verbiest's rule: stenosis grade", rule, lines, points, "canal_ap_mm"),
        _result_step(level, "canal", lines),
    ]


# What each classification of the sagittal series says, for teaching mode.
_MEANINGS: dict[str, str] = {
    "modic": ("Modic changes are signal changes of the vertebral marrow beside the endplates: type 1 dark on T1 and "
              "bright on T2 (oedema, active), type 2 bright on T1 and T2 (fat), type 3 dark on both (sclerosis). One "
              "type is given for the endplates above and below the disc together."),
    "endplate_upper": ("An endplate defect is a break, erosion or Schmorl's node in the endplate. This one is the "
                       "endplate above the disc: the lower endplate of the vertebra above."),
    "endplate_lower": ("An endplate defect is a break, erosion or Schmorl's node in the endplate. This one is the "
                       "endplate below the disc: the upper endplate of the vertebra below."),
    "narrowing": "Disc narrowing: the disc space is lower than the disc above it, or than expected at its level.",
    "bulging": ("Disc bulging: the disc reaches beyond the margins of the vertebral bodies over a broad base, "
                "without a focal herniation."),
    "herniation_sag": ("Herniation on the sagittal view: disc material displaced focally beyond the disc space. Its "
                       "MSU grade (size, zone, side) needs the axial series."),
}


def _classification_steps(level: Level, kind: FindingKind) -> list[TeachingStep]:
    f = level.finding(kind)
    lines, points = tuple(f.geometry.lines), tuple(f.geometry.points)
    how = (" Graded by the model from the disc crop (the sagittal slices around the disc); no lines or points are "
           "measured for it." if f.model is not None and not (lines or points) else "")
    title = FINDING_TITLES[kind][0].upper() + FINDING_TITLES[kind][1:]
    return [TeachingStep(f"{title}: what it means", _MEANINGS[kind] + how, lines, points),
            _result_step(level, kind, lines)]


def _result_step(level: Level, kind: FindingKind, lines: tuple[str, ...]) -> TeachingStep:
    f = level.finding(kind)
    if f.status != "assessed":
        text = f"Not assessed{': ' + f.reason if f.reason else ''}."
    elif f.value is None:
        text = "No value: the model gave none and no reader has set one."
    elif f.corrected:
        text = (f"Reader's value: {value_text(kind, f.value)}; the model said {value_text(kind, f.model) or 'nothing'}. "
                "Both are kept.")
    else:
        text = f"Model's value: {value_text(kind, f.value)}. Correct it in the table if you read it differently."
    return TeachingStep(f"Result at {level.name}", text, lines, ())


def teaching_steps(level: Level, kind: FindingKind) -> list[TeachingStep]:
    """Return the steps that build one finding's grade at ``level`` (kind: any of FINDING_KINDS)."""
    if kind not in FINDING_KINDS:
        raise ValueError(f"kind must be one of {', '.join(FINDING_KINDS)}; got {kind!r}")
    if kind in SAGITTAL_GRADING_KINDS:
        return _classification_steps(level, kind)
    return {"ldh": _herniation_steps, "listhesis": _listhesis_steps, "pfirrmann": _pfirrmann_steps,
            "canal": _canal_steps}[kind](level)
