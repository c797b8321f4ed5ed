"""The findings data model: one assessment of a study, its disc levels, and each level's findings.

Every part of SpineAssist reads and writes these classes (pipeline, Slicer panel, exports,
evaluation); there is no parallel dict form. Each finding keeps the model's value and the reader's
value side by side: the value in force is the reader's when there is one. A correction never
overwrites the model's value and is recorded in the finding's history.

Usage::

    from SpineAssistLib.findings import Assessment, Level, PfirrmannGrade
    level = Level("L4-L5")
    level.pfirrmann.model = PfirrmannGrade(3)
    level.pfirrmann.correct(PfirrmannGrade(4), reader="dr.lee", note="dark nucleus")
    level.pfirrmann.value        # PfirrmannGrade(grade=4)
    level.pfirrmann.model        # PfirrmannGrade(grade=3), kept
    Assessment(study_instance_uid="1.2.3", levels=[level]).to_json()

Coordinates are patient LPS millimetres, as in DICOM (+x patient left, +y posterior, +z head).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Generic, Iterable, Literal, Mapping, TypeVar, get_args

from SpineAssistLib.resources import resource_path
from SpineAssistLib.version import __version__

SCHEMA = "spineassist.findings/2"
# Files of these earlier versions are read; the findings they lack are "not assessed".
READABLE_SCHEMAS = ("spineassist.findings/1", SCHEMA)

# Disc levels SpineAssist names, cranial to caudal. L5-L6 and L6-S1 exist with six lumbar
# vertebrae, L4-S1 with four (transitional anatomy); T11-T12 and T12-L1 when the field of view shows them.
LEVEL_NAMES: tuple[str, ...] = (
    "T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L4-S1", "L5-L6", "L5-S1", "L6-S1",
)
# A level found or named with less confidence than this (Level.confidence) needs a reader's look.
LOW_LEVEL_CONFIDENCE = 0.5
STANDARD_LUMBAR_LEVELS: tuple[str, ...] = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")

PFIRRMANN_GRADES = (1, 2, 3, 4, 5)
MSU_SIZES = (0, 1, 2, 3)
MSU_ZONES = ("A", "AB", "B", "BC", "C")
SIDES = ("left", "right", "bilateral")
MEYERDING_GRADES = (0, 1, 2, 3, 4, 5)
LISTHESIS_DIRECTIONS = ("antero", "retro")
MODIC_TYPES = (0, 1, 2, 3)
# Central canal stenosis from the midsagittal antero-posterior diameter (Verbiest): absolute below
# 10 mm, relative from 10 to 12 mm, none above.
STENOSIS_GRADES = ("none", "relative", "absolute")
ABSOLUTE_STENOSIS_BELOW_MM = 10.0
RELATIVE_STENOSIS_UP_TO_MM = 12.0
FindingKind = Literal["pfirrmann", "ldh", "listhesis", "modic", "endplate_upper", "endplate_lower", "narrowing",
                      "bulging", "herniation_sag", "canal"]
FindingStatus = Literal["assessed", "not_assessed"]
FINDING_KINDS: tuple[str, ...] = get_args(FindingKind)
# The three findings of schema version 1; the others came with version 2 (issue #21).
CORE_KINDS: tuple[str, ...] = ("pfirrmann", "ldh", "listhesis")
SAGITTAL_GRADING_KINDS: tuple[str, ...] = ("modic", "endplate_upper", "endplate_lower", "narrowing", "bulging",
                                           "herniation_sag")
STATUSES: tuple[str, ...] = get_args(FindingStatus)

_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V"}

# Who a correction is attributed to when the value in force was changed in findings.json itself:
# the file does not say who edited it, so the record names the route the change came by.
FLAT_EDIT_READER = "findings.json edit"
# A correction's time when nothing says when it was made (a findings.json read from a string).
UNKNOWN_TIME = "unknown"


def _allowed(field_name: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed or isinstance(value, bool) and not any(a is value for a in allowed):
        shown = ", ".join("null" if a is None else repr(a) if isinstance(a, str) else str(a) for a in allowed)
        raise ValueError(f"{field_name} must be one of {shown}; got {value!r}")


def _finite(field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field_name} must be a number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{field_name} must be a finite number; got {value!r}")
    return value


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def validate_level_name(name: str) -> str:
    """Return ``name`` if it is a disc level SpineAssist knows (e.g. ``"L4-L5"``), else raise ValueError."""
    _allowed("level", name, LEVEL_NAMES)
    return name


# --------------------------------------------------------------------------------------------
# Values: what a grade is. Immutable, validated on construction.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PfirrmannGrade:
    """Pfirrmann disc degeneration grade, 1 (normal) to 5 (collapsed)."""

    grade: int

    def __post_init__(self) -> None:
        _allowed("pfirrmann.grade", self.grade, PFIRRMANN_GRADES)

    @property
    def label(self) -> str:
        return f"Pfirrmann {_ROMAN[self.grade]}"

    def to_dict(self) -> dict[str, Any]:
        return {"grade": self.grade}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PfirrmannGrade":
        return cls(d["grade"])


@dataclass(frozen=True)
class MSUGrade:
    """Michigan State University herniation grade: size 0-3, zone A/AB/B/BC/C, side.

    Size 0 is no herniation; ``bulge`` then says whether the disc bulges (the published work's
    "none/bulge" severity class). Side is in patient terms: left, right, bilateral, or None for a
    central (zone A) herniation.
    """

    size: int
    zone: str | None = None
    side: str | None = None
    bulge: bool = False

    def __post_init__(self) -> None:
        _allowed("ldh.msu_size", self.size, MSU_SIZES)
        _allowed("ldh.msu_zone", self.zone, (None, *MSU_ZONES))
        _allowed("ldh.side", self.side, (None, *SIDES))
        if not isinstance(self.bulge, bool):
            raise TypeError(f"ldh.bulge must be true or false; got {self.bulge!r}")
        if self.size == 0 and (self.zone is not None or self.side is not None):
            raise ValueError(f"ldh.msu_size 0 (no herniation) takes no zone or side; got zone={self.zone!r} side={self.side!r}")
        if self.size > 0 and self.zone is None:
            raise ValueError(f"ldh.msu_zone is required for a herniation of size {self.size}: one of {', '.join(MSU_ZONES)}")
        if self.size > 0 and self.bulge:
            raise ValueError("ldh.bulge applies only to msu_size 0; a herniation of size 1-3 is not a bulge")
        if self.zone in ("B", "BC", "C") and self.side not in ("left", "right"):
            raise ValueError(f"ldh.side must be 'left' or 'right' for zone {self.zone}; got {self.side!r}")

    @property
    def severity(self) -> int:
        """The published work's 4-class severity: 0 none/bulge, 1, 2, 3."""
        return self.size

    @property
    def label(self) -> str:
        """Return the reading as a radiologist writes it, e.g. ``"2-AB right"``."""
        if self.size == 0:
            return "bulge" if self.bulge else "none"
        side = f" {self.side}" if self.side else (" central" if self.zone == "A" else "")
        return f"{self.size}-{self.zone}{side}"

    def to_dict(self) -> dict[str, Any]:
        return {"msu_size": self.size, "msu_zone": self.zone, "side": self.side, "bulge": self.bulge}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MSUGrade":
        return cls(d["msu_size"], d.get("msu_zone"), d.get("side"), bool(d.get("bulge", False)))


@dataclass(frozen=True)
class MeyerdingGrade:
    """Spondylolisthesis: Meyerding grade 0-5, signed slip % (+ antero, - retro), direction."""

    grade: int
    slip_percent: float | None = None
    direction: str | None = None

    def __post_init__(self) -> None:
        _allowed("listhesis.meyerding", self.grade, MEYERDING_GRADES)
        if self.slip_percent is not None:
            object.__setattr__(self, "slip_percent", _finite("listhesis.slip_percent", self.slip_percent))
        _allowed("listhesis.direction", self.direction, (None, *LISTHESIS_DIRECTIONS))
        if self.grade == 0 and self.direction is not None:
            raise ValueError(f"listhesis.direction must be null for Meyerding grade 0; got {self.direction!r}")
        if self.grade > 0 and self.direction is None:
            raise ValueError("listhesis.direction is required for Meyerding grade 1-5: 'antero' or 'retro'")
        if self.grade > 0 and self.slip_percent not in (None, 0.0):
            expected = "antero" if self.slip_percent > 0 else "retro"
            if self.direction != expected:
                raise ValueError(
                    f"listhesis.direction {self.direction!r} contradicts the signed slip {self.slip_percent:+.1f} % "
                    f"(positive is antero, negative retro)"
                )

    @property
    def label(self) -> str:
        if self.grade == 0:
            return "none"
        slip = f" ({abs(self.slip_percent):.0f} %)" if self.slip_percent is not None else ""
        return f"{self.direction}listhesis grade {_ROMAN[self.grade]}{slip}"

    def to_dict(self) -> dict[str, Any]:
        return {"meyerding": self.grade, "slip_percent": self.slip_percent, "direction": self.direction}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MeyerdingGrade":
        return cls(d["meyerding"], d.get("slip_percent"), d.get("direction"))


def stenosis_grade(ap_mm: float) -> str:
    """Return the central canal stenosis grade of an antero-posterior diameter (mm), by Verbiest's rule."""
    ap = _finite("canal.ap_mm", ap_mm)
    if ap < ABSOLUTE_STENOSIS_BELOW_MM:
        return "absolute"
    if ap <= RELATIVE_STENOSIS_UP_TO_MM:
        return "relative"
    return "none"


@dataclass(frozen=True)
class ModicType:
    """Modic vertebral endplate marrow change at a disc: type 0 (none), 1, 2 or 3.

    One type per disc, for the endplates above and below it together (as SPIDER's radiologists grade it).
    """

    type: int

    def __post_init__(self) -> None:
        _allowed("modic.modic_type", self.type, MODIC_TYPES)

    @property
    def label(self) -> str:
        return "none" if self.type == 0 else f"Modic {self.type}"

    def to_dict(self) -> dict[str, Any]:
        return {"modic_type": self.type}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModicType":
        return cls(d["modic_type"])


@dataclass(frozen=True)
class Presence:
    """A yes/no finding (an endplate defect, disc narrowing, bulging, a herniation seen on the sagittal view)."""

    present: bool

    def __post_init__(self) -> None:
        if not isinstance(self.present, bool):
            raise ValueError(f"present must be true or false; got {self.present!r}")

    @property
    def label(self) -> str:
        return "yes" if self.present else "no"

    def to_dict(self) -> dict[str, Any]:
        return {"present": self.present}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Presence":
        return cls(d["present"])


@dataclass(frozen=True)
class CanalDiameter:
    """The central canal's antero-posterior diameter at the disc (mm) and its stenosis grade.

    The grade follows ``stenosis_grade`` when the model measures; a reader may set another (or only
    the grade, with no diameter).
    """

    stenosis: str
    ap_mm: float | None = None

    def __post_init__(self) -> None:
        _allowed("canal.stenosis", self.stenosis, STENOSIS_GRADES)
        if self.ap_mm is not None:
            ap = _finite("canal.ap_mm", self.ap_mm)
            if ap <= 0:
                raise ValueError(f"canal.ap_mm must be above 0; got {ap}")
            object.__setattr__(self, "ap_mm", ap)

    @classmethod
    def measured(cls, ap_mm: float) -> "CanalDiameter":
        return cls(stenosis_grade(ap_mm), ap_mm)

    @property
    def label(self) -> str:
        ap = f"{self.ap_mm:.1f} mm" if self.ap_mm is not None else ""
        grade = "no stenosis" if self.stenosis == "none" else f"{self.stenosis} stenosis"
        return f"{ap}, {grade}" if ap else grade

    def to_dict(self) -> dict[str, Any]:
        return {"ap_mm": self.ap_mm, "stenosis": self.stenosis}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CanalDiameter":
        return cls(d["stenosis"], d.get("ap_mm"))


# --------------------------------------------------------------------------------------------
# Evidence: the numbers and geometry a grade came from.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    """One number a reader can check, with its unit (UCUM: ``mm``, ``%``, ``1`` for a ratio)."""

    name: str
    value: float
    unit: str
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("measurement.name must be a non-empty string")
        object.__setattr__(self, "value", _finite(f"measurement {self.name!r} value", self.value))
        if not isinstance(self.unit, str) or not self.unit:
            raise ValueError(f"measurement {self.name!r} needs a unit (e.g. 'mm', '%', '1'); got {self.unit!r}")

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "value": self.value, "unit": self.unit}
        if self.description:
            d["description"] = self.description
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Measurement":
        return cls(d["name"], d["value"], d["unit"], d.get("description", ""))


Point = tuple[float, float, float]


def _point(name: str, p: Any) -> Point:
    try:
        coords = tuple(p)
    except TypeError:
        raise TypeError(f"point {name!r} must be three LPS coordinates in mm; got {p!r}") from None
    if len(coords) != 3:
        raise ValueError(f"point {name!r} must have 3 coordinates (LPS mm); got {len(coords)}")
    return tuple(_finite(f"point {name!r}", float(c) if hasattr(c, "__float__") else c) for c in coords)  # type: ignore[return-value]


@dataclass
class Geometry:
    """Named points and lines (patient LPS mm) that a grade was measured from.

    ``source`` says which image they lie on: ``{"series_instance_uid": ..., "sop_instance_uid": ...}``.
    """

    points: dict[str, Point] = field(default_factory=dict)
    lines: dict[str, tuple[Point, Point]] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.points = {k: _point(k, v) for k, v in self.points.items()}
        self.lines = {k: (_point(f"{k}[0]", v[0]), _point(f"{k}[1]", v[1])) for k, v in self.lines.items()}

    def __bool__(self) -> bool:
        return bool(self.points or self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": {k: list(v) for k, v in self.points.items()},
            "lines": {k: [list(a), list(b)] for k, (a, b) in self.lines.items()},
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Geometry":
        d = d or {}
        return cls(dict(d.get("points", {})), dict(d.get("lines", {})), dict(d.get("source", {})))


@dataclass(frozen=True)
class Correction:
    """One reader's change to a finding (or to a level's name): what, from, to, who, when, why."""

    finding: str
    old: Any
    new: Any
    reader: str
    time: str = field(default_factory=_now)
    note: str = ""

    def __post_init__(self) -> None:
        _allowed("correction.finding", self.finding, (*FINDING_KINDS, "level"))
        if not isinstance(self.reader, str) or not self.reader.strip():
            raise ValueError("correction.reader must name who made the correction")

    def to_dict(self) -> dict[str, Any]:
        return {"finding": self.finding, "from": self.old, "to": self.new, "reader": self.reader,
                "time": self.time, "note": self.note}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Correction":
        return cls(d["finding"], d.get("from"), d.get("to"), d["reader"], d.get("time") or _now(), d.get("note", ""))


# --------------------------------------------------------------------------------------------
# Findings: model value + reader value + evidence + history.
# --------------------------------------------------------------------------------------------

V = TypeVar("V", PfirrmannGrade, MSUGrade, MeyerdingGrade, ModicType, Presence, CanalDiameter)
View = Literal["sagittal", "axial"]


@dataclass
class Finding(Generic[V]):
    """One kind of finding at one level: the model's value, the reader's value, and their evidence.

    ``status`` is ``"not_assessed"`` (with a ``reason``) when the input could not support it, e.g.
    herniation without an axial series.
    """

    kind: ClassVar[str] = ""
    value_type: ClassVar[type] = object
    view: ClassVar[View] = "sagittal"      # the series the model grades it on (the report says so)

    model: V | None = None
    reader: V | None = None
    measurements: list[Measurement] = field(default_factory=list)
    geometry: Geometry = field(default_factory=Geometry)
    corrections: list[Correction] = field(default_factory=list)
    status: FindingStatus = "assessed"
    reason: str = ""
    confidence: float | None = None

    def __post_init__(self) -> None:
        for name in ("model", "reader"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, self.value_type):
                raise TypeError(f"{self.kind}.{name} must be a {self.value_type.__name__}; got {type(v).__name__}")
        _allowed(f"{self.kind}.status", self.status, STATUSES)
        if self.confidence is not None:
            c = _finite(f"{self.kind}.confidence", self.confidence)
            if not 0.0 <= c <= 1.0:
                raise ValueError(f"{self.kind}.confidence must be between 0 and 1; got {c}")

    @property
    def value(self) -> V | None:
        """The value in force: the reader's if corrected, else the model's."""
        return self.reader if self.reader is not None else self.model

    @property
    def corrected(self) -> bool:
        return self.reader is not None

    @property
    def disagrees(self) -> bool:
        """True when a reader's value stands and the model says something else."""
        return self.reader is not None and self.model is not None and self.reader != self.model

    def measurement(self, name: str) -> Measurement | None:
        return next((m for m in self.measurements if m.name == name), None)

    def correct(self, new: V, reader: str, note: str = "", time: str | None = None) -> Correction:
        """Set the reader's value (the model's is kept) and record the change; return the record."""
        if not isinstance(new, self.value_type):
            raise TypeError(f"a {self.kind} correction must be a {self.value_type.__name__}; got {type(new).__name__}")
        old = self.value
        c = Correction(self.kind, old.to_dict() if old else None, new.to_dict(), reader, time or _now(), note)
        self.reader = new
        self.status = "assessed"
        self.reason = ""
        self.corrections.append(c)
        return c

    def reset(self, reader: str, note: str = "reset to the model's value") -> Correction | None:
        """Drop the reader's value so the model's is in force again; record it. None if nothing to reset."""
        if self.reader is None:
            return None
        c = Correction(self.kind, self.reader.to_dict(), self.model.to_dict() if self.model else None, reader, _now(), note)
        self.reader = None
        self.corrections.append(c)
        return c

    # JSON: the value in force flattened at the top (the findings.json contract), model and reader beside it.
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self._empty_value())
        if self.value is not None:
            d.update(self.value.to_dict())
        d["status"] = self.status
        if self.reason:
            d["reason"] = self.reason
        d["model"] = self.model.to_dict() if self.model else None
        d["reader"] = self.reader.to_dict() if self.reader else None
        if self.confidence is not None:
            d["confidence"] = self.confidence
        d["measurements"] = [m.to_dict() for m in self.measurements]
        d["geometry"] = self.geometry.to_dict()
        return d

    @classmethod
    def _empty_value(cls) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, corrections: Iterable[Correction] = (),
                  level: str = "") -> "Finding":
        """Return the finding read from its findings.json form; ``level`` names it in error messages.

        The flat value in force is taken as the model's only when the file gives nothing else (a
        hand-written truth.json); a flat value that disagrees with the model and reader values is
        ``Assessment.from_dict``'s to handle, since it needs the file's provenance.
        """
        if d is None:
            return cls(corrections=list(corrections))
        if not isinstance(d, Mapping):
            raise ValueError(f"{level} {cls.kind} must be a JSON object; got {_json_type(d)}".lstrip())
        vt = cls.value_type
        model = vt.from_dict(d["model"]) if d.get("model") else None  # type: ignore[attr-defined]
        reader = vt.from_dict(d["reader"]) if d.get("reader") else None  # type: ignore[attr-defined]
        flat = cls.flat_value(d, level)
        if model is None and reader is None and d.get("status", "assessed") == "assessed" and flat is not None:
            # A hand-written file (e.g. truth.json) may give only the flat value: take it as the model's.
            model = flat
        return cls(
            model=model, reader=reader,
            measurements=[Measurement.from_dict(m) for m in d.get("measurements", [])],
            geometry=Geometry.from_dict(d.get("geometry")),
            corrections=list(corrections),
            status=d.get("status", "assessed"), reason=d.get("reason", ""),
            confidence=d.get("confidence"),
        )

    @classmethod
    def flat_value(cls, d: Mapping[str, Any], level: str = "") -> V | None:
        """Return the value in force as written at the top of the finding's JSON, or None when it is empty.

        Raises ValueError naming ``level``, the finding and the allowed values when it is not a
        valid value (e.g. Pfirrmann 7).
        """
        if not any(d.get(k) is not None for k in cls._empty_value()):
            return None
        try:
            return cls.value_type.from_dict(d)  # type: ignore[attr-defined]
        except (ValueError, TypeError, KeyError) as e:
            reason = f"{e.args[0]!r} is missing" if isinstance(e, KeyError) else str(e)
            raise ValueError(
                f"{level} {cls.kind}: the value in force in findings.json is not valid ({reason}); write an "
                f"allowed value there, or copy the model's value back from its \"model\" field".lstrip()) from None


class PfirrmannFinding(Finding[PfirrmannGrade]):
    kind = "pfirrmann"
    value_type = PfirrmannGrade

    @classmethod
    def _empty_value(cls) -> dict[str, Any]:
        return {"grade": None}


class HerniationFinding(Finding[MSUGrade]):
    kind = "ldh"
    value_type = MSUGrade
    view = "axial"

    @classmethod
    def _empty_value(cls) -> dict[str, Any]:
        return {"msu_size": None, "msu_zone": None, "side": None, "bulge": None}


class ListhesisFinding(Finding[MeyerdingGrade]):
    kind = "listhesis"
    value_type = MeyerdingGrade

    @classmethod
    def _empty_value(cls) -> dict[str, Any]:
        return {"meyerding": None, "slip_percent": None, "direction": None}


class ModicFinding(Finding[ModicType]):
    kind = "modic"
    value_type = ModicType

    @classmethod
    def _empty_value(cls) -> dict[str, Any]:
        return {"modic_type": None}


class _PresenceFinding(Finding[Presence]):
    value_type = Presence

    @classmethod
    def _empty_value(cls) -> dict[str, Any]:
        return {"present": None}


class UpperEndplateFinding(_PresenceFinding):
    """A defect of the endplate above the disc (the lower endplate of the vertebra above)."""

    kind = "endplate_upper"


class LowerEndplateFinding(_PresenceFinding):
    """A defect of the endplate below the disc (the upper endplate of the vertebra below)."""

    kind = "endplate_lower"


class NarrowingFinding(_PresenceFinding):
    kind = "narrowing"


class BulgingFinding(_PresenceFinding):
    kind = "bulging"


class SagittalHerniationFinding(_PresenceFinding):
    """Herniated or not, as seen on the sagittal series: what a study without an axial series can say."""

    kind = "herniation_sag"


class CanalFinding(Finding[CanalDiameter]):
    kind = "canal"
    value_type = CanalDiameter

    @classmethod
    def _empty_value(cls) -> dict[str, Any]:
        return {"ap_mm": None, "stenosis": None}


_FINDING_CLASSES: dict[str, type[Finding]] = {
    "pfirrmann": PfirrmannFinding, "ldh": HerniationFinding, "listhesis": ListhesisFinding,
    "modic": ModicFinding, "endplate_upper": UpperEndplateFinding, "endplate_lower": LowerEndplateFinding,
    "narrowing": NarrowingFinding, "bulging": BulgingFinding, "herniation_sag": SagittalHerniationFinding,
    "canal": CanalFinding,
}
FINDING_TITLES: dict[str, str] = {     # how the report, table and panel name each finding
    "pfirrmann": "Pfirrmann", "ldh": "herniation (MSU)", "listhesis": "listhesis", "modic": "Modic",
    "endplate_upper": "upper endplate defect", "endplate_lower": "lower endplate defect",
    "narrowing": "disc narrowing", "bulging": "disc bulging", "herniation_sag": "herniation (sagittal)",
    "canal": "canal AP",
}


def finding_class(kind: str) -> type[Finding]:
    """Return the Finding class of a finding kind (``PfirrmannFinding`` for ``"pfirrmann"``)."""
    _allowed("finding kind", kind, FINDING_KINDS)
    return _FINDING_CLASSES[kind]


def value_type_of(kind: str) -> type:
    """Return the value class of a finding kind (``PfirrmannGrade`` for ``"pfirrmann"``)."""
    _allowed("finding kind", kind, FINDING_KINDS)
    return _FINDING_CLASSES[kind].value_type


NOT_GRADED = "not graded"   # the reason a version-2 finding gives until a model or reader grades it


def _not_graded(kind: str, reason: str = NOT_GRADED) -> Callable[[], Finding]:
    return lambda: _FINDING_CLASSES[kind](status="not_assessed", reason=reason)


@dataclass
class Level:
    """One disc level (e.g. ``L4-L5``) and its three findings.

    ``disc_center`` is the disc's centroid (LPS mm) when known: it is what ties a level to its
    disc when a reader relabels levels, so every finding moves with its disc.
    """

    name: str
    pfirrmann: PfirrmannFinding = field(default_factory=PfirrmannFinding)
    ldh: HerniationFinding = field(default_factory=HerniationFinding)
    listhesis: ListhesisFinding = field(default_factory=ListhesisFinding)
    modic: ModicFinding = field(default_factory=_not_graded("modic"))  # type: ignore[assignment]
    endplate_upper: UpperEndplateFinding = field(default_factory=_not_graded("endplate_upper"))  # type: ignore[assignment]
    endplate_lower: LowerEndplateFinding = field(default_factory=_not_graded("endplate_lower"))  # type: ignore[assignment]
    narrowing: NarrowingFinding = field(default_factory=_not_graded("narrowing"))  # type: ignore[assignment]
    bulging: BulgingFinding = field(default_factory=_not_graded("bulging"))  # type: ignore[assignment]
    herniation_sag: SagittalHerniationFinding = field(default_factory=_not_graded("herniation_sag"))  # type: ignore[assignment]
    canal: CanalFinding = field(default_factory=_not_graded("canal"))  # type: ignore[assignment]
    disc_center: Point | None = None
    model_name: str | None = None
    corrections: list[Correction] = field(default_factory=list)  # relabels of the level itself
    # how sure the models are that this disc was found and named right (0-1): the weakest of the
    # detections its name rests on (the vertebrae bounding it and the sacrum the count starts from)
    confidence: float | None = None

    def __post_init__(self) -> None:
        validate_level_name(self.name)
        if self.confidence is not None:
            c = _finite(f"{self.name} confidence", self.confidence)
            if not 0.0 <= c <= 1.0:
                raise ValueError(f"{self.name} confidence must be between 0 and 1; got {c}")
            self.confidence = c
        if self.model_name is None:
            self.model_name = self.name
        else:
            validate_level_name(self.model_name)
        if self.disc_center is not None:
            self.disc_center = _point(f"{self.name} disc_center", self.disc_center)
        for kind, cls in _FINDING_CLASSES.items():
            if not isinstance(getattr(self, kind), cls):
                raise TypeError(f"Level.{kind} must be a {cls.__name__}")

    def finding(self, kind: FindingKind) -> Finding:
        _allowed("finding kind", kind, FINDING_KINDS)
        return getattr(self, kind)

    def findings(self) -> list[Finding]:
        return [getattr(self, kind) for kind in FINDING_KINDS]

    def rename(self, new_name: str, reader: str, note: str = "") -> Correction:
        """Relabel this level (its findings stay with it); record who did it."""
        validate_level_name(new_name)
        c = Correction("level", self.name, new_name, reader, _now(), note)
        self.name = new_name
        self.corrections.append(c)
        return c

    def all_corrections(self) -> list[Correction]:
        """Every correction at this level, findings' and relabels', oldest first."""
        out = list(self.corrections)
        for f in self.findings():
            out.extend(f.corrections)
        return sorted(out, key=lambda c: c.time)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"level": self.name}
        if self.model_name != self.name:
            d["model_level"] = self.model_name
        if self.disc_center is not None:
            d["disc_center"] = list(self.disc_center)
        if self.confidence is not None:
            d["confidence"] = round(self.confidence, 3)
        for f in self.findings():
            d[f.kind] = f.to_dict()
        d["corrections"] = [c.to_dict() for c in self.all_corrections()]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Level":
        corrections = [Correction.from_dict(c) for c in d.get("corrections", [])]
        by_kind: dict[str, list[Correction]] = {k: [] for k in (*FINDING_KINDS, "level")}
        for c in corrections:
            by_kind[c.finding].append(c)
        name = validate_level_name(d["level"])   # before the findings, whose errors name it
        findings: dict[str, Finding] = {}
        for kind, finding_class in _FINDING_CLASSES.items():
            if kind in d or kind in CORE_KINDS:
                findings[kind] = finding_class.from_dict(d.get(kind), by_kind[kind], name)
            else:           # a file from before this finding existed
                findings[kind] = _not_graded(kind, "not in this findings file (an earlier SpineAssist version)")()
                findings[kind].corrections.extend(by_kind[kind])
        return cls(
            name=name,
            **findings,  # type: ignore[arg-type]
            disc_center=d.get("disc_center"),
            model_name=d.get("model_level", d["level"]),
            corrections=by_kind["level"],
            confidence=d.get("confidence"),
        )


def _shown(value: Any) -> str:
    return "not set" if value is None else value.label


def _json_type(value: Any) -> str:
    """Return the JSON name of ``value``'s type (never the value: a file may hold anything, names included)."""
    if value is None:
        return "null"
    for kind, name in ((bool, "true/false"), (str, "a string"), ((int, float), "a number"),
                       (list, "a list"), (Mapping, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


@dataclass(frozen=True)
class FlatValueEdit:
    """A finding whose value in force, as written in findings.json, disagrees with its model and reader values.

    SpineAssist always writes the value in force as the reader's value, else the model's; any
    other value there was put there by hand (or by a script). ``flat`` is None when the value was
    emptied. ``model`` and ``reader`` are the values the file gave beside it.
    """

    level: str
    kind: str
    flat: PfirrmannGrade | MSUGrade | MeyerdingGrade | None
    model: PfirrmannGrade | MSUGrade | MeyerdingGrade | None
    reader: PfirrmannGrade | MSUGrade | MeyerdingGrade | None

    def line(self) -> str:
        """Return one line: level, finding, the value in force, the model's and the reader's value."""
        return (f"{self.level} {self.kind}: value in force {_shown(self.flat)}, model {_shown(self.model)}, "
                f"reader {_shown(self.reader)}")

    def warning(self) -> str:
        """Return the warning recorded in the assessment when this edit is read."""
        was = f"model {_shown(self.model)}, reader {_shown(self.reader)}"
        if self.flat is None:
            kept = self.reader if self.reader is not None else self.model
            return (f"{self.level} {self.kind}: the value in force in findings.json was emptied ({was}); editing "
                    f"that value cannot clear a finding, so {_shown(kept)} stays in force: write another value "
                    f"there, or correct the finding in SpineAssist")
        return (f"{self.level} {self.kind}: the value in force in findings.json was edited to {_shown(self.flat)} "
                f"({was}); it is kept as a reader correction by {FLAT_EDIT_READER!r}: confirm or change it in "
                f"SpineAssist to record who made it")


def flat_value_edits(level: Level, d: Mapping[str, Any]) -> list[FlatValueEdit]:
    """Return the findings of ``level`` whose value in force in its JSON form ``d`` disagrees with ``level``'s.

    ``level`` is ``Level.from_dict(d)``: its findings hold the model and reader values the file
    gave. A finding whose JSON has no flat keys at all (a hand-written file) has nothing to disagree.
    """
    edits = []
    for f in level.findings():
        fd = d.get(f.kind)
        if not isinstance(fd, Mapping) or not any(k in fd for k in f._empty_value()):
            continue
        flat = f.flat_value(fd, level.name)
        if flat != f.value:
            edits.append(FlatValueEdit(level.name, f.kind, flat, f.model, f.reader))
    return edits


@dataclass(frozen=True)
class ModelInfo:
    """A model that contributed to an assessment, identified by the SHA-256 of its weights."""

    name: str
    sha256: str
    version: str = ""

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(ch not in "0123456789abcdef" for ch in self.sha256):
            raise ValueError(f"model {self.name!r} sha256 must be 64 lowercase hex digits; got {self.sha256!r}")

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "sha256": self.sha256}
        if self.version:
            d["version"] = self.version
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelInfo":
        return cls(d["name"], d["sha256"], d.get("version", ""))


@dataclass
class Assessment:
    """One study's assessment: which series were read, by which software and models, and its levels."""

    study_instance_uid: str
    levels: list[Level] = field(default_factory=list)
    sagittal_series_uid: str | None = None
    axial_series_uid: str | None = None
    software_version: str = __version__
    models: list[ModelInfo] = field(default_factory=list)
    created: str = field(default_factory=_now)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # why a reader should look closely: the image looks unlike the training data, or the results are
    # implausible (disc count, spacing, order, uncertain levels); empty when nothing was flagged
    review_reasons: list[str] = field(default_factory=list)
    # values in force found edited by hand when this was read from findings.json, each already taken
    # as a reader correction and warned about; not a field of the JSON: the corrections and warnings say it
    flat_edits: list[FlatValueEdit] = field(default_factory=list, repr=False, compare=False)

    @property
    def needs_review(self) -> bool:
        return bool(self.review_reasons)

    def __post_init__(self) -> None:
        if not isinstance(self.study_instance_uid, str):
            raise TypeError("study_instance_uid must be a string (a DICOM UID)")
        names = [lv.name for lv in self.levels]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"levels must be unique; {', '.join(duplicates)} appears more than once")

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise KeyError(f"no level {name!r} in this assessment; levels are {', '.join(lv.name for lv in self.levels) or 'none'}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "study_instance_uid": self.study_instance_uid,
            "series": {"sagittal": self.sagittal_series_uid, "axial": self.axial_series_uid},
            "software": {"name": "SpineAssist", "version": self.software_version,
                         "models": [m.to_dict() for m in self.models]},
            "created": self.created,
            "settings": dict(self.settings),
            "warnings": list(self.warnings),
            "review": {"status": "needs review" if self.needs_review else "no flags",
                       "reasons": list(self.review_reasons)},
            "levels": [lv.to_dict() for lv in self.levels],
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, edit_time: str = UNKNOWN_TIME) -> "Assessment":
        """Return the assessment a findings.json object describes.

        A finding whose value in force disagrees with its model and reader values was edited by
        hand; that value is taken as a reader correction by ``FLAT_EDIT_READER`` at ``edit_time``
        (``load`` passes the file's modification time), listed in ``flat_edits`` and warned about
        in ``warnings``, so a save or a rerun keeps it. A value in force that is not a valid value
        raises ValueError naming the level and the finding.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"a findings file must hold a JSON object; this one holds {_json_type(d)} "
                             f"(is this a SpineAssist findings.json?)")
        if d.get("schema") not in READABLE_SCHEMAS:
            got = d.get("schema")
            # another schema's name is shown; anything else in that field could be anything, so only its type
            shown = repr(got) if isinstance(got, str) and got.startswith("spineassist.") else _json_type(got)
            raise ValueError(f"schema must be one of {', '.join(map(repr, READABLE_SCHEMAS))}; got {shown} "
                             f"(is this a SpineAssist findings file?)")
        level_dicts = d.get("levels", [])
        if not isinstance(level_dicts, list):
            raise ValueError(f"levels must be a list of level objects; got {_json_type(level_dicts)}")
        for i, lv in enumerate(level_dicts):
            if not isinstance(lv, Mapping):
                raise ValueError(f"levels[{i}] must be a level object ({{\"level\": \"L4-L5\", ...}}); "
                                 f"got {_json_type(lv)}")
        levels, edits = [], []
        for lv in level_dicts:
            level = Level.from_dict(lv)
            for edit in flat_value_edits(level, lv):
                edits.append(edit)
                if edit.flat is not None:
                    when = ("time is the file's last modification" if edit_time != UNKNOWN_TIME
                            else "time unknown")
                    level.finding(edit.kind).correct(  # type: ignore[arg-type]
                        edit.flat, FLAT_EDIT_READER, time=edit_time,
                        note=f"value in force edited in findings.json, not through SpineAssist; {when}")
            levels.append(level)
        series = d.get("series", {})
        software = d.get("software", {})
        warnings = list(d.get("warnings", []))
        warnings += [e.warning() for e in edits if e.warning() not in warnings]
        return cls(
            study_instance_uid=d["study_instance_uid"],
            levels=levels,
            sagittal_series_uid=series.get("sagittal"),
            axial_series_uid=series.get("axial"),
            software_version=software.get("version", ""),
            models=[ModelInfo.from_dict(m) for m in software.get("models", [])],
            created=d.get("created") or _now(),
            settings=dict(d.get("settings", {})),
            warnings=warnings,
            review_reasons=list((d.get("review") or {}).get("reasons", [])),
            flat_edits=edits,
        )

    @classmethod
    def from_json(cls, text: str) -> "Assessment":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        """Write findings.json atomically (temporary file, then rename); return the path."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Assessment":
        """Return the assessment in a findings.json file.

        A value in force edited by hand is kept as a reader correction (see ``from_dict``) timed
        at the file's modification time: SpineAssist writes the value in force and the model and
        reader values together, so the last write that left them disagreeing was the edit.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); restore it from a backup or rerun the assessment") from None
        modified = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
        return cls.from_dict(data, edit_time=modified)


def carry_reader_values(new: Assessment, previous: Assessment) -> list[str]:
    """Copy every reader correction of ``previous`` into ``new`` (a rerun), matching levels by name.

    The new model values stay; the reader's values and correction history are kept beside them.
    Returns one line per finding where the new model value disagrees with the reader's. The
    warnings about values in force that ``previous`` found edited by hand (``flat_edits``) are
    added to ``new``'s, so the rerun still says where those corrections came from.
    """
    disagreements: list[str] = []
    for edit in previous.flat_edits:
        if edit.warning() not in new.warnings:
            new.warnings.append(edit.warning())
    by_model_name = {lv.model_name: lv for lv in new.levels}
    for old in previous.levels:
        target = by_model_name.get(old.model_name)
        if target is None:
            if old.all_corrections():
                new.warnings.append(f"level {old.name}: reader corrections kept in the previous findings only; "
                                    f"this run found no disc {old.model_name}")
            continue
        if old.name != target.name:
            target.name = old.name
        target.corrections = list(old.corrections)
        for kind in FINDING_KINDS:
            src, dst = old.finding(kind), target.finding(kind)
            dst.corrections = list(src.corrections)
            if src.reader is not None:
                dst.reader = src.reader
                if dst.disagrees:
                    disagreements.append(
                        f"{target.name} {kind}: reader {src.reader.label}, new model {dst.model.label}")  # type: ignore[union-attr]
    return disagreements


def findings_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of findings.json, shipped in Resources/."""
    return json.loads(resource_path("findings.schema.json").read_text(encoding="utf-8"))


def validate_findings_json(data: Any) -> None:
    """Raise ``ValueError`` naming the first place ``data`` breaks the findings.json schema.

    The message names the place and what the schema expects there, never the value found: a
    file given by mistake may hold anything, patient names included.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(findings_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        if e.context:   # oneOf/anyOf: the alternative that came closest says more than "matches none"
            e = jsonschema.exceptions.best_match(e.context)
        path = list(e.absolute_path)
        where = "/".join(str(p) for p in path) or "(top level)"
        if len(path) >= 2 and path[0] == "levels" and isinstance(data, Mapping):
            try:
                name = data["levels"][path[1]]["level"]
            except (KeyError, IndexError, TypeError):
                name = None
            if name in LEVEL_NAMES:
                where += f" (level {name})"
        raise ValueError(f"findings.json is invalid at {where}: {_schema_rule(e.validator, e.validator_value, e.message)}")


def _schema_rule(rule: str, expected: Any, message: str) -> str:
    """Return what a JSON Schema rule expects, in words, without the value that broke it."""
    if rule == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        return "must be " + " or ".join({"object": "an object", "array": "a list", "string": "a string",
                                          "number": "a number", "integer": "a whole number", "boolean": "true or false",
                                          "null": "null"}.get(t, t) for t in types)
    if rule == "enum":
        return "must be one of " + ", ".join(json.dumps(v) for v in expected)
    if rule == "const":
        return f"must be {json.dumps(expected)}"
    if rule == "required":
        return message     # "'x' is a required property": the name comes from the schema, not the file
    words = {"minimum": "must be at least {}", "maximum": "must be at most {}", "pattern": "must match {}",
             "minItems": "must have at least {} items", "maxItems": "must have at most {} items",
             "minLength": "must have at least {} characters"}
    if rule in words:
        return words[rule].format(expected)
    return f"breaks the schema's {rule!r} rule"
