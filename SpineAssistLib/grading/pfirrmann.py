"""Disc degeneration: Pfirrmann measurements and a transparent rule-based grade (GRADING.md).

Measurements (sagittal T2, one slice; signal values are the image's raw, non-negative intensities):

- SIR, signal intensity ratio = mean nucleus signal / mean CSF signal (GRADING.md's "nucleus
  signal relative to CSF"; the nucleus, not the whole disc, is what Pfirrmann's table grades).
- nucleus/annulus contrast = (N - A) / (N + A) of the mean nucleus and annulus signals (Michelson
  contrast: 0 when they match, 1 when the annulus is black; scale-free, so no CSF needed).
- homogeneity as the nucleus's coefficient of variation, CV = standard deviation / mean (bands
  and grey patches raise it).
- DHI, disc height index = mean disc height / mean height of the adjacent vertebral bodies, each
  measured at the anterior, middle and posterior thirds (numbers in mm, or point pairs in LPS mm,
  which are also kept as lines to draw).

Rule (first match wins; thresholds are the constants below):

1. DHI < DHI_COLLAPSED: V if SIR < SIR_HYPOINTENSE (black and collapsed), else IV.
2. SIR < SIR_HYPOINTENSE: IV (hypointense).
3. contrast < CONTRAST_LOST: IV (nucleus/annulus distinction lost).
4. SIR >= SIR_HYPERINTENSE and contrast >= CONTRAST_CLEAR and DHI >= DHI_DECREASED:
   I if CV <= HOMOGENEOUS_CV_MAX (homogeneous), else II (inhomogeneous, e.g. bands).
5. otherwise III (intermediate signal, unclear distinction, or a bright disc that lost height).

The rule explains a classifier's grade beside its numbers and stands in when no classifier is
loaded. Its thresholds come from the table's wording and typical T2 values, not from a fit to
readers: calibrate them with ``evaluate`` before trusting the rule as a grader.

Usage::

    from SpineAssistLib.grading import pfirrmann_grade
    r = pfirrmann_grade(nucleus_signal=[900, 1000, 1100], annulus_signal=[300], csf_signal=[1000],
                        disc_heights=[10, 11, 9], upper_body_heights=[25, 24, 26], lower_body_heights=[25])
    r.grade, r.sir, r.dhi      # (1, 1.0, 0.4): bright, clear, homogeneous (CV 0.08); see r.reasons
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from SpineAssistLib.findings import (
    Geometry,
    Measurement,
    PfirrmannFinding,
    PfirrmannGrade,
)
from SpineAssistLib.grading.vectors import COINCIDENT_MM, Point, as_point, lps_point

# A normal nucleus on T2 is "isointense to CSF" (table, grades I-II); partial volume and coil
# shading keep a healthy nucleus at roughly 0.7-1.0 of CSF, so 0.7 and above reads as bright.
SIR_HYPERINTENSE = 0.70
# Below about a third of CSF the nucleus looks dark grey to black (grades IV-V).
SIR_HYPOINTENSE = 0.35
# Nucleus at least 1.5 x the annulus signal, (1.5 - 1) / (1.5 + 1) = 0.2: a clear distinction (I-II).
CONTRAST_CLEAR = 0.20
# Nucleus within ~15 % of the annulus, 0.15 / 2.15 ~ 0.07: the distinction is lost (IV-V).
CONTRAST_LOST = 0.07
# Noise alone gives a uniform nucleus a CV of a few %; horizontal bands (grade II) push it past 10 %.
HOMOGENEOUS_CV_MAX = 0.10
# Lumbar discs are about a third of the adjacent body height (DHI ~ 0.3-0.45); a quarter is
# clearly decreased, below 0.15 (~4 mm on a 27 mm body) the disc has collapsed (grade V).
DHI_DECREASED = 0.25
DHI_COLLAPSED = 0.15

_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V"}


def rule_based_pfirrmann(sir: float, contrast: float, homogeneity_cv: float, dhi: float) -> tuple[int, tuple[str, ...]]:
    """Return the rule-based Pfirrmann grade 1-5 and the reasons, from SIR, contrast, CV and DHI (ratios)."""
    for name, v in (("sir", sir), ("contrast", contrast), ("homogeneity_cv", homogeneity_cv), ("dhi", dhi)):
        if not np.isfinite(v):
            raise ValueError(f"{name} must be a finite number; got {v!r}")
    if dhi < DHI_COLLAPSED:
        if sir < SIR_HYPOINTENSE:
            return 5, (f"DHI {dhi:.2f} < {DHI_COLLAPSED}: collapsed", f"SIR {sir:.2f} < {SIR_HYPOINTENSE}: black")
        return 4, (f"DHI {dhi:.2f} < {DHI_COLLAPSED}: collapsed",
                   f"SIR {sir:.2f} >= {SIR_HYPOINTENSE}: not black, so IV rather than V")
    if sir < SIR_HYPOINTENSE:
        return 4, (f"SIR {sir:.2f} < {SIR_HYPOINTENSE}: hypointense", f"DHI {dhi:.2f} >= {DHI_COLLAPSED}: not collapsed")
    if contrast < CONTRAST_LOST:
        return 4, (f"nucleus/annulus contrast {contrast:.2f} < {CONTRAST_LOST}: distinction lost",)
    if sir >= SIR_HYPERINTENSE and contrast >= CONTRAST_CLEAR and dhi >= DHI_DECREASED:
        bright = (f"SIR {sir:.2f} >= {SIR_HYPERINTENSE}: hyperintense, isointense to CSF",
                  f"nucleus/annulus contrast {contrast:.2f} >= {CONTRAST_CLEAR}: clear distinction",
                  f"DHI {dhi:.2f} >= {DHI_DECREASED}: normal height")
        if homogeneity_cv <= HOMOGENEOUS_CV_MAX:
            return 1, (*bright, f"nucleus CV {homogeneity_cv:.2f} <= {HOMOGENEOUS_CV_MAX}: homogeneous")
        return 2, (*bright, f"nucleus CV {homogeneity_cv:.2f} > {HOMOGENEOUS_CV_MAX}: inhomogeneous")
    reasons = []
    if sir < SIR_HYPERINTENSE:
        reasons.append(f"SIR {sir:.2f} between {SIR_HYPOINTENSE} and {SIR_HYPERINTENSE}: intermediate")
    if contrast < CONTRAST_CLEAR:
        reasons.append(f"nucleus/annulus contrast {contrast:.2f} between {CONTRAST_LOST} and {CONTRAST_CLEAR}: unclear")
    if dhi < DHI_DECREASED:
        reasons.append(f"DHI {dhi:.2f} < {DHI_DECREASED}: decreased height")
    return 3, tuple(reasons)


@dataclass(frozen=True)
class PfirrmannResult:
    """Pfirrmann measurements of one disc, the rule-based grade and the reasons for it.

    Signal means are in the image's units; heights in mm; ``sir``, ``contrast``,
    ``homogeneity_cv`` and ``dhi`` are ratios. ``geometry`` holds the height lines when the
    heights were given as point pairs.
    """

    grade: int
    sir: float
    contrast: float
    homogeneity_cv: float
    dhi: float
    nucleus_mean: float
    annulus_mean: float
    csf_mean: float
    disc_height_mm: float
    vertebral_height_mm: float
    reasons: tuple[str, ...] = field(compare=False)
    geometry: Geometry = field(compare=False)

    @property
    def value(self) -> PfirrmannGrade:
        """The rule-based grade as the findings model keeps it."""
        return PfirrmannGrade(self.grade)

    @property
    def explanation(self) -> str:
        """One line a reader can follow, e.g. ``"rule: Pfirrmann III (SIR 0.52 between ...)"``."""
        return f"rule: Pfirrmann {_ROMAN[self.grade]} ({'; '.join(self.reasons)})"

    @property
    def measurements(self) -> list[Measurement]:
        """The numbers a reader can check, with units (UCUM ``1`` for ratios)."""
        return [
            Measurement("signal_intensity_ratio", self.sir, "1", "mean nucleus / mean CSF signal"),
            Measurement("nucleus_annulus_contrast", self.contrast, "1", "(nucleus - annulus) / (nucleus + annulus)"),
            Measurement("nucleus_cv", self.homogeneity_cv, "1", "nucleus signal SD / mean (homogeneity)"),
            Measurement("disc_height_index", self.dhi, "1", "mean disc height / mean adjacent body height"),
            Measurement("disc_height_mm", self.disc_height_mm, "mm", "mean of anterior, middle, posterior"),
            Measurement("vertebral_height_mm", self.vertebral_height_mm, "mm", "mean of the adjacent bodies' heights"),
            Measurement("rule_grade", float(self.grade), "1", self.explanation),
        ]

    def to_finding(self, model_grade: int | None = None, confidence: float | None = None) -> PfirrmannFinding:
        """Return a ``PfirrmannFinding``: the classifier's ``model_grade`` when given (the rule's
        grade and reasons kept as the ``rule_grade`` measurement), else the rule's grade."""
        grade = PfirrmannGrade(model_grade) if model_grade is not None else self.value
        return PfirrmannFinding(model=grade, measurements=self.measurements,
                                geometry=self.geometry, confidence=confidence)


def pfirrmann_grade(
    nucleus_signal: Any,
    annulus_signal: Any,
    csf_signal: Any,
    disc_heights: Sequence[Any],
    upper_body_heights: Sequence[Any] | None,
    lower_body_heights: Sequence[Any] | None,
    *,
    source: Mapping[str, str] | None = None,
) -> PfirrmannResult:
    """Return SIR, contrast, homogeneity, DHI and the rule-based Pfirrmann grade of one disc.

    Signals are arrays of voxel values (any shape; e.g. ``image[nucleus_mask]``) from the same
    sagittal T2 slice. Heights (mm) are numbers or (point, point) pairs in LPS mm, at the anterior,
    middle and posterior thirds; one of the adjacent bodies may be ``None`` (out of view).
    """
    nucleus = _signal("nucleus_signal", nucleus_signal)
    annulus = _signal("annulus_signal", annulus_signal)
    csf = _signal("csf_signal", csf_signal)
    nucleus_mean, annulus_mean, csf_mean = float(nucleus.mean()), float(annulus.mean()), float(csf.mean())
    if csf_mean <= 0:
        raise ValueError("csf_signal has mean 0: expected CSF voxels, which are bright on T2")
    if nucleus_mean + annulus_mean <= 0:
        raise ValueError("nucleus_signal and annulus_signal are all 0: expected the disc's voxels on T2")
    lines: dict[str, tuple[Point, Point]] = {}
    disc = _heights("disc_heights", disc_heights, lines, allow_zero=True)
    if upper_body_heights is None and lower_body_heights is None:
        raise ValueError("upper_body_heights and lower_body_heights are both missing: DHI needs at least one "
                         "adjacent vertebral body")
    bodies = [h for name, given in (("upper_body_heights", upper_body_heights), ("lower_body_heights", lower_body_heights))
              if given is not None for h in [_heights(name, given, lines, allow_zero=False)]]

    sir = nucleus_mean / csf_mean
    contrast = (nucleus_mean - annulus_mean) / (nucleus_mean + annulus_mean)
    cv = float(nucleus.std()) / nucleus_mean if nucleus_mean > 0 else 0.0
    disc_height = float(np.mean(disc))
    body_height = float(np.mean([np.mean(b) for b in bodies]))
    dhi = disc_height / body_height
    grade, reasons = rule_based_pfirrmann(sir, contrast, cv, dhi)
    return PfirrmannResult(grade, sir, contrast, cv, dhi, nucleus_mean, annulus_mean, csf_mean, disc_height,
                           body_height, reasons, Geometry(lines=lines, source=dict(source or {})))


def _signal(name: str, values: Any) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of T2 signal values; got {type(values).__name__}") from None
    if arr.size == 0:
        raise ValueError(f"{name} is empty: expected the T2 signal values of its region (is the mask empty?)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; expected finite T2 signal values")
    if np.any(arr < 0):
        raise ValueError(f"{name} has negative values (min {arr.min():g}); expected raw, non-negative T2 magnitude")
    return arr


def _heights(name: str, items: Sequence[Any], lines: dict[str, tuple[Point, Point]], allow_zero: bool) -> list[float]:
    """Return the heights (mm) of ``items``: numbers or point pairs (the pairs are added to ``lines``)."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) and not isinstance(items, np.ndarray):
        raise TypeError(f"{name} must be a list of heights (mm or point pairs); got {type(items).__name__}")
    if len(items) == 0:
        raise ValueError(f"{name} is empty: expected heights at the anterior, middle and posterior thirds")
    out = []
    expected = "finite and >= 0 mm" if allow_zero else "finite and > 0 mm (a vertebral body has height)"
    for i, item in enumerate(items):
        if np.ndim(item) == 0:
            if isinstance(item, bool) or not isinstance(item, (int, float, np.integer, np.floating)):
                raise TypeError(f"{name}[{i}] must be a height in mm or a pair of LPS points; got {item!r}")
            h = float(item)
        else:
            if len(item) != 2:
                raise ValueError(f"{name}[{i}] must be a height in mm or a pair of LPS points; got {len(item)} items")
            a, b = lps_point(f"{name}[{i}][0]", item[0]), lps_point(f"{name}[{i}][1]", item[1])
            h = float(np.linalg.norm(b - a))
            if h < COINCIDENT_MM:
                h = 0.0
            third = ("anterior", "middle", "posterior")[i] if len(items) == 3 else str(i)
            lines[f"{name.removesuffix('s').replace('_', ' ')} {third}"] = (as_point(a), as_point(b))
        if not np.isfinite(h) or h < 0 or (h == 0 and not allow_zero):
            raise ValueError(f"{name}[{i}] must be {expected}; got {h!r}")
        out.append(h)
    return out
