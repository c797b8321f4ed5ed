"""Segment names, colours and coded terminology from SpineAssist's Slicer terminology file.

The file (``Resources/SpineAssist.term.json``) is in Slicer's terminology JSON format, context
``"SpineAssist"``: one type per disc level (SNOMED CT "L4/L5 disc" etc. where SNOMED has a concept;
the private scheme ``99SPA`` where it does not, e.g. L5-L6), intervertebral disc, vertebral body,
thecal sac and disc herniation. Segments carry the entry in Slicer's serialized form in their
``TerminologyEntry`` tag, so Slicer's segment editor and DICOM SEG export see the codes.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from SpineAssistLib.resources import resource_path

TERMINOLOGY_FILE = "SpineAssist.term.json"
CONTEXT_NAME = "SpineAssist"


@dataclass(frozen=True)
class TerminologyType:
    """One segment type of the terminology file: its category, code, Slicer label and colour (0-255 RGB)."""

    category: tuple[str, str, str]  # (scheme, value, meaning)
    code: tuple[str, str, str]
    slicer_label: str
    rgb: tuple[int, int, int]

    @property
    def color(self) -> tuple[float, float, float]:
        """The recommended display colour as Slicer's 0-1 floats."""
        return tuple(c / 255.0 for c in self.rgb)  # type: ignore[return-value]

    def serialized(self) -> str:
        """Return the entry in Slicer's ``TerminologyEntry`` tag format (``context~category~type~...``)."""
        def triple(c: tuple[str, str, str]) -> str:
            return f"{c[0]}^{c[1]}^{c[2]}"

        return f"{CONTEXT_NAME}~{triple(self.category)}~{triple(self.code)}~^^~~^^~^^"


@functools.lru_cache(maxsize=1)
def terminology_types() -> dict[str, TerminologyType]:
    """Return the terminology file's types keyed by their Slicer label (e.g. ``"L4-L5 intervertebral disc"``)."""
    path = resource_path(TERMINOLOGY_FILE)
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("SegmentationCategoryTypeContextName") != CONTEXT_NAME:
        raise ValueError(f"{path}: SegmentationCategoryTypeContextName must be {CONTEXT_NAME!r}")
    out: dict[str, TerminologyType] = {}
    for cat in data["SegmentationCodes"]["Category"]:
        category = (cat["CodingSchemeDesignator"], cat["CodeValue"], cat["CodeMeaning"])
        for t in cat["Type"]:
            out[t["3dSlicerLabel"]] = TerminologyType(
                category, (t["CodingSchemeDesignator"], t["CodeValue"], t["CodeMeaning"]),
                t["3dSlicerLabel"], tuple(t["recommendedDisplayRGBValue"]))  # type: ignore[arg-type]
    return out


def disc_segment_name(level: str) -> str:
    """Return a disc segment's name, e.g. ``"L4-L5 intervertebral disc"`` (also its terminology label)."""
    return f"{level} intervertebral disc"


def vertebral_body_segment_name(vertebra: str) -> str:
    return f"{vertebra} vertebral body"


def terminology_for(segment_name: str) -> TerminologyType:
    """Return the terminology type for a SpineAssist segment name (disc, vertebral body, thecal sac, herniation)."""
    types = terminology_types()
    if segment_name in types:
        return types[segment_name]
    if segment_name.endswith(" vertebral body"):
        return types["vertebral body"]
    if segment_name.endswith(" intervertebral disc"):
        return types["intervertebral disc"]
    key = segment_name.lower()
    if key in types:
        return types[key]
    raise KeyError(f"{segment_name!r} has no entry in {TERMINOLOGY_FILE}; known: {', '.join(sorted(types))}")


def apply_terminology(segment: Any, segment_name: str) -> None:
    """Name a vtkSegment, colour it and set its ``TerminologyEntry`` tag from the terminology file."""
    entry = terminology_for(segment_name)
    segment.SetName(segment_name)
    segment.SetColor(*entry.color)
    segment.SetTag(segment.GetTerminologyEntryTagName(), entry.serialized())
