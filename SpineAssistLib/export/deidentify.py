"""De-identification of exported DICOM (PS3.15 Annex E, Basic Application Level Confidentiality Profile).

Only the attributes SpineAssist's inputs and outputs carry are handled, each with the profile's
action (X remove, Z empty or dummy, D dummy, U deterministic UID remapping), plus:
private attributes are removed; dates are either shifted by a whole number of days (Retain
Longitudinal Temporal Information with Modified Dates Option) or removed/emptied; UIDs are kept
(Retain UIDs Option) or remapped deterministically, so the same input UID gives the same output
UID in every file of one export (references between SEG, SR and images stay consistent).
Nothing here logs or prints any attribute value.

Usage::

    from SpineAssistLib.export.deidentify import DeidentificationSettings, deidentify
    settings = DeidentificationSettings(patient_id="CASE-007", date_shift_days=-30, remap_uids=True, salt="project-x")
    clean = deidentify(dataset, settings)            # a de-identified copy; ``dataset`` is unchanged
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
from dataclasses import dataclass
from typing import Iterable

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from SpineAssistLib.export.codes import stable_uid
from SpineAssistLib.version import __version__

ANONYMOUS = "ANONYMOUS"

# PS3.15 Table E.1-1, Basic Profile action, for the attributes handled here.
REMOVE: tuple[str, ...] = (  # X
    "PatientBirthTime", "PatientAge", "PatientSize", "PatientWeight", "PatientAddress", "PatientTelephoneNumbers",
    "OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence", "PatientBirthName", "PatientMotherBirthName",
    "MilitaryRank", "BranchOfService", "EthnicGroup", "Occupation", "AdditionalPatientHistory", "PatientComments",
    "MedicalRecordLocator", "ResponsiblePerson", "ResponsibleOrganization", "PatientReligiousPreference",
    "CountryOfResidence", "RegionOfResidence", "MedicalAlerts", "Allergies", "PregnancyStatus", "SmokingStatus",
    "LastMenstrualDate", "PatientInsurancePlanCodeSequence", "PatientState", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "InstitutionCodeSequence", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "OperatorsName", "OperatorIdentificationSequence", "RequestingPhysician", "RequestingService",
    "ScheduledPerformingPhysicianName", "StationName", "RequestAttributesSequence", "AdmissionID",
    "CurrentPatientLocation", "StudyComments", "ImageComments", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "RequestedProcedureDescription", "ReasonForStudy", "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence", "PatientBirthDateInAlternativeCalendar", "DeviceUID",
)
EMPTY: tuple[str, ...] = (  # Z: Type 2 in the IODs SpineAssist writes, so emptied rather than removed
    "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName", "ContentCreatorName",
)
DUMMY: dict[str, str] = {  # D: Type 1 somewhere SpineAssist writes, so a dummy value keeps the object valid
    "DeviceSerialNumber": "0",
    "VerifyingObserverName": "ANONYMOUS^OBSERVER",
    "VerifyingOrganization": ANONYMOUS,
}
# Dates that must stay present (Type 1/2): emptied or set to a dummy when not shifted.
_KEEP_DATES = {"StudyDate": "", "StudyTime": "", "ContentDate": "19000101", "ContentTime": "000000"}
# UIDs that identify instances (remapped under option U); class and syntax UIDs never are.
_REMAP_UID_KEYWORDS = {
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "ReferencedSOPInstanceUID",
    "ReferencedFrameOfReferenceUID", "SynchronizationFrameOfReferenceUID", "MediaStorageSOPInstanceUID",
    "DimensionOrganizationUID", "ConcatenationUID", "IrradiationEventUID", "StorageMediaFileSetUID",
    "ReferencedSeriesInstanceUID", "InstanceCreatorUID", "TrackingUID", "UID", "ObserverUID",
}


@dataclass(frozen=True)
class DeidentificationSettings:
    """What to do with identifiers. Defaults: hash the patient ID, remove dates, keep UIDs.

    ``patient_id``: the pseudonym to write; if empty, a SHA-256 of ``salt`` + the original ID
    (first 16 hex digits) is used. ``patient_name``: the name to write. ``date_shift_days``: shift
    every date by this many days (keeps intervals); None removes dates. ``remap_uids``: replace
    instance UIDs by ``2.25`` UIDs derived from ``salt`` + the original (same input, same output).
    ``salt`` should be a project secret: without it a hashed ID can be recomputed from the real one.
    """

    patient_id: str = ""
    patient_name: str = ANONYMOUS
    date_shift_days: int | None = None
    remap_uids: bool = False
    salt: str = ""

    def __post_init__(self) -> None:
        if self.date_shift_days is not None and (isinstance(self.date_shift_days, bool)
                                                 or not isinstance(self.date_shift_days, int)):
            raise TypeError(f"date_shift_days must be a whole number of days or None; got {self.date_shift_days!r}")
        if len(self.patient_id) > 64:
            raise ValueError("patient_id (the pseudonym) must be at most 64 characters (DICOM LO)")

    def pseudonym(self, original_id: str) -> str:
        """Return the patient ID to write for ``original_id``."""
        if self.patient_id:
            return self.patient_id
        return hashlib.sha256(f"{self.salt}|{original_id}".encode()).hexdigest()[:16].upper()

    def uid(self, original: str) -> str:
        """Return the remapped UID of ``original`` (deterministic for the same salt)."""
        return stable_uid("deidentify", self.salt, str(original))


def _shift_date(value: str, days: int) -> str:
    d = _dt.datetime.strptime(value[:8], "%Y%m%d").date() + _dt.timedelta(days=days)
    return d.strftime("%Y%m%d") + value[8:]


def _walk(ds: Dataset, settings: DeidentificationSettings, top: bool) -> None:
    for elem in list(ds):
        kw = elem.keyword
        if elem.VR == "SQ":
            if kw in REMOVE:
                del ds[elem.tag]
                continue
            for item in elem.value:
                _walk(item, settings, top=False)
            continue
        if elem.tag.is_private:
            continue
        if kw in REMOVE:
            del ds[elem.tag]
        elif kw in EMPTY:
            elem.value = ""
        elif kw in DUMMY:
            elem.value = DUMMY[kw]
        elif elem.VR in ("DA", "DT") and elem.value not in (None, ""):
            if settings.date_shift_days is not None:
                values = elem.value if elem.VM > 1 else [elem.value]
                shifted = [_shift_date(str(v), settings.date_shift_days) for v in values]
                elem.value = shifted if elem.VM > 1 else shifted[0]
            elif kw in _KEEP_DATES:
                elem.value = _KEEP_DATES[kw]
            else:
                del ds[elem.tag]
        elif elem.VR == "TM" and settings.date_shift_days is None and elem.value not in (None, ""):
            if kw in _KEEP_DATES:
                elem.value = _KEEP_DATES[kw]
            else:
                del ds[elem.tag]
        elif elem.VR == "UI" and settings.remap_uids and kw in _REMAP_UID_KEYWORDS and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            mapped = [settings.uid(str(v)) for v in values]
            elem.value = mapped if elem.VM > 1 else mapped[0]


def deidentify(ds: Dataset, settings: DeidentificationSettings | None = None) -> Dataset:
    """Return a de-identified copy of ``ds`` (``ds`` itself is not changed).

    PatientName becomes ``settings.patient_name`` (``ANONYMOUS``), PatientID the pseudonym; the
    attributes in :data:`REMOVE`, :data:`EMPTY` and :data:`DUMMY` get their PS3.15 action; private
    attributes are removed; dates are shifted or removed; UIDs kept or remapped. Sets
    PatientIdentityRemoved ``YES``, DeidentificationMethod and its code sequence, and
    LongitudinalTemporalInformationModified.
    """
    settings = settings or DeidentificationSettings()
    out = copy.deepcopy(ds)
    original_id = str(out.get("PatientID", ""))
    out.remove_private_tags()
    _walk(out, settings, top=True)
    if "file_meta" in out.__dict__ or hasattr(out, "file_meta"):
        meta = getattr(out, "file_meta", None)
        if meta is not None and settings.remap_uids and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = settings.uid(str(meta.MediaStorageSOPInstanceUID))
    out.PatientName = settings.patient_name
    out.PatientID = settings.pseudonym(original_id)
    out.PatientIdentityRemoved = "YES"
    options = [f"SpineAssist {__version__}", "DICOM PS3.15 Basic Profile"]
    codes = [("113100", "Basic Application Confidentiality Profile")]
    if settings.date_shift_days is not None:
        options.append("Modified Dates Option")
        codes.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
    if not settings.remap_uids:
        options.append("Retain UIDs Option")  # LO values: at most 64 characters each
        codes.append(("113110", "Retain UIDs Option"))
    out.DeidentificationMethod = options
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    out.DeidentificationMethodCodeSequence = Sequence(items)
    out.LongitudinalTemporalInformationModified = "MODIFIED" if settings.date_shift_days is not None else "REMOVED"
    return out


def deidentify_all(datasets: Iterable[Dataset], settings: DeidentificationSettings | None = None) -> list[Dataset]:
    """Return de-identified copies of ``datasets`` with one settings object (consistent pseudonyms and UIDs)."""
    return [deidentify(ds, settings) for ds in datasets]


def deidentify_derived(ds: Dataset, settings: DeidentificationSettings) -> Dataset:
    """Return a de-identified copy of an object SpineAssist derived from images already de-identified
    with ``settings`` (a SEG or SR): its patient ID is already the pseudonym, its dates are already
    shifted, and its UIDs must keep pointing at the de-identified images."""
    return deidentify(ds, DeidentificationSettings(
        patient_id=str(ds.PatientID), patient_name=settings.patient_name,
        date_shift_days=0 if settings.date_shift_days is not None else None,
        remap_uids=False, salt=settings.salt))
