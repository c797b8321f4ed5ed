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
    png = render_key_image(mid, assessment)           # PNG bytes
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..anatomy import DISC_LABELS, HERNIATION_LABEL
from ..findings import Assessment, Geometry, Level

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
        """Return slice ``k`` of a (k, j, i) volume whose 4x4 ``affine`` maps (i, j, k, 1) to LPS mm.

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
        origin = affine @ np.array([0.0, 0.0, float(k), 1.0])
        col_step, row_step = affine[:3, 0], affine[:3, 1]
        return cls(volume[k], tuple(origin[:3]), tuple(col_step), tuple(row_step),
                   (float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))), plane=plane, mask=mask, **kwargs)

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
        p = np.asarray(list(points), dtype=float).reshape(-1, 3) - np.asarray(self.origin)
        col = p @ np.asarray(self.row_direction) / self.spacing[1]
        row = p @ np.asarray(self.column_direction) / self.spacing[0]
        return np.stack([col, row], axis=1)

    def distance_from_plane(self, point: Sequence[float]) -> float:
        """Return the signed distance (mm) of an LPS point from the slice plane (+ along row x column)."""
        return float((np.asarray(point, dtype=float) - np.asarray(self.origin)) @ self.normal)


# --- rendering -------------------------------------------------------------------------------

_MEYERDING_LINES = ("lower superior endplate", "slip", "R perpendicular")  # grading.meyerding's line names
_LEVEL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#bcbd22", "#7f7f7f")


def _figure(width_in: float, height_in: float) -> Any:
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "spineassist-matplotlib"))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


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


def render_key_image(image: KeyImage, assessment: Assessment, width_px: int = 480) -> bytes:
    """Return a PNG (bytes) of the key image with the findings' geometry and masks drawn on it,
    and its legend below (``render_key_image_parts`` leaves the legend to the caller)."""
    return _render(image, assessment, width_px, legend_in_image=True)[0]


def render_key_image_parts(image: KeyImage, assessment: Assessment,
                           width_px: int = 480) -> tuple[bytes, list[LegendEntry]]:
    """Return the PNG without a legend and the legend's entries (the report draws them as HTML:
    crisp at any zoom, and a third faster than drawing them into the image)."""
    return _render(image, assessment, width_px, legend_in_image=False)


def _render(image: KeyImage, assessment: Assessment, width_px: int,
            legend_in_image: bool) -> tuple[bytes, list[LegendEntry]]:
    """Return a PNG (bytes) of the key image with the findings' geometry and masks drawn on it.

    Sagittal: disc outlines (named by level), boxes, vertebral corner keypoints and, per level with
    a Meyerding reading, the lower endplate line P-Q and the slip of R measured along it.
    Axial: disc and herniation outlines, boxes, the intra-facet line with its quarter points
    (zone borders), the MSU keypoints and the depth line.
    """
    rows, cols = image.pixels.shape
    height_mm, width_mm = rows * image.spacing[0], cols * image.spacing[1]
    w_in = width_px / 100.0
    title_in, legend_in = 0.4, (0.75 if legend_in_image else 0.05)  # room above for the title, below for the legend
    h_in = max(2.5, min(9.0, w_in * height_mm / width_mm)) + title_in + legend_in
    fig = _figure(w_in, h_in)
    ax = fig.add_axes((0.0, legend_in / h_in, 1.0, 1.0 - (title_in + legend_in) / h_in))
    px = image.pixels.astype(float)
    finite = px[np.isfinite(px)]
    lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0))
    if hi <= lo:
        hi = lo + 1.0
    ax.imshow(px, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest",
              aspect=image.spacing[0] / image.spacing[1], origin="upper")
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_axis_off()
    title = image.title or (f"{image.level} {image.plane}" if image.level else f"{image.plane.capitalize()} key image")
    fig.suptitle(title, fontsize=11, y=1.0 - 0.08 / h_in, va="top")
    handles: dict[str, Any] = {}

    def legend(label: str, artist: Any) -> None:
        handles.setdefault(label, artist)

    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    name_by_label = {v: k for k, v in DISC_LABELS.items()}
    display_name = {lv.model_name: lv.name for lv in assessment.levels}
    if image.mask is not None:
        for i, value in enumerate(sorted(int(v) for v in np.unique(image.mask) if int(v) in name_by_label)):
            region = image.mask == value
            color = _LEVEL_COLORS[i % len(_LEVEL_COLORS)]
            ax.contour(region.astype(float), levels=[0.5], colors=[color], linewidths=1.4)
            rr, cc = np.nonzero(region)
            name = display_name.get(name_by_label[value], name_by_label[value])
            if image.plane == "sagittal":  # name the disc on its anterior side, away from the canal
                ax.annotate(name, (cc.min() - 2, rr.mean()), color=color, fontsize=8, va="center", ha="right",
                            fontweight="bold", bbox=dict(boxstyle="round,pad=0.15", fc="black", alpha=0.6, lw=0))
            legend("disc segmentation", Line2D([], [], color=color, lw=1.4))
        if np.any(image.mask == HERNIATION_LABEL):
            ax.contour((image.mask == HERNIATION_LABEL).astype(float), levels=[0.5], colors=["red"], linewidths=1.6)
            legend("herniation outline", Line2D([], [], color="red", lw=1.6))

    for box in image.boxes:
        ax.add_patch(Rectangle((box.col_min, box.row_min), box.col_max - box.col_min, box.row_max - box.row_min,
                               fill=False, ec="#ffd700", lw=1.0, ls="--"))
        text = box.label if box.confidence is None else f"{box.label} {box.confidence:.2f}"
        ax.annotate(text, (box.col_min, box.row_min - 1), color="#ffd700", fontsize=6.5, va="bottom")
        legend("detection box", Line2D([], [], color="#ffd700", lw=1.0, ls="--"))

    levels = _levels_to_draw(image, assessment)

    def draw_segment(a: np.ndarray, b: np.ndarray, color: str, label: str, lw: float = 1.5, ls: str = "-") -> None:
        (c0, r0), (c1, r1) = image.lps_to_pixel([a, b])
        ax.plot([c0, c1], [r0, r1], color=color, lw=lw, ls=ls)
        legend(label, Line2D([], [], color=color, lw=lw, ls=ls))

    if image.plane == "axial":
        for lv in levels:
            g = lv.ldh.geometry
            ifl = _find_line(g, "intra-facet", "intrafacet", "facet")
            if ifl is not None:
                draw_segment(ifl[0], ifl[1], "#00e676", "intra-facet line")
                quarters = [ifl[0] + t * (ifl[1] - ifl[0]) for t in (0.25, 0.5, 0.75)]
                q = image.lps_to_pixel(quarters)
                ax.plot(q[:, 0], q[:, 1], "D", color="#00e676", ms=5, mec="black", mew=0.6)
                legend("quarter points (zone borders)", Line2D([], [], marker="D", color="#00e676", ls="", mec="black"))
            depth = depth_line(g)
            if depth is not None:
                draw_segment(depth[0], depth[1], "#ff40ff", "herniation depth", lw=2.0)
            for name, (a, b) in g.lines.items():
                low = name.lower()
                if "intra-facet" in low or "intrafacet" in low or "depth" in low:
                    continue
                draw_segment(np.asarray(a), np.asarray(b), "#40c4ff", name, lw=1.0, ls=":")
            keypoints = {name: p for name, p in g.points.items() if name in _MSU_POINT_LABELS}
            if not keypoints:
                continue
            px = {name: image.lps_to_pixel([p])[0] for name, p in keypoints.items()}
            for name, (text, offset, ha, va) in msu_label_layout(px).items():
                (c, r) = px[name]
                ax.plot([c], [r], "o", color="#00e5ff", ms=4.5, mec="black", mew=0.6)
                ax.annotate(text, (c, r), xytext=offset, textcoords="offset points", color="#00e5ff", fontsize=6.5,
                            ha=ha, va=va, bbox=dict(boxstyle="round,pad=0.1", fc="black", alpha=0.6, lw=0))
            legend("MSU keypoints (L/R: the patient's left / right)",
                   Line2D([], [], marker="o", color="#00e5ff", ls="", mec="black"))
    else:
        points = _all_points([f.geometry for lv in assessment.levels for f in (lv.pfirrmann, lv.listhesis)])
        shown = _all_points([f.geometry for lv in levels for f in (lv.pfirrmann, lv.listhesis)])
        if shown:
            xy = image.lps_to_pixel(list(shown.values()))
            ax.plot(xy[:, 0], xy[:, 1], "o", color="#00e5ff", ms=3.5, mec="black", mew=0.5, ls="")
            legend("vertebral corner keypoints", Line2D([], [], marker="o", color="#00e5ff", ls="", mec="black"))
        for lv in levels:
            pqr = meyerding_points(lv, points)
            for name, (a, b) in lv.listhesis.geometry.lines.items():
                if pqr is None or name not in _MEYERDING_LINES:  # those are redrawn from P, Q, R below
                    draw_segment(np.asarray(a), np.asarray(b), "#ffab40", "Meyerding lines", lw=1.0, ls=":")
            if pqr is None:
                continue
            P, Q, R = pqr
            u = (Q - P) / max(float(np.linalg.norm(Q - P)), 1e-9)
            slip = float((R - P) @ u)
            foot = P + slip * u
            draw_segment(P - 0.15 * (Q - P), Q + 0.15 * (Q - P), "#ffab40", "Meyerding lines")
            draw_segment(R, foot, "#ffab40", "Meyerding lines", lw=1.0, ls="--")
            draw_segment(P, foot, "#ff1744", "slip along endplate", lw=2.5)
            value = lv.listhesis.value
            if value is not None and value.slip_percent is not None and value.grade > 0:
                (c, r), = image.lps_to_pixel([foot])
                ax.annotate(f"{abs(value.slip_percent):.0f} %", (c - 3, r + 4), color="#ff1744", fontsize=7,
                            ha="right", fontweight="bold")

    if handles and legend_in_image:
        fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=3, fontsize=7.5,
                   frameon=False, bbox_to_anchor=(0.5, 0.0))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", pil_kwargs={"compress_level": 1})
    return buf.getvalue(), [_legend_entry(label, artist) for label, artist in handles.items()]


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


def _legend_entry(label: str, artist: Any) -> LegendEntry:
    from matplotlib.colors import to_hex

    style = {"-": "-", "--": "--", ":": ":", "dashed": "--", "dotted": ":", "solid": "-"}.get(
        str(artist.get_linestyle()), "")
    marker = str(artist.get_marker())
    return LegendEntry(label, to_hex(artist.get_color()), style, marker if marker in ("o", "D") else "")
