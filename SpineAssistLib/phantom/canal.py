"""Return the central canal's antero-posterior diameter at a disc, read off the phantom's label map,
and narrow the canal to the diameter the parameters ask for (a central stenosis).

The diameter is the thecal sac's (label ``THECAL_SAC_LABEL`` with the cord and roots inside it,
``NEURAL_LABEL``), measured on the disc's mid-sagittal plane along the line that starts at the
posterior disc margin on the mid-line (the disc's mid-plane) and runs perpendicular to the canal
(the spinal curve's posterior axis there). Whatever narrows the sac on that line narrows the
diameter: a herniation or bulge in front, a slipped body, a stenosis drawn here.

A stenosis asked for is drawn when the spine's first ``TissueModel`` is made (it measures on that
model's labels), so every render of the spine has it.

Usage::

    spine = build_spine(sample_params(3, canal_ap_mm={"L4-L5": 8.5}))
    model = TissueModel(spine)                                          # narrows the canal at L4-L5
    line = measure_canal(model, spine.disc("L4-L5"))
    line.ap_mm, line.anterior, line.posterior                           # 8.5 (+-0.03), LPS mm
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from SpineAssistLib.anatomy import NEURAL_LABEL, THECAL_SAC_LABEL
from SpineAssistLib.phantom.spine import Disc, Spine

if TYPE_CHECKING:       # tissues imports this module to narrow the canal of the spine it renders
    from SpineAssistLib.phantom.tissues import TissueModel

CANAL_LABELS = (THECAL_SAC_LABEL, NEURAL_LABEL)
LINE_STEP_MM = 0.02          # sampling along the line: the diameter is exact to this
LINE_FROM_MM = -2.0          # the line is sampled from this far in front of the disc margin ...
LINE_TO_MM = 45.0            # ... to this far behind it
FIT_TOLERANCE_MM = 0.03      # a stenosis asked for is drawn to this
FIT_ROUNDS = 6


@dataclass
class CanalLine:
    """The sac's antero-posterior extent on one disc's canal line: its two ends (LPS mm)."""

    level: str
    anterior: np.ndarray
    posterior: np.ndarray
    s: float                  # arc length of the line's start along the spinal curve (mm)

    @property
    def ap_mm(self) -> float:
        """Return the antero-posterior diameter (mm)."""
        return float(np.linalg.norm(self.posterior - self.anterior))


def canal_line(spine: Spine, disc: Disc) -> tuple[np.ndarray, np.ndarray, float]:
    """Return (start LPS mm, unit direction, arc length s) of the disc's canal line: from the
    posterior disc margin at the mid-line of the disc's mid-plane, perpendicular to the canal, in
    the disc's mid-sagittal plane."""
    start = disc.to_lps(0.0, disc.disc_margin_b, 0.0)
    a, b, s = (float(q) for q in spine.straighten(*start))
    direction = spine.unstraighten(a, b + 10.0, s) - spine.unstraighten(a, b, s)
    lateral = disc.R[:, 0]
    direction = direction - (direction @ lateral) * lateral
    return start, direction / np.linalg.norm(direction), s


def measure_canal(model: TissueModel, disc: Disc) -> CanalLine | None:
    """Return the sac's extent on ``disc``'s canal line: the first run of sac labels behind the disc
    margin; None when the line meets no sac (a large herniation has closed the canal there)."""
    start, direction, s = canal_line(model.spine, disc)
    t = np.arange(LINE_FROM_MM, LINE_TO_MM, LINE_STEP_MM)
    pts = start[None, :] + t[:, None] * direction[None, :]
    _, lab = model.evaluate(pts[:, 0], pts[:, 1], pts[:, 2])
    hit = np.isin(lab, CANAL_LABELS)
    if not hit.any():
        return None
    first = int(np.argmax(hit))
    after = np.nonzero(~hit[first:])[0]
    last = first + (int(after[0]) - 1 if after.size else len(hit) - 1 - first)
    half = LINE_STEP_MM / 2
    return CanalLine(disc.name, start + (t[first] - half) * direction, start + (t[last] + half) * direction, s)


def narrow_canal(spine: Spine, model: TissueModel) -> None:
    """Narrow the sac at each disc ``params.canal_ap_mm`` names to the diameter asked for (mm),
    measuring on ``model`` (a tissue model of ``spine``); once per spine.

    The sac's posterior wall is pushed forward (tissues.py draws a hypertrophied ligamentum flavum
    there) until the measured diameter is the one asked for. Raises ValueError when the canal drawn
    there is already narrower than asked: the phantom narrows a canal, it does not widen it.
    """
    if spine.canal_fitted:
        return
    spine.canal_fitted = True
    for level, target in spine.params.canal_ap_mm.items():
        if target is None:
            continue
        disc = spine.disc(level)
        line = measure_canal(model, disc)
        natural = line.ap_mm if line is not None else 0.0
        if line is None or target > natural + FIT_TOLERANCE_MM:
            raise ValueError(f"canal_ap_mm[{level!r}] asks for {target:.2f} mm, but the canal drawn there is "
                             f"{natural:.2f} mm (a herniation, bulge or slip narrows it): ask for less, or for "
                             f"nothing at that level")
        disc.canal_s = line.s
        disc.canal_flat_mm = max(3.0, 0.5 * disc.mid_height)
        narrowing = max(natural - target, 0.0)
        for _ in range(FIT_ROUNDS):
            disc.canal_narrowing_mm = narrowing
            fitted = measure_canal(model, disc) if narrowing > 0 else line
            measured = fitted.ap_mm if fitted is not None else 0.0
            if abs(measured - target) <= FIT_TOLERANCE_MM:
                break
            narrowing = max(narrowing + measured - target, 0.0)
        else:
            raise ValueError(f"canal_ap_mm[{level!r}]: could not narrow the canal to {target:.2f} mm "
                             f"(got {measured:.2f} mm)")
