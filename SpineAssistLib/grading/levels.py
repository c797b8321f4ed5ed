"""Level labelling: name detected vertebral bodies and discs (T11 ... S1), anchored on the sacrum.

Input: name-less detections of vertebral bodies and discs, each a centroid in LPS mm (from a box or
a mask), one vertebra flagged as the sacrum (the S1 body). The rule:

1. Order along the spine: project the centroids on their principal axis, oriented from the sacrum
   cranially (robust to lordosis, which bends the column by far less than 90 degrees).
2. Drop detections off the spine line: a quadratic (few points: linear) fit of the centroids'
   offset from the axis as a function of position; a detection farther than ``OFF_LINE_FRACTION``
   of the vertebral spacing from it is dropped with a warning (never the sacrum).
3. Walk cranially from the sacrum on a lattice of half vertebral spacings: vertebrae sit on even
   steps (S1 = 0), discs on odd steps. Each detection takes the step of the right parity nearest
   to its distance from the previous one, so a missed disc or vertebra leaves a gap and the names
   above it stay right. A detection less than ``OVERLAP_STEPS`` half-steps from the previous one
   overlaps it: the less confident one is dropped with a warning.
4. Name: vertebra step 2k is the k-th vertebra up from S1 (L5 ... L1, T12, T11 for five lumbar
   vertebrae; ``lumbar_count`` 4 or 6 for transitional anatomy); a disc takes the names of the
   vertebrae above and below it (``L4-L5``). A disc missed between two detected vertebrae is placed
   midway between them and flagged ``detected=False``.

A reader's relabel moves every finding with its disc: ``relabel_levels`` renames each
``findings.Level`` in place through ``Level.rename`` (recording the correction); the findings are
the level's attributes and ``disc_center`` stays, so nothing is re-attached by name.

Usage::

    from SpineAssistLib.grading import SpineDetection, label_levels, relabel_levels
    dets = [SpineDetection("vertebra", (0, 0, -35 * k), is_sacrum=(k == 5)) for k in range(6)]
    dets += [SpineDetection("disc", (0, 0, -35 * k - 17.5)) for k in range(5)]
    labelling = label_levels(dets)
    [d.name for d in labelling.discs]   # ['L1-L2', 'L2-L3', 'L3-L4', 'L4-L5', 'L5-S1']
    levels = labelling.levels()          # findings.Level objects with disc_center set
    relabel_levels(levels, shift=1, reader="dr.lee")   # every name one level up: L5-S1 -> L4-L5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, get_args

import numpy as np

from SpineAssistLib.anatomy import level_name, lumbar_vertebrae
from SpineAssistLib.findings import Assessment, Correction, Geometry, Level, Measurement
from SpineAssistLib.grading.vectors import (
    COINCIDENT_MM,
    FloatArray,
    Point,
    PointLike,
    as_point,
    lps_point,
    lps_points,
    voxel_centers_lps,
)

DetectionKind = Literal["vertebra", "disc"]
DETECTION_KINDS: tuple[str, ...] = get_args(DetectionKind)

# A real centroid lies within a few mm of the smooth spine curve; half a vertebral spacing (~18 mm)
# off it is a detection of something else (a kidney, bowel, a paraspinal muscle).
OFF_LINE_FRACTION = 0.5

# Closer than half a half-step (a quarter of a vertebral spacing, ~9 mm) to the previous detection
# along the spine: the two overlap and cannot both be separate structures.
OVERLAP_STEPS = 0.5


def vertebrae_cranial_to_caudal(lumbar_count: int = 5) -> tuple[str, ...]:
    """Return the vertebrae SpineAssist names for ``lumbar_count`` lumbar vertebrae, cranial to caudal."""
    return ("T11", "T12", *lumbar_vertebrae(lumbar_count), "S1")


@dataclass(frozen=True)
class SpineDetection:
    """One name-less detection: a vertebral body or a disc, its centroid in LPS mm.

    ``is_sacrum`` marks the S1 body, the anchor of the count; ``confidence`` (0-1) decides which
    of two overlapping detections is kept.
    """

    kind: DetectionKind
    centroid: Point
    is_sacrum: bool = False
    confidence: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in DETECTION_KINDS:
            raise ValueError(f"detection kind must be 'vertebra' or 'disc'; got {self.kind!r}")
        object.__setattr__(self, "centroid", as_point(lps_point(f"{self.kind} centroid", self.centroid)))
        if not isinstance(self.is_sacrum, bool):
            raise TypeError(f"is_sacrum must be true or false; got {self.is_sacrum!r}")
        if self.is_sacrum and self.kind != "vertebra":
            raise ValueError("is_sacrum applies to a vertebra detection (the S1 body), not a disc")
        if self.confidence is not None:
            c = self.confidence
            if isinstance(c, bool) or not isinstance(c, (int, float, np.integer, np.floating)) or not 0.0 <= c <= 1.0:
                raise ValueError(f"detection confidence must be a number between 0 and 1; got {c!r}")

    @classmethod
    def from_box(cls, kind: DetectionKind, corner_a: PointLike, corner_b: PointLike, **kwargs: Any) -> "SpineDetection":
        """Return a detection centred on the box between two opposite corners (LPS mm)."""
        a, b = lps_point(f"{kind} box corner_a", corner_a), lps_point(f"{kind} box corner_b", corner_b)
        return cls(kind, as_point(0.5 * (a + b)), **kwargs)

    @classmethod
    def from_mask(cls, kind: DetectionKind, mask: Any, index_to_lps: Any, **kwargs: Any) -> "SpineDetection":
        """Return a detection at the centroid of a boolean mask (numpy index order, 4x4 index -> LPS mm)."""
        points = voxel_centers_lps(mask, index_to_lps, name=f"{kind} mask")
        if points.shape[0] == 0:
            raise ValueError(f"{kind} mask is empty: expected at least one voxel of the detection")
        return cls(kind, as_point(points.mean(axis=0)), **kwargs)


@dataclass(frozen=True)
class LabelledVertebra:
    """A named vertebral body: its name, centroid (LPS mm) and index in the input detections."""

    name: str
    centroid: Point
    detection: int


@dataclass(frozen=True)
class LabelledDisc:
    """A named disc level (e.g. ``L4-L5``) between vertebrae ``upper`` and ``lower``.

    ``detection`` is the index in the input detections, or None when no disc was detected and the
    centroid was placed midway between the two vertebrae (``detected`` is then False).
    """

    name: str
    upper: str
    lower: str
    centroid: Point
    detection: int | None

    @property
    def detected(self) -> bool:
        return self.detection is not None


@dataclass(frozen=True)
class LevelLabelling:
    """Named vertebrae and discs (cranial to caudal), dropped detections and why, in LPS mm."""

    vertebrae: tuple[LabelledVertebra, ...]
    discs: tuple[LabelledDisc, ...]
    dropped: tuple[int, ...]
    warnings: tuple[str, ...]
    lumbar_count: int
    vertebral_spacing_mm: float
    names: dict[int, str] = field(compare=False)

    def name_of(self, detection: int) -> str | None:
        """Return the name given to input detection ``detection`` (None if dropped or unnamed)."""
        return self.names.get(detection)

    def levels(self) -> list[Level]:
        """Return a ``findings.Level`` per disc, cranial to caudal, with ``disc_center`` set."""
        return [Level(d.name, disc_center=d.centroid) for d in self.discs]

    @property
    def measurements(self) -> list[Measurement]:
        return [Measurement("vertebral_spacing_mm", self.vertebral_spacing_mm, "mm",
                            "median distance between consecutive vertebral centroids along the spine")]

    @property
    def geometry(self) -> Geometry:
        """Every named centroid, e.g. ``"L4"`` and ``"L4-L5 disc"``, to draw the labels at."""
        points = {v.name: v.centroid for v in self.vertebrae}
        points.update({f"{d.name} disc": d.centroid for d in self.discs})
        return Geometry(points=points)


def label_levels(detections: Sequence[SpineDetection], *, lumbar_count: int = 5) -> LevelLabelling:
    """Return names for detected vertebral bodies and discs, counted up from the sacrum (S1)."""
    names_up = tuple(reversed(vertebrae_cranial_to_caudal(lumbar_count)))  # S1, L5, ... T11
    detections = list(detections)
    for i, d in enumerate(detections):
        if not isinstance(d, SpineDetection):
            raise TypeError(f"detections[{i}] must be a SpineDetection; got {type(d).__name__}")
    warnings: list[str] = []
    dropped: set[int] = set()

    sacra = [i for i, d in enumerate(detections) if d.is_sacrum]
    if not sacra:
        raise ValueError("detections: none is flagged is_sacrum=True; levels are counted up from S1, "
                         "so the S1 body must be detected and flagged")
    sacrum = max(sacra, key=lambda i: (_confidence(detections[i]), -i))
    for i in sacra:
        if i != sacrum:
            dropped.add(i)
            warnings.append(f"detections[{i}]: a second sacrum; kept detections[{sacrum}], the more confident")

    X = lps_points("detection centroids", [d.centroid for d in detections])
    alive = [i for i in range(len(detections)) if i not in dropped]
    if len(alive) < 2:
        return LevelLabelling((LabelledVertebra("S1", detections[sacrum].centroid, sacrum),), (), tuple(sorted(dropped)),
                              tuple(warnings + ["only the sacrum was detected: no disc levels"]), lumbar_count,
                              float("nan"), {sacrum: "S1"})

    t = _along_spine(X, alive, sacrum)
    spacing = 2.0 * _half_step(t, alive, detections)
    for i in _off_line(X, alive, sacrum, OFF_LINE_FRACTION * spacing):
        dropped.add(i)
        alive.remove(i)
        warnings.append(f"detections[{i}] ({detections[i].kind}) lies off the spine line; dropped as spurious")
    t = _along_spine(X, alive, sacrum)
    if detections[sacrum].centroid[2] > float(np.mean(X[alive, 2])):
        warnings.append("the sacrum lies cranial (LPS +z) to the other detections; check the sacrum flag")
    half = spacing / 2.0

    # Walk cranially from the sacrum, placing each detection on the lattice of half-steps.
    step: dict[int, int] = {sacrum: 0}
    prev = sacrum
    for i in sorted(alive, key=lambda j: t[j]):
        if i == sacrum:
            continue
        # the lumbosacral disc sits on the sacrum: a steep L5-S1 can lie close to the S1 box's centre
        # along the spine, but a disc cranial to that centre is still L5-S1, not an overlap
        lumbosacral = (detections[i].kind == "disc" and prev == sacrum and 0.0 < t[i] < OVERLAP_STEPS * half
                       and 1 not in step.values())
        if lumbosacral:
            step[i] = 1
            prev = i
            continue
        if t[i] < OVERLAP_STEPS * half:
            dropped.add(i)
            where = "overlaps" if t[i] > -OVERLAP_STEPS * half else "lies caudal to"
            warnings.append(f"detections[{i}] ({detections[i].kind}) {where} the sacrum; dropped as spurious")
            continue
        x = step[prev] + (t[i] - t[prev]) / half
        if x - step[prev] < OVERLAP_STEPS:
            loser = i if prev == sacrum or _confidence(detections[prev]) >= _confidence(detections[i]) else prev
            winner = prev if loser == i else i
            dropped.add(loser)
            warnings.append(f"detections[{loser}] ({detections[loser].kind}) overlaps detections[{winner}] "
                            f"along the spine; dropped the less confident")
            if loser == prev:
                base = step.pop(prev)
                step[i] = base if _parity_ok(detections[i], base) else base + 1
                prev = i
            continue
        parity = 0 if detections[i].kind == "vertebra" else 1
        n = int(np.round((x - parity) / 2.0)) * 2 + parity
        while n <= step[prev]:
            n += 2
        step[i] = n
        prev = i

    # Name: step 2k -> k-th vertebra up from S1; step 2k+1 -> the disc above it.
    names: dict[int, str] = {}
    vertebrae: dict[int, LabelledVertebra] = {}
    discs: dict[int, LabelledDisc] = {}
    for i, n in step.items():
        k = n // 2
        if k + (n % 2) >= len(names_up):
            dropped.add(i)
            warnings.append(f"detections[{i}] ({detections[i].kind}) lies cranial to T11; not named")
            continue
        if n % 2 == 0:
            vertebrae[k] = LabelledVertebra(names_up[k], detections[i].centroid, i)
            names[i] = names_up[k]
        else:
            upper, lower = names_up[k + 1], names_up[k]
            discs[k] = LabelledDisc(level_name(upper, lower), upper, lower, detections[i].centroid, i)
            names[i] = discs[k].name

    top = max(vertebrae)
    for k in range(top):
        if k not in vertebrae:
            warnings.append(f"no vertebral body detected for {names_up[k]} (a gap along the spine); "
                            f"the names above it assume it is there")
        if k not in discs and k in vertebrae and k + 1 in vertebrae:
            upper, lower = names_up[k + 1], names_up[k]
            centre = 0.5 * (np.asarray(vertebrae[k].centroid) + np.asarray(vertebrae[k + 1].centroid))
            discs[k] = LabelledDisc(level_name(upper, lower), upper, lower, as_point(centre), None)
            warnings.append(f"no disc detected between {upper} and {lower}; {discs[k].name} placed midway "
                            f"between their centroids")

    return LevelLabelling(
        vertebrae=tuple(vertebrae[k] for k in sorted(vertebrae, reverse=True)),
        discs=tuple(discs[k] for k in sorted(discs, reverse=True)),
        dropped=tuple(sorted(dropped)), warnings=tuple(warnings), lumbar_count=lumbar_count,
        vertebral_spacing_mm=spacing, names=names,
    )


def relabel_levels(levels: Assessment | Sequence[Level], shift: int, reader: str, note: str = "",
                   *, lumbar_count: int | None = None) -> list[Correction]:
    """Shift every level's name by ``shift`` vertebrae (+1: one level up, cranial, L5-S1 -> L4-L5;
    -1: one down) and record the corrections. Findings stay with their disc.

    ``lumbar_count`` (4, 5, 6) fixes the vertebral sequence; by default it is read from the names
    (L6 present: 6, L4-S1 present: 4, else 5). All names are checked before any is changed.
    """
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)):
        raise TypeError(f"shift must be a whole number of levels (+1 up, -1 down); got {shift!r}")
    targets = list(levels.levels if isinstance(levels, Assessment) else levels)
    seq = vertebrae_cranial_to_caudal(lumbar_count or _lumbar_count_of(targets))
    new_names = []
    for lv in targets:
        iu, il = _vertebra_indices(lv.name, seq)
        nu, nl = iu - int(shift), il - int(shift)
        if nu < 0 or nl >= len(seq):
            direction = "up" if shift > 0 else "down"
            raise ValueError(f"cannot shift {lv.name} {abs(shift)} level(s) {direction}: SpineAssist names "
                             f"vertebrae {seq[0]} to {seq[-1]} only")
        new_names.append(level_name(seq[nu], seq[nl]))
    return [lv.rename(name, reader, note) for lv, name in zip(targets, new_names) if name != lv.name]


def recount_lumbar_levels(levels: Assessment | Sequence[Level], lumbar_count: int, reader: str, note: str = "",
                          *, from_lumbar_count: int | None = None) -> list[Correction]:
    """Rename every level for ``lumbar_count`` lumbar vertebrae (transitional anatomy), keeping each
    disc's place counted from the sacrum: with six, L5-S1 becomes L6-S1 and L4-L5 becomes L5-L6."""
    targets = list(levels.levels if isinstance(levels, Assessment) else levels)
    old = tuple(reversed(vertebrae_cranial_to_caudal(from_lumbar_count or _lumbar_count_of(targets))))
    new = tuple(reversed(vertebrae_cranial_to_caudal(lumbar_count)))
    new_names = []
    for lv in targets:
        iu, il = _vertebra_indices(lv.name, tuple(reversed(old)))
        ku, kl = len(old) - 1 - iu, len(old) - 1 - il  # steps up from S1
        if ku >= len(new):
            raise ValueError(f"{lv.name} has no name with {lumbar_count} lumbar vertebrae "
                             f"(it would lie cranial to {new[-1]})")
        new_names.append(level_name(new[ku], new[kl]))
    return [lv.rename(name, reader, note) for lv, name in zip(targets, new_names) if name != lv.name]


def _confidence(d: SpineDetection) -> float:
    return 0.0 if d.confidence is None else float(d.confidence)


def _parity_ok(d: SpineDetection, n: int) -> bool:
    return (n % 2 == 0) == (d.kind == "vertebra")


def _along_spine(X: FloatArray, alive: list[int], sacrum: int) -> dict[int, float]:
    """Return each alive detection's position (mm) along the principal axis, from the sacrum cranially."""
    pts = X[alive]
    centred = pts - pts.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    if (pts.mean(axis=0) - X[sacrum]) @ axis < 0:
        axis = -axis
    return {i: float((X[i] - X[sacrum]) @ axis) for i in alive}


def _half_step(t: dict[int, float], alive: list[int], detections: Sequence[SpineDetection]) -> float:
    """Return half the vertebral spacing (mm): the median gap between a vertebra and a neighbouring disc."""
    order = sorted(alive, key=lambda i: t[i])
    gaps = [(t[b] - t[a], detections[a].kind != detections[b].kind) for a, b in zip(order, order[1:])]
    mixed = [g for g, different in gaps if different]
    half = float(np.median(mixed)) if mixed else float(np.median([g for g, _ in gaps])) / 2.0
    if half < COINCIDENT_MM:
        raise ValueError("detections: the centroids all lie at one place along the spine; expected vertebrae "
                         "and discs stacked along it")
    return half


def _off_line(X: FloatArray, alive: list[int], sacrum: int, limit_mm: float) -> list[int]:
    """Return detections farther than ``limit_mm`` from a smooth curve through the others, worst first."""
    keep = list(alive)
    out: list[int] = []
    while len(keep) >= 4 and len(out) < len(alive) // 3:
        pts = X[keep]
        centred = pts - pts.mean(axis=0)
        basis = np.linalg.svd(centred, full_matrices=False)[2]
        t = centred @ basis[0]
        off = centred @ basis[1:].T
        degree = 2 if len(keep) >= 6 else 1
        vander = np.vander(t, degree + 1)
        coef = np.linalg.lstsq(vander, off, rcond=None)[0]
        residual = np.linalg.norm(off - vander @ coef, axis=1)
        residual[keep.index(sacrum)] = -1.0  # the anchor is never dropped
        worst = int(np.argmax(residual))
        if residual[worst] <= limit_mm:
            break
        out.append(keep.pop(worst))
    return out


def _vertebra_indices(name: str, seq: tuple[str, ...]) -> tuple[int, int]:
    upper, _, lower = name.partition("-")
    if upper not in seq or lower not in seq or seq.index(lower) != seq.index(upper) + 1:
        raise ValueError(f"level {name!r} is not a disc between consecutive vertebrae of {', '.join(seq)}; "
                         f"pass lumbar_count to match the levels' anatomy")
    return seq.index(upper), seq.index(lower)


def _lumbar_count_of(levels: Sequence[Level]) -> int:
    names = {lv.name for lv in levels}
    if any("L6" in n for n in names):
        return 6
    if "L4-S1" in names:
        return 4
    return 5
