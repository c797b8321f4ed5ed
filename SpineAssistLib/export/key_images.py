"""Key images for the report: a 2D slice with its patient geometry, and its rendering with overlays.

A :class:`KeyImage` is one 2D slice (``pixels[row, col]``) with the DICOM mapping from pixel to
patient LPS mm, so findings geometry (LPS points and lines) can be drawn on it. Points that do not
lie in the slice plane are projected onto it (their distance to the plane is dropped).

Pixel → LPS (DICOM PS3.3 C.7.6.2.1.1)::

    lps = origin + col * spacing[1] * row_direction + row * spacing[0] * column_direction

where ``row_direction`` is ImageOrientationPatient[0:3] (along a row, as the column index grows),
``column_direction`` is ImageOrientationPatient[3:6] (down a column, as the row index grows), and
``spacing`` is PixelSpacing: (distance between rows, distance between columns) in mm.

Usage::

    from SpineAssistLib.export.key_images import KeyImage, render_key_image
    mid = KeyImage.from_volume(sag_voxels, sag_affine, k=7, plane="sagittal", labels=disc_labels)
    svg = render_key_image(mid, assessment)           # a standalone SVG document (text)
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from SpineAssistLib.anatomy import DISC_LABELS, HERNIATION_LABEL
from SpineAssistLib.findings import Assessment, Geometry, Level
from SpineAssistLib.geometry import pixel_spacing, project_to_xy, slice_affine
from SpineAssistLib.pipeline.result import AssessmentResult

PLANES = ("sagittal", "axial", "coronal", "other")


@dataclass(frozen=True)
class Box:
    """A detection box on a key image, in pixels: rows ``row_min..row_max``, columns ``col_min..col_max``."""

    label: str
    row_min: float
    col_min: float
    row_max: float
    col_max: float
    confidence: float | None = None

    def __post_init__(self) -> None:
        if not (self.row_max > self.row_min and self.col_max > self.col_min):
            raise ValueError(f"box {self.label!r} must have row_max > row_min and col_max > col_min (pixels); "
                             f"got rows {self.row_min}..{self.row_max}, cols {self.col_min}..{self.col_max}")


def _unit(name: str, v: Any) -> np.ndarray:
    a = np.asarray(v, dtype=float).reshape(-1)
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise ValueError(f"KeyImage.{name} must be 3 finite LPS components; got {v!r}")
    n = float(np.linalg.norm(a))
    if n < 1e-9:
        raise ValueError(f"KeyImage.{name} must not be the zero vector")
    return a / n


@dataclass
class KeyImage:
    """One 2D slice to show in the report, with its pixel → LPS mm mapping and optional overlays.

    ``mask`` is a label map (same shape as ``pixels``) with :mod:`SpineAssistLib.anatomy` values:
    disc labels are outlined and named, the herniation label is outlined in red. ``level`` names the
    disc an axial slice belongs to (its herniation geometry is drawn); for a sagittal slice, every
    level's Pfirrmann and Meyerding geometry is drawn unless ``level`` restricts it.
    """

    pixels: np.ndarray
    origin: tuple[float, float, float]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    spacing: tuple[float, float]
    plane: str = "other"
    level: str | None = None
    title: str = ""
    mask: np.ndarray | None = None
    boxes: Sequence[Box] = field(default_factory=tuple)
    sop_instance_uid: str = ""

    def __post_init__(self) -> None:
        self.pixels = np.asarray(self.pixels)
        if self.pixels.ndim != 2 or min(self.pixels.shape) < 2:
            raise ValueError(f"KeyImage.pixels must be a 2D array (rows, cols) of at least 2x2; got shape {self.pixels.shape}")
        if self.mask is not None:
            self.mask = np.asarray(self.mask)
            if self.mask.shape != self.pixels.shape:
                raise ValueError(f"KeyImage.mask shape {self.mask.shape} must equal pixels shape {self.pixels.shape}")
        o = np.asarray(self.origin, dtype=float).reshape(-1)
        if o.shape != (3,) or not np.all(np.isfinite(o)):
            raise ValueError(f"KeyImage.origin must be 3 finite LPS mm coordinates; got {self.origin!r}")
        self.origin = tuple(o)  # type: ignore[assignment]
        r, c = _unit("row_direction", self.row_direction), _unit("column_direction", self.column_direction)
        if abs(float(r @ c)) > 1e-3:
            raise ValueError("KeyImage.row_direction and column_direction must be perpendicular "
                             f"(as ImageOrientationPatient); their dot product is {float(r @ c):.4f}")
        self.row_direction, self.column_direction = tuple(r), tuple(c)  # type: ignore[assignment]
        sp = tuple(float(s) for s in self.spacing)
        if len(sp) != 2 or not all(np.isfinite(s) and s > 0 for s in sp):
            raise ValueError(f"KeyImage.spacing must be two positive mm values (row spacing, column spacing); got {self.spacing!r}")
        self.spacing = sp  # type: ignore[assignment]
        if self.plane not in PLANES:
            raise ValueError(f"KeyImage.plane must be one of {', '.join(PLANES)}; got {self.plane!r}")
        self.boxes = tuple(self.boxes)

    # --- constructors ------------------------------------------------------------------------
    @classmethod
    def from_volume(cls, volume: np.ndarray, affine: np.ndarray, k: int, plane: str,
                    labels: np.ndarray | None = None, **kwargs: Any) -> "KeyImage":
        """Return slice ``k`` of a (k, j, i) volume whose 4x4 "col,row,slice" ``affine`` maps (i, j, k, 1) to LPS mm.

        ``labels`` is an optional label volume of the same shape; its slice ``k`` becomes the mask.
        """
        volume = np.asarray(volume)
        affine = np.asarray(affine, dtype=float)
        if volume.ndim != 3:
            raise ValueError(f"volume must be 3D (slices, rows, cols); got shape {volume.shape}")
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4 mapping (i, j, k, 1) to LPS mm; got shape {affine.shape}")
        if not 0 <= k < volume.shape[0]:
            raise ValueError(f"slice index k={k} is outside the volume's {volume.shape[0]} slices")
        mask = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != volume.shape:
                raise ValueError(f"labels shape {labels.shape} must equal volume shape {volume.shape}")
            mask = labels[k]
        s = slice_affine(affine, k, "col,row,slice")
        # KeyImage normalises the steps to ImageOrientationPatient's direction cosines
        return cls(volume[k], tuple(s[:3, 3]), tuple(s[:3, 1]), tuple(s[:3, 0]),
                   pixel_spacing(affine, "col,row,slice"), plane=plane, mask=mask, **kwargs)

    @classmethod
    def from_dicom(cls, ds: Any, plane: str, mask: np.ndarray | None = None, **kwargs: Any) -> "KeyImage":
        """Return a key image of a single-frame DICOM image (pydicom Dataset with pixel data)."""
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if kw not in ds:
                raise ValueError(f"DICOM image {getattr(ds, 'SOPInstanceUID', '?')} lacks {kw}; "
                                 "a key image needs its patient geometry")
        iop = [float(x) for x in ds.ImageOrientationPatient]
        kwargs.setdefault("sop_instance_uid", str(getattr(ds, "SOPInstanceUID", "")))
        return cls(ds.pixel_array, tuple(float(x) for x in ds.ImagePositionPatient), tuple(iop[:3]), tuple(iop[3:]),
                   tuple(float(x) for x in ds.PixelSpacing), plane=plane, mask=mask, **kwargs)

    # --- geometry ----------------------------------------------------------------------------
    @property
    def normal(self) -> np.ndarray:
        return np.cross(np.asarray(self.row_direction), np.asarray(self.column_direction))

    def lps_to_pixel(self, points: Iterable[Sequence[float]]) -> np.ndarray:
        """Return (N, 2) pixel coordinates (col, row) of LPS mm points projected onto the slice plane."""
        return project_to_xy(list(points), self.origin, self.row_direction, self.column_direction, self.spacing)

    def distance_from_plane(self, point: Sequence[float]) -> float:
        """Return the signed distance (mm) of an LPS point from the slice plane (+ along row x column)."""
        return float((np.asarray(point, dtype=float) - np.asarray(self.origin)) @ self.normal)


#
# A key image is drawn as SVG: the slice itself is one embedded grey-scale PNG, and everything drawn on
# it (outlines, boxes, lines, keypoints, their labels) is vector graphics on top, so the browser draws
# them crisp at any zoom and the text in the viewer's own fonts, and no plotting library is imported or
# run per image.
#
# Display units: the image is ``width`` units wide (CSS pixels in the report); a pixel of the slice is
# ``sx`` x ``sy`` units, in the ratio of its column and row spacing, so millimetres are the same in
# both directions. A point (col, row) in pixels (pixel centres at whole numbers, as
# ``KeyImage.lps_to_pixel`` gives them) is drawn at ((col + 0.5) sx, (row + 0.5) sy + top).

_MEYERDING_LINES = ("lower superior endplate", "slip", "R perpendicular")  # grading.meyerding's line names
_LEVEL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#bcbd22", "#7f7f7f")
_PT = 100.0 / 72.0            # display units per typographic point (the sizes below are in points)
_TITLE_UNITS = 24.0           # height of the title band above the image
_MAX_HEIGHT_UNITS = 900.0     # a very tall slice is drawn narrower rather than taller
_DASHES = {"-": "", "--": "5 3", ":": "1.5 2.5"}
_FONT = "Helvetica,Arial,sans-serif"


def _levels_to_draw(image: KeyImage, assessment: Assessment) -> list[Level]:
    if image.level is None:
        return list(assessment.levels)
    return [lv for lv in assessment.levels if image.level in (lv.name, lv.model_name)]


def _all_points(geoms: Iterable[Geometry]) -> dict[str, tuple[float, float, float]]:
    out: dict[str, tuple[float, float, float]] = {}
    for g in geoms:
        out.update(g.points)
    return out


def meyerding_points(level: Level, points: Mapping[str, Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Return (P, Q, R) in LPS mm for a level's Meyerding measurement, or None if a corner is missing.

    P and Q are the lower vertebra's posterior- and anterior-superior corners, R the upper
    vertebra's posterior-inferior corner (GRADING.md): the listhesis geometry's points ``P``, ``Q``,
    ``R`` when present, else the corner keypoints (``"L5 posterior-superior"``) of the model's level.
    """
    own = level.listhesis.geometry.points
    if all(k in own for k in ("P", "Q", "R")):  # as grading.meyerding names them
        return tuple(np.asarray(own[k], dtype=float) for k in ("P", "Q", "R"))  # type: ignore[return-value]
    upper, lower = level.model_name.split("-")  # type: ignore[union-attr]
    names = (f"{lower} posterior-superior", f"{lower} anterior-superior", f"{upper} posterior-inferior")
    if not all(n in points for n in names):
        return None
    return tuple(np.asarray(points[n], dtype=float) for n in names)  # type: ignore[return-value]


def _find_line(geom: Geometry, *needles: str) -> tuple[np.ndarray, np.ndarray] | None:
    for name, (a, b) in geom.lines.items():
        low = name.lower()
        if any(n in low for n in needles):
            return np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return None


def depth_line(geom: Geometry) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the MSU depth line (LPS mm): a line named '*depth*', else apex → its foot on the disc-margin line.

    The disc-margin line runs through the posterior disc margin parallel to the intra-facet line;
    the depth is measured perpendicular to the intra-facet line (GRADING.md).
    """
    named = _find_line(geom, "depth")
    if named is not None:
        return named
    ifl = _find_line(geom, "intra-facet", "intrafacet", "facet")
    apex, margin = geom.points.get("herniation apex"), geom.points.get("posterior disc margin")
    if ifl is None or apex is None or margin is None:
        return None
    u = ifl[1] - ifl[0]
    n = float(np.linalg.norm(u))
    if n < 1e-9:
        return None
    u /= n
    apex_a, margin_a = np.asarray(apex, dtype=float), np.asarray(margin, dtype=float)
    foot = margin_a + ((apex_a - margin_a) @ u) * u
    return foot, apex_a


@dataclass(frozen=True)
class LegendEntry:
    """One item of a key image's legend: how it is drawn (colour, line style, marker) and what it is."""

    label: str
    color: str
    linestyle: str = "-"        # "-", "--", ":" or "" (a marker only)
    marker: str = ""            # "", "o" or "D"



def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.0f}"


def window_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Return the slice as 8-bit grey values, windowed from its 1st to its 99.5th percentile."""
    px = np.asarray(pixels, dtype=np.float32)
    finite = px[np.isfinite(px)]
    lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0))
    if hi <= lo:
        hi = lo + 1.0
    out = (np.nan_to_num(px, nan=float(lo)) - lo) * (255.0 / (hi - lo))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def grey_png(u8: np.ndarray, level: int = 6) -> bytes:
    """Return an 8-bit grey-scale PNG of a 2D uint8 array (OpenCV's encoder, as the training sets' PNGs)."""
    import cv2

    u8 = np.ascontiguousarray(u8, dtype=np.uint8)
    if u8.ndim != 2:
        raise ValueError(f"a grey-scale PNG needs a 2D array; got shape {u8.shape}")
    ok, data = cv2.imencode(".png", u8, [cv2.IMWRITE_PNG_COMPRESSION, int(level)])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {u8.shape[1]} x {u8.shape[0]} PNG")
    return data.tobytes()


def outline_path(region: np.ndarray, sx: float = 1.0, sy: float = 1.0, top: float = 0.0) -> str:
    """Return an SVG path (``d``) along the pixel edges between ``region`` and the rest: the exact
    border of the mask's pixels, as straight runs (``M x y H x`` and ``M x y V y``)."""
    region = np.asarray(region, bool)
    rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
    if rows.size == 0:
        return ""
    r0, c0 = int(rows[0]), int(cols[0])                      # work on the region's bounding box
    m = np.pad(region[r0:int(rows[-1]) + 1, c0:int(cols[-1]) + 1], 1)
    parts: list[str] = []
    # horizontal edges: between pixel rows r - 1 and r (y = r), over the columns where they differ
    horizontal = m[1:, 1:-1] != m[:-1, 1:-1]                 # (rows + 1, cols)
    for y, x0, x1 in _runs(horizontal):
        parts.append(f"M{_num((x0 + c0) * sx)} {_num((y + r0) * sy + top)}H{_num((x1 + c0) * sx)}")
    vertical = (m[1:-1, 1:] != m[1:-1, :-1]).T               # (cols + 1, rows): per column border x
    for x, y0, y1 in _runs(vertical):
        parts.append(f"M{_num((x + c0) * sx)} {_num((y0 + r0) * sy + top)}V{_num((y1 + r0) * sy + top)}")
    return "".join(parts)


def _runs(edges: np.ndarray) -> list[tuple[int, int, int]]:
    """Return (line, start, end) of each run of True along the rows of ``edges`` (end exclusive)."""
    padded = np.zeros((edges.shape[0], edges.shape[1] + 2), np.int8)
    padded[:, 1:-1] = edges
    d = np.diff(padded, axis=1)
    starts, ends = np.nonzero(d == 1), np.nonzero(d == -1)   # row-major: the i-th start pairs the i-th end
    return list(zip(starts[0].tolist(), starts[1].tolist(), ends[1].tolist()))


class _Svg:
    """The overlay of one key image as SVG elements, in display units, and the legend of what it draws."""

    def __init__(self, image: KeyImage, width: float):
        rows, cols = image.pixels.shape
        height_mm, width_mm = rows * image.spacing[0], cols * image.spacing[1]
        width = min(float(width), _MAX_HEIGHT_UNITS * width_mm / height_mm)
        self.sx = width / cols
        self.sy = self.sx * image.spacing[0] / image.spacing[1]
        self.width, self.image_height = width, rows * self.sy
        self.top = _TITLE_UNITS
        self.elements: list[str] = []
        self.legend: dict[str, LegendEntry] = {}

    def xy(self, col: float, row: float) -> tuple[float, float]:
        return (col + 0.5) * self.sx, (row + 0.5) * self.sy + self.top

    def add_legend(self, label: str, color: str, linestyle: str = "-", marker: str = "") -> None:
        self.legend.setdefault(label, LegendEntry(label, color, linestyle, marker))

    def _stroke(self, color: str, width_pt: float, style: str) -> str:
        dash = _DASHES.get(style, "")
        # solid lines end in square caps, so a line of length zero (a slip of 0 mm) still shows as a dot
        return (f' fill="none" stroke="{color}" stroke-width="{_num(width_pt * _PT)}"'
                + (f' stroke-dasharray="{dash}"' if dash else ' stroke-linecap="square"'))

    def line(self, pixels: Sequence[Sequence[float]], color: str, width_pt: float = 1.5, style: str = "-") -> None:
        pts = " ".join(f"{_num(x)},{_num(y)}" for x, y in (self.xy(c, r) for c, r in pixels))
        self.elements.append(f'<polyline points="{pts}"{self._stroke(color, width_pt, style)}/>')

    def outline(self, region: np.ndarray, color: str, width_pt: float) -> None:
        d = outline_path(region, self.sx, self.sy, self.top)
        if d:
            self.elements.append(f'<path d="{d}"{self._stroke(color, width_pt, "-")}/>')

    def rect(self, col0: float, row0: float, col1: float, row1: float, color: str, width_pt: float, style: str) -> None:
        (x0, y0), (x1, y1) = self.xy(col0, row0), self.xy(col1, row1)
        self.elements.append(f'<rect x="{_num(x0)}" y="{_num(y0)}" width="{_num(x1 - x0)}" height="{_num(y1 - y0)}"'
                             f'{self._stroke(color, width_pt, style)}/>')

    def markers(self, pixels: Sequence[Sequence[float]], shape: str, color: str, size_pt: float) -> None:
        r = size_pt * _PT / 2
        for c, row in pixels:
            self.elements.append(_marker(shape, *self.xy(c, row), r, color, edge=0.8 if shape == "D" else 0.7))

    def text(self, text: str, col: float, row: float, color: str, size_pt: float, ha: str = "left",
             va: str = "baseline", bold: bool = False, offset_pt: tuple[float, float] = (0.0, 0.0)) -> None:
        x, y = self.xy(col, row)
        x, y = x + offset_pt[0] * _PT, y - offset_pt[1] * _PT          # offsets as matplotlib's: y up
        anchor = {"left": "start", "right": "end", "center": "middle"}[ha]
        baseline = {"top": "hanging", "bottom": "text-after-edge", "center": "central"}.get(va, "auto")
        weight = ' font-weight="bold"' if bold else ""
        # a dark halo (the stroke, painted under the letters) keeps the label readable on any tissue
        self.elements.append(
            f'<text x="{_num(x)}" y="{_num(y)}" fill="{color}" font-size="{_num(size_pt * _PT)}"{weight} '
            f'text-anchor="{anchor}" dominant-baseline="{baseline}" stroke="black" stroke-opacity="0.75" '
            f'stroke-width="2.5" stroke-linejoin="round" paint-order="stroke">{html.escape(text)}</text>')


def _draw(image: KeyImage, assessment: Assessment, svg: _Svg) -> None:
    """Draw the findings' geometry and masks of ``image`` into ``svg``.

    Sagittal: disc outlines (named by level), boxes, vertebral corner keypoints and, per level with
    a Meyerding reading, the lower endplate line P-Q and the slip of R measured along it; the canal's
    antero-posterior diameter where it was measured.
    Axial: disc and herniation outlines, boxes, the intra-facet line with its quarter points
    (zone borders), the MSU keypoints and the depth line.
    """
    name_by_label = {v: k for k, v in DISC_LABELS.items()}
    display_name = {lv.model_name: lv.name for lv in assessment.levels}
    names: list[tuple[str, float, float, str]] = []      # drawn last, on top of every line
    if image.mask is not None:
        present = [int(v) for v in np.unique(image.mask)]
        for i, value in enumerate(v for v in present if v in name_by_label):
            region = image.mask == value
            color = _LEVEL_COLORS[i % len(_LEVEL_COLORS)]
            svg.outline(region, color, 1.4)
            if image.plane == "sagittal":  # name the disc on its anterior side, away from the canal
                rr, cc = np.nonzero(region)
                names.append((display_name.get(name_by_label[value], name_by_label[value]), cc.min() - 2, rr.mean(),
                              color))
            svg.add_legend("disc segmentation", color)
        if HERNIATION_LABEL in present:
            svg.outline(image.mask == HERNIATION_LABEL, "#ff0000", 1.6)
            svg.add_legend("herniation outline", "#ff0000")

    for box in image.boxes:
        svg.rect(box.col_min, box.row_min, box.col_max, box.row_max, "#ffd700", 1.0, "--")
        text = box.label if box.confidence is None else f"{box.label} {box.confidence:.2f}"
        if image.plane == "sagittal":   # inside the vertebral body: above it are the disc and its name
            svg.text(text, box.col_min + 1, (box.row_min + box.row_max) / 2, "#ffd700", 6.5, va="center")
        else:
            svg.text(text, box.col_min, box.row_min - 1, "#ffd700", 6.5, va="bottom")
        svg.add_legend("detection box", "#ffd700", "--")

    levels = _levels_to_draw(image, assessment)

    def segment(a: np.ndarray, b: np.ndarray, color: str, label: str, width_pt: float = 1.5, style: str = "-") -> None:
        svg.line(image.lps_to_pixel([a, b]), color, width_pt, style)
        svg.add_legend(label, color, style)

    if image.plane == "axial":
        for lv in levels:
            g = lv.ldh.geometry
            ifl = _find_line(g, "intra-facet", "intrafacet", "facet")
            if ifl is not None:
                segment(ifl[0], ifl[1], "#00e676", "intra-facet line")
                svg.markers(image.lps_to_pixel([ifl[0] + t * (ifl[1] - ifl[0]) for t in (0.25, 0.5, 0.75)]),
                            "D", "#00e676", 5)
                svg.add_legend("quarter points (zone borders)", "#00e676", "", "D")
            depth = depth_line(g)
            if depth is not None:
                segment(depth[0], depth[1], "#ff40ff", "herniation depth", width_pt=2.0)
            for name, (a, b) in g.lines.items():
                low = name.lower()
                if "intra-facet" in low or "intrafacet" in low or "depth" in low:
                    continue
                segment(np.asarray(a), np.asarray(b), "#40c4ff", name, width_pt=1.0, style=":")
            keypoints = {name: p for name, p in g.points.items() if name in _MSU_POINT_LABELS}
            if not keypoints:
                continue
            px = {name: image.lps_to_pixel([p])[0] for name, p in keypoints.items()}
            for name, (text, offset, ha, va) in msu_label_layout(px).items():
                svg.markers([px[name]], "o", "#00e5ff", 4.5)
                svg.text(text, *px[name], "#00e5ff", 6.5, ha=ha, va=va, offset_pt=offset)
            svg.add_legend("MSU keypoints (L/R: the patient's left / right)", "#00e5ff", "", "o")
    else:
        points = _all_points([f.geometry for lv in assessment.levels for f in (lv.pfirrmann, lv.listhesis)])
        shown = _all_points([f.geometry for lv in levels for f in (lv.pfirrmann, lv.listhesis)])
        if shown:
            svg.markers(image.lps_to_pixel(list(shown.values())), "o", "#00e5ff", 3.5)
            svg.add_legend("vertebral corner keypoints", "#00e5ff", "", "o")
        for lv in levels:
            pqr = meyerding_points(lv, points)
            for name, (a, b) in lv.listhesis.geometry.lines.items():
                if pqr is None or name not in _MEYERDING_LINES:  # those are redrawn from P, Q, R below
                    segment(np.asarray(a), np.asarray(b), "#ffab40", "Meyerding lines", width_pt=1.0, style=":")
            if pqr is None:
                continue
            P, Q, R = pqr
            u = (Q - P) / max(float(np.linalg.norm(Q - P)), 1e-9)
            slip = float((R - P) @ u)
            foot = P + slip * u
            segment(P - 0.15 * (Q - P), Q + 0.15 * (Q - P), "#ffab40", "Meyerding lines")
            segment(R, foot, "#ffab40", "Meyerding lines", width_pt=1.0, style="--")
            segment(P, foot, "#ff1744", "slip along endplate", width_pt=2.5)
            value = lv.listhesis.value
            if value is not None and value.slip_percent is not None and value.grade > 0:
                (c, r), = image.lps_to_pixel([foot])
                svg.text(f"{abs(value.slip_percent):.0f} %", c - 3, r + 4, "#ff1744", 7, ha="right", bold=True)
        for lv in levels:   # the canal's AP diameter, labelled with its length as drawn (mm)
            for a, b in lv.canal.geometry.lines.values():
                a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
                segment(a, b, "#76ff03", "canal AP diameter", width_pt=1.8)
                (c, r), = image.lps_to_pixel([b])
                svg.text(f"{_num(float(np.linalg.norm(b - a)))} mm", c + 3, r, "#76ff03", 7, va="center", bold=True)
    for name, col, row, color in names:
        svg.text(name, col, row, color, 8, ha="right", va="center", bold=True)


def _svg_document(image: KeyImage, assessment: Assessment, width: float,
                  legend_in_image: bool) -> tuple[str, list[LegendEntry]]:
    svg = _Svg(image, width)
    _draw(image, assessment, svg)
    legend = list(svg.legend.values())
    rows, cols = image.pixels.shape
    png = base64.b64encode(grey_png(window_to_uint8(image.pixels))).decode("ascii")
    title = image.title or (f"{image.level} {image.plane}" if image.level else f"{image.plane.capitalize()} key image")
    legend_rows = (len(legend) + 1) // 2 if legend_in_image else 0
    height = svg.top + svg.image_height + (8 + 16 * legend_rows if legend_rows else 0)
    w = svg.width
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="keyimage" width="{_num(w)}" height="{_num(height)}" '
             f'viewBox="0 0 {_num(w)} {_num(height)}" font-family="{_FONT}" role="img">',
             f"<title>{html.escape(title)}</title>",
             f'<rect width="{_num(w)}" height="{_num(height)}" fill="white"/>',
             f'<text x="{_num(w / 2)}" y="17" font-size="15" text-anchor="middle" fill="#1b1b1b">{html.escape(title)}</text>',
             # one image pixel per slice pixel: the viewer scales it (smoothly, as an MR viewer does)
             f'<image x="0" y="{_num(svg.top)}" width="{_num(w)}" height="{_num(svg.image_height)}" '
             f'preserveAspectRatio="none" href="data:image/png;base64,{png}"/>',
             *svg.elements]
    for i, entry in enumerate(legend if legend_rows else ()):
        x, y = 8 + (i % 2) * w / 2, svg.top + svg.image_height + 16 + 16 * (i // 2)
        parts.append(legend_swatch(entry, x, y - 4) +
                     f'<text x="{_num(x + 26)}" y="{_num(y)}" font-size="11" fill="#222">{html.escape(entry.label)}</text>')
    parts.append("</svg>")
    return "".join(parts), legend


def legend_swatch(entry: LegendEntry, x: float, y: float) -> str:
    """Return the SVG of a legend entry's line and marker, 22 units wide, centred on ``y``."""
    dash = {"--": ' stroke-dasharray="4 2"', ":": ' stroke-dasharray="1.5 2"'}.get(entry.linestyle, "")
    out = (f'<line x1="{_num(x + 1)}" y1="{_num(y)}" x2="{_num(x + 21)}" y2="{_num(y)}" stroke="{entry.color}" '
           f'stroke-width="2"{dash}/>') if entry.linestyle else ""
    if entry.marker in ("o", "D"):
        out += _marker(entry.marker, x + 11, y, 3.5 if entry.marker == "o" else 4.0, entry.color, edge=0.7)
    return out


def _marker(shape: str, x: float, y: float, r: float, color: str, edge: float) -> str:
    """Return the SVG of one marker at (x, y): a diamond (``D``) of half-diagonal ``r`` or a circle of
    radius ``r``, filled with ``color`` and edged in black ``edge`` wide."""
    if shape == "D":
        d = f"M{_num(x)} {_num(y - r)}L{_num(x + r)} {_num(y)}L{_num(x)} {_num(y + r)}L{_num(x - r)} {_num(y)}Z"
        return f'<path d="{d}" fill="{color}" stroke="black" stroke-width="{_num(edge)}"/>'
    return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(r)}" fill="{color}" stroke="black" stroke-width="{_num(edge)}"/>'


def render_key_image(image: KeyImage, assessment: Assessment, width_px: int = 480) -> str:
    """Return a standalone SVG document (text, ``image/svg+xml``) of the key image with the findings'
    geometry and masks drawn on it, its title above and its legend below."""
    return _svg_document(image, assessment, width_px, legend_in_image=True)[0]


def render_key_image_parts(image: KeyImage, assessment: Assessment,
                           width_px: int = 480) -> tuple[str, list[LegendEntry]]:
    """Return the key image as inline SVG without a legend, and the legend's entries (the report
    writes them as HTML beside the image)."""
    return _svg_document(image, assessment, width_px, legend_in_image=False)


# The MSU keypoints a reader places, with the short labels the axial key image shows; the other
# points of the geometry (the intra-facet midpoint, quarter points) are drawn as zone markers.
_MSU_POINT_LABELS = {"left medial facet": "L facet", "right medial facet": "R facet",
                     "posterior disc margin": "disc margin", "herniation apex": "apex", "posterior canal": "canal"}


def msu_label_layout(pixels: Mapping[str, Sequence[float]], distance_pt: float = 7.0
                     ) -> dict[str, tuple[str, tuple[float, float], str, str]]:
    """Return, per MSU keypoint at ``pixels`` (name -> image column, row), its short label, the label's
    offset in points (x right, y up) and alignment: each label points away from the middle of the
    intra-facet line (facets outwards, the disc margin above, the canal below; the apex to the
    right), so that the labels of one slice do not sit on top of each other."""
    px = {n: np.asarray(p, float) for n, p in pixels.items() if n in _MSU_POINT_LABELS}
    facets = [px[n] for n in ("left medial facet", "right medial facet") if n in px]
    if not px:
        return {}
    centre = np.mean(facets, axis=0) if facets else np.mean(list(px.values()), axis=0)
    out = {}
    for name, p in px.items():
        d = p - centre                               # image rows run downwards
        if name == "herniation apex" or np.linalg.norm(d) < 1e-6:
            d = np.array([1.0, 0.0])
        d = d / np.linalg.norm(d)
        ha = "left" if d[0] > 0.35 else "right" if d[0] < -0.35 else "center"
        va = "top" if d[1] > 0.35 else "bottom" if d[1] < -0.35 else "center"
        out[name] = (_MSU_POINT_LABELS[name], (distance_pt * float(d[0]), -distance_pt * float(d[1])), ha, va)
    return out


def key_images_of(result: AssessmentResult) -> list[KeyImage]:
    """Return the report's key images: the chosen sagittal slice and one axial slice per level."""
    images = []
    for stack in result.stacks():
        if stack.name not in result.key_slices:
            continue
        k = result.key_slices[stack.name]
        boxes = [Box(b.label, *b.pixel_box, confidence=b.confidence)
                 for b in result.boxes if b.series == stack.name and b.slice_index == k]
        title = f"{stack.role} slice {k + 1}/{stack.voxels.shape[0]}" + (f" — {stack.level}" if stack.level else "")
        uid = stack.sop_instance_uids[k] if stack.datasets else ""
        images.append(KeyImage.from_volume(stack.voxels, stack.affine, k, stack.role, labels=stack.labels,
                                           level=stack.level, title=title, boxes=boxes, sop_instance_uid=uid))
    return images
