"""What the side panel shows and offers, without Qt: each level's cells and the valid values of each editor.

The editors offer only values the findings model accepts, so a reader cannot type an impossible
grade: Pfirrmann I-V; MSU size 0 (none or bulge) or size 1-3 with each zone and the sides that
zone allows (B, BC and C need left or right); Meyerding 0 or 1-5 antero/retro; Modic none or type
1-3; yes/no for the endplate defects, narrowing, bulging and the herniation seen on the sagittal
view; the canal's stenosis grade (none, relative, absolute), which keeps the measured diameter.

Usage::

    from SpineAssistLib.ui.panel_model import choices, choice_index, level_view
    [c.text for c in choices("listhesis")][:3]    # ['none', 'I antero', 'I retro']
    view = level_view(level)
    view.cells["ldh"].text, view.cells["ldh"].model_text, view.cells["ldh"].corrected
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from SpineAssistLib.findings import (
    FINDING_KINDS,
    FINDING_TITLES,
    LISTHESIS_DIRECTIONS,
    LOW_LEVEL_CONFIDENCE,
    MEYERDING_GRADES,
    MODIC_TYPES,
    MSU_SIZES,
    MSU_ZONES,
    NOT_GRADED,
    PFIRRMANN_GRADES,
    SAGITTAL_GRADING_KINDS,
    SIDES,
    STENOSIS_GRADES,
    CanalDiameter,
    Finding,
    FindingKind,
    Level,
    MeyerdingGrade,
    ModicType,
    MSUGrade,
    PfirrmannGrade,
    Presence,
)

_ROMAN = {0: "0", 1: "I", 2: "II", 3: "III", 4: "IV", 5: "V"}

# The yes/no findings (value Presence).
PRESENCE_KINDS: tuple[str, ...] = tuple(k for k in SAGITTAL_GRADING_KINDS if k != "modic")
# The findings of schema version 2 (issue #21), in the order their columns follow the slip.
NEW_KINDS: tuple[str, ...] = (*SAGITTAL_GRADING_KINDS, "canal")

# Panel columns, left to right: the level, one editable cell per finding of schema 1, the slip, then
# one editable cell per finding of schema 2.
KIND_COLUMN: dict[str, str] = {"ldh": "Herniation (MSU)", "pfirrmann": "Pfirrmann", "listhesis": "Meyerding",
                               **{k: FINDING_TITLES[k][0].upper() + FINDING_TITLES[k][1:] for k in NEW_KINDS}}
# Each finding's full name, where a panel names one finding (the teaching chooser, the editors' labels).
KIND_TITLES: dict[str, str] = {"ldh": "Herniation (MSU)", "listhesis": "Spondylolisthesis (Meyerding)",
                               "pfirrmann": "Pfirrmann", **{k: KIND_COLUMN[k] for k in NEW_KINDS}}
COLUMNS: tuple[str, ...] = ("Level", "Herniation (MSU)", "Pfirrmann", "Meyerding", "Slip %",
                            *(KIND_COLUMN[k] for k in NEW_KINDS))


@dataclass(frozen=True)
class Choice:
    """One entry of an editor: the text shown and the value it sets."""

    text: str
    value: Any


def value_text(kind: FindingKind, value: Any) -> str:
    """Return a value as the panel writes it: ``"III"``, ``"2-AB right"``, ``"II antero"``, ``"Modic 1"``,
    ``"yes"``, ``"9.2 mm, absolute stenosis"``; "" for None."""
    if kind not in FINDING_KINDS:
        raise ValueError(f"kind must be one of {', '.join(FINDING_KINDS)}; got {kind!r}")
    if value is None:
        return ""
    if kind == "pfirrmann":
        return _ROMAN[value.grade]
    if kind == "listhesis":
        return "none" if value.grade == 0 else f"{_ROMAN[value.grade]} {value.direction}"
    return value.label


def _msu_values() -> list[MSUGrade]:
    out = [MSUGrade(0), MSUGrade(0, bulge=True)]
    for size in MSU_SIZES[1:]:
        for zone in MSU_ZONES:
            for side in (None, *SIDES):
                try:
                    out.append(MSUGrade(size, zone, side))
                except ValueError:
                    continue  # a combination the MSU classification does not have (e.g. zone C without a side)
    return out


def choices(kind: FindingKind) -> list[Choice]:
    """Return every value a reader may choose for one finding kind, in the order the editor lists them."""
    if kind == "pfirrmann":
        values: list[Any] = [PfirrmannGrade(g) for g in PFIRRMANN_GRADES]
    elif kind == "ldh":
        values = _msu_values()
    elif kind == "listhesis":
        values = [MeyerdingGrade(0)] + [MeyerdingGrade(g, None, d) for g in MEYERDING_GRADES[1:]
                                        for d in LISTHESIS_DIRECTIONS]
    elif kind == "modic":
        values = [ModicType(t) for t in MODIC_TYPES]
    elif kind in PRESENCE_KINDS:
        values = [Presence(True), Presence(False)]
    elif kind == "canal":
        values = [CanalDiameter(g) for g in STENOSIS_GRADES]
    else:
        raise ValueError(f"kind must be one of {', '.join(FINDING_KINDS)}; got {kind!r}")
    return [Choice(value_text(kind, v), v) for v in values]


def _same_choice(kind: FindingKind, a: Any, b: Any) -> bool:
    if kind == "listhesis":  # the editor chooses grade and direction; the measured slip % is not a choice
        return (a.grade, a.direction) == (b.grade, b.direction)
    if kind == "canal":      # the editor chooses the grade; the measured diameter is not a choice
        return a.stenosis == b.stenosis
    return a == b


def choice_index(kind: FindingKind, value: Any) -> int:
    """Return the editor index showing ``value`` (-1 for None or a value the editor does not list)."""
    if value is None:
        return -1
    return next((i for i, c in enumerate(choices(kind)) if _same_choice(kind, c.value, value)), -1)


def chosen_value(kind: FindingKind, index: int, current: Any = None) -> Any:
    """Return the value the editor's entry ``index`` sets.

    For Meyerding, the slip % of ``current`` is kept when the reader keeps its grade and
    direction (only then is the measurement still the reading's); otherwise it is left empty.
    For the canal, the diameter of ``current`` is kept whatever grade the reader chooses: the
    reader grades the measured canal (``canal_with_diameter`` changes the diameter).
    """
    options = choices(kind)
    if not 0 <= index < len(options):
        raise IndexError(f"{kind} editor has {len(options)} entries; got index {index}")
    value = options[index].value
    if kind == "listhesis" and current is not None and _same_choice(kind, value, current):
        return current
    if kind == "canal" and current is not None:
        return CanalDiameter(value.stenosis, current.ap_mm)
    return value


def canal_with_diameter(ap_mm: float) -> CanalDiameter:
    """Return the canal value of a diameter the reader measured (mm): graded by Verbiest's rule.

    Raises ValueError (TypeError for a non-number) naming ``canal.ap_mm`` for a diameter that is not
    a positive, finite number of millimetres.
    """
    return CanalDiameter.measured(ap_mm)


@dataclass(frozen=True)
class CellView:
    """One finding's cell: the text in force, the model's text, whether a reader corrected it, a tooltip."""

    kind: str
    text: str
    model_text: str
    corrected: bool
    assessed: bool
    tooltip: str
    index: int  # the editor entry to select; -1 when not assessed
    view: str = "sagittal"     # the series the grade is read on: "sagittal" or "axial"
    ap_mm: float | None = None  # the canal's diameter in force (mm), for the canal cell's number editor

    @property
    def display(self) -> str:
        """The cell's text; a corrected cell shows the model's value beside it."""
        if self.corrected:
            return f"{self.text} (model: {self.model_text or 'none'})"
        return self.text


@dataclass(frozen=True)
class LevelView:
    """One row of the panel's table."""

    name: str
    model_name: str
    cells: dict[str, CellView] = field(default_factory=dict)
    slip_text: str = ""
    confidence: float | None = None

    @property
    def corrected(self) -> bool:
        return any(c.corrected for c in self.cells.values()) or self.name != self.model_name

    @property
    def uncertain(self) -> bool:
        """True when the models found or named this level with low confidence: check it first."""
        return self.confidence is not None and self.confidence < LOW_LEVEL_CONFIDENCE

    @property
    def name_text(self) -> str:
        """The level column's text: the name, marked when uncertain."""
        return f"{self.name} (check)" if self.uncertain else self.name

    @property
    def name_tooltip(self) -> str:
        lines = [f"model level {self.model_name}"] if self.name != self.model_name else []
        if self.confidence is not None:
            lines.append(f"level confidence {self.confidence:.2f}" + (": found or named with low confidence"
                                                                      if self.uncertain else ""))
        return "\n".join(lines)


def review_text(assessment: Any) -> str:
    """Return the study's "needs review" line for the panel ("" when nothing was flagged)."""
    reasons = list(getattr(assessment, "review_reasons", None) or [])
    return ("Needs review: " + "; ".join(reasons)) if reasons else ""


def _tooltip(f: Finding, kind: FindingKind) -> str:
    lines = [f"{FINDING_TITLES[kind]}, read on the {f.view} series"]
    if f.status != "assessed":
        lines.append(f"not assessed: {f.reason}" if f.reason else "not assessed")
    if f.corrected:
        last = f.corrections[-1] if f.corrections else None
        who = f" by {last.reader}" if last else ""
        lines.append(f"reader's value{who}; the model said {value_text(kind, f.model) or 'nothing'}")
    if f.confidence is not None:
        lines.append(f"model confidence {f.confidence:.2f}")
    for m in f.measurements[:4]:
        lines.append(f"{m.name.replace('_', ' ')}: {m.value:.3g} {m.unit if m.unit != '1' else ''}".rstrip())
    return "\n".join(lines)


def cell_view(level: Level, kind: FindingKind) -> CellView:
    """Return the cell of one finding at one level."""
    f = level.finding(kind)
    assessed = f.status == "assessed"
    text = value_text(kind, f.value) if assessed else "not graded" if f.reason == NOT_GRADED else "not assessed"
    ap_mm = f.value.ap_mm if kind == "canal" and f.value is not None else None
    return CellView(kind, text, value_text(kind, f.model), f.corrected, assessed, _tooltip(f, kind),
                    choice_index(kind, f.value) if assessed else -1, f.view, ap_mm)


def slip_text(level: Level) -> str:
    """Return the slip % in force ("18.0"), or the model's with a mark when the reader's grade has no measured slip."""
    value, model = level.listhesis.value, level.listhesis.model
    if value is not None and value.slip_percent is not None:
        return f"{value.slip_percent:.1f}"
    if model is not None and model.slip_percent is not None:
        return f"{model.slip_percent:.1f} (model)"
    return ""


def level_view(level: Level) -> LevelView:
    """Return one level's table row."""
    return LevelView(level.name, level.model_name or level.name,
                     {kind: cell_view(level, kind) for kind in KIND_COLUMN}, slip_text(level), level.confidence)
