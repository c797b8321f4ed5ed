"""Return the phantom's anatomy as geometry: vertebral bodies and discs as rigid frames, and a
smooth spinal curve that straightens every other structure (canal, posterior elements, muscles).

Coordinates are patient LPS mm (+x left, +y posterior, +z head). A vertebra's local frame has
axes ``a`` (patient left), ``b`` (posterior) and ``w`` (cranial along its own axis); the spinal
curve's frame gives every point its straightened coordinates ``(a, b, s)``: lateral, posterior and
arc length along the curve through the vertebral body centres (mm).

Usage::

    from SpineAssistLib.phantom import sample_params
    from SpineAssistLib.phantom.spine import build_spine
    spine = build_spine(sample_params(3))
    spine.vertebra("L4").corner("posterior-superior")      # LPS mm
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial import cKDTree

from SpineAssistLib.anatomy import BACKGROUND, DISC_LABELS, VERTEBRA_LABELS
from SpineAssistLib.findings import MSUGrade
from SpineAssistLib.phantom.params import MSU_RATIO_RANGE, NARROWED_HEIGHT_LOSS, PhantomParams, level_rng

# Keypoints sit this far inside the body's sharp corner (along the endplate and the wall), so that
# they land on the labelled body at the scanner's resolution; it cancels out of every slip.
CORNER_INSET_MM = 1.0
CORNER_ROUND_MM = 1.2
# Axial keypoints sit this far inside their structure (disc margin, herniation apex, sac margin).
KEYPOINT_INSET_MM = 0.7
SUPERELLIPSE_POWER = 2.5


def superellipse(u, v):
    """Return |u|^2.5 + |v|^2.5 (a rounded-rectangle cross-section's level set; 1 on its wall),
    with square roots instead of a power (rendering calls this on millions of points)."""
    return u * u * np.sqrt(np.abs(u)) + v * v * np.sqrt(np.abs(v))

# Standard adult lumbar dimensions (mm), L1..L5; other lumbar counts interpolate this table.
_LUMBAR_HEIGHT = [25.5, 26.5, 27.0, 27.0, 26.0]
_LUMBAR_DEPTH = [31.0, 33.0, 34.5, 35.0, 35.0]
_LUMBAR_WIDTH = [42.0, 45.0, 47.0, 49.0, 51.0]
_LUMBAR_WEDGE = [-1.0, 0.0, 0.0, 1.0, 4.0]
_LUMBAR_DISC_HEIGHT = [8.5, 9.5, 10.5, 11.5, 10.5]       # L1-L2 .. lumbosacral, at the centre
_LUMBAR_DISC_WEDGE = [3.0, 5.0, 7.0, 10.0, 14.0]          # anterior taller (lordosis), degrees
_THORACIC = {  # height, depth, width, body wedge, disc height below, disc wedge below
    "T9": (21.0, 25.0, 31.0, -2.0, 5.5, -1.0), "T10": (21.5, 26.0, 33.0, -2.0, 5.5, -1.0),
    "T11": (22.0, 27.0, 35.0, -1.5, 6.0, -0.5), "T12": (23.5, 29.0, 38.0, -1.5, 7.0, 0.5),
}
# Sacral segments S1..S5 (height, depth, width); they are fused, drawn with label S1.
_SACRAL = [(28.0, 36.0, 50.0), (22.0, 30.0, 44.0), (17.0, 24.0, 36.0), (13.0, 18.0, 26.0), (10.0, 13.0, 18.0)]
_SACRAL_BEND_DEG = 12.0   # kyphosis per sacral segment
_SACRAL_DISC_MM = 2.5

# Pfirrmann grade -> fraction of disc height lost (range drawn per disc). IV-V lose at least
# params.NARROWED_HEIGHT_LOSS (narrowed), I-III less.
HEIGHT_LOSS = {1: (0.0, 0.02), 2: (0.0, 0.05), 3: (0.06, 0.16), 4: (0.2, 0.38), 5: (0.62, 0.74)}
# The height lost by a grade III disc asked to be narrowed, and by a grade IV disc asked not to be.
NARROWED_GRADE_III_LOSS = (0.2, 0.32)
UNNARROWED_GRADE_IV_LOSS = (0.06, 0.16)
# Modic band: T2 signal of the marrow within MODIC_BAND_MM of the endplate, relative to normal marrow.
# Type 1 (oedema) and type 2 (fat) are both bright on T2 TSE, type 3 (sclerosis) dark.
MODIC_SIGNAL = {1: 1.45, 2: 1.35, 3: 0.4}
MODIC_BAND_MM = 6.0
# Herniation seen on the sagittal view: disc material at least this deep behind the posterior disc
# margin within this distance either side of the disc's mid-line (the mid-sagittal slice and its
# neighbours). Zones A and AB reach the mid-line band; B, BC and C herniations lie lateral to it.
SAGITTAL_HERNIATION_HALF_WIDTH_MM = 5.0
SAGITTAL_HERNIATION_MIN_DEPTH_MM = 1.5


def _interp_table(table: list[float], n: int) -> list[float]:
    if n == len(table):
        return list(table)
    x = np.linspace(0, len(table) - 1, n)
    return list(np.interp(x, np.arange(len(table)), table))


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    """Return the 3x3 rotation by ``angle`` (rad) about unit ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _sag_dir(phi: float) -> np.ndarray:
    """Cranial unit vector tilted by ``phi`` (rad) towards posterior, in the mid-sagittal plane."""
    return np.array([0.0, math.sin(phi), math.cos(phi)])


def _frame_from_phi(phi: float) -> np.ndarray:
    up = _sag_dir(phi)
    ap = np.array([0.0, math.cos(phi), -math.sin(phi)])
    return np.column_stack([np.array([1.0, 0.0, 0.0]), ap, up])


class LocalFrame:
    """A structure placed at ``center`` (LPS mm) with rotation ``R`` (columns: its local axes in LPS)."""

    center: np.ndarray
    R: np.ndarray

    def to_local(self, x, y, z):
        """Return local (a, b, w) mm of LPS points (arrays); written out element-wise, as it runs per render sample."""
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        R = self.R
        return (R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz,
                R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz,
                R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz)

    def to_lps(self, a: float, b: float, w: float) -> np.ndarray:
        """Return the LPS mm point of local coordinates (a, b, w)."""
        return self.center + self.R @ np.array([a, b, w], float)


@dataclass
class Vertebra(LocalFrame):
    """A vertebral body as a rigid frame: centre (LPS mm), rotation (columns a, b, w) and size (mm)."""

    name: str
    label: int
    center: np.ndarray
    R: np.ndarray
    half_width: float
    half_depth: float
    height: float
    wedge: float                  # rad, anterior taller when positive
    posterior_concavity: float = 1.2
    endplate_concavity: float = 1.5
    sacral_index: int = 0         # 0 for a free vertebra, 1..5 for the sacral segments S1..S5
    phi: float = 0.0              # sagittal tilt before scoliosis (rad)
    modic: tuple[int, int] = (0, 0)  # Modic type at the inferior / superior endplate (0 none)
    defects: list[EndplateDefect] = field(default_factory=list)  # notches in its endplates


    @property
    def posterior_wall(self) -> float:
        """b of the posterior wall at the mid-line (mm)."""
        return self.half_depth - self.posterior_concavity

    def rho(self, a, b, w=None):
        """Return the cross-section's superellipse sum |a/A|^p + |b/B|^p (1 on the wall, < 1 inside)."""
        A = self.half_width
        B = self.half_depth
        if w is not None:
            waist = 1.0 - 0.03 * np.clip(1.0 - (2.0 * w / self.height) ** 2, 0.0, 1.0)
        else:
            waist = 1.0
        bb = np.where(b > 0, b + self.posterior_concavity * np.clip(1.0 - (a / A) ** 2, 0.0, 1.0), b)
        return superellipse(a / (A * waist), bb / (B * waist))

    def top(self, b, rho):
        """Return w of the (concave) superior endplate surface; ``rho`` from rho()."""
        r2 = np.clip(rho, 0.0, 1.0)
        return self.height / 2 - b * math.tan(self.wedge / 2) - self.endplate_concavity * (1.0 - r2)

    def bottom(self, b, rho):
        r2 = np.clip(rho, 0.0, 1.0)
        return -self.height / 2 + b * math.tan(self.wedge / 2) + self.endplate_concavity * (1.0 - r2)

    def signed_distance(self, a, b, w):
        """Return an approximate signed distance (mm, negative inside) to the body's surface."""
        rho = self.rho(a, b, w)
        sd_r = (rho - 1.0) * (min(self.half_width, self.half_depth) * 0.9 / SUPERELLIPSE_POWER)
        sd_w = np.maximum(w - self.top(b, rho), self.bottom(b, rho) - w)
        r = CORNER_ROUND_MM
        qx, qy = sd_r + r, sd_w + r
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0) - r, sd_w, rho

    def corner(self, which: str, inset: float = CORNER_INSET_MM) -> np.ndarray:
        """Return a vertebral-body corner keypoint (anatomy.CORNERS name) in LPS mm, on the mid-line."""
        vertical, ap = {"anterior-superior": (1, -1), "posterior-superior": (1, 1),
                        "anterior-inferior": (-1, -1), "posterior-inferior": (-1, 1)}[which]
        b = -self.half_depth + inset if ap < 0 else self.posterior_wall - inset
        t = math.tan(self.wedge / 2)
        w = (self.height / 2 - b * t - inset) if vertical > 0 else (-self.height / 2 + b * t + inset)
        return self.to_lps(0.0, b, w)

    def endplate_center(self, which: str) -> np.ndarray:
        return self.to_lps(0.0, 0.0, self.height / 2 if which == "superior" else -self.height / 2)

    def endplate_normal(self, which: str) -> np.ndarray:
        t = math.tan(self.wedge / 2)
        n = np.array([0.0, t, 1.0]) if which == "superior" else np.array([0.0, -t, 1.0])
        n = self.R @ n
        return n / np.linalg.norm(n)


@dataclass
class EndplateDefect:
    """A Schmorl-node-like notch: disc material pressed into a vertebral body through its endplate.

    In the body's frame (mm): centred at lateral ``a``, antero-posterior ``b`` on the ``endplate``
    (``"superior"`` or ``"inferior"``), ``half_width`` by ``half_length`` across it and ``depth``
    deep into the body. ``disc_label`` and ``signal`` (relative to CSF) are the disc material's.
    """

    endplate: str
    a: float
    b: float
    half_width: float
    half_length: float
    depth: float
    disc_label: int
    signal: float

    def inside(self, v: Vertebra, a, b, w, rim: float = 0.0):
        """Return whether body-frame points (a, b, w) of ``v`` lie in the notch grown by ``rim`` mm."""
        rho = v.rho(a, b)
        surface = v.bottom(b, rho) if self.endplate == "inferior" else v.top(b, rho)
        into = w - surface if self.endplate == "inferior" else surface - w
        q = ((a - self.a) / (self.half_width + rim)) ** 2 + ((b - self.b) / (self.half_length + rim)) ** 2 \
            + (np.maximum(into, 0.0) / (self.depth + rim)) ** 2
        return q < 1.0

    def center(self, v: Vertebra) -> np.ndarray:
        """Return the notch's deepest point (LPS mm)."""
        rho = float(v.rho(np.array(self.a), np.array(self.b)))
        if self.endplate == "inferior":
            return v.to_lps(self.a, self.b, float(v.bottom(self.b, rho)) + self.depth)
        return v.to_lps(self.a, self.b, float(v.top(self.b, rho)) - self.depth)


@dataclass
class Herniation:
    """Disc material beyond the posterior disc margin, in its disc's frame (mm).

    A dome centred at lateral ``center_a``, ``half_width`` wide, reaching ``apex_b`` (the
    posterior-most b) and ``half_height`` above and below the disc's mid-plane.
    """

    center_a: float
    half_width: float
    apex_b: float
    half_height: float
    grade: MSUGrade
    ratio: float
    signal: float                 # T2 signal relative to CSF (extrusions can be bright)
    peak_a: float | None = None   # lateral position of the apex (default: the centre)

    def profile(self, a):
        """Return the dome's depth fraction (1 at the apex, 0 at the lateral ends) at lateral ``a``."""
        peak = self.center_a if self.peak_a is None else self.peak_a
        lo, hi = self.center_a - self.half_width, self.center_a + self.half_width
        u = np.where(a < peak, (a - peak) / max(peak - lo, 1e-3), (a - peak) / max(hi - peak, 1e-3))
        return np.where(np.abs(u) <= 1, 1 - u * u, -1.0)


@dataclass
class Disc(LocalFrame):
    """An intervertebral disc between two vertebral bodies, its grade and its shape details."""

    name: str
    label: int
    lower: Vertebra
    upper: Vertebra
    grade: int
    height_loss: float
    center: np.ndarray
    R: np.ndarray                  # disc mid-plane frame: columns a, b, n (n = axial slice normal)
    bulge_mm: float = 0.0
    herniation: Herniation | None = None
    band: bool = False             # intranuclear cleft (grade II-III)
    texture_seed: int = 0
    nucleus_signal: float = 0.9
    msu: MSUGrade = field(default_factory=lambda: MSUGrade(0))
    facet_medial: tuple[float, float] = (10.0, 25.0)   # |a|, b of the medial facet margins (disc frame)
    disc_margin_b: float = 15.0                          # b of the posterior disc margin at mid-line
    canal_offset: tuple[float, float] = (0.0, 25.0)      # canal centre (a, b) in the disc frame
    facet_angle: float = 0.7                             # joint line from the AP axis (rad)
    canal_lr: float = 11.5                               # canal half-width, half-depth at the disc (mm)
    canal_ap: float = 8.5
    modic_type: int = 0                                  # Modic type of the disc's two endplates (0 none)
    narrowed: bool = False                               # height loss >= params.NARROWED_HEIGHT_LOSS
    defect_upper: EndplateDefect | None = None           # in the upper body's inferior endplate
    defect_lower: EndplateDefect | None = None           # in the lower body's superior endplate
    # central stenosis asked for: the sac's posterior wall advanced by this much (mm) about arc
    # length canal_s (the canal AP line's), over +-canal_flat_mm and a taper (tissues.py)
    canal_narrowing_mm: float = 0.0
    canal_s: float = 0.0
    canal_flat_mm: float = 3.0


    @property
    def normal(self) -> np.ndarray:
        return self.R[:, 2].copy()

    @property
    def mid_height(self) -> float:
        """Disc height at the centre (mm): distance between the endplate centres."""
        return float(np.linalg.norm(self.upper.endplate_center("inferior") - self.lower.endplate_center("superior")))


@dataclass
class Spine:
    """All vertebrae (cranial to caudal, sacral segments last), discs, and the straightening curve."""

    params: PhantomParams
    vertebrae: list[Vertebra]
    discs: list[Disc]
    curve_s: np.ndarray
    curve_c: np.ndarray
    curve_T: np.ndarray
    curve_L: np.ndarray
    curve_P: np.ndarray
    tree: cKDTree
    knots_s: np.ndarray            # s of each vertebra centre (cranial to caudal)
    canal: dict[str, np.ndarray]   # per-vertebra tables along knots_s
    rng_seed: int = 0
    sac_end_s: float = 0.0
    conus_tip_s: float = 0.0
    roots: list[tuple[float, float, float, float]] = field(default_factory=list)  # a, b, exit s, side
    canal_fitted: bool = False     # the stenoses params.canal_ap_mm asks for are drawn (canal.narrow_canal)

    def vertebra(self, name: str) -> Vertebra:
        for v in self.vertebrae:
            if v.name == name and v.sacral_index <= 1:
                return v
        raise KeyError(f"no vertebra {name!r}; vertebrae are {', '.join(v.name for v in self.vertebrae)}")

    def disc(self, name: str) -> Disc:
        for d in self.discs:
            if d.name == name:
                return d
        raise KeyError(f"no disc {name!r}; discs are {', '.join(d.name for d in self.discs)}")

    def straighten(self, x, y, z):
        """Return straightened (a, b, s) mm of LPS points: nearest curve sample, refined along the tangent."""
        shape = np.shape(x)
        pts = np.stack([np.ravel(x), np.ravel(y), np.ravel(z)], axis=1)
        _, idx = self.tree.query(pts)
        d = pts - self.curve_c[idx]
        s = self.curve_s[idx] + np.einsum("ij,ij->i", d, self.curve_T[idx])
        a = np.einsum("ij,ij->i", d, self.curve_L[idx])
        b = np.einsum("ij,ij->i", d, self.curve_P[idx])
        return a.reshape(shape), b.reshape(shape), s.reshape(shape)

    def unstraighten(self, a: float, b: float, s: float) -> np.ndarray:
        """Return the LPS point of straightened coordinates (a, b, s)."""
        i = int(np.clip(np.searchsorted(self.curve_s, s), 1, len(self.curve_s) - 1))
        f = (s - self.curve_s[i - 1]) / (self.curve_s[i] - self.curve_s[i - 1])
        c = (1 - f) * self.curve_c[i - 1] + f * self.curve_c[i]
        L = (1 - f) * self.curve_L[i - 1] + f * self.curve_L[i]
        P = (1 - f) * self.curve_P[i - 1] + f * self.curve_P[i]
        return c + a * L + b * P

    def along(self, name: str, s):
        """Interpolate a per-vertebra canal table (e.g. ``"canal_lr"``) at arc lengths ``s``."""
        return np.interp(s, self.knots_s[::-1], self.canal[name][::-1])


def _vertebra_table(p: PhantomParams) -> list[tuple[str, float, float, float, float]]:
    """Return (name, height, depth, width, wedge_deg) cranial to caudal, above the sacrum."""
    n = p.lumbar_count
    rows = [(name, *_THORACIC[name][:4]) for name in ("T9", "T10", "T11", "T12")]
    H, D, W, Wd = (_interp_table(t, n) for t in (_LUMBAR_HEIGHT, _LUMBAR_DEPTH, _LUMBAR_WIDTH, _LUMBAR_WEDGE))
    for i, name in enumerate(p.lumbar):
        rows.append((name, H[i], D[i], W[i], Wd[i]))
    return rows


def build_spine(p: PhantomParams) -> Spine:
    """Return the subject's spine: vertebra and disc frames with findings, and the straightening curve."""
    rng = np.random.default_rng([p.seed, 0x6E0])
    rows = _vertebra_table(p)                            # cranial to caudal, T9 .. last lumbar
    n_l = p.lumbar_count
    disc_h = _interp_table(_LUMBAR_DISC_HEIGHT, n_l)
    disc_w = _interp_table(_LUMBAR_DISC_WEDGE, n_l)
    # lumbar lordosis: the discs turn the spine from the sacral slope to the thoracolumbar tilt
    body_w = sum(_interp_table(_LUMBAR_WEDGE, n_l))
    needed = p.sacral_slope_deg + p.thoracolumbar_tilt_deg - body_w
    disc_w = [w * needed / sum(disc_w) for w in disc_w]
    # disc below each free vertebra (height mm, wedge deg), cranial to caudal
    below = [(_THORACIC[r[0]][4], _THORACIC[r[0]][5]) if r[0].startswith("T") else (disc_h[i - 4], disc_w[i - 4])
             for i, r in enumerate(rows)]

    bs, hs, ds = p.body_scale, p.height_scale, p.disc_scale
    # --- sacrum: S1 superior endplate at the origin, tilted anteriorly by the sacral slope
    phi_s1_top = -math.radians(p.sacral_slope_deg)
    sacral: list[Vertebra] = []
    top_center = np.zeros(3)
    phi_top = phi_s1_top
    for k, (h, d, w) in enumerate(_SACRAL, start=1):
        h, d, w = h * hs, d * bs, w * bs
        phi = phi_top + (math.radians(_SACRAL_BEND_DEG) / 2 if k > 1 else 0.0)
        center = top_center - _sag_dir(phi) * h / 2
        v = Vertebra("S1", VERTEBRA_LABELS["S1"], center, _frame_from_phi(phi), w / 2, d / 2, h, 0.0,
                     posterior_concavity=0.6, endplate_concavity=0.8 if k == 1 else 0.3, sacral_index=k, phi=phi)
        sacral.append(v)
        phi_next = phi + math.radians(_SACRAL_BEND_DEG) / 2
        top_center = center - _sag_dir(phi) * h / 2 - _sag_dir(phi_next) * _SACRAL_DISC_MM
        phi_top = phi_next + math.radians(_SACRAL_BEND_DEG) / 2 - math.radians(_SACRAL_BEND_DEG) / 2

    # --- free vertebrae, walking up from S1
    levels = p.levels
    free: list[Vertebra] = []
    lower = sacral[0]
    grades: dict[str, int] = {}
    losses: dict[str, float] = {}
    for i in range(len(rows) - 1, -1, -1):
        name, h, d, w, wedge_deg = rows[i]
        disc_height, disc_wedge_deg = below[i]
        level = f"{name}-{lower.name}"
        grade = p.pfirrmann.get(level, 2 if name.startswith("T") else 1)
        lo, hi = height_loss_range(grade, p.narrowing.get(level, grade >= 4))
        loss = float(rng.uniform(lo, hi))
        grades[level], losses[level] = grade, loss
        disc_height = disc_height * ds * (1.0 - loss)
        # a collapsed disc loses its lordotic wedge too
        disc_wedge = math.radians(disc_wedge_deg) * (1.0 - 0.5 * loss)
        wedge = math.radians(wedge_deg)
        phi_lo_top = lower.phi + lower.wedge / 2
        phi_mid = phi_lo_top + disc_wedge / 2
        phi_up_bot = phi_lo_top + disc_wedge
        phi = phi_up_bot + wedge / 2
        h, d, w = h * hs, d * bs, w * bs
        bottom_center = lower.endplate_center("superior") + _sag_dir(phi_mid) * disc_height
        center = bottom_center + _sag_dir(phi) * h / 2
        v = Vertebra(name, VERTEBRA_LABELS.get(name, BACKGROUND), center, _frame_from_phi(phi), w / 2, d / 2, h,
                     wedge, posterior_concavity=float(rng.uniform(0.8, 1.8)),
                     endplate_concavity=float(rng.uniform(1.0, 2.2)), phi=phi)
        # listhesis: slide the upper body along the lower superior endplate to the requested slip
        if level in levels:
            P, Q, Rr = lower.corner("posterior-superior"), lower.corner("anterior-superior"), v.corner("posterior-inferior")
            u = (Q - P) / np.linalg.norm(Q - P)
            target = p.slip_percent.get(level, 0.0) / 100.0 * np.linalg.norm(Q - P)
            v.center = v.center + (target - float((Rr - P) @ u)) * u
        free.append(v)
        lower = v
    free.reverse()
    vertebrae = free + sacral

    # --- mild scoliosis (lateral offset, coronal tilt) and axial rotation, apex at mid-lumbar
    z_lo, z_hi = sacral[0].center[2], free[0].center[2] + 40
    for v in vertebrae:
        t = np.clip((v.center[2] - z_lo) / (z_hi - z_lo), 0.0, 1.0)
        dx = p.scoliosis_mm * math.sin(math.pi * t)
        slope = p.scoliosis_mm * math.pi / (z_hi - z_lo) * math.cos(math.pi * t)
        rot = math.radians(p.rotation_deg) * math.sin(math.pi * t) * (1.0 if v.sacral_index == 0 else 0.0)
        Rc = _rot(np.array([0.0, 1.0, 0.0]), -math.atan(slope)) if v.sacral_index == 0 else np.eye(3)
        Ra = _rot(v.R[:, 2], rot)
        v.R = Rc @ Ra @ v.R
        v.center = v.center + np.array([dx, 0.0, 0.0])

    # --- place the spine in the scanner: mid-lumbar body near the isocentre
    mid = free[len(free) - 1 - (n_l // 2)]
    offset = np.array([rng.normal(0, 4), 30.0 + rng.normal(0, 8), rng.normal(0, 25)]) - mid.center
    for v in vertebrae:
        v.center = v.center + offset

    # --- discs
    discs: list[Disc] = []
    chain = free + [sacral[0]]
    for up, lo in zip(chain, chain[1:]):
        name = f"{up.name}-{lo.name}"
        if name not in DISC_LABELS or up.label == BACKGROUND:
            label = BACKGROUND
        else:
            label = DISC_LABELS[name]
        c = 0.5 * (up.endplate_center("inferior") + lo.endplate_center("superior"))
        n = up.endplate_normal("inferior") + lo.endplate_normal("superior")
        n /= np.linalg.norm(n)
        lr = up.R[:, 0] + lo.R[:, 0]
        lr -= (lr @ n) * n
        lr /= np.linalg.norm(lr)
        R = np.column_stack([lr, np.cross(n, lr), n])
        grade = grades.get(name, 2)
        disc = Disc(name, label, lo, up, grade, losses.get(name, 0.0), c, R, texture_seed=int(rng.integers(1 << 30)))
        disc.facet_angle = math.radians(float(rng.uniform(32, 50)))
        disc.band = grade == 2 and rng.random() < 0.75 or grade == 3 and rng.random() < 0.3
        base = {1: 0.93, 2: 0.86, 3: 0.52, 4: 0.26, 5: 0.12}[grade]
        disc.nucleus_signal = float(base * rng.uniform(0.94, 1.05))
        msu = p.msu.get(name, MSUGrade(0))
        disc.msu = msu
        if msu.size == 0 and msu.bulge:
            disc.bulge_mm = float(rng.uniform(1.5, 3.0))
        elif grade >= 4:
            disc.bulge_mm = 0.0
        disc.narrowed = disc.height_loss >= NARROWED_HEIGHT_LOSS
        # Modic bands beside 35 % of Pfirrmann IV-V discs, type 1 or 2 at each endplate: drawn from
        # this stream as the phantom always has; a type in params.modic for the level decides instead
        if grade >= 4 and rng.random() < 0.35:
            lo_type, up_type = int(rng.choice([1, 2])), int(rng.choice([1, 2]))
            lo.modic = (lo.modic[0], lo_type)
            up.modic = (up_type, up.modic[1])
            disc.modic_type = 1 if 1 in (lo_type, up_type) else 2     # mixed I/II: the active change, I
        if p.modic.get(name) is not None:
            disc.modic_type = int(p.modic[name])
            lo.modic = (lo.modic[0], disc.modic_type)
            up.modic = (disc.modic_type, up.modic[1])
        _place_endplate_defects(p, disc)
        discs.append(disc)

    spine = _with_curve(p, vertebrae, discs, rng)
    for disc in discs:
        _place_canal_landmarks(spine, disc)
        if disc.msu.size > 0:
            disc.herniation = _herniation(spine, disc, rng)
    return spine


def height_loss_range(grade: int, narrowed: bool) -> tuple[float, float]:
    """Return the range of the fraction of healthy disc height a disc of Pfirrmann ``grade`` loses,
    narrowed (>= NARROWED_HEIGHT_LOSS) or not: HEIGHT_LOSS's, unless narrowing goes against the grade's
    usual height (grade III narrowed, grade IV not)."""
    if narrowed == (grade >= 4):
        return HEIGHT_LOSS[grade]
    if narrowed and grade == 3:
        return NARROWED_GRADE_III_LOSS
    if not narrowed and grade == 4:
        return UNNARROWED_GRADE_IV_LOSS
    raise ValueError(f"a Pfirrmann {grade} disc cannot be {'narrowed' if narrowed else 'of normal height'}: "
                     f"grades I-II have normal height, V is collapsed")


def _place_endplate_defects(p: PhantomParams, disc: Disc) -> None:
    """Draw the notches params asks for at the disc's endplates, each from the level's own generator."""
    rng = level_rng(p.seed, disc.name, 0xED6E)
    draws = rng.random((2, 5))                   # both endplates' numbers drawn whatever is used
    signal = float(np.clip(disc.nucleus_signal, 0.12, 0.9))
    for k, (which, v, endplate) in enumerate((("upper", disc.upper, "inferior"), ("lower", disc.lower, "superior"))):
        if not getattr(p, f"endplate_{which}").get(disc.name, False):
            continue
        u = draws[k]
        notch = EndplateDefect(endplate, a=-4.0 + 8.0 * u[0], b=v.half_depth * (-0.45 + 0.7 * u[1]),
                               half_width=4.0 + 3.0 * u[2], half_length=3.0 + 2.5 * u[3], depth=2.5 + 2.5 * u[4],
                               disc_label=disc.label, signal=signal)
        v.defects.append(notch)
        setattr(disc, f"defect_{which}", notch)


def herniation_midline_depth(disc: Disc) -> tuple[float, float, float]:
    """Return (depth mm, a, b) of the disc's herniation where it reaches deepest behind the posterior
    disc margin within SAGITTAL_HERNIATION_HALF_WIDTH_MM of the disc's mid-line, on its mid-plane:
    the depth and that outermost point (a, b) in the disc's frame; (0, 0, margin) without one. The
    dome is the one tissues.py draws, at the mid-plane."""
    h = disc.herniation
    if h is None:
        return 0.0, 0.0, disc.disc_margin_b
    a = np.arange(-SAGITTAL_HERNIATION_HALF_WIDTH_MM, SAGITTAL_HERNIATION_HALF_WIDTH_MM + 1e-6, 0.05)
    prof = h.profile(a)
    edge = float(np.max(_margin_b(disc, np.array([h.center_a - h.half_width, h.center_a + h.half_width]))))
    top = edge + (h.apex_b - edge) * prof
    depth = np.where(prof >= 0, top - _margin_b(disc, a), 0.0)
    i = int(np.argmax(depth))
    if depth[i] <= 0:
        return 0.0, 0.0, disc.disc_margin_b
    return float(depth[i]), float(a[i]), float(top[i])


def seen_on_sagittal(disc: Disc) -> bool:
    """Return whether the disc's herniation shows on the mid-sagittal slices (the rule of
    SAGITTAL_HERNIATION_HALF_WIDTH_MM and SAGITTAL_HERNIATION_MIN_DEPTH_MM)."""
    return herniation_midline_depth(disc)[0] >= SAGITTAL_HERNIATION_MIN_DEPTH_MM


def _with_curve(p: PhantomParams, vertebrae: list[Vertebra], discs: list[Disc], rng) -> Spine:
    pts = []
    lrs = []
    for v in vertebrae:
        pts.append(v.center)
        lrs.append(v.R[:, 0])
    pts = np.array(pts[::-1])                        # caudal to cranial
    lrs = np.array(lrs[::-1])
    # smooth the centreline: average each centre with its neighbours (listhesis steps, sacrum)
    sm = pts.copy()
    sm[1:-1] = 0.25 * pts[:-2] + 0.5 * pts[1:-1] + 0.25 * pts[2:]
    seg = np.linalg.norm(np.diff(sm, axis=0), axis=1)
    u = np.concatenate([[0.0], np.cumsum(seg)])
    spl = CubicSpline(u, sm, bc_type="natural")
    ext = 120.0
    uu = np.arange(-ext, u[-1] + ext, 0.25)
    inside = np.clip(uu, 0, u[-1])
    c = spl(inside)
    d0, d1 = spl(0.0, 1), spl(u[-1], 1)
    c = np.where((uu < 0)[:, None], spl(0.0) + (uu[:, None]) * d0 / np.linalg.norm(d0), c)
    c = np.where((uu > u[-1])[:, None], spl(u[-1]) + (uu[:, None] - u[-1]) * d1 / np.linalg.norm(d1), c)
    steps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    s_new = np.arange(0.0, arc[-1], 0.5)
    c = np.stack([np.interp(s_new, arc, c[:, k]) for k in range(3)], axis=1)
    T = np.gradient(c, axis=0)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    # lateral axis: the vertebrae's, interpolated along the curve
    knot_idx = cKDTree(c).query(pts)[1]
    knot_s = s_new[knot_idx]
    L = np.stack([np.interp(s_new, knot_s, lrs[:, k]) for k in range(3)], axis=1)
    L -= np.einsum("ij,ij->i", L, T)[:, None] * T
    L /= np.linalg.norm(L, axis=1, keepdims=True)
    P = np.cross(T, L)
    # s = 0 at the S1 superior endplate keeps numbers readable
    s0 = s_new[cKDTree(c).query(vertebrae[-5].endplate_center("superior"))[1]]
    s_new = s_new - s0
    knots = knot_s[::-1] - s0                        # cranial to caudal, like vertebrae
    cs = p.canal_scale
    canal = {
        "half_depth": np.array([v.half_depth for v in vertebrae]),
        "posterior_wall": np.array([v.posterior_wall for v in vertebrae]),
        "half_width": np.array([v.half_width for v in vertebrae]),
        "height": np.array([v.height for v in vertebrae]),
    }
    canal_lr, canal_ap, sac_lr, sac_ap = [], [], [], []
    for v in vertebrae:
        if v.sacral_index:
            k = v.sacral_index
            canal_lr.append((12.0 - 1.6 * k) * cs)
            canal_ap.append((7.0 - 0.9 * k) * cs)
        else:
            canal_lr.append(11.5 * cs if v.name.startswith("L") else 9.0 * cs)
            canal_ap.append(8.5 * cs if v.name.startswith("L") else 8.0 * cs)
        sac_lr.append(canal_lr[-1] * 0.78)
        sac_ap.append(canal_ap[-1] * 0.8)
    canal["canal_lr"] = np.array(canal_lr)
    canal["canal_ap"] = np.array(canal_ap)
    canal["sac_lr"] = np.array(sac_lr)
    canal["sac_ap"] = np.array(sac_ap)
    canal["canal_b"] = canal["posterior_wall"] + 1.0 + canal["canal_ap"]
    spine = Spine(p, vertebrae, discs, s_new, c, T, L, P, cKDTree(c), knots, canal, rng_seed=p.seed)
    # the thecal sac ends at S2, the conus at L1-L2 (p.conus_level: 0 mid L1 .. 1 mid L2)
    s2 = next(v for v in vertebrae if v.sacral_index == 2)
    spine.sac_end_s = float(spine.straighten(*s2.center)[2])
    names = [v.name for v in vertebrae]
    s_l1 = knots[names.index("L1")]
    s_l2 = knots[names.index("L2")]
    spine.conus_tip_s = float(s_l1 + (s_l2 - s_l1) * p.conus_level)
    # cauda equina: one root pair leaves at each pedicle below the conus, dorsal in the sac (supine)
    roots = []
    exits = [knots[i] + 0.1 * vertebrae[i].height for i, v in enumerate(vertebrae)
             if knots[i] < spine.conus_tip_s and v.sacral_index <= 4]
    for j, s_exit in enumerate(exits):
        for side in (-1.0, 1.0):
            ang = (0.25 + 0.5 * rng.random()) * math.pi * (0.35 + 0.6 * j / max(len(exits), 1))
            a = side * 6.0 * math.sin(ang) * (1.0 - 0.5 * j / max(len(exits), 1))
            b = 3.0 * math.cos(ang) + rng.normal(0, 0.6)
            roots.append((a, b, float(s_exit), side))
    spine.roots = roots
    return spine


def _place_canal_landmarks(spine: Spine, disc: Disc) -> None:
    """Set the disc's medial facet margins and posterior disc margin (disc frame, mid-plane)."""
    a0, b0, s = spine.straighten(*disc.center)
    lr = float(spine.along("canal_lr", s))
    ap = float(spine.along("canal_ap", s))
    cb = float(spine.along("canal_b", s))
    disc.canal_offset = (-float(a0), cb - float(b0))       # canal centre (a, b) in the disc frame
    disc.canal_lr, disc.canal_ap = lr, ap
    disc.facet_medial = (0.86 * lr, cb - float(b0) + 0.2 * ap)
    disc.disc_margin_b = float(_margin_b(disc, np.array([0.0]))[0])


def _margin_b(disc: Disc, a: np.ndarray) -> np.ndarray:
    """Return b of the disc's posterior margin at lateral positions ``a`` (mid-plane, mm)."""
    A = 0.5 * (disc.lower.half_width + disc.upper.half_width)
    B = 0.5 * (disc.lower.half_depth + disc.upper.half_depth)
    conc = 0.5 * (disc.lower.posterior_concavity + disc.upper.posterior_concavity)
    p = SUPERELLIPSE_POWER
    bb = B * np.clip(1.0 - np.abs(a / A) ** p, 0.0, 1.0) ** (1.0 / p)
    return bb - conc * np.clip(1.0 - (a / A) ** 2, 0.0, 1.0)


def _herniation(spine: Spine, disc: Disc, rng) -> Herniation:
    """Return a herniation whose measured MSU size, zone and side are the disc's requested grade.

    The zone follows the herniation's lateral extent against the quarters of the intra-facet line
    (as grading.msu reads it); the extent is kept well inside the zones it must touch.
    """
    g = disc.msu
    fa, fb = disc.facet_medial
    q = fa / 2.0                                      # a quarter of the intra-facet line
    d_kp = disc.disc_margin_b - KEYPOINT_INSET_MM     # the disc-margin keypoint
    lo, hi = MSU_RATIO_RANGE[g.size]
    ratio = float(rng.uniform(lo, hi))
    apex_b = d_kp + ratio * (fb - d_kp) + KEYPOINT_INSET_MM
    sign = -1.0 if g.side == "right" else 1.0
    if g.zone == "A" and g.side in ("left", "right"):
        e0, e1 = q * rng.uniform(0.05, 0.15), q * rng.uniform(0.75, 0.85)
    elif g.zone == "A":
        half = q * rng.uniform(0.7, 0.85)
        e0, e1 = -half, half
    elif g.zone == "AB" and g.side == "bilateral":
        e0, e1 = -q * rng.uniform(1.45, 1.65), q * rng.uniform(1.45, 1.65)
    elif g.zone == "AB":
        e0, e1 = q * rng.uniform(0.2, 0.55), q * rng.uniform(1.45, 1.7)
    elif g.zone == "B":
        e0, e1 = q * rng.uniform(1.25, 1.35), q * rng.uniform(1.68, 1.76)
    elif g.zone == "BC":
        e0, e1 = q * rng.uniform(1.3, 1.55), q * rng.uniform(2.45, 2.8)
    else:  # C: foraminal
        e0, e1 = q * rng.uniform(2.35, 2.5), q * rng.uniform(3.0, 3.4)
    center = 0.5 * (e0 + e1) * sign
    half_width = 0.5 * (e1 - e0)
    signal = float(rng.uniform(0.15, 0.35)) if rng.random() < 0.8 else float(rng.uniform(0.5, 0.75))
    half_height = max(disc.mid_height * 0.5 + (2.5 if g.size == 3 else 0.8), 3.5)
    # a BC herniation peaks in its B part: at the facet the articular process would stop it
    peak = center if g.zone != "BC" else sign * (e0 + 0.3 * (e1 - e0))
    return Herniation(center, half_width, apex_b, half_height, g, ratio, signal, peak)
