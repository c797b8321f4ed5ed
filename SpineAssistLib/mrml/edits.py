"""Reader edits in the scene: corrections, resets, level relabelling, and live regrading from moved keypoints.

The clinical rules live in ``SpineAssistLib.grading``; this module only gathers the keypoints a
rule takes from the nodes, records the result as the reader's value (the model's is kept), and
refreshes the table, the measurement lines and the parameter node.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from SpineAssistLib import anatomy
from SpineAssistLib.findings import Assessment, Correction, FindingKind
from SpineAssistLib.grading.meyerding import DEFAULT_NO_LISTHESIS_PERCENT, meyerding_grade
from SpineAssistLib.grading.msu import msu_grade
from SpineAssistLib.mrml.nodes import (
    ATTR_FINDING,
    ATTR_LINE,
    ATTR_MODEL_LEVEL,
    TAG_MODEL_NAME,
    TAG_STRUCTURE,
    NodeSet,
    control_point_lps,
    keypoint_kind,
    keypoint_records,
    level_by_model_name,
    line_node_name,
    refresh_table,
    segment_tag,
    update_lines,
)
from SpineAssistLib.mrml.state import save_state
from SpineAssistLib.mrml.terminology import apply_terminology, disc_segment_name, vertebral_body_segment_name

KEYPOINT_MOVED_NOTE = "keypoint moved"
# Consecutive keypoint regrades by one reader within this window are one correction (a drag
# fires many position events; the history should show one change from the old value).
COALESCE_SECONDS = 120.0
MOVED_TOLERANCE_MM = 1e-3

# Level chain a whole-spine shift walks along; transitional levels need an explicit mapping.
SHIFT_CHAIN: tuple[str, ...] = ("T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


def current_reader() -> str:
    """Return the login name of whoever runs Slicer (the reader a live regrade is recorded for)."""
    try:
        return getpass.getuser() or "reader"
    except Exception:  # noqa: BLE001 - no login name (containers): still record a reader
        return "reader"


def _after_edit(scene: Any, nodes: NodeSet, assessment: Assessment) -> None:
    refresh_table(nodes, assessment)
    save_state(scene, assessment, nodes)


# ------------------------------------------------------------------------------------------------
# Corrections typed in the panel
# ------------------------------------------------------------------------------------------------

def apply_correction(scene: Any, nodes: NodeSet, assessment: Assessment, level: str, kind: FindingKind, new_value: Any,
                     reader: str, note: str = "") -> Correction:
    """Return the record of a reader's correction of one finding; the table row and parameter node follow."""
    c = assessment.level(level).finding(kind).correct(new_value, reader, note)
    _after_edit(scene, nodes, assessment)
    return c


def reset_finding(scene: Any, nodes: NodeSet, assessment: Assessment, level: str, kind: FindingKind, reader: str,
                  note: str = "reset to the model's value") -> Correction | None:
    """Drop the reader's value of one finding (the model's is in force again); return the record, or None."""
    c = assessment.level(level).finding(kind).reset(reader, note)
    if c is not None:
        _after_edit(scene, nodes, assessment)
    return c


# ------------------------------------------------------------------------------------------------
# Relabelling levels
# ------------------------------------------------------------------------------------------------

def shifted_level_names(names: Sequence[str], shift: int) -> dict[str, str]:
    """Return old -> new level names when every level moves ``shift`` discs caudally (+1) or cranially (-1)."""
    if isinstance(shift, bool) or not isinstance(shift, int) or shift == 0:
        raise ValueError(f"shift must be a non-zero whole number of levels (+1 caudal, -1 cranial); got {shift!r}")
    out = {}
    for name in names:
        if name not in SHIFT_CHAIN:
            raise ValueError(f"level {name} is transitional anatomy; relabel with an explicit mapping, e.g. "
                             f"mapping={{'{name}': ...}}")
        i = SHIFT_CHAIN.index(name) + shift
        if not 0 <= i < len(SHIFT_CHAIN):
            raise ValueError(f"shifting {name} by {shift:+d} leaves {SHIFT_CHAIN[0]}..{SHIFT_CHAIN[-1]}; "
                             f"use an explicit mapping for transitional anatomy")
        out[name] = SHIFT_CHAIN[i]
    return out


def _vertebra_map(mapping: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for old, new in mapping.items():
        for a, b in zip(old.split("-"), new.split("-")):
            out.setdefault(a, b)
    return out


def _rename_keypoint(label: str, levels: Mapping[str, str], vertebrae: Mapping[str, str]) -> str:
    head, sep, rest = label.partition(" ")
    if head in levels:
        return levels[head] + sep + rest
    if head in vertebrae and rest in anatomy.CORNERS:
        return vertebrae[head] + sep + rest
    return label


def relabel_levels(scene: Any, nodes: NodeSet, assessment: Assessment, reader: str, *, shift: int | None = None,
                   mapping: Mapping[str, str] | None = None, note: str = "") -> list[Correction]:
    """Rename levels (every finding stays with its disc) by ``shift`` or an old -> new ``mapping``; return the records.

    Segment names and colours, keypoint labels, line names and the table follow.
    """
    if (shift is None) == (mapping is None):
        raise ValueError("give either shift (+1/-1) or mapping (old level -> new level), not both or neither")
    names = [lv.name for lv in assessment.levels]
    mapping = dict(mapping) if mapping is not None else shifted_level_names(names, shift)  # type: ignore[arg-type]
    unknown = [m for m in mapping if m not in names]
    if unknown:
        raise ValueError(f"no level {', '.join(unknown)} in this assessment; levels are {', '.join(names)}")
    final = [mapping.get(n, n) for n in names]
    clashes = sorted({n for n in final if final.count(n) > 1})
    if clashes:
        raise ValueError(f"relabelling would give two discs the name {', '.join(clashes)}; relabel the neighbours too")
    mapping = {old: new for old, new in mapping.items() if old != new}
    records: list[Correction] = []
    levels_by_old = {old: assessment.level(old) for old in mapping}
    for old, new in mapping.items():
        records.append(levels_by_old[old].rename(new, reader, note))
    vertebrae = _vertebra_map(mapping)
    _relabel_nodes(nodes, assessment, mapping, vertebrae)
    _after_edit(scene, nodes, assessment)
    return records


def _relabel_nodes(nodes: NodeSet, assessment: Assessment, levels: Mapping[str, str], vertebrae: Mapping[str, str]) -> None:
    current = {lv.model_name: lv.name for lv in assessment.levels}
    if nodes.segmentation is not None:
        segmentation = nodes.segmentation.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(i)
            structure = segment_tag(segment, TAG_STRUCTURE)
            if structure == "disc":
                model = segment_tag(segment, TAG_MODEL_NAME)
                apply_terminology(segment, disc_segment_name(current.get(model, model)))
            elif structure == "vertebral body":
                vertebra = segment.GetName().partition(" ")[0]
                apply_terminology(segment, vertebral_body_segment_name(vertebrae.get(vertebra, vertebra)))
    for node in nodes.keypoints.values():
        records = keypoint_records(node)
        for cid, rec in records.items():
            index = node.GetNthControlPointIndexByID(cid)
            if index < 0:
                continue
            node.SetNthControlPointLabel(index, _rename_keypoint(node.GetNthControlPointLabel(index), levels, vertebrae))
            node.SetNthControlPointDescription(index, current.get(rec["level"], "") if rec["level"] else "")
    for line in nodes.lines:
        model = line.GetAttribute(ATTR_MODEL_LEVEL)
        line.SetName(line_node_name(current.get(model, model), line.GetAttribute(ATTR_FINDING), line.GetAttribute(ATTR_LINE)))
    for box in nodes.boxes:
        model = box.GetAttribute(ATTR_MODEL_LEVEL)
        if model and model in current:
            old_name = box.GetName()
            for old, new in levels.items():
                if old_name.startswith(f"{old} "):
                    box.SetName(new + old_name[len(old):])
                    break


# ------------------------------------------------------------------------------------------------
# Live regrading from keypoints
# ------------------------------------------------------------------------------------------------

def grade_from_keypoints(level: str, kind: FindingKind, points_lps: Mapping[str, Sequence[float]],
                         settings: Mapping[str, Any] | None = None, herniation_points: Any = None) -> Any:
    """Return the grading rule's result (``MeyerdingResult`` or ``MSUResult``) for one level from named LPS points.

    Listhesis at ``"L4-L5"`` takes ``"L5 posterior-superior"`` (P), ``"L5 anterior-superior"`` (Q) and
    ``"L4 posterior-inferior"`` (R). Herniation takes the MSU points, named ``"L4-L5 left medial facet"``
    or just ``"left medial facet"``; the apex is optional. ``herniation_points`` (LPS mm) give the
    herniation's lateral extent (the zones it reaches) where a mask is not at hand.
    """
    settings = settings or {}
    upper, _, lower = level.partition("-")

    def need(*names: str) -> list[Sequence[float]]:
        missing = [n for n in names if n not in points_lps]
        if missing:
            raise ValueError(f"{level} {kind}: keypoints missing: {', '.join(missing)}")
        return [points_lps[n] for n in names]

    if kind == "listhesis":
        p, q, r = need(f"{lower} posterior-superior", f"{lower} anterior-superior", f"{upper} posterior-inferior")
        return meyerding_grade(p, q, r, no_listhesis_percent=settings.get("no_listhesis_percent",
                                                                          DEFAULT_NO_LISTHESIS_PERCENT))
    if kind == "ldh":
        prefixed = any(name.startswith(f"{level} ") for name in points_lps)

        def named(n: str) -> str:
            return f"{level} {n}" if prefixed else n

        left, right, margin, apex, canal = (named(n) for n in anatomy.MSU_KEYPOINTS)
        fl, fr, d, c = need(left, right, margin, canal)
        apex_point = points_lps.get(apex)
        return msu_grade(fl, fr, d, c, herniation_apex=apex_point,
                         herniation_points=herniation_points if apex_point is not None else None)
    raise ValueError(f"{kind} is not graded from keypoints; only listhesis (corners) and ldh (MSU points) are")


def model_extent(finding: Any) -> Any:
    """Return the two LPS ends of the herniation's lateral extent the model measured (from its mask),
    or None. Moving a keypoint regrades with them, so the zone still follows the whole herniation
    and not the apex alone (the scene holds no axial mask to measure it again)."""
    line = finding.geometry.lines.get("herniation extent") if finding.kind == "ldh" else None
    return None if line is None else [list(line[0]), list(line[1])]


def regrade_from_keypoints(assessment: Assessment, level: str, kind: FindingKind, points_lps: Mapping[str, Sequence[float]],
                           reader: str | None = None, note: str = KEYPOINT_MOVED_NOTE) -> Correction | None:
    """Return the correction recording the grade recomputed from moved keypoints as the reader's value.

    None when the grade is what is already in force. Successive regrades by the same reader within
    COALESCE_SECONDS are kept as one correction (from the value before the first move).
    """
    reader = reader or current_reader()
    finding = assessment.level(level).finding(kind)
    result = grade_from_keypoints(level, kind, points_lps, assessment.settings, model_extent(finding))
    new = result.value
    if new == finding.value:
        return None
    last = finding.corrections[-1] if finding.corrections else None
    if last is not None and last.reader == reader and last.note == note and _seconds_since(last.time) < COALESCE_SECONDS:
        finding.corrections.pop()
        c = finding.correct(new, reader, note)
        c = Correction(c.finding, last.old, c.new, c.reader, c.time, c.note)
        finding.corrections[-1] = c
        return c
    return finding.correct(new, reader, note)


def _seconds_since(iso: str) -> float:
    try:
        then = _dt.datetime.fromisoformat(iso)
    except ValueError:
        return math.inf
    if then.tzinfo is None:
        then = then.replace(tzinfo=_dt.timezone.utc)
    return (_dt.datetime.now(_dt.timezone.utc) - then).total_seconds()


def level_keypoints(nodes: NodeSet, model_level: str) -> dict[str, tuple[float, float, float]]:
    """Return the current LPS positions of every keypoint of one disc (by its model level), keyed by current label."""
    out = {}
    for node in nodes.keypoints.values():
        for cid, rec in keypoint_records(node).items():
            index = node.GetNthControlPointIndexByID(cid)
            if index >= 0 and rec["level"] == model_level:
                out[node.GetNthControlPointLabel(index)] = control_point_lps(node, index)
    return out


def observe_keypoints(node: Any, callback: Callable[[Any, int], None]) -> int:
    """Call ``callback(node, control_point_index)`` whenever a control point changes; return the observer tag."""
    import slicer
    from vtkmodules.util.misc import calldata_type
    from vtkmodules.vtkCommonCore import VTK_INT

    @calldata_type(VTK_INT)
    def on_point_modified(caller: Any, _event: str, index: int) -> None:
        callback(caller, int(index))

    return node.AddObserver(slicer.vtkMRMLMarkupsNode.PointModifiedEvent, on_point_modified)


class LiveRegrading:
    """Regrade a level the moment one of its keypoints moves, recording the result as the reader's value.

    Usage (Slicer's Python console)::

        live = LiveRegrading(slicer.mrmlScene, nodes, assessment, reader="dr.lee")
        set_keypoints_locked(nodes, False)   # drag a corner: the table row changes at once
        live.stop()

    ``on_regrade(level_name, kind, correction)`` is called after each recorded change; ``errors``
    keeps the last message of a move the rule could not grade (e.g. a point missing).
    """

    def __init__(self, scene: Any, nodes: NodeSet, assessment: Assessment, reader: str | None = None,
                 on_regrade: Callable[[str, str, Correction], None] | None = None) -> None:
        self.scene, self.nodes, self.assessment = scene, nodes, assessment
        self.reader = reader or current_reader()
        self.on_regrade = on_regrade
        self.errors: list[str] = []
        self._positions: dict[tuple[str, str], tuple[float, float, float]] = {}
        self._tags: list[tuple[Any, int]] = []
        for node in nodes.keypoints.values():
            for i in range(node.GetNumberOfControlPoints()):
                self._positions[(node.GetID(), node.GetNthControlPointID(i))] = control_point_lps(node, i)
            self._tags.append((node, observe_keypoints(node, self._moved)))

    def stop(self) -> None:
        for node, tag in self._tags:
            node.RemoveObserver(tag)
        self._tags.clear()

    def _moved(self, node: Any, index: int) -> None:
        if index < 0 or index >= node.GetNumberOfControlPoints():
            return
        cid = node.GetNthControlPointID(index)
        lps = control_point_lps(node, index)
        before = self._positions.get((node.GetID(), cid))
        if before is not None and max(abs(a - b) for a, b in zip(before, lps)) < MOVED_TOLERANCE_MM:
            return  # a label or lock change, not a move
        self._positions[(node.GetID(), cid)] = lps
        rec = keypoint_records(node).get(cid)
        kind = keypoint_kind(rec["name"]) if rec else None
        level = level_by_model_name(self.assessment, rec["level"]) if rec and rec["level"] else None
        if level is None or kind is None:
            return
        try:
            points = level_keypoints(self.nodes, level.model_name or level.name)
            correction = regrade_from_keypoints(self.assessment, level.name, kind, points, self.reader)
            result = grade_from_keypoints(level.name, kind, points, self.assessment.settings,
                                          model_extent(level.finding(kind)))
        except ValueError as e:
            self.errors.append(str(e))
            return
        update_lines(self.nodes, level, kind, result.geometry.lines)
        _after_edit(self.scene, self.nodes, self.assessment)
        if correction is not None and self.on_regrade is not None:
            self.on_regrade(level.name, kind, correction)


# ------------------------------------------------------------------------------------------------
# Reading edited nodes back
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeypointEdit:
    """A keypoint the reader moved or deleted: its model name and position, where it is now (LPS mm), its disc."""

    series: str
    label: str
    model_name: str
    level: str | None
    kind: str | None
    model_lps: tuple[float, float, float]
    lps: tuple[float, float, float] | None  # None: deleted

    @property
    def moved_mm(self) -> float | None:
        return None if self.lps is None else math.dist(self.model_lps, self.lps)


@dataclass
class NodeEdits:
    """What the reader changed in the nodes, and the corrections recorded from it."""

    keypoints: list[KeypointEdit] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # levels that could not be regraded, and why


def corrections_from_nodes(scene: Any, nodes: NodeSet, assessment: Assessment, reader: str | None = None) -> NodeEdits:
    """Return the keypoints moved or deleted since the model placed them; with ``reader``, regrade their levels too.

    A level whose rule cannot run (e.g. a point deleted) keeps its value; ``errors`` says why.
    """
    edits = NodeEdits()
    current = {lv.model_name: lv.name for lv in assessment.levels}
    for series, node in nodes.keypoints.items():
        for cid, rec in keypoint_records(node).items():
            index = node.GetNthControlPointIndexByID(cid)
            model_lps = tuple(rec["model_lps"])
            lps = control_point_lps(node, index) if index >= 0 else None
            if lps is not None and math.dist(model_lps, lps) < MOVED_TOLERANCE_MM:
                continue
            label = node.GetNthControlPointLabel(index) if index >= 0 else rec["name"]
            level = current.get(rec["level"]) if rec["level"] else None
            edits.keypoints.append(KeypointEdit(series, label, rec["name"], level, keypoint_kind(rec["name"]),
                                                model_lps, lps))  # type: ignore[arg-type]
    if reader is not None:
        for level_name, kind in sorted({(e.level, e.kind) for e in edits.keypoints if e.level and e.kind}):
            level = assessment.level(level_name)
            try:
                c = regrade_from_keypoints(assessment, level_name, kind,
                                           level_keypoints(nodes, level.model_name or level_name), reader)
            except ValueError as e:
                edits.errors.append(str(e))
                continue
            if c is not None:
                edits.corrections.append(c)
        if edits.corrections:
            _after_edit(scene, nodes, assessment)
    return edits
