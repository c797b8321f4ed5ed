"""A tiny hand-built case for the MRML tests: two disc levels, a 3D label map, corners and MSU points.

Numbers are chosen so a person can check them: at L4-L5, P = L5 posterior-superior (0, 10, 0),
Q = L5 anterior-superior (0, -30, 0) and R = L4 posterior-inferior (0, 2, 5) give an 8 mm slip of a
40 mm endplate: 20 %, Meyerding I, antero. Moving R to (0, -10, 5) makes it 20 mm, 50 %, grade II.
With ``sagittal_findings=True``, L4-L5 also has every finding of schema version 2 graded by the
model; its canal AP line runs from the posterior disc margin (0, 6, 4) to (0, 15, 4): 9 mm, absolute
stenosis (Verbiest: below 10 mm).
"""

from __future__ import annotations

import numpy as np

from SpineAssistLib import anatomy
from SpineAssistLib.findings import (Assessment, CanalDiameter, Geometry, HerniationFinding, Level, ListhesisFinding,
                                     Measurement, MeyerdingGrade, ModicType, MSUGrade, PfirrmannFinding, PfirrmannGrade,
                                     Presence)
from SpineAssistLib.mrml import DetectionBox

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"

# (i, j, k, 1) -> LPS mm: i runs posterior (+y) at 1 mm, j caudal (-z) at 1 mm, k left (+x) at 3 mm.
AFFINE = np.array([[0.0, 0.0, 3.0, -6.0],
                   [1.0, 0.0, 0.0, -20.0],
                   [0.0, -1.0, 0.0, 40.0],
                   [0.0, 0.0, 0.0, 1.0]])
SHAPE = (5, 80, 40)  # (slices k, rows j, columns i)

SAGITTAL_POINTS = {
    "L4 posterior-inferior": (0.0, 2.0, 5.0),        # R for L4-L5
    "L5 posterior-superior": (0.0, 10.0, 0.0),       # P for L4-L5
    "L5 anterior-superior": (0.0, -30.0, 0.0),       # Q for L4-L5
    "L5 posterior-inferior": (0.0, 12.0, -25.0),     # R for L5-S1
    "S1 posterior-superior": (0.0, 12.0, -30.0),     # P for L5-S1
    "S1 anterior-superior": (0.0, -28.0, -30.0),     # Q for L5-S1
}
AXIAL_POINTS = {
    "L4-L5 left medial facet": (20.0, 30.0, 2.5),
    "L4-L5 right medial facet": (-20.0, 30.0, 2.5),
    "L4-L5 posterior disc margin": (0.0, 20.0, 2.5),
    "L4-L5 herniation apex": (-12.0, 25.0, 2.5),
    "L4-L5 posterior canal": (0.0, 45.0, 2.5),
}


def label_map() -> np.ndarray:
    """Return a (5, 80, 40) label map: discs L4-L5 and L5-S1, the L5 body, a thecal sac strip."""
    labels = np.zeros(SHAPE, np.int16)
    # row j is z = 40 - j; column i is y = i - 20
    labels[1:4, 34:39, 5:28] = anatomy.DISC_LABELS["L4-L5"]   # z 2..6
    labels[1:4, 39:65, 5:28] = anatomy.VERTEBRA_LABELS["L5"]   # z -24..1
    labels[1:4, 65:70, 5:28] = anatomy.DISC_LABELS["L5-S1"]   # z -29..-25
    labels[2, 10:75, 30:36] = anatomy.THECAL_SAC_LABEL
    labels[0, 0, 0] = anatomy.POSTERIOR_ELEMENTS_LABEL        # a label SpineAssist does not segment: ignored
    return labels


def volume() -> np.ndarray:
    return (np.arange(np.prod(SHAPE)) % 251).reshape(SHAPE).astype(np.int16)


CANAL_LINE = ((0.0, 6.0, 4.0), (0.0, 15.0, 4.0))      # LPS mm, 9 mm long


def grade_sagittal_findings(level: Level) -> Level:
    """Give ``level`` the model's value of every schema-2 finding: Modic 2, an upper endplate defect, no
    lower one, narrowing, no bulging, a herniation on the sagittal view, and the canal 9 mm (absolute)."""
    level.modic.model = ModicType(2)
    level.endplate_upper.model = Presence(True)
    level.endplate_lower.model = Presence(False)
    level.narrowing.model = Presence(True)
    level.bulging.model = Presence(False)
    level.herniation_sag.model = Presence(True)
    level.canal.model = CanalDiameter.measured(9.0)
    level.canal.measurements = [Measurement("canal_ap_mm", 9.0, "mm")]
    level.canal.geometry = Geometry(points={"canal anterior wall": CANAL_LINE[0], "canal posterior wall": CANAL_LINE[1]},
                                    lines={"canal AP": CANAL_LINE})      # the names grading.canal writes
    for kind in ("modic", "endplate_upper", "endplate_lower", "narrowing", "bulging", "herniation_sag", "canal"):
        level.finding(kind).status, level.finding(kind).reason = "assessed", ""
    return level


def assessment(sagittal_findings: bool = False) -> Assessment:
    """Return the hand-built assessment whose model values match the keypoints above."""
    l45 = Level(
        "L4-L5",
        pfirrmann=PfirrmannFinding(model=PfirrmannGrade(3), confidence=0.9),
        ldh=HerniationFinding(model=MSUGrade(1, "AB", "right")),
        listhesis=ListhesisFinding(
            model=MeyerdingGrade(1, 20.0, "antero"),
            measurements=[Measurement("slip_percent", 20.0, "%")],
            geometry=Geometry(points={"P": (0, 10, 0), "Q": (0, -30, 0), "R": (0, 2, 5)},
                              lines={"lower superior endplate": ((0, 10, 0), (0, -30, 0)),
                                     "slip": ((0, 10, 0), (0, 2, 0))})),
    )
    l5s1 = Level(
        "L5-S1",
        pfirrmann=PfirrmannFinding(model=PfirrmannGrade(2)),
        ldh=HerniationFinding(status="not_assessed", reason="no axial series at this level"),
        listhesis=ListhesisFinding(model=MeyerdingGrade(0, 0.0, None)),
    )
    if sagittal_findings:
        grade_sagittal_findings(l45)
    return Assessment(STUDY_UID, levels=[l45, l5s1], sagittal_series_uid="1.2.3.4", axial_series_uid="1.2.3.5")


def boxes() -> dict:
    return {"sagittal": [DetectionBox("disc", (-3.0, -15.0, 6.0), (3.0, 7.0, 2.0), level="L4-L5", confidence=0.93)]}


def show(scene, a: Assessment | None = None):
    """Return (assessment, nodes) for the case shown in ``scene``."""
    from SpineAssistLib.mrml import show_assessment

    a = a or assessment()
    nodes = show_assessment(scene, a, volumes={"sagittal": (volume(), AFFINE)},
                            label_maps={"sagittal": (label_map(), AFFINE)},
                            keypoints={"sagittal": SAGITTAL_POINTS, "axial": AXIAL_POINTS}, boxes=boxes())
    return a, nodes


def write_out_dir(out, sagittal_findings: bool = False):
    """Write an assess output folder holding this case's scene.mrb and findings.json (what `spineassist
    assess` writes, less the DICOM and report); return it."""
    from SpineAssistLib import mrml

    scene = mrml.new_scene()
    a, nodes = show(scene, assessment(sagittal_findings) if sagittal_findings else None)
    mrml.save_state(scene, a, nodes)
    out.mkdir(parents=True, exist_ok=True)
    assert scene.WriteToMRB(str(out / "scene.mrb"))
    a.save(out / "findings.json")
    scene.Clear(1)
    return out
