"""seg.dcm: a DICOM Segmentation (BINARY) of the intervertebral discs, referencing the source MR images.

One segment per disc level present in both the assessment and the label volume. Each segment is
labelled with its level (``"L4-L5 intervertebral disc"``), coded with category SCT 91723000
"Anatomical Structure", type the level's disc from DICOM CID 7604 "Intervertebral Disc" (e.g.
SCT 84020006 "L4/L5 disc"; a private ``99SPINEASSIST`` disc concept for transitional levels DICOM
has no concept for), anatomic region SCT 122496007 "Lumbar spine", and tracking UID
:func:`disc_tracking_uid` (shared with the SR's measurement groups). The algorithm is
"SpineAssist" with its version; the algorithm type is AUTOMATIC, or SEMIAUTOMATIC when a reader
edited the mask (``reader_edited``), which ContentDescription and ContentCreatorName also record.

Usage::

    from SpineAssistLib.export.dicom_seg import write_disc_seg
    write_disc_seg(sagittal_datasets, disc_label_volume, assessment, "out/seg.dcm")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset

from SpineAssistLib.anatomy import DISC_LABELS
from SpineAssistLib.export.atomic import atomic_path
from SpineAssistLib.export.codes import (
    ANATOMICAL_STRUCTURE,
    LUMBAR_SPINE,
    PRIVATE_SCHEME,
    assign_content_uids,
    coding_scheme_identification,
    disc_structure,
    stable_uid,
)
from SpineAssistLib.export.deidentify import DeidentificationSettings, deidentify_all, deidentify_derived
from SpineAssistLib.findings import Assessment, Level
from SpineAssistLib.geometry import orientation_normal
from SpineAssistLib.version import __version__

MANUFACTURER = "SpineAssist project"
SEG_SERIES_NUMBER = 901


def disc_tracking_uid(study_instance_uid: str, level_name: str) -> str:
    """Return the tracking UID of a disc: the same for a study and level in SEG and SR (a ``2.25`` UID)."""
    return stable_uid("disc", study_instance_uid, level_name)


def _person_name(name: str) -> str:
    """A reader's name as a DICOM PN: a single name (``dr.lee``) becomes the family name (``dr.lee^``)."""
    name = name.strip()
    return name if "^" in name else f"{name}^"


def sort_along_normal(datasets: Sequence[Dataset]) -> list[Dataset]:
    """Return single-frame images sorted by position along their common slice normal (ascending)."""
    if not datasets:
        raise ValueError("no source images: give the DICOM datasets of the series the disc mask was made on")
    iops = {tuple(round(float(x), 4) for x in ds.ImageOrientationPatient) for ds in datasets}
    if len(iops) != 1:
        raise ValueError("the source images have different ImageOrientationPatient; give one series "
                         "(the one the disc mask was made on)")
    series = {str(ds.SeriesInstanceUID) for ds in datasets}
    if len(series) != 1:
        raise ValueError(f"the source images come from {len(series)} series; give only the series the mask was made on")
    normal = orientation_normal(next(iter(iops)))
    return sorted(datasets, key=lambda ds: float(np.asarray(ds.ImagePositionPatient, dtype=float) @ normal))


def _segment_levels(assessment: Assessment, labels: np.ndarray, mask_names: str) -> list[tuple[Level, int]]:
    present = {int(v) for v in np.unique(labels)}
    out = []
    for level in assessment.levels:
        name = level.model_name if mask_names == "model" else level.name
        value = DISC_LABELS[name]  # type: ignore[index]
        if value in present:
            out.append((level, value))
    return out


def build_disc_seg(source_images: Sequence[Dataset], disc_labels: np.ndarray, assessment: Assessment, *,
                   reader_edited: bool = False, reader: str = "", mask_names: str = "model",
                   series_number: int = SEG_SERIES_NUMBER,
                   deidentification: DeidentificationSettings | None = None) -> Dataset:
    """Return the DICOM SEG dataset of the discs (a highdicom ``Segmentation``).

    ``source_images``: the single-frame MR datasets the mask was made on, in any order.
    ``disc_labels``: a (slices, rows, cols) label volume aligned with those images sorted along
    their normal, holding :data:`SpineAssistLib.anatomy.DISC_LABELS` values (other values are
    ignored). ``mask_names``: whether the mask's label values follow the model's level names
    (``"model"``, default: the mask is model output) or the reader's (``"reader"``); segments are
    always labelled with the reader's (in-force) names. ``deidentification``: when given, the
    source images are de-identified first (same settings as the SR, so references agree).
    """
    import highdicom as hd

    if mask_names not in ("model", "reader"):
        raise ValueError(f"mask_names must be 'model' or 'reader'; got {mask_names!r}")
    if reader_edited and not reader.strip():
        raise ValueError("reader_edited=True needs reader= (who edited the mask), recorded as ContentCreatorName")
    labels = np.asarray(disc_labels)
    if labels.ndim != 3:
        raise ValueError(f"disc_labels must be a 3D label volume (slices, rows, cols); got shape {labels.shape}")
    images = sort_along_normal(source_images)
    expected = (len(images), int(images[0].Rows), int(images[0].Columns))
    if labels.shape != expected:
        raise ValueError(f"disc_labels shape {labels.shape} does not match the source images "
                         f"({expected[0]} slices of {expected[1]} x {expected[2]}); the volume must be aligned with "
                         "the series sorted along its normal")
    if str(images[0].StudyInstanceUID) != assessment.study_instance_uid:
        raise ValueError("the source images belong to another study than the assessment "
                         "(StudyInstanceUID differs); give the images this assessment was made on")
    segment_levels = _segment_levels(assessment, labels, mask_names)
    if not segment_levels:
        raise ValueError("the label volume holds no disc of the assessment's levels "
                         f"({', '.join(lv.name for lv in assessment.levels) or 'none'}); nothing to export")

    study_uid = assessment.study_instance_uid
    if deidentification is not None:
        images = deidentify_all(images, deidentification)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="SpineAssist", family=hd.sr.CodedConcept("123109", "DCM", "Artificial Intelligence"),
        version=__version__,
        parameters={m.name: f"{m.version or '-'} sha256:{m.sha256[:16]}" for m in assessment.models} or None)
    algorithm_type = (hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC if reader_edited
                      else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC)
    descriptions = []
    # a label map of segment numbers (0: no disc): highdicom reads an unsigned integer array of a
    # BINARY segmentation so, and it avoids a one-hot array of (slices, rows, cols, segments)
    pixel_array = np.zeros(labels.shape, np.uint8)
    for number, (level, value) in enumerate(segment_levels, start=1):
        tracking = disc_tracking_uid(study_uid, level.model_name or level.name)
        if deidentification is not None and deidentification.remap_uids:
            tracking = deidentification.uid(tracking)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"{level.name} intervertebral disc",
            segmented_property_category=ANATOMICAL_STRUCTURE,
            segmented_property_type=disc_structure(level.name),
            algorithm_type=algorithm_type,
            algorithm_identification=algorithm,
            tracking_uid=tracking,
            tracking_id=f"{level.name} disc",
            anatomic_regions=[LUMBAR_SPINE],
        ))
        pixel_array[labels == value] = number

    provenance = "edited by a reader" if reader_edited else "model output, not edited by a reader"
    seg = hd.seg.Segmentation(
        source_images=images,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),      # both replaced by UIDs derived from the content (assign_content_uids)
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="SpineAssist",
        software_versions=__version__,
        device_serial_number="0",
        content_description=f"Discs, {provenance}"[:64],
        content_label="DISCS",
        content_creator_name=(_person_name(reader) if reader_edited else None),
        series_description="SpineAssist disc segmentation",
    )
    for item, (level, _) in zip(seg.SegmentSequence, segment_levels):
        note = f"{level.name}; research use, not clinically validated"
        if level.model_name != level.name:
            note = f"{level.name} (model labelled it {level.model_name}); research use, not clinically validated"
        item.SegmentDescription = note[:64]
    if any(d.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME for d in seg.SegmentSequence):
        seg.CodingSchemeIdentificationSequence = [coding_scheme_identification()]
    if deidentification is not None:
        seg = deidentify_derived(seg, deidentification)
    return assign_content_uids(seg)


def write_disc_seg(source_images: Sequence[Dataset], disc_labels: np.ndarray, assessment: Assessment,
                   path: str | os.PathLike[str], **options: object) -> Path:
    """Write seg.dcm atomically (options as :func:`build_disc_seg`); return its path."""
    seg = build_disc_seg(source_images, disc_labels, assessment, **options)  # type: ignore[arg-type]
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return path
