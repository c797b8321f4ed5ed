"""Write the real sagittal T2 lumbar MRI of the Spinal Cord Toolbox tutorial data (``t2_lumbar.nii.gz``,
MIT licence, NeuroPoly; ``github:spinalcordtoolbox/sct_tutorial_data``) as the DICOM series in
``DICOM/`` (SpineAssist's real sample scan): the central 24 of its 38 sagittal slices, 1 mm isotropic, int16 as stored.

    python Resources/SampleData/sct_t2_lumbar/make_dicom.py t2_lumbar.nii.gz Resources/SampleData/sct_t2_lumbar/DICOM

The NIfTI holds no patient data; the DICOM headers say where the pixels come from.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SLICES = range(7, 31)           # of 38, left to right
ROOT_UID = "1.2.826.0.1.3680043.8.498.77"      # pydicom's prefix, then fixed numbers: the files never change


def main(nifti: str, out: str) -> int:
    import SimpleITK as sitk
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID

    img = sitk.DICOMOrient(sitk.ReadImage(nifti), "LPS")
    vol = sitk.GetArrayFromImage(img)                  # (z, y, x): z up, y back, x left
    sx, sy, sz = img.GetSpacing()
    ox, oy, oz = img.GetOrigin()
    nz = vol.shape[0]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    study, series = f"{ROOT_UID}.1", f"{ROOT_UID}.1.2"
    for n, x in enumerate(SLICES, start=1):
        pixels = np.ascontiguousarray(vol[::-1, :, x]).astype(np.int16)     # rows head to feet, columns front to back
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = f"{series}.{n}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, f"{series}.{n}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.PatientName, ds.PatientID = "MR", "SCT^T2LUMBAR", "SCT-T2-LUMBAR"
        ds.PatientBirthDate, ds.PatientSex, ds.PatientPosition = "", "O", "HFS"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20180101", "120000", "1", "", ""
        ds.Manufacturer = "SCT tutorial data t2_lumbar (MIT)"
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "T2 SAG (sct_tutorial_data t2_lumbar)", "1", str(n)
        ds.BodyPartExamined, ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "LSPINE", "SE", "SK", ""
        ds.MRAcquisitionType, ds.ImageType = "2D", ["DERIVED", "SECONDARY"]
        ds.EchoTime, ds.RepetitionTime = "100", "3000"     # not recorded in the NIfTI: the T2 weighting it shows
        ds.SliceThickness, ds.SpacingBetweenSlices = f"{sx:g}", f"{sx:g}"
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [f"{ox + x * sx:.4f}", f"{oy:.4f}", f"{oz + (nz - 1) * sz:.4f}"]
        ds.PixelSpacing = [f"{sz:g}", f"{sy:g}"]
        ds.FrameOfReferenceUID = f"{study}.9"
        ds.PositionReferenceIndicator = ""
        ds.Laterality = ""
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = pixels.tobytes()
        ds.save_as(out_dir / f"IM{n:04d}.dcm", enforce_file_format=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
