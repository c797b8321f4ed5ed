"""Test data for the export tests (no tests here): a small valid MR series built with pydicom,
a disc label volume aligned with it, and an assessment whose geometry lies on those images.

Sagittal series: 5 slices along +x (patient left), 96 x 96 pixels of 1 mm, row direction +y
(posterior), column direction -z (feet). Pixel (row, col) of slice k is at
LPS (-4 + 2k, -48 + col, 48 - row). Axial series: 2 slices through the L4-L5 disc.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from SpineAssistLib.anatomy import DISC_LABELS, HERNIATION_LABEL
from SpineAssistLib.findings import (Assessment, CanalDiameter, Geometry, HerniationFinding, Level, Measurement,
                                     MeyerdingGrade, ModelInfo, ModicType, MSUGrade, PfirrmannGrade, Presence)

STUDY_UID = "2.25.311189206196358921396540276313717227911"
FOR_UID = "2.25.128337393113620946232406651939364931671"
PATIENT_NAME = "Doe^Jane"
SHA = "0123456789abcdef" * 4

# Vertebral bodies as (row_top, row_bottom, col_anterior, col_posterior) on the sagittal slices.
BODIES = {"L3": (4, 24, 22, 57), "L4": (32, 52, 17, 52), "L5": (60, 80, 22, 57), "S1": (88, 96, 22, 57)}
DISCS = {"L3-L4": (25, 31), "L4-L5": (53, 59), "L5-S1": (81, 87)}  # rows


def sag_lps(row: float, col: float, k: int = 2) -> tuple[float, float, float]:
    return (-4.0 + 2.0 * k, -48.0 + col, 48.0 - row)


def _base(series_uid: str, number: int, description: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.PatientName = PATIENT_NAME
    ds.PatientID = "MRN-000123"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "054Y"
    ds.StudyInstanceUID = STUDY_UID
    ds.StudyDate = "20240315"
    ds.StudyTime = "101500"
    ds.StudyID = "S1"
    ds.AccessionNumber = "ACC42"
    ds.ReferringPhysicianName = "Smith^John"
    ds.InstitutionName = "General Hospital"
    ds.OperatorsName = "Tech^Tom"
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.SeriesDate = "20240315"
    ds.Laterality = ""
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = FOR_UID
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "TestVendor"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = 3000.0
    ds.EchoTime = 100.0
    ds.EchoTrainLength = 16
    ds.MagneticFieldStrength = 1.5
    ds.SliceThickness = 2.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.AcquisitionDate = "20240315"
    ds.ContentDate = "20240315"
    ds.ContentTime = "101600"
    return ds


def _finish(ds: Dataset, pixels: np.ndarray) -> Dataset:
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def sagittal_image() -> np.ndarray:
    img = np.full((96, 96), 120, np.uint16)
    for top, bottom, ant, post in BODIES.values():
        img[top:bottom + 1, ant:post + 1] = 420
    for top, bottom in DISCS.values():
        img[top:bottom + 1, 22:57] = 700
    img[:, 62:70] = 950  # CSF in the canal
    return img


def disc_labels() -> np.ndarray:
    """(5, 96, 96) label volume aligned with the sagittal series sorted along its normal."""
    lab = np.zeros((5, 96, 96), np.uint16)
    for k in (1, 2, 3):
        for name, (top, bottom) in DISCS.items():
            lab[k, top:bottom + 1, 22:57] = DISC_LABELS[name]
    return lab


def sagittal_series() -> list[Dataset]:
    series_uid = generate_uid(entropy_srcs=["sag", STUDY_UID])
    img = sagittal_image()
    out = []
    for k in range(5):
        ds = _base(series_uid, 3, "T2 SAG")
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["sag", str(k)])
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = list(sag_lps(0, 0, k))
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.PixelSpacing = [1.0, 1.0]
        out.append(_finish(ds, img))
    return out[::-1]  # "in any order"


def axial_image() -> np.ndarray:
    img = np.full((96, 96), 100, np.uint16)
    rr, cc = np.mgrid[0:96, 0:96]
    img[((rr - 40) / 18.0) ** 2 + ((cc - 48) / 26.0) ** 2 <= 1] = 650
    img[((rr - 66) / 7.0) ** 2 + ((cc - 48) / 9.0) ** 2 <= 1] = 950
    img[((rr - 74) / 5.0) ** 2 + ((cc - 30) / 5.0) ** 2 <= 1] = 400
    img[((rr - 74) / 5.0) ** 2 + ((cc - 66) / 5.0) ** 2 <= 1] = 400
    img[((rr - 59) / 4.0) ** 2 + ((cc - 40) / 5.0) ** 2 <= 1] = 600  # herniation, patient right
    return img


def axial_lps(row: float, col: float, z: float) -> tuple[float, float, float]:
    return (-48.0 + col, -48.0 + row, z)


def axial_series() -> list[Dataset]:
    series_uid = generate_uid(entropy_srcs=["ax", STUDY_UID])
    out = []
    for k, z in enumerate((-8.0, -10.0)):
        ds = _base(series_uid, 4, "T2 AX")
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["ax", str(k)])
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = list(axial_lps(0, 0, z))
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.0, 1.0]
        out.append(_finish(ds, axial_image()))
    return out


def herniation_mask() -> np.ndarray:
    img = axial_image()
    mask = np.where(img == 650, DISC_LABELS["L4-L5"], 0)
    rr, cc = np.mgrid[0:96, 0:96]
    mask[((rr - 59) / 4.0) ** 2 + ((cc - 40) / 5.0) ** 2 <= 1] = HERNIATION_LABEL
    return mask.astype(np.uint16)


def corners() -> dict[str, tuple[float, float, float]]:
    pts = {}
    for v, (top, bottom, ant, post) in BODIES.items():
        pts[f"{v} anterior-superior"] = sag_lps(top, ant)
        pts[f"{v} posterior-superior"] = sag_lps(top, post)
        if v != "S1":
            pts[f"{v} anterior-inferior"] = sag_lps(bottom, ant)
            pts[f"{v} posterior-inferior"] = sag_lps(bottom, post)
    return pts


# The canal's antero-posterior line at L4-L5 on the mid-sagittal slice: from the posterior disc
# margin (column 57) across the CSF to column 66.2 at the disc's middle row, 9.2 mm: absolute stenosis.
CANAL_AP_MM = 9.2
CANAL_ROW = sum(DISCS["L4-L5"]) / 2


def grade_sagittal_findings(level: Level, canal_line: tuple, source: dict | None = None) -> Level:
    """Give ``level`` a model value for every finding of schema version 2: Modic 2, an upper endplate
    defect (no lower one), narrowing, bulging, a herniation seen on the sagittal view, and the canal
    AP diameter measured along ``canal_line`` (LPS mm) with its Verbiest grade."""
    level.modic.model = ModicType(2)
    level.endplate_upper.model = Presence(True)
    level.endplate_lower.model = Presence(False)
    level.narrowing.model = Presence(True)
    level.bulging.model = Presence(True)
    level.herniation_sag.model = Presence(True)
    a, b = canal_line
    ap = round(sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5, 3)   # 9.2, not 9.200000000000003
    level.canal.model = CanalDiameter.measured(ap)
    level.canal.measurements = [Measurement("canal_ap_mm", ap, "mm", "canal antero-posterior diameter at the disc")]
    level.canal.geometry = Geometry(points={"canal anterior wall": a, "canal posterior wall": b},  # as grading.canal
                                    lines={"canal AP": (a, b)}, source=dict(source or {}))
    for kind in ("modic", "endplate_upper", "endplate_lower", "narrowing", "bulging", "herniation_sag", "canal"):
        f = level.finding(kind)
        f.status, f.reason = "assessed", ""
    level.modic.confidence = 0.8
    return level


def assessment(axial_sop: str = "", sag_sop: str = "") -> Assessment:
    """L3-L4 normal; L4-L5 2-AB right, Pfirrmann 3 corrected to 4, anterolisthesis I (14.3 %, 5 mm);
    L5-S1 herniation not assessed (no axial slice).

    Sagittal findings (schema 2): at L4-L5 every one graded by the model (``grade_sagittal_findings``),
    and a reader corrected Modic 2 to 1, bulging yes to no and the canal grade absolute to relative
    (keeping the measured 9.2 mm); at L5-S1 only a herniation seen on the sagittal view; L3-L4 is
    not graded for them."""
    pts = corners()
    src = {"sop_instance_uid": sag_sop} if sag_sop else {}
    levels = []
    for name in ("L3-L4", "L4-L5", "L5-S1"):
        upper, lower = name.split("-")
        lv = Level(name, disc_center=sag_lps(sum(DISCS[name]) / 2, 40))
        lv.pfirrmann.model = PfirrmannGrade(2)
        lv.pfirrmann.measurements = [Measurement("signal_intensity_ratio", 0.74, "1"),
                                     Measurement("disc_height_index", 0.33, "1")]
        lv.pfirrmann.geometry = Geometry(points={k: v for k, v in pts.items() if k.split()[0] in (upper, lower)},
                                         source=src)
        lv.listhesis.model = MeyerdingGrade(0, 0.0)
        lv.listhesis.measurements = [Measurement("slip_mm", 0.0, "mm")]
        lv.ldh.model = MSUGrade(0)
        levels.append(lv)
    l45 = levels[1]
    l45.pfirrmann.model = PfirrmannGrade(3)
    l45.pfirrmann.correct(PfirrmannGrade(4), reader="dr.lee", note="dark nucleus", time="2024-03-16T09:00:00+00:00")
    l45.listhesis.model = MeyerdingGrade(1, 100 * 5 / 35, "antero")
    l45.listhesis.measurements = [Measurement("slip_mm", 5.0, "mm")]
    z = -9.0
    l45.ldh = HerniationFinding(
        model=MSUGrade(2, "AB", "right"),
        measurements=[Measurement("depth_ratio", 0.8, "1")],
        geometry=Geometry(points={"left medial facet": axial_lps(70, 62, z), "right medial facet": axial_lps(70, 34, z),
                                  "posterior disc margin": axial_lps(57, 48, z), "herniation apex": axial_lps(62, 40, z),
                                  "posterior canal": axial_lps(73, 48, z)},
                          lines={"intra-facet line": (axial_lps(70, 34, z), axial_lps(70, 62, z))},
                          source={"sop_instance_uid": axial_sop} if axial_sop else {}),
        confidence=0.91)
    levels[2].ldh = HerniationFinding(status="not_assessed", reason="no axial slice through this disc")
    grade_sagittal_findings(l45, (sag_lps(CANAL_ROW, 57), sag_lps(CANAL_ROW, 57 + CANAL_AP_MM)), src)
    t = "2024-03-16T09:05:00+00:00"
    l45.modic.correct(ModicType(1), reader="dr.lee", note="bright on T2: oedema", time=t)
    l45.bulging.correct(Presence(False), reader="dr.lee", time=t)
    l45.canal.correct(CanalDiameter("relative", l45.canal.model.ap_mm), reader="dr.lee", note="borderline", time=t)
    levels[2].herniation_sag.model = Presence(True)
    levels[2].herniation_sag.status, levels[2].herniation_sag.reason = "assessed", ""
    return Assessment(STUDY_UID, levels, models=[ModelInfo("sagittal_pose", SHA, "1.0")],
                      created=dt.datetime(2024, 3, 16, tzinfo=dt.timezone.utc).isoformat())
