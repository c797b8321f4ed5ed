"""Codes SpineAssist's DICOM exports use, and the measurement names the exports look for.

Standard codes come first: SNOMED CT (``SCT``) from DICOM PS3.16 context groups, checked against
pydicom's code dictionary (CID 7604 "Intervertebral Disc" for the per-level disc structures,
CID 1003 for disc levels, CID 244 for laterality, UCUM for units). Where DICOM has no standard
concept (Pfirrmann grade, MSU size/zone, Meyerding grade, SIR, DHI, Modic type, endplate defect,
disc narrowing, disc bulging, Verbiest's stenosis grade), codes use the private coding scheme
``99SPINEASSIST``, which every object that uses it declares in its CodingSchemeIdentificationSequence
(:func:`coding_scheme_identification`).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Mapping

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from SpineAssistLib.findings import Finding, Level, Measurement
from SpineAssistLib.version import __version__

PRIVATE_SCHEME = "99SPINEASSIST"
PRIVATE_SCHEME_NAME = "SpineAssist private codes"
PRIVATE_SCHEME_RESPONSIBLE = "SpineAssist project"


def private(value: str, meaning: str) -> Code:
    """Return a concept in SpineAssist's private coding scheme ``99SPINEASSIST``."""
    return Code(value, PRIVATE_SCHEME, meaning)


def coding_scheme_identification() -> Dataset:
    """Return the CodingSchemeIdentificationSequence item that defines ``99SPINEASSIST``."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeVersion = __version__
    item.CodingSchemeResponsibleOrganization = PRIVATE_SCHEME_RESPONSIBLE
    return item


_UID_NAMESPACE = uuid.UUID("6f3c8a52-2d4e-5b8f-9a61-5d0c7e1b2a90")  # SpineAssist's own, fixed forever


def stable_uid(*parts: str) -> str:
    """Return a ``2.25`` UID (PS3.5 B.2) derived from ``parts``: the same parts always give the same UID."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(parts)).int}"


# What differs between two writes of the same SEG or SR: the object's own UIDs (random when it is
# made) and the times it was made at.
_OWN_UIDS = frozenset({"SOPInstanceUID", "SeriesInstanceUID", "DimensionOrganizationUID"})
_TIME_VRS = frozenset({"DA", "TM", "DT"})


def _feed(digest: "hashlib._Hash", ds: Dataset) -> None:
    for element in ds:
        if element.keyword in _OWN_UIDS or element.VR in _TIME_VRS:
            continue
        digest.update(f"{element.tag:08X}{element.VR}".encode())
        if element.VR == "SQ":
            digest.update(str(len(element.value)).encode())
            for item in element.value:
                _feed(digest, item)
        elif isinstance(element.value, (bytes, bytearray)):
            digest.update(element.value)
        else:
            digest.update(str(element.value).encode())


def _set_everywhere(ds: Dataset, keyword: str, value: str) -> None:
    for element in ds:
        if element.keyword == keyword:
            element.value = value
        elif element.VR == "SQ":
            for item in element.value:
                _set_everywhere(item, keyword, value)


def assign_content_uids(ds: Dataset) -> Dataset:
    """Return ``ds`` (a SEG or SR SpineAssist made) with Series and SOP Instance UIDs (and a SEG's
    DimensionOrganizationUID) derived from its content, times left out.

    Written again with the same content, the object gets the same UIDs: a rerun, or a batch study
    retried after a crash, that stores it in a PACS finds it there and sends nothing twice; a
    reader's correction changes the content and so gives a new object.
    """
    digest = hashlib.sha256()
    _feed(digest, ds)
    content = digest.hexdigest()
    ds.SeriesInstanceUID = stable_uid("series", content)
    ds.SOPInstanceUID = stable_uid("instance", content)
    _set_everywhere(ds, "DimensionOrganizationUID", stable_uid("dimension organization", content))
    if "MediaStorageSOPInstanceUID" in getattr(ds, "file_meta", ()):
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


# --- anatomy (SNOMED CT) -------------------------------------------------------------------
ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")  # CID 7150 category
LUMBAR_SPINE = Code("122496007", "SCT", "Lumbar spine")

# CID 7604 "Intervertebral Disc": the disc structures themselves, one concept per level.
DISC_STRUCTURES: dict[str, Code] = {
    "T11-T12": Code("1537001", "SCT", "T11/T12 disc"),
    "T12-L1": Code("76206002", "SCT", "T12/L1 disc"),
    "L1-L2": Code("80064006", "SCT", "L1/L2 disc"),
    "L2-L3": Code("67459009", "SCT", "L2/L3 disc"),
    "L3-L4": Code("62551000", "SCT", "L3/L4 disc"),
    "L4-L5": Code("84020006", "SCT", "L4/L5 disc"),
    "L5-S1": Code("715056000", "SCT", "L5/S1 disc"),
}
# Transitional anatomy has discs DICOM names no concept for (L5/L6, L6/S1, L4/S1).
INTERVERTEBRAL_DISC_PRIVATE = private("IVD", "Intervertebral disc")


def disc_structure(level_name: str) -> Code:
    """Return the CID 7604 code of a level's disc, or the private disc concept where DICOM has none."""
    return DISC_STRUCTURES.get(level_name, INTERVERTEBRAL_DISC_PRIVATE)


LATERALITY = Code("272741003", "SCT", "Laterality")
SIDE_CODES: dict[str, Code] = {
    "left": Code("7771000", "SCT", "Left"),
    "right": Code("24028007", "SCT", "Right"),
    "bilateral": Code("51440002", "SCT", "Bilateral"),
    "central": Code("26216008", "SCT", "Central"),
}
PRESENT = Code("52101004", "SCT", "Present")
ABSENT = Code("272519000", "SCT", "Absent")
MEASUREMENT_METHOD = Code("370129005", "SCT", "Measurement Method")

# --- who a value comes from ------------------------------------------------------------------
MODEL_VALUE = private("MODEL", "SpineAssist model output")
READER_VALUE = private("READER", "Reader correction")

# --- qualitative evaluations (private: no standard concepts exist) -----------------------------
_ROMAN = {0: "0", 1: "I", 2: "II", 3: "III", 4: "IV", 5: "V"}
PFIRRMANN_GRADE = private("PFIRRMANN", "Pfirrmann disc degeneration grade")
PFIRRMANN_VALUES = {g: private(f"PFIRRMANN-{g}", f"Pfirrmann grade {_ROMAN[g]}") for g in range(1, 6)}
MSU_SIZE = private("MSU-SIZE", "MSU herniation size")
MSU_SIZE_VALUES = {0: private("MSU-SIZE-0", "MSU size 0 (no herniation)"),
                   **{s: private(f"MSU-SIZE-{s}", f"MSU size {s}") for s in (1, 2, 3)}}
MSU_ZONE = private("MSU-ZONE", "MSU herniation zone")
MSU_ZONE_VALUES = {z: private(f"MSU-ZONE-{z}", f"MSU zone {z}") for z in ("A", "AB", "B", "BC", "C")}
DISC_BULGE = private("BULGE", "Disc bulge")
MEYERDING_GRADE = private("MEYERDING", "Meyerding spondylolisthesis grade")
MEYERDING_VALUES = {0: private("MEYERDING-0", "Meyerding grade 0 (no listhesis)"),
                    **{g: private(f"MEYERDING-{g}", f"Meyerding grade {_ROMAN[g]}") for g in range(1, 6)}}
LISTHESIS_DIRECTION = private("LISTHESIS-DIR", "Listhesis direction")  # code values: SH, <= 16 chars
LISTHESIS_DIRECTION_VALUES = {"antero": private("ANTEROLISTHESIS", "Anterolisthesis"),
                              "retro": private("RETROLISTHESIS", "Retrolisthesis")}

# --- the sagittal findings of findings schema 2 (issue #21) ---------------------------------------
# SNOMED CT where a concept exists (each checked against public code lists: 73589001 and 76107001 in
# terminology maps and value sets, 81827009 and 61853006 in DICOM PS3.16 as pydicom ships it).
DISC_HERNIATION = Code("73589001", "SCT", "Herniation of intervertebral disc")   # seen on the sagittal view
SPINAL_STENOSIS = Code("76107001", "SCT", "Spinal stenosis")                     # present unless grade "none"
DIAMETER = Code("81827009", "SCT", "Diameter")                                   # CID 7470 linear measurement
VERTEBRAL_CANAL = Code("61853006", "SCT", "Vertebral canal")                     # CID 6115; "Spinal canal structure"
# No SNOMED CT or DICOM concept was found for these (Modic's types, an endplate defect, disc space
# narrowing or bulging as a yes/no reading, Verbiest's relative/absolute grades): private codes.
MODIC_TYPE = private("MODIC", "Modic vertebral endplate marrow change type")
MODIC_VALUES = {0: private("MODIC-0", "No Modic change"),
                **{t: private(f"MODIC-{t}", f"Modic type {t}") for t in (1, 2, 3)}}
UPPER_ENDPLATE_DEFECT = private("ENDPLATE-UPPER", "Endplate defect above the disc")
LOWER_ENDPLATE_DEFECT = private("ENDPLATE-LOWER", "Endplate defect below the disc")
DISC_NARROWING = private("NARROWING", "Disc space narrowing")
DISC_BULGING = private("BULGING", "Disc bulging (sagittal view)")   # not DISC_BULGE, the axial MSU size 0 bulge
CANAL_STENOSIS_GRADE = private("STENOSIS-GRADE", "Central canal stenosis grade (Verbiest)")
CANAL_STENOSIS_VALUES = {"none": private("STENOSIS-NONE", "No central canal stenosis"),
                         "relative": private("STENOSIS-REL", "Relative central canal stenosis"),
                         "absolute": private("STENOSIS-ABS", "Absolute central canal stenosis")}
# The yes/no findings' concepts, by finding kind.
PRESENCE_CONCEPTS: dict[str, Code] = {
    "endplate_upper": UPPER_ENDPLATE_DEFECT, "endplate_lower": LOWER_ENDPLATE_DEFECT,
    "narrowing": DISC_NARROWING, "bulging": DISC_BULGING, "herniation_sag": DISC_HERNIATION,
}

# --- numeric measurements: concept, UCUM unit -------------------------------------------------
UCUM_PERCENT = Code("%", "UCUM", "percent")
UCUM_MM = Code("mm", "UCUM", "millimeter")
UCUM_NO_UNITS = Code("1", "UCUM", "no units")
SLIP_PERCENT = private("SLIP-PERCENT", "Vertebral slip, % of endplate (+antero, -retro)")
SLIP_MM = private("SLIP-MM", "Vertebral slip distance (+antero, -retro)")
MSU_DEPTH_RATIO = private("MSU-DEPTH-RATIO", "MSU herniation depth ratio")
SIGNAL_INTENSITY_RATIO = private("SIR", "Disc to CSF signal intensity ratio")
DISC_HEIGHT_INDEX = private("DHI", "Disc height index")


# The measurement names grading writes (first name) and the aliases also accepted, per finding kind.
KEY_MEASUREMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # key: (finding kind, accepted Measurement.name values)
    "slip_mm": ("listhesis", ("slip_mm", "slip distance")),
    "msu_depth_ratio": ("ldh", ("depth_ratio", "msu_depth_ratio", "herniation_depth_ratio", "r")),
    "sir": ("pfirrmann", ("signal_intensity_ratio", "sir", "SIR")),
    "dhi": ("pfirrmann", ("disc_height_index", "dhi", "DHI")),
}


def key_measurement(level: Level, key: str) -> Measurement | None:
    """Return the level's measurement for ``key`` (``slip_mm``, ``msu_depth_ratio``, ``sir``, ``dhi``), or None."""
    kind, names = KEY_MEASUREMENTS[key]
    finding: Finding = level.finding(kind)
    for name in names:
        m = finding.measurement(name)
        if m is not None:
            return m
    return None


def slip_percent(level: Level, which: str = "value") -> float | None:
    """Return the signed slip % (+ antero) of the level's ``value`` / ``model`` / ``reader`` Meyerding grade.

    Falls back to a ``slip_percent`` measurement when the grade carries none.
    """
    grade = getattr(level.listhesis, which)
    if grade is not None and grade.slip_percent is not None:
        return grade.slip_percent
    if which != "reader":
        m = level.listhesis.measurement("slip_percent")
        if m is not None:
            return m.value
    return None


def measurements_by_key(level: Level) -> Mapping[str, Measurement]:
    """Return the key measurements present at a level, by key."""
    out = {}
    for key in KEY_MEASUREMENTS:
        m = key_measurement(level, key)
        if m is not None:
            out[key] = m
    return out
