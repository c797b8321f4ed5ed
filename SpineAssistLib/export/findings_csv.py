"""findings.csv: one row per disc level with the value in force, the model's value and key measurements.

Columns (in this order, see :data:`COLUMNS`): the level (and the model's level name when a reader
relabelled it); per finding the value in force, the model's value, a ``corrected`` flag (``yes``
when a reader's value stands) and the status (``assessed`` / ``not_assessed`` with the reason);
then the key measurements: signed slip % (+ antero, - retro) and slip mm, MSU depth ratio, SIR
and DHI (empty when absent); whether any finding was corrected, and by whom. The findings of schema
version 2 follow, appended so that the earlier columns keep their places: per finding the value in
force, the model's value, ``corrected`` and the status (Modic type 0-3; ``yes``/``no`` for the
endplate defects, narrowing, bulging and the herniation seen on the sagittal view; for the canal
the AP diameter in mm and the stenosis grade, in force and the model's). Written with :mod:`csv`,
UTF-8, comma separated.

Usage::

    from SpineAssistLib.export.findings_csv import write_findings_csv
    write_findings_csv(assessment, "out/findings.csv")
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from SpineAssistLib.export.atomic import atomic_write
from SpineAssistLib.export.codes import key_measurement, slip_percent
from SpineAssistLib.findings import Assessment, Finding, Level

# The yes/no findings, in the order of their columns.
PRESENCE_KINDS: tuple[str, ...] = ("endplate_upper", "endplate_lower", "narrowing", "bulging", "herniation_sag")

COLUMNS: tuple[str, ...] = (
    "level", "model_level",
    "pfirrmann_grade", "pfirrmann_model_grade", "pfirrmann_corrected", "pfirrmann_status",
    "ldh", "ldh_msu_size", "ldh_msu_zone", "ldh_side", "ldh_model", "ldh_corrected", "ldh_status",
    "meyerding_grade", "listhesis_direction", "meyerding_model_grade", "listhesis_corrected", "listhesis_status",
    "slip_percent", "slip_percent_model", "slip_mm", "msu_depth_ratio", "sir", "dhi",
    "corrected", "readers",
    # schema version 2 (issue #21), appended: the columns above keep their places
    "modic_type", "modic_model_type", "modic_corrected", "modic_status",
    *(f"{kind}{suffix}" for kind in PRESENCE_KINDS for suffix in ("", "_model", "_corrected", "_status")),
    "canal_ap_mm", "canal_stenosis", "canal_model_ap_mm", "canal_model_stenosis", "canal_corrected", "canal_status",
)


def _status(f: Finding) -> str:
    return f"not_assessed: {f.reason}" if f.status == "not_assessed" and f.reason else f.status


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _num(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{round(x, digits):g}"


def level_row(level: Level) -> dict[str, Any]:
    """Return the CSV row of one level as a dict keyed by :data:`COLUMNS` (empty string = no value)."""
    p, h, s = level.pfirrmann, level.ldh, level.listhesis

    def km(key: str) -> str:
        m = key_measurement(level, key)
        return "" if m is None else _num(m.value)

    readers = sorted({c.reader for c in level.all_corrections()})
    row: dict[str, Any] = {
        "level": level.name,
        "model_level": level.model_name,
        "pfirrmann_grade": p.value.grade if p.value else "",
        "pfirrmann_model_grade": p.model.grade if p.model else "",
        "pfirrmann_corrected": _yes(p.corrected),
        "pfirrmann_status": _status(p),
        "ldh": h.value.label if h.value else "",
        "ldh_msu_size": h.value.size if h.value else "",
        "ldh_msu_zone": (h.value.zone or "") if h.value else "",
        "ldh_side": (h.value.side or "") if h.value else "",
        "ldh_model": h.model.label if h.model else "",
        "ldh_corrected": _yes(h.corrected),
        "ldh_status": _status(h),
        "meyerding_grade": s.value.grade if s.value else "",
        "listhesis_direction": (s.value.direction or "") if s.value else "",
        "meyerding_model_grade": s.model.grade if s.model else "",
        "listhesis_corrected": _yes(s.corrected),
        "listhesis_status": _status(s),
        "slip_percent": _num(slip_percent(level, "value")),
        "slip_percent_model": _num(slip_percent(level, "model")),
        "slip_mm": km("slip_mm"),
        "msu_depth_ratio": km("msu_depth_ratio"),
        "sir": km("sir"),
        "dhi": km("dhi"),
        "corrected": _yes(any(f.corrected for f in level.findings()) or level.name != level.model_name),
        "readers": ";".join(readers),
    }
    m = level.modic
    row.update({"modic_type": m.value.type if m.value else "", "modic_model_type": m.model.type if m.model else "",
                "modic_corrected": _yes(m.corrected), "modic_status": _status(m)})
    for kind in PRESENCE_KINDS:
        f = level.finding(kind)  # type: ignore[arg-type]
        row.update({kind: f.value.label if f.value else "", f"{kind}_model": f.model.label if f.model else "",
                    f"{kind}_corrected": _yes(f.corrected), f"{kind}_status": _status(f)})
    c = level.canal
    row.update({"canal_ap_mm": _num(c.value.ap_mm) if c.value else "", "canal_stenosis": c.value.stenosis if c.value else "",
                "canal_model_ap_mm": _num(c.model.ap_mm) if c.model else "",
                "canal_model_stenosis": c.model.stenosis if c.model else "",
                "canal_corrected": _yes(c.corrected), "canal_status": _status(c)})
    return row


def write_findings_csv(assessment: Assessment, path: str | os.PathLike[str]) -> Path:
    """Write findings.csv (one row per level, cranial to caudal as in the assessment); return its path."""
    path = Path(path)
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        for level in assessment.levels:
            writer.writerow(level_row(level))
    return path
