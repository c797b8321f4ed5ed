"""SpineAssist's samples in Slicer's Sample Data module, nothing downloaded: a synthetic lumbar study
generated on this computer, and the bundled real sagittal T2 scan (``Resources/SampleData``; Spinal
Cord Toolbox tutorial data, MIT licence).

The phantom (``SpineAssistLib.phantom``) writes a sagittal and an axial T2 DICOM series into a
temporary folder; they are imported into Slicer's DICOM database and loaded like any study, so the
panel's series selectors find them.

Usage (Slicer's Python console)::

    from SpineAssistLib.ui import sample_data
    folder, series_uids = sample_data.write_sample_study()
    node_ids = sample_data.load_into_slicer(folder, series_uids)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from SpineAssistLib.resources import resource_path

SAMPLE_NAME = "SpineAssist synthetic lumbar study"
REAL_SAMPLE_NAME = "SpineAssist real sagittal T2 (thoracolumbar, no sacrum)"
CATEGORY = "SpineAssist"
SAMPLE_SEED = 0


def write_sample_study(dest: str | Path | None = None, seed: int = SAMPLE_SEED) -> tuple[Path, list[str]]:
    """Return (the study folder, its [sagittal, axial] SeriesInstanceUIDs) after writing the phantom of ``seed``.

    ``dest`` defaults to a new temporary folder. Takes about 15 s.
    """
    from SpineAssistLib.phantom import generate_study, write_study

    folder = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="spineassist-sample-")) / "study"
    study = generate_study(seed)
    write_study(study, folder)
    return folder, [study.uids["sagittal"], study.uids["axial"]]


def load_into_slicer(folder: str | Path, series_uids: list[str]) -> list[str]:
    """Import a study folder into Slicer's DICOM database and load the given series; return the loaded node IDs."""
    import slicer
    from DICOMLib import DICOMUtils

    if slicer.dicomDatabase is None or not slicer.dicomDatabase.isOpen:
        DICOMUtils.openTemporaryDatabase()  # no database set up yet: a temporary one, as Slicer's own tests do
    DICOMUtils.importDicom(str(folder))
    loaded = DICOMUtils.loadSeriesByUID(series_uids)
    if not loaded:
        raise RuntimeError(f"the DICOM module loaded none of the series {', '.join(series_uids)} from {folder}")
    return list(loaded)


def load_sample(*_: Any) -> list[Any]:
    """Generate the sample study and load it (the Sample Data button calls this); return the loaded volume nodes."""
    import slicer

    with slicer.util.tryWithErrorDisplay("SpineAssist could not make its synthetic sample study.", waitCursor=True):
        folder, series = write_sample_study()
        return [slicer.mrmlScene.GetNodeByID(i) for i in load_into_slicer(folder, series)]
    return []


def real_sample() -> tuple[Path, list[str]]:
    """Return (the bundled real scan's DICOM folder, [its sagittal SeriesInstanceUID])."""
    import pydicom

    folder = resource_path("SampleData", "sct_t2_lumbar", "DICOM")
    first = next(iter(sorted(folder.glob("*.dcm"))), None)
    if first is None:
        raise FileNotFoundError(f"{folder} holds no DICOM files: the extension's Resources are incomplete")
    return folder, [str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID)]


def load_real_sample(*_: Any) -> list[Any]:
    """Load the bundled real scan (the Sample Data button calls this); return the loaded volume nodes."""
    import slicer

    with slicer.util.tryWithErrorDisplay("SpineAssist could not load its real sample scan.", waitCursor=True):
        folder, series = real_sample()
        return [slicer.mrmlScene.GetNodeByID(i) for i in load_into_slicer(folder, series)]
    return []


def register(thumbnail: str | Path | None = None) -> None:
    """Add the samples to Slicer's Sample Data module (called once Slicer has started); ``thumbnail``: an icon file."""
    import SampleData

    icon = str(thumbnail) if thumbnail and Path(thumbnail).is_file() else None
    for name, loader in ((SAMPLE_NAME, load_sample), (REAL_SAMPLE_NAME, load_real_sample)):
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category=CATEGORY, sampleName=name, uris=[], fileNames=[], nodeNames=[], thumbnailFileName=icon,
            customDownloader=loader)
