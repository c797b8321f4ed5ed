"""Return a subject's every settable choice (anatomy, findings, acquisition), drawn from a seed.

Findings are drawn with prevalences of a lumbar-MRI referral population (older, symptomatic):
Pfirrmann grade rises with age and towards L4-L5/L5-S1, herniations are mostly at the two lowest
levels, degenerative anterolisthesis mostly at L4-L5, isthmic at L5-S1, retrolisthesis higher up.
The sagittal findings of schema 2 (Modic change, endplate defects, central canal stenosis) are
drawn from a generator of their own, one per level, so that adding them left every earlier draw
of a seed as it was. Every choice can be overridden::

    from SpineAssistLib.findings import MSUGrade
    from SpineAssistLib.phantom import sample_params
    p = sample_params(7, pfirrmann={"L4-L5": 4}, msu={"L4-L5": MSUGrade(2, "AB", "right")},
                      slip_percent={"L4-L5": 18.0}, modic={"L4-L5": 1}, endplate_lower={"L4-L5": True},
                      canal_ap_mm={"L4-L5": 8.5})
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from SpineAssistLib.anatomy import levels_between, lumbar_vertebrae
from SpineAssistLib.findings import MSUGrade

# Tissues the renderer knows; their T2 TSE signal (CSF = 1) is drawn per subject around these.
TISSUE_SIGNAL: dict[str, float] = {
    "csf": 1.00, "fat": 0.86, "marrow": 0.50, "cortex": 0.04, "endplate": 0.05, "annulus": 0.13,
    "nucleus": 0.95, "muscle": 0.22, "cord": 0.40, "root": 0.30, "ligament": 0.09, "skin": 0.45,
    "facet_fluid": 0.70, "cartilage": 0.35, "vessel": 0.04, "viscera": 0.32, "air": 0.0,
}

# Size r-ranges sampled for each MSU size (kept away from the 0.5 / 1.0 borders so that the
# ratio measured on the acquired slices falls in the same size).
MSU_RATIO_RANGE = {1: (0.22, 0.40), 2: (0.62, 0.88), 3: (1.12, 1.28)}

# A disc is narrowed when it has lost at least this fraction of its healthy height: every Pfirrmann
# IV-V disc as drawn (HEIGHT_LOSS in spine.py), and any disc the parameters ask to be narrowed.
NARROWED_HEIGHT_LOSS = 0.2
# Sagittal findings drawn per level (their own generator): Modic change beside a disc, in addition to
# the bands the spine has always drawn beside 35 % of Pfirrmann IV-V discs, by Pfirrmann grade;
# its type (type 2, fatty, is the commonest, type 3, sclerosis, rare); an endplate defect at each
# endplate by grade; a stenosed canal by level (times an age factor) and how far it is narrowed.
MODIC_EXTRA_RATE = {1: 0.02, 2: 0.04, 3: 0.10, 4: 0.18, 5: 0.25}
MODIC_TYPE_SHARE = {1: 0.35, 2: 0.50, 3: 0.15}
ENDPLATE_DEFECT_RATE = {1: 0.05, 2: 0.09, 3: 0.13, 4: 0.19, 5: 0.25}
STENOSIS_RATE_FROM_BOTTOM = {0: 0.05, 1: 0.14, 2: 0.08, 3: 0.04}   # 0 = lumbosacral; higher levels 0.02
STENOSIS_FRACTION = (0.45, 0.8)          # drawn AP / the sac's undisturbed AP at the level
CANAL_AP_RANGE_MM = (2.0, 20.0)          # what canal_ap_mm may ask for


@dataclass
class PhantomParams:
    """Every choice that makes one synthetic subject; distances in mm, angles in degrees."""

    seed: int = 0
    age: float = 50.0
    lumbar_count: int = 5                                   # 4 or 6: transitional anatomy
    pfirrmann: dict[str, int] = field(default_factory=dict)  # level -> 1..5 (every disc level)
    msu: dict[str, MSUGrade] = field(default_factory=dict)   # level -> MSU grade (lumbar levels)
    slip_percent: dict[str, float] = field(default_factory=dict)  # level -> signed slip, + antero
    # sagittal findings (findings schema 2); docs/phantom.md says how each is drawn and read
    modic: dict[str, int | None] = field(default_factory=dict)  # level -> Modic type 0-3 at both endplates;
    #                                                  a level not listed (or None) keeps the spine's own bands
    endplate_upper: dict[str, bool] = field(default_factory=dict)  # level -> defect in the endplate above the disc
    endplate_lower: dict[str, bool] = field(default_factory=dict)  # level -> defect in the endplate below the disc
    narrowing: dict[str, bool] = field(default_factory=dict)  # level -> disc narrowed (default: Pfirrmann IV-V)
    canal_ap_mm: dict[str, float | None] = field(default_factory=dict)  # level -> sac AP at the disc (mm), narrowed to it
    sacral_slope_deg: float = 40.0
    thoracolumbar_tilt_deg: float = 8.0                     # T12-L1 axis tilt (posterior), sets the lordosis
    scoliosis_mm: float = 0.0                               # lateral apex offset, signed (+ left)
    rotation_deg: float = 0.0                               # apical axial rotation
    body_scale: float = 1.0                                 # vertebral body size
    height_scale: float = 1.0                               # vertebral body height
    disc_scale: float = 1.0                                 # healthy disc height
    canal_scale: float = 1.0                                # canal / thecal sac size
    fat_mm: float = 20.0                                    # posterior subcutaneous fat
    conus_level: float = 0.5                                # conus tip: 0 = mid L1, 1 = mid L2
    tissue_signal: dict[str, float] = field(default_factory=dict)
    # acquisition
    sag_slices: int = 15
    sag_thickness_mm: float = 4.0
    sag_gap_mm: float = 0.4
    sag_fov_mm: float = 300.0
    sag_matrix: int = 448                                   # reconstructed (square)
    sag_acq_fraction: float = 0.75                          # acquired / reconstructed, read direction
    sag_phase_fraction: float = 0.8                         # phase / read lines acquired
    sag_obliquity_deg: tuple[float, float] = (0.0, 0.0)     # about z, about y
    sag_anterior_left: bool = True                          # row direction +y (anterior on the image left)
    ax_slices_per_block: int = 4
    ax_thickness_mm: float = 3.5
    ax_gap_mm: float = 0.5
    ax_fov_mm: float = 200.0
    ax_matrix: int = 384
    ax_acq_fraction: float = 0.75
    ax_phase_fraction: float = 0.8
    snr: float = 25.0                                       # CSF signal / noise sigma
    bias_strength: float = 0.5                              # coil fall-off, 0 = flat
    bias_length_mm: float = 160.0
    ghost_amplitude: float = 0.0                            # motion ghosting, 0 = none
    echo_time_ms: float = 100.0
    repetition_time_ms: float = 4000.0
    patient_position: str = "HFS"
    study_date: str = "20240101"

    @property
    def lumbar(self) -> tuple[str, ...]:
        return lumbar_vertebrae(self.lumbar_count)

    @property
    def vertebrae(self) -> tuple[str, ...]:
        """Vertebrae rendered, cranial to caudal (T11 to S1)."""
        return ("T11", "T12", *self.lumbar, "S1")

    @property
    def levels(self) -> list[str]:
        """Every disc level rendered, cranial to caudal."""
        return levels_between(self.vertebrae)

    @property
    def lumbar_levels(self) -> list[str]:
        """The levels with an axial block and full findings (L1-L2 down to the lumbosacral disc)."""
        return levels_between((*self.lumbar, "S1"))

    def signal(self, tissue: str) -> float:
        return self.tissue_signal.get(tissue, TISSUE_SIGNAL[tissue])

    def validate(self) -> "PhantomParams":
        """Return self after checking every choice; raise ValueError naming a bad one."""
        if self.lumbar_count not in (4, 5, 6):
            raise ValueError(f"lumbar_count must be 4, 5 or 6; got {self.lumbar_count}")
        levels = self.levels
        for lv, g in self.pfirrmann.items():
            if lv not in levels:
                raise ValueError(f"pfirrmann: {lv!r} is not a disc of this phantom; levels are {', '.join(levels)}")
            if g not in (1, 2, 3, 4, 5):
                raise ValueError(f"pfirrmann[{lv!r}] must be 1-5; got {g!r}")
        for lv, m in self.msu.items():
            if lv not in self.lumbar_levels:
                raise ValueError(f"msu: {lv!r} has no axial block; lumbar levels are {', '.join(self.lumbar_levels)}")
            if not isinstance(m, MSUGrade):
                raise TypeError(f"msu[{lv!r}] must be a findings.MSUGrade; got {type(m).__name__}")
            if m.size == 3 and m.zone not in ("A", "AB"):
                raise ValueError(f"msu[{lv!r}]: the phantom draws size-3 herniations in zones A and AB only "
                                 f"(behind the intra-facet line laterally lie the articular processes); got {m.label}")
            if m.zone == "A" and m.side == "bilateral":
                raise ValueError(f"msu[{lv!r}]: zone A is central (side None) or paracentral (left/right); "
                                 f"a bilateral herniation reaches B on both sides: use zone AB")
            if m.zone in ("AB",) and m.side not in ("left", "right"):
                raise ValueError(f"msu[{lv!r}] zone AB needs side 'left' or 'right'; got {m.side!r}")
        for lv, slip in self.slip_percent.items():
            if lv not in levels:
                raise ValueError(f"slip_percent: {lv!r} is not a disc of this phantom")
            if not -60.0 <= slip <= 60.0:
                raise ValueError(f"slip_percent[{lv!r}] must be between -60 and 60 %; got {slip}")
        self._validate_sagittal_findings(levels)
        if not 13 <= self.sag_slices <= 21:
            raise ValueError(f"sag_slices must be 13-21; got {self.sag_slices}")
        if not 3 <= self.ax_slices_per_block <= 5:
            raise ValueError(f"ax_slices_per_block must be 3-5; got {self.ax_slices_per_block}")
        if self.snr <= 0:
            raise ValueError(f"snr must be positive; got {self.snr}")
        return self

    def _validate_sagittal_findings(self, levels: list[str]) -> None:
        for name in ("modic", "endplate_upper", "endplate_lower", "narrowing", "canal_ap_mm"):
            for lv in getattr(self, name):
                if lv not in levels:
                    raise ValueError(f"{name}: {lv!r} is not a disc of this phantom; levels are {', '.join(levels)}")
        for lv, t in self.modic.items():
            if t is not None and (isinstance(t, bool) or t not in (0, 1, 2, 3)):
                raise ValueError(f"modic[{lv!r}] must be a Modic type 0-3 (0 none), or None for the bands the "
                                 f"spine draws itself; got {t!r}")
        for name in ("endplate_upper", "endplate_lower", "narrowing"):
            for lv, v in getattr(self, name).items():
                if not isinstance(v, (bool, np.bool_)):
                    raise TypeError(f"{name}[{lv!r}] must be true or false; got {v!r}")
        for lv, narrowed in self.narrowing.items():
            grade = self.pfirrmann.get(lv)
            if grade == 5 and not narrowed:
                raise ValueError(f"narrowing[{lv!r}] is false but the disc is Pfirrmann V, which is collapsed by "
                                 f"definition: ask for grade 4 or less, or leave narrowing as drawn")
            if grade in (1, 2) and narrowed:
                raise ValueError(f"narrowing[{lv!r}] is true but the disc is Pfirrmann {'I' * grade}, whose height is "
                                 f"normal by definition: ask for grade 3 or more")
        lo, hi = CANAL_AP_RANGE_MM
        for lv, ap in self.canal_ap_mm.items():
            if ap is None:
                continue
            if isinstance(ap, bool) or not isinstance(ap, (int, float, np.floating, np.integer)) or not lo <= ap <= hi:
                raise ValueError(f"canal_ap_mm[{lv!r}] must be a diameter of {lo:g}-{hi:g} mm (or None: not "
                                 f"narrowed); got {ap!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["msu"] = {k: v.to_dict() for k, v in self.msu.items()}
        d["sag_obliquity_deg"] = list(self.sag_obliquity_deg)
        return d


def _choice(rng: np.random.Generator, options: dict[Any, float]) -> Any:
    keys = list(options)
    p = np.array([options[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _sample_pfirrmann(rng: np.random.Generator, age: float, levels: list[str]) -> dict[str, int]:
    grades = {}
    n = len(levels)
    for i, lv in enumerate(levels):
        caudal = i / max(n - 1, 1)                            # 0 at T11-T12, 1 at the lumbosacral disc
        mean = 1.3 + (age - 20) / 60 * 1.8 + 1.0 * caudal ** 2
        g = int(np.clip(np.rint(mean + rng.normal(0, 0.8)), 1, 5))
        grades[lv] = g
    return grades


def _sample_msu(rng: np.random.Generator, level_index: int, n_levels: int, grade: int) -> MSUGrade:
    from_bottom = n_levels - 1 - level_index                  # 0 = lumbosacral, 1 = the one above
    p_hern = {0: 0.28, 1: 0.30, 2: 0.10}.get(from_bottom, 0.04) * (0.3 if grade == 1 else 1.0)
    p_bulge = 0.12 + 0.08 * max(grade - 2, 0)
    u = rng.random()
    if u >= p_hern:
        return MSUGrade(0, bulge=bool(u < p_hern + p_bulge and grade >= 2))
    size = _choice(rng, {1: 0.45, 2: 0.40, 3: 0.15})
    zone = _choice(rng, {"A": 0.35, "AB": 0.25, "B": 0.25, "BC": 0.08, "C": 0.07} if size < 3 else {"A": 0.6, "AB": 0.4})
    if zone == "A":
        side = None
    else:
        side = _choice(rng, {"left": 0.5, "right": 0.5})
    return MSUGrade(size, zone, side)


def _sample_slips(rng: np.random.Generator, levels: list[str], lumbar_levels: list[str]) -> dict[str, float]:
    slips = {lv: float(np.clip(rng.normal(0, 1.2), -3.0, 3.0)) for lv in levels}
    if len(lumbar_levels) >= 2:
        l45, ls = lumbar_levels[-2], lumbar_levels[-1]
        u = rng.random()
        if u < 0.08:                                          # degenerative, L4-L5
            slips[l45] = float(rng.uniform(8, 35))
        elif u < 0.13:                                        # isthmic, lumbosacral
            slips[ls] = float(rng.uniform(10, 60))
        elif u < 0.19:                                        # retrolisthesis, upper lumbar
            slips[str(rng.choice(lumbar_levels[:-1]))] = float(-rng.uniform(7, 25))
    return slips


def level_rng(seed: int, level: str, stream: int) -> np.random.Generator:
    """Return the generator of one level's draws in ``stream``: keyed by the level's name, so that
    one level's draws do not move when another level (or the lumbar count) changes."""
    return np.random.default_rng([int(seed), stream, zlib.crc32(level.encode())])


def sac_ap_estimate_mm(p: PhantomParams, level: str) -> float:
    """Return the least AP diameter (mm) the undisturbed thecal sac can have at disc ``level``: the
    smaller of its two vertebrae's (spine.py's canal table: 8.5 mm half-depth in the lumbar spine,
    8.0 thoracic, 6.1 at S1, times ``canal_scale``; the sac fills 80 % of it)."""
    half = {"S1": 6.1}
    upper, lower = level.split("-")
    depth = min(half.get(v, 8.5 if v.startswith("L") else 8.0) for v in (upper, lower))
    return 2.0 * 0.8 * depth * p.canal_scale


def _sample_sagittal_findings(p: PhantomParams) -> dict[str, dict[str, Any]]:
    """Return the drawn Modic types (only where a change is drawn), endplate defects, narrowing and
    stenosed canal APs of ``p``'s levels, from the final grades, herniations and slips of ``p``.

    Each level draws the same six numbers from its own generator whatever it then uses: a level's
    draws never depend on another's. Narrowing is not drawn: it is the height loss drawn with the
    Pfirrmann grade (IV-V).
    """
    out: dict[str, dict[str, Any]] = {"modic": {}, "endplate_upper": {}, "endplate_lower": {}, "narrowing": {},
                                      "canal_ap_mm": {}}
    lumbar_levels = p.lumbar_levels
    age_factor = float(np.clip((p.age - 40.0) / 30.0, 0.0, 1.4))
    for lv in p.levels:
        u = level_rng(p.seed, lv, 0x5A6F).random(6)
        grade = p.pfirrmann.get(lv, 2)
        if u[0] < MODIC_EXTRA_RATE[grade]:
            out["modic"][lv] = _choice_from(u[1], MODIC_TYPE_SHARE)
        out["endplate_upper"][lv] = bool(u[2] < ENDPLATE_DEFECT_RATE[grade])
        out["endplate_lower"][lv] = bool(u[3] < ENDPLATE_DEFECT_RATE[grade])
        out["narrowing"][lv] = grade >= 4
        if lv in lumbar_levels:
            from_bottom = len(lumbar_levels) - 1 - lumbar_levels.index(lv)
            msu = p.msu.get(lv, MSUGrade(0))
            # only where nothing else narrows the sac, so that the drawn AP is always reachable
            clear = (msu.size == 0 or msu.zone in ("B", "BC", "C")) and abs(p.slip_percent.get(lv, 0.0)) <= 5.0
            if clear and u[4] < STENOSIS_RATE_FROM_BOTTOM.get(from_bottom, 0.02) * age_factor:
                lo, hi = STENOSIS_FRACTION
                out["canal_ap_mm"][lv] = round(float((lo + (hi - lo) * u[5]) * sac_ap_estimate_mm(p, lv)), 2)
    return out


def _choice_from(u: float, options: dict[Any, float]) -> Any:
    """Return the option a uniform number ``u`` in [0, 1) falls on, the options' shares laid end to end."""
    total = sum(options.values())
    edge = 0.0
    for key, share in options.items():
        edge += share / total
        if u < edge:
            return key
    return key


BACKGROUND_TISSUES = ("fat", "marrow", "muscle", "skin", "viscera", "ligament", "cord", "root", "cartilage")


def jittered_tissue_signal(seed: int, spread: float) -> dict[str, float]:
    """Return ``tissue_signal`` overrides for a training phantom: each background tissue's signal
    (``BACKGROUND_TISSUES``; not CSF or the disc, whose signals carry the grades) scaled by
    exp(N(0, spread)), kept within exp(+-2 spread) and below CSF. Drawn from ``seed`` alone."""
    rng = np.random.default_rng([int(seed), 0x7155])
    out = {}
    for tissue in BACKGROUND_TISSUES:
        f = float(np.exp(np.clip(rng.normal(0.0, spread), -2 * spread, 2 * spread)))
        out[tissue] = float(min(TISSUE_SIGNAL[tissue] * f, 0.98))
    return out


def sample_params(seed: int, **overrides: Any) -> PhantomParams:
    """Return the phantom parameters drawn from ``seed``, with ``overrides`` (field=value) applied.

    Dict fields (``pfirrmann``, ``msu``, ``slip_percent``, ``tissue_signal``, ``modic``,
    ``endplate_upper``, ``endplate_lower``, ``narrowing``, ``canal_ap_mm``) given as overrides update
    the drawn dict per level instead of replacing it; unknown fields raise TypeError. The sagittal
    findings are drawn after the other overrides are applied, so they follow a grade, herniation
    or slip asked for (narrowing follows an overridden Pfirrmann grade unless itself overridden).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    names = {f.name for f in dataclasses.fields(PhantomParams)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown phantom parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    rng = np.random.default_rng([int(seed), 0x5A17])
    p = PhantomParams(seed=int(seed))
    p.age = float(rng.uniform(22, 82))
    p.lumbar_count = int(overrides.get("lumbar_count", _choice(rng, {5: 0.90, 4: 0.04, 6: 0.06})))
    levels = p.levels
    lumbar_levels = p.lumbar_levels
    p.pfirrmann = _sample_pfirrmann(rng, p.age, levels)
    p.msu = {lv: _sample_msu(rng, i, len(lumbar_levels), p.pfirrmann[lv]) for i, lv in enumerate(lumbar_levels)}
    p.slip_percent = _sample_slips(rng, levels, lumbar_levels)
    p.sacral_slope_deg = float(rng.normal(39, 6))
    p.thoracolumbar_tilt_deg = float(rng.uniform(0, 14))
    p.scoliosis_mm = float(rng.normal(0, 3.5)) if rng.random() < 0.5 else float(rng.normal(0, 0.8))
    p.rotation_deg = float(rng.normal(0, 2.0))
    p.body_scale = float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15))
    p.height_scale = float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.12))
    p.disc_scale = float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2))
    p.canal_scale = float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2))
    p.fat_mm = float(np.clip(rng.lognormal(np.log(18), 0.45), 6, 60))
    p.conus_level = float(rng.uniform(0.0, 1.2))
    p.tissue_signal = {k: float(v * np.clip(rng.normal(1.0, 0.08), 0.8, 1.2)) for k, v in TISSUE_SIGNAL.items()}
    p.tissue_signal["csf"] = 1.0
    # acquisition, like the range of clinical lumbar protocols
    p.sag_slices = int(rng.choice([13, 15, 15, 17]))
    p.sag_thickness_mm = float(rng.choice([3.0, 3.5, 4.0, 4.0]))
    p.sag_gap_mm = float(rng.choice([0.3, 0.4, 0.5, 0.8]))
    p.sag_fov_mm = float(rng.uniform(260, 320))
    p.sag_matrix = int(rng.choice([384, 448, 512]))
    p.sag_acq_fraction = float(rng.choice([256, 288, 320, 352])) / p.sag_matrix  # acquired read matrix
    p.sag_phase_fraction = float(rng.uniform(0.7, 0.85))
    p.sag_obliquity_deg = (float(rng.normal(0, 2.0)), float(rng.normal(0, 1.5)))
    p.sag_anterior_left = bool(rng.random() < 0.85)
    p.ax_slices_per_block = int(rng.choice([3, 4, 4, 5]))
    p.ax_thickness_mm = float(rng.choice([3.0, 3.5, 4.0]))
    p.ax_gap_mm = float(rng.choice([0.0, 0.3, 0.5, 1.0]))
    p.ax_fov_mm = float(rng.uniform(170, 220))
    p.ax_matrix = int(rng.choice([320, 384]))
    p.ax_acq_fraction = float(rng.choice([224, 256, 288])) / p.ax_matrix
    p.ax_phase_fraction = float(rng.uniform(0.7, 0.85))
    p.snr = float(rng.uniform(14, 40))
    p.bias_strength = float(rng.uniform(0.2, 0.8))
    p.bias_length_mm = float(rng.uniform(110, 220))
    p.ghost_amplitude = float(rng.uniform(0.03, 0.12)) if rng.random() < 0.2 else 0.0
    p.echo_time_ms = float(np.round(rng.uniform(88, 120), 1))
    p.repetition_time_ms = float(np.round(rng.uniform(3000, 5000), -1))
    p.patient_position = "HFS" if rng.random() < 0.9 else "FFS"
    day = int(rng.integers(0, 365 * 4))
    p.study_date = (np.datetime64("2021-01-01") + np.timedelta64(day, "D")).astype(str).replace("-", "")

    for name, value in overrides.items():
        current = getattr(p, name)
        if isinstance(current, dict) and isinstance(value, dict):
            merged = dict(current)
            merged.update(value)
            if name == "msu":
                merged = {k: v if isinstance(v, MSUGrade) else MSUGrade.from_dict(v) if isinstance(v, dict)
                          else MSUGrade(*v) for k, v in merged.items()}
            setattr(p, name, merged)
        else:
            setattr(p, name, value)
    p.validate()                                      # the grades the draws below follow are valid ones
    for name, drawn in _sample_sagittal_findings(p).items():
        setattr(p, name, {**drawn, **getattr(p, name)})
    return p.validate()


def herniation_enriched_msu(seed: int, rate: float) -> dict[str, dict[str, Any]]:
    """Return ``msu`` overrides for a training phantom with herniations at ``rate`` per lumbar level.

    At clinical prevalence (``_sample_msu``: 4-30 % per level) a training set of a few dozen
    phantoms holds too few herniations for a model to learn the apex from; this draws the same
    sizes, zones and sides at a chosen rate (class balancing, for training sets only). The rest
    of the levels are normal or bulging as usual. Deterministic in ``seed``.
    """
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"herniation rate must lie in 0-1; got {rate!r}")
    base = sample_params(seed)
    rng = np.random.default_rng([int(seed), 0xE41])
    out: dict[str, dict[str, Any]] = {}
    for lv in base.lumbar_levels:
        if rng.random() < rate:
            size = _choice(rng, {1: 0.40, 2: 0.40, 3: 0.20})
            zone = _choice(rng, {"A": 0.30, "AB": 0.25, "B": 0.25, "BC": 0.10, "C": 0.10} if size < 3
                           else {"A": 0.6, "AB": 0.4})
            side = None if zone == "A" else _choice(rng, {"left": 0.5, "right": 0.5})
            grade = MSUGrade(size, zone, side)
        else:
            grade = MSUGrade(0, bulge=bool(rng.random() < 0.35))
        out[lv] = grade.to_dict()
    return out
