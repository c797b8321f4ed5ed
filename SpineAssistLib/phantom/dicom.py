"""Write a phantom series as DICOM MR Image Storage files, one per slice, deterministic bytes.

Patient data is plainly synthetic (``PHANTOM^SYNTHETIC^<seed>``, ID ``SYNTH-<seed>``); every UID is
derived from the seed (``2.25.<hash>``), dates from the drawn study date, so the same seed writes
the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from SpineAssistLib.phantom.study import PhantomStudy

MANUFACTURER = "SpineAssist phantom"


def phantom_uid(seed: int, *parts: object) -> str:
    """Return a deterministic 2.25 UID (a 128-bit hash) for the phantom of ``seed`` and what it names."""
    import hashlib

    text = "/".join(["spineassist-phantom", str(int(seed)), *map(str, parts)])
    return "2.25." + str(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big"))


def _fmt(v: float) -> str:
    """Return a decimal string of at most 16 characters (DICOM DS)."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s[:16]


def write_series(study: "PhantomStudy", which: str, out_dir: Path) -> list[Path]:
    """Write the sagittal (``"SAG"``) or axial (``"AX"``) series as IM0001.dcm...; return the paths."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage

    p = study.params
    series = study.sagittal if which == "SAG" else study.axial
    uids = study.uids
    series_uid = uids["sagittal"] if which == "SAG" else uids["axial"]
    sop_uids = study.sop_uids[which]
    number = 2 if which == "SAG" else 3
    acq = p.sag_acq_fraction if which == "SAG" else p.ax_acq_fraction
    phase = p.sag_phase_fraction if which == "SAG" else p.ax_phase_fraction
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([p.seed, number])
    time = f"{9 + p.seed % 8:02d}{(p.seed * 7) % 60:02d}00"
    series_time = f"{time[:2]}{(int(time[2:4]) + number * 4) % 60:02d}00"
    field_strength = 1.5 if p.seed % 3 == 0 else 3.0
    etl = int(rng.integers(15, 26))
    paths = []
    birth_year = int(p.study_date[:4]) - int(round(p.age))
    for i, (img, g) in enumerate(zip(series.images, series.slices)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uids[i]
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "SPINEASSIST"
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.InstanceCreationDate = p.study_date
        ds.InstanceCreationTime = series_time
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uids[i]
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = p.study_date
        ds.StudyTime = time
        ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = series_time
        ds.AccessionNumber = f"SYN{p.seed:07d}"[:16]
        ds.Modality = "MR"
        ds.Manufacturer = MANUFACTURER
        ds.InstitutionName = "Synthetic data - not a patient"
        ds.ReferringPhysicianName = ""
        ds.StationName = "PHANTOM"
        ds.StudyDescription = "MR LUMBAR SPINE (SYNTHETIC PHANTOM)"
        ds.SeriesDescription = "T2 TSE SAG" if which == "SAG" else "T2 TSE AX"
        ds.ManufacturerModelName = "SpineAssist phantom"
        ds.PatientName = f"PHANTOM^SYNTHETIC^{p.seed}"
        ds.PatientID = f"SYNTH-{p.seed}"
        ds.PatientBirthDate = f"{birth_year:04d}0101"
        ds.PatientSex = "O"
        ds.PatientAge = f"{int(round(p.age)):03d}Y"
        ds.PatientIdentityRemoved = "NO"
        ds.BodyPartExamined = "LSPINE"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = ["SK", "SP", "OSP"]
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.SequenceName = "*tse2d1_" + str(etl)
        ds.SliceThickness = _fmt(g.thickness)
        ds.RepetitionTime = _fmt(p.repetition_time_ms)
        ds.EchoTime = _fmt(p.echo_time_ms)
        ds.NumberOfAverages = "1" if which == "SAG" else "2"
        ds.ImagingFrequency = _fmt(42.577478 * field_strength)
        ds.ImagedNucleus = "1H"
        ds.EchoNumbers = "1"
        ds.MagneticFieldStrength = _fmt(field_strength)
        ds.SpacingBetweenSlices = _fmt(series.spacing_between_slices)
        ds.EchoTrainLength = str(etl)
        ds.PixelBandwidth = _fmt(float(rng.choice([190.0, 220.0, 250.0, 280.0])))
        ds.ProtocolName = "t2_tse_sag" if which == "SAG" else "t2_tse_tra"
        n_f = int(round(g.columns * acq / 2) * 2)
        n_p = int(round(n_f * phase / 2) * 2)
        ds.AcquisitionMatrix = [0, n_f, n_p, 0]
        ds.InPlanePhaseEncodingDirection = "COL"
        ds.FlipAngle = "150"
        ds.PatientPosition = p.patient_position
        ds.StudyInstanceUID = uids["study"]
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = str(number)
        ds.AcquisitionNumber = "1"
        ds.InstanceNumber = str(i + 1)
        ds.ImagePositionPatient = [_fmt(v) for v in g.position]
        ds.ImageOrientationPatient = [_fmt(v) for v in (*g.row_direction, *g.column_direction)]
        ds.FrameOfReferenceUID = uids["frame_of_reference"]
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _fmt(float(g.position @ g.normal))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(img.shape[0]), int(img.shape[1])
        ds.PixelSpacing = [_fmt(g.pixel_spacing[0]), _fmt(g.pixel_spacing[1])]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.SmallestImagePixelValue = int(img.min())
        ds.LargestImagePixelValue = int(img.max())
        ds["SmallestImagePixelValue"].VR = "US"
        ds["LargestImagePixelValue"].VR = "US"
        ds.WindowCenter = str(int(study.window[0]))
        ds.WindowWidth = str(int(study.window[1]))
        ds.PixelData = np.ascontiguousarray(img, dtype="<u2").tobytes()
        if g.level:
            ds.ImageComments = f"axial block {g.block} planned on disc {g.level}"
        path = out_dir / f"IM{i + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
