"""Small DICOM series built with pydicom for the study-loading tests (geometry known by construction)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR = "1.2.840.10008.5.1.4.1.1.4"
CT = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

SAG_IOP = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)     # rows run posterior, columns run down
AX_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def make_slice(path: Path, *, study_uid: str, series_uid: str, origin: Sequence[float], iop: Sequence[float],
               spacing=(0.5, 0.5), rows: int = 32, cols: int = 32, instance: int = 1, description: str = "T2 TSE SAG",
               te: float = 100.0, tr: float = 4000.0, modality: str = "MR", sop_class: str = MR,
               image_type=("ORIGINAL", "PRIMARY", "M", "ND"), value: int = 100, slope: float | None = None,
               intercept: float | None = None, sop_uid: str | None = None, pixels: np.ndarray | None = None) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.FrameOfReferenceUID = study_uid + ".1"
    ds.Modality, ds.SeriesDescription = modality, description
    ds.PatientName, ds.PatientID = "TEST^FIXTURE", "FIX-1"
    ds.ImageType = list(image_type)
    ds.InstanceNumber = instance
    ds.EchoTime, ds.RepetitionTime = te, tr
    ds.ImagePositionPatient = [float(v) for v in origin]
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.SliceThickness = 3.0
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0.0
    arr = pixels if pixels is not None else np.full((rows, cols), value, np.uint16)
    ds.PixelData = arr.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_series(folder: Path, n: int, *, iop=SAG_IOP, start=(0.0, 0.0, 0.0), step=(3.5, 0.0, 0.0),
                study_uid: str = "2.25.100", series_uid: str | None = None, skip: Sequence[int] = (), **kw) -> str:
    """Write ``n`` parallel slices (minus ``skip``) into ``folder``; return the SeriesInstanceUID."""
    series_uid = series_uid or generate_uid()
    for i in range(n):
        if i in skip:
            continue
        origin = np.asarray(start) + i * np.asarray(step)
        make_slice(folder / f"{series_uid[-6:]}_{i:03d}.dcm", study_uid=study_uid, series_uid=series_uid,
                   origin=origin, iop=iop, instance=i + 1, value=100 + i, **kw)
    return series_uid


def tilted_axial_iop(degrees: float) -> tuple[float, ...]:
    """An axial plane tilted about the patient's left-right axis (as a block angled to a disc)."""
    t = np.radians(degrees)
    return (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(np.sin(t)))


def make_lumbar_study(root: Path, study_uid: str = "2.25.100") -> dict[str, str]:
    """A study like a clinical lumbar protocol: sagittal T2 and T1, angled axial T2 blocks, a localizer."""
    uids = {}
    uids["sag_t2"] = make_series(root / "sag_t2", 13, study_uid=study_uid, description="T2 TSE SAG")
    uids["sag_t1"] = make_series(root / "sag_t1", 13, study_uid=study_uid, description="T1 TSE SAG", te=10.0, tr=500.0)
    ax_uid = generate_uid()
    for b, (z, tilt) in enumerate(((-100.0, -10.0), (-130.0, 0.0), (-160.0, 15.0))):
        iop = tilted_axial_iop(tilt)
        normal = np.cross(iop[:3], iop[3:])
        make_series(root / "ax_t2", 4, iop=iop, start=(0.0, 0.0, z), step=tuple(4.0 * normal), study_uid=study_uid,
                    series_uid=ax_uid, description="T2 TSE AX", rows=24, cols=24)
        # distinct file names per block
        for p in sorted((root / "ax_t2").glob(f"{ax_uid[-6:]}_*.dcm")):
            p.rename(p.with_name(f"b{b}_{p.name}"))
    uids["ax_t2"] = ax_uid
    loc = generate_uid()
    for i, iop in enumerate((SAG_IOP, AX_IOP, (1.0, 0.0, 0.0, 0.0, 0.0, -1.0))):
        make_slice(root / "loc" / f"loc{i}.dcm", study_uid=study_uid, series_uid=loc, origin=(0, 0, 0), iop=iop,
                   description="3-plane localizer", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), te=2.0, tr=5.0)
    uids["localizer"] = loc
    return uids
