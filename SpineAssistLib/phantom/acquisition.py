"""Return acquired MR images of the phantom: slice planes of a clinical lumbar protocol, sampled
like a scanner (through-plane slice profile, k-space truncation, coil shading, Rician noise,
motion ghosts), and the label map of every slice at its voxel centres.

Each slice is rendered on its own plane at twice the acquired resolution, averaged over sub-slices
through its thickness, Fourier-transformed, cropped to the acquired k-space (which gives partial
volume and Gibbs ringing as a scanner has them), noised, zero-filled to the reconstruction matrix
and returned as magnitude. No 3D volume is ever built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from SpineAssistLib.geometry import affine_from_dicom
from SpineAssistLib.phantom.spine import Spine, _rot
from SpineAssistLib.phantom.tissues import TissueModel

SUB_SLICES = 3              # through-plane samples per slice (box slice profile)
OVERSAMPLE = 1.5            # render grid / acquired grid, in-plane


@dataclass
class SliceGeometry:
    """One image plane: pixel (0, 0) centre, row/column directions (DICOM IOP), spacing, size.

    ``row_direction`` is the direction along a row (column index increasing), ``column_direction``
    along a column (row index increasing); ``pixel_spacing`` is (between rows, between columns) mm,
    as DICOM PixelSpacing.
    """

    position: np.ndarray
    row_direction: np.ndarray
    column_direction: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    thickness: float
    level: str | None = None       # the disc an axial block was planned on
    block: int = 0                 # axial block number (1-based), 0 for sagittal

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_direction, self.column_direction)

    @property
    def orientation(self) -> np.ndarray:
        """Return the plane as DICOM ImageOrientationPatient: row direction, then column direction."""
        return np.concatenate([self.row_direction, self.column_direction])

    def points(self, rows: int, cols: int, offset: float = 0.0):
        """Return LPS (x, y, z) arrays (rows, cols) of a grid covering this slice's field of view."""
        fov_r = self.rows * self.pixel_spacing[0]
        fov_c = self.columns * self.pixel_spacing[1]
        # the grid starts at pixel (0, 0)'s centre whatever its density: Fourier resampling between
        # the render grid and the reconstruction grid keeps that sample in place
        dr, dc = fov_r / rows, fov_c / cols
        start = self.position + offset * self.normal
        r = np.arange(rows, dtype=np.float32) * dr
        c = np.arange(cols, dtype=np.float32) * dc
        out = []
        for k in range(3):
            out.append(np.float32(start[k]) + r[:, None] * np.float32(self.column_direction[k])
                       + c[None, :] * np.float32(self.row_direction[k]))
        return out

    def index_to_lps(self) -> np.ndarray:
        """Return the 4x4 "row,col,slice" affine from pixel index (row, column, 0) to LPS mm."""
        # the slice column is LPS +z, not the normal: the training studies cached on disk hold it so,
        # and a point on the slice lies at slice index 0 either way
        return affine_from_dicom(self.position, self.orientation, self.pixel_spacing, (0.0, 0.0, 1.0),
                                 "row,col,slice")


@dataclass
class Series:
    """An acquired series: images (slices, rows, cols) uint16, labels (same shape) uint8, slice planes."""

    name: str
    description: str
    images: np.ndarray
    labels: np.ndarray
    slices: list[SliceGeometry]
    spacing_between_slices: float

    def affine(self, first: int = 0) -> np.ndarray:
        """Return the 4x4 "slice,row,col" affine from numpy index (slice, row, column) to LPS mm for a
        regular stack starting at slice ``first`` (the whole sagittal series, or one axial block)."""
        g = self.slices[first]
        return affine_from_dicom(g.position, g.orientation, g.pixel_spacing, self.spacing_between_slices,
                                 "slice,row,col")

    def blocks(self) -> list[tuple[int, int]]:
        """Return (first, stop) slice ranges of the regular blocks (one for sagittal, one per disc for axial)."""
        out, start = [], 0
        for i in range(1, len(self.slices) + 1):
            if i == len(self.slices) or self.slices[i].block != self.slices[start].block:
                out.append((start, i))
                start = i
        return out


def _even(n: float) -> int:
    return max(2, int(round(n / 2.0)) * 2)


def sagittal_planes(spine: Spine) -> list[SliceGeometry]:
    """Return the sagittal T2 slab: slices right to left across the spine, head at the top."""
    p = spine.params
    rng = np.random.default_rng([p.seed, 0x5A6])
    names = [v.name for v in spine.vertebrae]
    mid = spine.vertebrae[names.index(p.lumbar[len(p.lumbar) // 2])]
    center = mid.center + np.array([rng.normal(0, 1.5), 28.0 + rng.normal(0, 6), -8.0 + rng.normal(0, 10)])
    row = np.array([0.0, 1.0 if p.sag_anterior_left else -1.0, 0.0])
    col = np.array([0.0, 0.0, -1.0])
    Rz = _rot(np.array([0.0, 0.0, 1.0]), math.radians(p.sag_obliquity_deg[0]))
    Ry = _rot(np.array([0.0, 1.0, 0.0]), math.radians(p.sag_obliquity_deg[1]))
    row, col = Ry @ Rz @ row, Ry @ Rz @ col
    n = p.sag_matrix
    ps = p.sag_fov_mm / n
    normal = np.cross(row, col)
    step = p.sag_thickness_mm + p.sag_gap_mm
    planes = []
    for k in range(p.sag_slices):
        c = center + (k - (p.sag_slices - 1) / 2) * step * normal
        pos = c - (n / 2) * ps * row - (n / 2) * ps * col
        planes.append(SliceGeometry(pos, row, col, (ps, ps), n, n, p.sag_thickness_mm))
    return planes


def axial_planes(spine: Spine) -> list[SliceGeometry]:
    """Return the axial T2 blocks: for each lumbar disc, slices parallel to it, cranial to caudal."""
    p = spine.params
    rng = np.random.default_rng([p.seed, 0xA81])
    n = p.ax_matrix
    ps = p.ax_fov_mm / n
    step = p.ax_thickness_mm + p.ax_gap_mm
    planes = []
    for block, level in enumerate(p.lumbar_levels, start=1):
        d = spine.disc(level)
        row, col, normal = d.R[:, 0], d.R[:, 1], d.R[:, 2]
        # slices ordered foot to head within the block, so that row x col is the stack direction
        center = d.center + col * (22.0 + rng.normal(0, 4)) + row * rng.normal(0, 3)
        for k in range(p.ax_slices_per_block):
            c = center + (k - (p.ax_slices_per_block - 1) / 2) * step * normal
            pos = c - (n / 2) * ps * row - (n / 2) * ps * col
            planes.append(SliceGeometry(pos, row.copy(), col.copy(), (ps, ps), n, n, p.ax_thickness_mm, level, block))
    return planes


class Scanner:
    """Acquires slices of one subject: the same coil, noise level and scaling for its whole study."""

    def __init__(self, spine: Spine, model: TissueModel | None = None):
        self.spine = spine
        self.model = model or TissueModel(spine)
        p = spine.params
        self.rng = np.random.default_rng([p.seed, 0x5CA])
        self.sigma = 1.0 / p.snr
        self.scale = float(self.rng.uniform(1400, 2600))

    def _render_plane(self, g: SliceGeometry, rows: int, cols: int, offsets) -> tuple[np.ndarray, np.ndarray]:
        """Return the coil-weighted signal averaged over the sub-slices, and the labels of the
        middle sub-slice (the slice's own plane), on a (rows, cols) grid."""
        acc = np.zeros((rows, cols), np.float32)
        labels = None
        for off in offsets:
            x, y, z = g.points(rows, cols, off)
            f = _coarse_fields(self.model, x, y, z)
            sig, lab = self.model.evaluate(x, y, z, f)
            acc += sig * f["coil"]
            if abs(off) < 1e-9:
                labels = lab
        return acc / len(offsets), labels

    def acquire(self, g: SliceGeometry, acq_fraction: float, phase_fraction: float, ghost: float
                ) -> tuple[np.ndarray, np.ndarray]:
        """Return the magnitude image (rows, cols) float32 of one slice (CSF ~ ``self.scale``) and
        its label map (uint8) at the voxel centres."""
        n_f = _even(g.columns * acq_fraction)        # read direction along rows (columns of k-space)
        n_p = _even(n_f * phase_fraction)              # phase encoding along the image's vertical
        R, C = _even(OVERSAMPLE * n_p), _even(OVERSAMPLE * n_f)
        offs = [(k - (SUB_SLICES - 1) / 2) * g.thickness / SUB_SLICES for k in range(SUB_SLICES)]
        img, fine_labels = self._render_plane(g, R, C, offs)
        # the label of each voxel centre: the nearest render sample (within a quarter voxel)
        ri = np.minimum(np.rint(np.arange(g.rows) * R / g.rows).astype(int), R - 1)
        ci = np.minimum(np.rint(np.arange(g.columns) * C / g.columns).astype(int), C - 1)
        labels = fine_labels[np.ix_(ri, ci)]
        K = np.fft.fftshift(np.fft.fft2(img, norm="ortho"))
        r0, c0 = (R - n_p) // 2, (C - n_f) // 2
        Kc = K[r0:r0 + n_p, c0:c0 + n_f] * (math.sqrt(n_p * n_f) / math.sqrt(R * C))
        # a mild raised-cosine filter at the k-space edge, as scanners apply against ringing
        Kc = Kc * np.outer(_tukey(n_p, 0.25), _tukey(n_f, 0.25)).astype(np.float32)
        if ghost > 0:
            ky = np.arange(n_p) - n_p / 2
            period = 4.0 + 3.0 * (self.spine.params.seed % 5)
            Kc = Kc * (1.0 + ghost * np.cos(2 * math.pi * ky * (n_p / period) / n_p + 0.3))[:, None]
        noise = self.rng.normal(0, self.sigma, size=(2, n_p, n_f)).astype(np.float32)
        Kc = Kc + (noise[0] + 1j * noise[1])
        Kp = np.zeros((g.rows, g.columns), np.complex64)
        rr, cc = (g.rows - n_p) // 2, (g.columns - n_f) // 2
        Kp[rr:rr + n_p, cc:cc + n_f] = Kc
        out = np.abs(np.fft.ifft2(np.fft.ifftshift(Kp), norm="ortho")) * math.sqrt(g.rows * g.columns / (n_p * n_f))
        return (out * self.scale).astype(np.float32), labels


def _coil(spine: Spine, x, y, z, b, cb, cap) -> np.ndarray:
    """Return the posterior spine coil's sensitivity: strongest at the back, falling off forward."""
    p = spine.params
    back = cb + cap + 40.0 + p.fat_mm
    depth = np.clip(back - b, 0, None)
    field = np.exp(-depth / p.bias_length_mm) / math.exp(-(40.0 + p.fat_mm + 10.0) / p.bias_length_mm)
    wobble = 1.0 + 0.08 * np.sin(z / 60.0 + p.seed) + 0.05 * np.cos(x / 45.0 + 2 * p.seed)
    return ((1.0 - p.bias_strength) + p.bias_strength * field * wobble).astype(np.float32)


def _tukey(n: int, alpha: float) -> np.ndarray:
    x = np.linspace(0, 1, n)
    w = np.ones(n)
    edge = alpha / 2
    lo = x < edge
    hi = x > 1 - edge
    w[lo] = 0.5 * (1 + np.cos(np.pi * (x[lo] / edge - 1)))
    w[hi] = 0.5 * (1 + np.cos(np.pi * ((x[hi] - 1) / edge + 1)))
    return 0.5 + 0.5 * w


def _coarse_fields(model: TissueModel, x, y, z) -> dict[str, np.ndarray]:
    """Return the smooth fields (straightened coordinates, canal tables, textures, coil) of grid
    points (rows, cols): the curve projection every 8 pixels, the rest every 4, then bilinearly
    filled in. They vary over centimetres, so this costs nothing in accuracy."""
    spine = model.spine
    R, C = x.shape
    r4, c4 = _knots(R, 4), _knots(C, 4)
    r8, c8 = _knots(R, 8), _knots(C, 8)
    straight = spine.straighten(x[np.ix_(r8, c8)], y[np.ix_(r8, c8)], z[np.ix_(r8, c8)])
    straight = tuple(_upsample(np.stack(straight).astype(np.float32), r4, c4, r8, c8))
    xs, ys, zs = x[np.ix_(r4, c4)], y[np.ix_(r4, c4)], z[np.ix_(r4, c4)]
    coarse = model.fields(xs, ys, zs, straight)
    coarse["coil"] = _coil(spine, xs, ys, zs, coarse["b"], coarse["cb"], coarse["cap"])
    keys = list(coarse)
    fine = _upsample(np.stack([np.asarray(coarse[k], np.float32) for k in keys]), np.arange(R), np.arange(C), r4, c4)
    return dict(zip(keys, fine))


def _upsample(q: np.ndarray, rows: np.ndarray, cols: np.ndarray, r_knots: np.ndarray, c_knots: np.ndarray) -> np.ndarray:
    """Return fields q (F, len(r_knots), len(c_knots)) linearly interpolated at (rows, cols).

    Gathers and multiply-adds only: no BLAS call, whose threads spin on a shared machine."""
    def weights(at, knots):
        f = np.interp(at, knots, np.arange(len(knots)))
        i0 = np.minimum(f.astype(int), len(knots) - 2)
        return i0, (f - i0).astype(np.float32)

    r0, wr = weights(rows, r_knots)
    c0, wc = weights(cols, c_knots)
    tmp = q[:, r0, :] * (1 - wr)[None, :, None] + q[:, r0 + 1, :] * wr[None, :, None]
    return np.take(tmp, c0, axis=2) * (1 - wc) + np.take(tmp, c0 + 1, axis=2) * wc


def _knots(n: int, step: int) -> np.ndarray:
    k = np.arange(0, n, step)
    return k if k[-1] == n - 1 else np.append(k, n - 1)
