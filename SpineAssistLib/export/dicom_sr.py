"""sr.dcm: a DICOM Comprehensive 3D SR holding a TID 1500 Measurement Report of the assessment.

One measurement group (TID 1501) per disc level: tracking identifier = the level name and the
disc's tracking UID (the same UID as the level's segment in seg.dcm), finding type = the level's
disc (CID 7604, see :mod:`.codes`). Each group holds
- qualitative evaluations: Pfirrmann grade, MSU size / zone / side (SCT laterality codes), disc
  bulge, Meyerding grade and listhesis direction; and, from the sagittal series, Modic type, upper
  and lower endplate defect, disc narrowing, disc bulging and herniation (SCT 73589001) as present /
  absent, spinal stenosis (SCT 76107001, present unless the grade is "none") and its Verbiest grade;
- numeric measurements with UCUM units: signed slip % (``%``, + antero), slip (``mm``), MSU
  depth ratio, SIR and DHI (``1``), and the central canal's antero-posterior diameter (SCT
  "Diameter", finding site SCT "Vertebral canal", ``mm``).
Every item says whose value it is through a "Measurement Method" (SCT 370129005) concept modifier
(qualitative) or the measurement's method (numeric): ``99SPINEASSIST MODEL`` "SpineAssist model
output" or ``99SPINEASSIST READER`` "Reader correction". When a reader corrected a finding, both
values are written: the reader's (in force) and the model's. Findings that were not assessed are
left out of the group. The source images (sagittal and axial) are referenced in the image library
and, where the findings' geometry names its image, by the group and measurement.

Usage::

    from SpineAssistLib.export.dicom_sr import write_measurement_report
    write_measurement_report(assessment, sagittal_datasets + axial_datasets, "out/sr.dcm")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from SpineAssistLib.export import codes as C
from SpineAssistLib.export.atomic import atomic_path
from SpineAssistLib.export.deidentify import DeidentificationSettings, deidentify_all, deidentify_derived
from SpineAssistLib.export.dicom_seg import MANUFACTURER, _person_name, disc_tracking_uid
from SpineAssistLib.findings import Assessment, Finding, Level
from SpineAssistLib.version import __version__

SR_SERIES_NUMBER = 902
DEVICE_OBSERVER_UID = C.stable_uid("device-observer", "SpineAssist")

_NUMERIC_UNITS = {"slip_mm": ("mm", C.UCUM_MM, C.SLIP_MM), "msu_depth_ratio": ("1", C.UCUM_NO_UNITS, C.MSU_DEPTH_RATIO),
                  "sir": ("1", C.UCUM_NO_UNITS, C.SIGNAL_INTENSITY_RATIO), "dhi": ("1", C.UCUM_NO_UNITS, C.DISC_HEIGHT_INDEX)}


def _qualitative(name: Code, value: Code, source: Code) -> Any:
    import highdicom as hd

    item = hd.sr.QualitativeEvaluation(name, value)
    method = hd.sr.CodeContentItem(name=C.MEASUREMENT_METHOD, value=source,
                                   relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD)
    item[0].ContentSequence = hd.sr.ContentSequence([method])
    return item


def _value_evaluations(finding: Finding, to_items: Any) -> list[Any]:
    """The in-force value's items (reader's or model's), then the model's too when a reader corrected it."""
    out: list[Any] = []
    if finding.status == "not_assessed" and finding.value is None:
        return out
    if finding.reader is not None:
        out += [_qualitative(n, v, C.READER_VALUE) for n, v in to_items(finding.reader)]
    if finding.model is not None:
        out += [_qualitative(n, v, C.MODEL_VALUE) for n, v in to_items(finding.model)]
    return out


def _pfirrmann_items(v: Any) -> list[tuple[Code, Code]]:
    return [(C.PFIRRMANN_GRADE, C.PFIRRMANN_VALUES[v.grade])]


def _msu_items(v: Any) -> list[tuple[Code, Code]]:
    items = [(C.MSU_SIZE, C.MSU_SIZE_VALUES[v.size])]
    if v.size == 0:
        items.append((C.DISC_BULGE, C.PRESENT if v.bulge else C.ABSENT))
        return items
    items.append((C.MSU_ZONE, C.MSU_ZONE_VALUES[v.zone]))
    side = v.side or ("central" if v.zone == "A" else None)
    if side is not None:
        items.append((C.LATERALITY, C.SIDE_CODES[side]))
    return items


def _meyerding_items(v: Any) -> list[tuple[Code, Code]]:
    items = [(C.MEYERDING_GRADE, C.MEYERDING_VALUES[v.grade])]
    if v.direction is not None:
        items.append((C.LISTHESIS_DIRECTION, C.LISTHESIS_DIRECTION_VALUES[v.direction]))
    return items


def _modic_items(v: Any) -> list[tuple[Code, Code]]:
    return [(C.MODIC_TYPE, C.MODIC_VALUES[v.type])]


def _presence_items(kind: str) -> Any:
    def items(v: Any) -> list[tuple[Code, Code]]:
        return [(C.PRESENCE_CONCEPTS[kind], C.PRESENT if v.present else C.ABSENT)]
    return items


def _canal_items(v: Any) -> list[tuple[Code, Code]]:
    return [(C.SPINAL_STENOSIS, C.ABSENT if v.stenosis == "none" else C.PRESENT),
            (C.CANAL_STENOSIS_GRADE, C.CANAL_STENOSIS_VALUES[v.stenosis])]


def _evaluations(level: Level) -> list[Any]:
    """Every finding's qualitative evaluations, in the order of FINDING_KINDS."""
    to_items = {"pfirrmann": _pfirrmann_items, "ldh": _msu_items, "listhesis": _meyerding_items,
                "modic": _modic_items, "canal": _canal_items,
                **{kind: _presence_items(kind) for kind in C.PRESENCE_CONCEPTS}}
    return [item for f in level.findings() for item in _value_evaluations(f, to_items[f.kind])]


def _source_for(finding: Finding, images_by_uid: dict[str, Dataset]) -> Dataset | None:
    return images_by_uid.get(finding.geometry.source.get("sop_instance_uid", ""))


def _measurements(level: Level, images_by_uid: dict[str, Dataset], algorithm: Any) -> list[Any]:
    import highdicom as hd

    def measurement(name: Code, value: float, unit: Code, source: Code, image: Dataset | None,
                    site: Code | None = None) -> Any:
        return hd.sr.Measurement(
            name=name, value=value, unit=unit, method=source,
            algorithm_id=algorithm if source == C.MODEL_VALUE else None,
            finding_sites=[hd.sr.FindingSite(site)] if site is not None else None,
            referenced_images=[hd.sr.SourceImageForMeasurement.from_source_image(image)] if image is not None else None)

    out = []
    listhesis_image = _source_for(level.listhesis, images_by_uid)
    if level.listhesis.status == "assessed" or level.listhesis.value is not None:
        model_slip = C.slip_percent(level, "model")
        if model_slip is not None:
            out.append(measurement(C.SLIP_PERCENT, model_slip, C.UCUM_PERCENT, C.MODEL_VALUE, listhesis_image))
        reader_slip = C.slip_percent(level, "reader")
        if reader_slip is not None:
            out.append(measurement(C.SLIP_PERCENT, reader_slip, C.UCUM_PERCENT, C.READER_VALUE, listhesis_image))
    for key, (unit_text, unit, concept) in _NUMERIC_UNITS.items():
        m = C.key_measurement(level, key)
        if m is None:
            continue
        if m.unit != unit_text:
            raise ValueError(f"{level.name}: measurement {m.name!r} has unit {m.unit!r}; the SR expects {unit_text!r} "
                             f"(UCUM). Convert it in the findings before exporting.")
        kind = C.KEY_MEASUREMENTS[key][0]
        out.append(measurement(concept, m.value, unit, C.MODEL_VALUE, _source_for(level.finding(kind), images_by_uid)))
    canal, canal_image = level.canal, _source_for(level.canal, images_by_uid)
    for value, source in ((canal.model, C.MODEL_VALUE), (canal.reader, C.READER_VALUE)):
        if value is not None and value.ap_mm is not None:
            out.append(measurement(C.DIAMETER, value.ap_mm, C.UCUM_MM, source, canal_image, C.VERTEBRAL_CANAL))
    return out


def _group(level: Level, study_uid: str, images_by_uid: dict[str, Dataset], algorithm: Any,
           deidentification: DeidentificationSettings | None) -> Any:
    import highdicom as hd

    tracking_uid = disc_tracking_uid(study_uid, level.model_name or level.name)
    if deidentification is not None and deidentification.remap_uids:
        tracking_uid = deidentification.uid(tracking_uid)
    evaluations = _evaluations(level)
    sources = []
    seen = set()
    for f in level.findings():
        image = _source_for(f, images_by_uid)
        if image is not None and image.SOPInstanceUID not in seen:
            seen.add(image.SOPInstanceUID)
            sources.append(hd.sr.SourceImageForMeasurementGroup.from_source_image(image))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=level.name),
        finding_type=C.disc_structure(level.name),
        finding_sites=[hd.sr.FindingSite(C.LUMBAR_SPINE)],
        measurements=_measurements(level, images_by_uid, algorithm) or None,
        qualitative_evaluations=evaluations or None,
        source_images=sources or None,
    )


def build_measurement_report(assessment: Assessment, source_images: Sequence[Dataset], *,
                             series_number: int = SR_SERIES_NUMBER,
                             deidentification: DeidentificationSettings | None = None) -> Dataset:
    """Return the Comprehensive 3D SR dataset (TID 1500) of the assessment.

    ``source_images``: the MR datasets the assessment was made on (sagittal and axial; at least
    one), all of the assessment's study. Findings' geometry sources (``sop_instance_uid``) that
    match one of them are referenced per group and per measurement. ``deidentification``: the
    source images are de-identified first (use the same settings as the SEG); the person observer
    (reader) is then not named.
    """
    import highdicom as hd

    if not source_images:
        raise ValueError("no source images: give the sagittal (and axial) MR datasets the assessment was made on")
    studies = {str(ds.StudyInstanceUID) for ds in source_images}
    if studies != {assessment.study_instance_uid}:
        raise ValueError("the source images must all belong to the assessment's study "
                         f"{assessment.study_instance_uid}; got images of {len(studies)} study(ies) that differ")
    images = list(source_images)
    original_uids = [str(ds.SOPInstanceUID) for ds in images]
    if deidentification is not None:
        images = deidentify_all(images, deidentification)
    images_by_uid = dict(zip(original_uids, images))  # findings name the original instances
    study_uid = assessment.study_instance_uid

    algorithm = hd.sr.AlgorithmIdentification(name="SpineAssist", version=__version__)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_OBSERVER_UID, name="SpineAssist", manufacturer_name=MANUFACTURER,
            model_name=f"SpineAssist {__version__}"))
    person = None
    readers = [c.reader for lv in assessment.levels for c in lv.all_corrections()]
    if readers:
        person = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name="ANONYMOUS^READER" if deidentification is not None else _person_name(readers[-1])))
    context = hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)
    groups = [_group(lv, study_uid, images_by_uid, algorithm, deidentification) for lv in assessment.levels]
    # The image library (TID 1600) describes the images the measurements were made on, not every
    # image of the series: a library of all ~35 source images made the SR ten times larger and
    # slower to build and write; the evidence sequence still lists every source image.
    measured = {f.geometry.source.get("sop_instance_uid") for lv in assessment.levels
                for f in lv.findings() if f.geometry is not None}
    library = [ds for uid, ds in images_by_uid.items() if uid in measured] or images[:1]
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups or None,
        title=codes.DCM.ImagingMeasurementReport,
        referenced_images=library,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=images,
        content=report[0],
        series_instance_uid=hd.UID(),      # both replaced by UIDs derived from the content (assign_content_uids)
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="SpineAssist measurements (research use)",
    )
    sr.CodingSchemeIdentificationSequence = [C.coding_scheme_identification()]
    if deidentification is not None:
        sr = deidentify_derived(sr, deidentification)
    return C.assign_content_uids(sr)


def write_measurement_report(assessment: Assessment, source_images: Sequence[Dataset],
                             path: str | os.PathLike[str], **options: Any) -> Path:
    """Write sr.dcm atomically (options as :func:`build_measurement_report`); return its path."""
    sr = build_measurement_report(assessment, source_images, **options)
    path = Path(path)
    with atomic_path(path) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    return path
