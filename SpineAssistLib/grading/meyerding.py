"""Spondylolisthesis: Meyerding grade from three vertebral-body corners (GRADING.md).

P is the posterior-superior and Q the anterior-superior corner of the lower vertebral body, R the
posterior-inferior corner of the upper one, all on the mid-sagittal slice in LPS mm::

    u = (Q - P) / |Q - P|          (the lower body's superior endplate, posterior -> anterior)
    slip A = (R - P) . u           (mm; + anterolisthesis of the upper body, - retrolisthesis)
    slip % = 100 * A / |Q - P|     (signed here; GRADING.md's slip % is its absolute value)

Grade 0 below ``no_listhesis_percent`` (default 5 %), then I <= 25 %, II <= 50 %, III <= 75 %,
IV <= 100 %, V > 100 % (spondyloptosis). Boundaries are inclusive: a 25.0 % slip is grade I.

Usage::

    from SpineAssistLib.grading import meyerding_grade
    r = meyerding_grade(p=(0, 10, 0), q=(0, -30, 0), r=(0, 2, 5))   # 8 mm of a 40 mm endplate
    r.grade, r.slip_percent, r.direction      # (1, 20.0, 'antero')
    finding = r.to_finding()                  # a findings.ListhesisFinding for the panel / report
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from SpineAssistLib.findings import (
    Geometry,
    ListhesisFinding,
    Measurement,
    MeyerdingGrade,
)
from SpineAssistLib.grading.vectors import (
    BOUNDARY_TOLERANCE,
    PointLike,
    as_point,
    direction,
    lps_point,
)

# Upper slip % bound of grades I-IV (inclusive); anything beyond grade IV's bound is grade V.
MEYERDING_UPPER_BOUNDS_PERCENT: tuple[float, ...] = (25.0, 50.0, 75.0, 100.0)

# Below this a slip reads as no listhesis: corner keypoints and endplate osteophytes scatter by
# about 1-2 mm, i.e. ~5 % of a 40 mm endplate (GRADING.md; a setting the reader may change).
DEFAULT_NO_LISTHESIS_PERCENT = 5.0


def meyerding_from_percent(slip_percent: float, no_listhesis_percent: float = DEFAULT_NO_LISTHESIS_PERCENT) -> int:
    """Return the Meyerding grade 0-5 of a slip given in % of the endplate (sign ignored)."""
    s = abs(float(slip_percent))
    if not np.isfinite(s):
        raise ValueError(f"slip_percent must be a finite number; got {slip_percent!r}")
    if s < no_listhesis_percent - BOUNDARY_TOLERANCE:
        return 0
    for grade, bound in enumerate(MEYERDING_UPPER_BOUNDS_PERCENT, start=1):
        if s <= bound + BOUNDARY_TOLERANCE:
            return grade
    return 5


@dataclass(frozen=True)
class MeyerdingResult:
    """A Meyerding reading and what it was measured from.

    ``slip_mm`` and ``slip_percent`` are signed (+ antero, - retro); ``endplate_mm`` is |Q - P|;
    ``geometry`` holds P, Q, R, R's foot on the endplate line, and the lines to draw.
    """

    grade: int
    slip_mm: float
    slip_percent: float
    endplate_mm: float
    direction: str | None
    no_listhesis_percent: float
    geometry: Geometry = field(compare=False)

    @property
    def value(self) -> MeyerdingGrade:
        """The reading as the findings model keeps it."""
        return MeyerdingGrade(self.grade, self.slip_percent, self.direction)

    @property
    def measurements(self) -> list[Measurement]:
        """The numbers a reader can check, with units."""
        return [
            Measurement("slip_mm", self.slip_mm, "mm", "(R - P) . u: + anterolisthesis, - retrolisthesis"),
            Measurement("slip_percent", self.slip_percent, "%", "100 * slip / lower superior endplate length"),
            Measurement("endplate_mm", self.endplate_mm, "mm", "|Q - P|, lower body's superior endplate"),
            Measurement("no_listhesis_percent", self.no_listhesis_percent, "%", "below this: no listhesis"),
        ]

    def to_finding(self, confidence: float | None = None) -> ListhesisFinding:
        """Return a ``ListhesisFinding`` with this reading as the model's value and its evidence."""
        return ListhesisFinding(model=self.value, measurements=self.measurements,
                                geometry=self.geometry, confidence=confidence)


def meyerding_grade(
    p: PointLike,
    q: PointLike,
    r: PointLike,
    *,
    no_listhesis_percent: float = DEFAULT_NO_LISTHESIS_PERCENT,
    source: Mapping[str, str] | None = None,
) -> MeyerdingResult:
    """Return the Meyerding grade, signed slip (mm, %) and direction from corners P, Q, R (LPS mm).

    ``p``: lower body's posterior-superior corner; ``q``: its anterior-superior corner; ``r``: the
    upper body's posterior-inferior corner. ``source`` names the image (series/SOP instance UIDs).
    """
    threshold = float(no_listhesis_percent)
    if not np.isfinite(threshold) or not 0.0 <= threshold <= MEYERDING_UPPER_BOUNDS_PERCENT[0]:
        raise ValueError(f"no_listhesis_percent must be between 0 and 25 %; got {no_listhesis_percent!r}")
    P = lps_point("p (lower body's posterior-superior corner)", p)
    Q = lps_point("q (lower body's anterior-superior corner)", q)
    R = lps_point("r (upper body's posterior-inferior corner)", r)
    u, endplate_mm = direction("q and p", P, Q, "the lower body's superior endplate corners p and q")

    slip_mm = float((R - P) @ u)
    slip_percent = 100.0 * slip_mm / endplate_mm
    grade = meyerding_from_percent(slip_percent, threshold)
    direction_name = None if grade == 0 else ("antero" if slip_mm > 0 else "retro")

    foot = P + slip_mm * u  # R's foot on the endplate line: the slip is measured from P to here
    geometry = Geometry(
        points={"P": as_point(P), "Q": as_point(Q), "R": as_point(R), "R on endplate line": as_point(foot)},
        lines={
            "lower superior endplate": (as_point(P), as_point(Q)),
            "slip": (as_point(P), as_point(foot)),
            "R perpendicular": (as_point(R), as_point(foot)),
        },
        source=dict(source or {}),
    )
    return MeyerdingResult(grade, slip_mm, slip_percent, endplate_mm, direction_name, threshold, geometry)
