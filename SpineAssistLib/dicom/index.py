"""Find the series a lumbar assessment needs in any DICOM folder, and read them with exact geometry.

``index_folder`` reads headers only (recursively; DICOMDIR and non-DICOM files are skipped with a
reason), groups instances by SeriesInstanceUID and describes each series: modality, plane from
ImageOrientationPatient, weighting from the sequence tags and timing, localizer, slices, spacing,
the stacks of parallel slices it holds (angled axial blocks are separate stacks) and the problems
found. ``select_series`` picks the sagittal and axial T2 (the user may name either by UID) from one
study (StudyInstanceUID) of one patient: a folder may hold several, and an assessment that mixed
them would report one patient's discs with another's axial slices. ``read_series_datasets`` reads
the pixels. Nothing in the input folder is ever written to.

Patient names are never read into the index. PatientID is kept only as a hash (``SeriesInfo.patient_keys``),
to tell whether series belong to one patient; it is never shown.

Usage::

    from SpineAssistLib.dicom.index import index_folder, read_series_datasets, select_series, series_table
    index = index_folder("/data/case1")
    print(series_table(index))
    choice = select_series(index)                        # or study_uid=..., sagittal_uid=..., axial_uid=...
    datasets = read_series_datasets(choice.sagittal)

Geometry: patient LPS mm, as DICOM. A slice's normal is row direction × column direction.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from SpineAssistLib.errors import StudyError
from SpineAssistLib.geometry import orientation_normal

log = logging.getLogger(__name__)

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
IMAGE_SOP_CLASSES = {MR_IMAGE_STORAGE, ENHANCED_MR_IMAGE_STORAGE, "1.2.840.10008.5.1.4.1.1.4.4"}
PLANE_TOLERANCE = 0.8          # |normal component| above which a slice counts as that plane (~37 degrees)
PARALLEL_TOLERANCE = 0.9995    # normals this close (~1.8 degrees) belong to one stack
T2_MIN_TE_MS = 70.0
T2_MIN_TR_MS = 1800.0

# One wording wherever a study without an axial series is reported (series choice, assessment).
NO_AXIAL_WARNING = "no axial series: herniation (MSU) not assessed"
# How many duplicate instance UIDs a problem line names before it only counts the rest.
DUPLICATES_SHOWN = 3


@dataclass(frozen=True)
class SliceRef:
    """One image (a file, or one frame of a multi-frame file) and its own plane in LPS mm."""

    sop_instance_uid: str
    path: Path
    frame: int | None
    origin: tuple[float, float, float]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    pixel_spacing: tuple[float, float]      # (row spacing, column spacing) mm
    rows: int
    columns: int
    instance_number: int = 0

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_direction, self.column_direction)


@dataclass
class StackInfo:
    """Parallel slices of one series, sorted along their common normal."""

    normal: tuple[float, float, float]
    slices: list[SliceRef]
    spacing_mm: float | None
    problems: list[str] = field(default_factory=list)


@dataclass
class SeriesInfo:
    """One series as the index found it: what it is, how many slices, and what is wrong with it."""

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    description: str
    sop_class_uid: str
    plane: str = "unknown"
    weighting: str = "other"
    is_localizer: bool = False
    echo_time: float | None = None
    repetition_time: float | None = None
    inversion_time: float | None = None
    slice_thickness: float | None = None
    slices: list[SliceRef] = field(default_factory=list)
    stacks: list[StackInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    study_date: str = ""
    study_description: str = ""
    # hashes of the PatientIDs its instances carry (normally one): compared, never shown or logged
    patient_keys: set[str] = field(default_factory=set, repr=False)

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        return self.slices[0].pixel_spacing if self.slices else None

    @property
    def is_image(self) -> bool:
        return bool(self.slices)


@dataclass
class StudyInfo:
    """The series of one StudyInstanceUID, with the study's date and description (no patient data)."""

    study_instance_uid: str
    series: list[SeriesInfo] = field(default_factory=list)

    @property
    def study_date(self) -> str:
        """Return the StudyDate as YYYY-MM-DD (as found when it is not a DICOM date), or '' when absent."""
        d = next((s.study_date for s in self.series if s.study_date), "")
        return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d

    @property
    def study_description(self) -> str:
        return next((s.study_description for s in self.series if s.study_description), "")

    @property
    def patient_keys(self) -> set[str]:
        return set().union(*(s.patient_keys for s in self.series))

    @property
    def has_mr_images(self) -> bool:
        return any(s.is_image and s.modality == "MR" for s in self.series)

    def label(self) -> str:
        """Return one line naming the study: UID, date, description, number of series."""
        uid = self.study_instance_uid or "(no StudyInstanceUID)"
        desc = f'"{self.study_description}"' if self.study_description else "no description"
        n = len(self.series)
        return f"{uid}  {self.study_date or 'no date'}  {desc}  ({n} series)"


@dataclass
class StudyIndex:
    """Every series found under ``root``, and the files skipped with the reason."""

    root: Path
    series: list[SeriesInfo] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    files_seen: int = 0

    def get(self, uid: str) -> SeriesInfo:
        for s in self.series:
            if s.series_instance_uid == uid:
                return s
        raise StudyError(f"no series with SeriesInstanceUID {uid} in {self.root}; `spineassist series {self.root}` lists them")

    def studies(self) -> list[StudyInfo]:
        """Return the series grouped by StudyInstanceUID, oldest study first (then by UID)."""
        by_uid: dict[str, StudyInfo] = {}
        for s in self.series:
            by_uid.setdefault(s.study_instance_uid, StudyInfo(s.study_instance_uid)).series.append(s)
        return sorted(by_uid.values(), key=lambda st: (st.study_date, st.study_instance_uid))

    def assessable_studies(self) -> list[StudyInfo]:
        """Return the studies that hold MR images (a stray report or CT of another study is no choice)."""
        return [st for st in self.studies() if st.has_mr_images]


@dataclass
class SeriesChoice:
    """The series an assessment will read (all of one study), and notes on how they were chosen."""

    sagittal: SeriesInfo
    axial: SeriesInfo | None
    notes: list[str] = field(default_factory=list)
    study: StudyInfo | None = None


# ---- classification ------------------------------------------------------------------------

def plane_of(iop: Sequence[float]) -> str:
    """Return 'sagittal', 'coronal', 'axial' or 'oblique' from an ImageOrientationPatient (6 numbers)."""
    v = np.asarray(iop, float)
    if v.shape != (6,) or not np.all(np.isfinite(v)):
        return "unknown"
    n = orientation_normal(v)
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        return "unknown"
    n = np.abs(n / norm)
    axis = int(np.argmax(n))
    if n[axis] < PLANE_TOLERANCE:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _float(ds: Any, keyword: str) -> float | None:
    v = getattr(ds, keyword, None)
    if v is None or v == "":
        return None
    try:
        return float(v[0] if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else v)
    except (TypeError, ValueError):
        return None


def weighting_of(ds: Any) -> str:
    """Return 'T1', 'T2', 'STIR', 'PD' or 'other' from the description, sequence tags and timing."""
    text = " ".join(str(getattr(ds, k, "")) for k in ("SeriesDescription", "ProtocolName", "SequenceName")).upper()
    te, tr, ti = _float(ds, "EchoTime"), _float(ds, "RepetitionTime"), _float(ds, "InversionTime")
    if "STIR" in text or "TIRM" in text or (ti is not None and 100 <= ti <= 250):
        return "STIR"
    for tag in ("T2", "T1", "PD"):
        if tag in text.replace("TSE", "").replace("TIR", ""):
            if tag == "T1" and "FLAIR" in text:
                return "T1"
            return tag
    if te is not None and tr is not None:
        if te >= T2_MIN_TE_MS and tr >= T2_MIN_TR_MS:
            return "T2"
        if te <= 30 and tr <= 1000:
            return "T1"
        if te <= 40 and tr >= T2_MIN_TR_MS:
            return "PD"
    return "other"


def _is_localizer(ds: Any) -> bool:
    image_type = [str(t).upper() for t in (getattr(ds, "ImageType", None) or [])]
    text = f"{getattr(ds, 'SeriesDescription', '')} {getattr(ds, 'ProtocolName', '')}".upper()
    return "LOCALIZER" in image_type or any(w in text for w in ("LOCALIZER", "SCOUT", "SURVEY", "3-PLANE", "3PLANE", "TRIPILOT"))


# ---- indexing ------------------------------------------------------------------------------

def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    # preamble-less files start with a group 0008 or 0002 element
    return len(head) >= 4 and head[:2] in (b"\x08\x00", b"\x02\x00")


def _frame_geometry(ds: Any) -> list[tuple[tuple, tuple, tuple, tuple]]:
    """Return (origin, row dir, col dir, pixel spacing) per frame of an enhanced multi-frame image."""
    shared = getattr(ds, "SharedFunctionalGroupsSequence", [None])[0]
    frames = getattr(ds, "PerFrameFunctionalGroupsSequence", [])
    out = []
    for fg in frames:
        def find(seq: str, kw: str):
            for group in (fg, shared):
                if group is not None and seq in group and kw in group[seq][0]:
                    return group[seq][0][kw].value
            return None

        ipp = find("PlanePositionSequence", "ImagePositionPatient")
        iop = find("PlaneOrientationSequence", "ImageOrientationPatient")
        ps = find("PixelMeasuresSequence", "PixelSpacing")
        if ipp is None or iop is None or ps is None:
            raise ValueError("a frame has no plane position, orientation or pixel spacing")
        out.append((tuple(map(float, ipp)), tuple(map(float, iop[:3])), tuple(map(float, iop[3:])), tuple(map(float, ps))))
    return out


def _patient_key(ds: Any) -> str:
    """Return a hash of the PatientID ('' when absent), so series can be compared without keeping the ID."""
    pid = str(getattr(ds, "PatientID", "") or "").strip()
    return hashlib.sha256(pid.encode()).hexdigest()[:16] if pid else ""


def index_folder(path: str | os.PathLike[str]) -> StudyIndex:
    """Return every series under ``path`` (read recursively, headers only); raise StudyError if none is usable."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(path)
    if not root.exists():
        raise StudyError(f"{root} does not exist; give the folder that holds the study's DICOM files")
    if not os.access(root, os.R_OK):
        raise StudyError(f"{root} cannot be read (permission denied); check its permissions")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    index = StudyIndex(root)
    if not files:
        raise StudyError(f"{root} is empty; give the folder that holds the study's DICOM files")
    by_uid: dict[str, SeriesInfo] = {}
    for f in files:
        index.files_seen += 1
        if f.name.upper() == "DICOMDIR":
            index.skipped.append((f, "DICOMDIR (a directory of the files, not an image)"))
            continue
        if not _looks_like_dicom(f):
            index.skipped.append((f, "not a DICOM file"))
            continue
        try:
            # defer_size keeps large values (pixel data) on disk but tells us they are there
            ds = pydicom.dcmread(f, defer_size=1024, force=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as e:
            index.skipped.append((f, f"unreadable DICOM header ({e.__class__.__name__}: {e})"))
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        if not uid:
            index.skipped.append((f, "no SeriesInstanceUID"))
            continue
        s = by_uid.get(uid)
        if s is None:
            s = by_uid[uid] = SeriesInfo(
                uid, str(getattr(ds, "StudyInstanceUID", "")), str(getattr(ds, "Modality", "")),
                str(getattr(ds, "SeriesDescription", "")), str(getattr(ds, "SOPClassUID", "")),
                weighting=weighting_of(ds), is_localizer=_is_localizer(ds), echo_time=_float(ds, "EchoTime"),
                repetition_time=_float(ds, "RepetitionTime"), inversion_time=_float(ds, "InversionTime"),
                slice_thickness=_float(ds, "SliceThickness"), study_date=str(getattr(ds, "StudyDate", "") or ""),
                study_description=str(getattr(ds, "StudyDescription", "") or ""))
        key = _patient_key(ds)
        if key:
            # every instance counts: one series can hold two patients' files after a bad export
            s.patient_keys.add(key)
        if not hasattr(ds, "Rows") or not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            continue  # SR, presentation state, raw data: part of the study, not an image
        try:
            s.slices.extend(_slice_refs(ds, f))
        except (ValueError, TypeError, AttributeError) as e:
            s.problems.append(f"{f.name}: no usable geometry ({e})")
    index.series = sorted(by_uid.values(), key=lambda s: (s.description, s.series_instance_uid))
    for s in index.series:
        _describe(s)
    _check_usable(index)
    return index


def _slice_refs(ds: Any, path: Path) -> list[SliceRef]:
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    sop = str(ds.SOPInstanceUID)
    inst = int(getattr(ds, "InstanceNumber", 0) or 0)
    if "PerFrameFunctionalGroupsSequence" in ds:
        return [SliceRef(sop, path, i, o, r, c, (ps[0], ps[1]), int(ds.Rows), int(ds.Columns), i + 1)
                for i, (o, r, c, ps) in enumerate(_frame_geometry(ds))]
    if n_frames > 1:
        raise ValueError(f"{n_frames} frames without per-frame geometry")
    iop = [float(v) for v in ds.ImageOrientationPatient]
    ipp = tuple(float(v) for v in ds.ImagePositionPatient)
    ps = [float(v) for v in ds.PixelSpacing]
    return [SliceRef(sop, path, None, ipp, tuple(iop[:3]), tuple(iop[3:]), (ps[0], ps[1]), int(ds.Rows),
                     int(ds.Columns), inst)]


def _describe(s: SeriesInfo) -> None:
    if not s.slices:
        return
    unique: dict[tuple[str, int | None], SliceRef] = {}
    duplicates: list[str] = []
    for ref in s.slices:
        key = (ref.sop_instance_uid, ref.frame)
        if key in unique:
            duplicates.append(ref.sop_instance_uid)
            continue
        unique[key] = ref
    s.slices = list(unique.values())
    if duplicates:
        # a folder copied twice holds hundreds of duplicates: the count says it, a few UIDs let one look
        names = list(dict.fromkeys(duplicates))
        shown = ", ".join(names[:DUPLICATES_SHOWN])
        more = f" and {len(names) - DUPLICATES_SHOWN} more" if len(names) > DUPLICATES_SHOWN else ""
        n = len(duplicates)
        s.problems.append(f"{n} duplicate slice{'s' if n != 1 else ''} (one copy of each kept): {shown}{more}")
    sizes = {(r.rows, r.columns) for r in s.slices}
    if len(sizes) > 1:
        s.problems.append(f"mixed image sizes {sorted(sizes)}")
    s.stacks = split_stacks(s.slices)
    planes = {plane_of((*r.row_direction, *r.column_direction)) for r in s.slices}
    s.plane = planes.pop() if len(planes) == 1 else "mixed"
    if len(s.stacks) >= 3 and s.plane == "mixed" and len(s.slices) <= 5 * len(s.stacks):
        s.is_localizer = s.is_localizer or len({plane_of((*st.slices[0].row_direction, *st.slices[0].column_direction)) for st in s.stacks}) == 3
    for st in s.stacks:
        s.problems.extend(st.problems)


def split_stacks(slices: Iterable[SliceRef]) -> list[StackInfo]:
    """Return the slices grouped into stacks of parallel planes, each sorted along its normal.

    Within a stack, a gap larger than 1.5 x the typical spacing is reported as missing slices.
    """
    groups: list[tuple[np.ndarray, list[SliceRef]]] = []
    for ref in slices:
        n = ref.normal
        for normal, members in groups:
            if abs(float(normal @ n)) >= PARALLEL_TOLERANCE:
                members.append(ref)
                break
        else:
            groups.append((n, [ref]))
    stacks = []
    for normal, members in groups:
        members.sort(key=lambda r: float(np.asarray(r.origin) @ normal))
        pos = np.array([float(np.asarray(r.origin) @ normal) for r in members])
        problems: list[str] = []
        spacing = None
        if len(members) > 1:
            d = np.diff(pos)
            spacing = float(np.median(d))
            if spacing <= 1e-6:
                problems.append("slices at the same position")
            elif np.any(d > 1.5 * spacing):
                missing = int(np.sum(np.round(d[d > 1.5 * spacing] / spacing) - 1))
                problems.append(f"{missing} missing slice(s): uneven spacing {np.round(d, 2).tolist()} mm")
        stacks.append(StackInfo(tuple(float(v) for v in normal), members, spacing, problems))
    stacks.sort(key=lambda st: float(np.asarray(st.slices[0].origin) @ np.asarray((0.0, 0.0, -1.0))))
    return stacks


def _check_usable(index: StudyIndex) -> None:
    if not index.series:
        reasons = sorted({why for _, why in index.skipped})
        raise StudyError(f"no DICOM images in {index.root}: {index.files_seen} file(s) looked at "
                         f"({'; '.join(reasons[:3])}). Give the folder exported from the scanner or PACS")
    images = [s for s in index.series if s.is_image]
    if not images:
        kinds = ", ".join(sorted({s.modality or s.sop_class_uid for s in index.series}))
        problems = sorted({p for s in index.series for p in s.problems})
        if problems:
            raise StudyError(f"{index.root} holds {kinds} objects but none has usable image geometry "
                             f"({'; '.join(problems[:3])}). SpineAssist needs ImagePositionPatient, "
                             f"ImageOrientationPatient and PixelSpacing; re-export the series from the scanner")
        raise StudyError(f"{index.root} holds DICOM objects but no images (found: {kinds}, e.g. structured reports "
                         f"or presentation states). Give the folder with the MR image series")
    if not any(s.modality == "MR" for s in images):
        kinds = ", ".join(sorted({s.modality for s in images}))
        raise StudyError(f"{index.root} holds {kinds} images but no MR series. SpineAssist reads lumbar MRI "
                         f"(sagittal and axial T2)")


# ---- selection -----------------------------------------------------------------------------

def _score(s: SeriesInfo, plane: str) -> tuple:
    stack = max(s.stacks, key=lambda st: len(st.slices)) if s.stacks else None
    return (s.weighting == "T2", "T2" in s.description.upper(), len(stack.slices) if stack else 0)


def _candidates(index: StudyIndex, plane: str, study_uid: str | None = None) -> list[SeriesInfo]:
    out = []
    for s in index.series:
        if not s.is_image or s.modality != "MR" or s.is_localizer:
            continue
        if study_uid is not None and s.study_instance_uid != study_uid:
            continue
        planes = {plane_of((*st.slices[0].row_direction, *st.slices[0].column_direction)) for st in s.stacks}
        if plane == "axial":
            ok = planes <= {"axial", "oblique"} and any(p == "axial" for p in planes) or (
                # angled blocks may all lean more than the plane tolerance; judge by the dominant axis
                all(abs(st.normal[2]) >= max(abs(st.normal[0]), abs(st.normal[1])) for st in s.stacks))
        else:
            ok = planes == {plane}
        if ok and len(s.slices) >= 3:
            out.append(s)
    return sorted(out, key=lambda s: _score(s, plane), reverse=True)


def _name(s: SeriesInfo) -> str:
    return f"{s.series_instance_uid} ({s.description or s.modality or 'no description'})"


def several_studies_message(index: StudyIndex) -> str:
    """Return what to tell a user whose folder holds several studies: each study, and how to choose one."""
    studies = index.assessable_studies()
    lines = [f"{index.root} holds {len(studies)} studies; SpineAssist assesses one study of one patient at a time:"]
    lines += [f"  {st.label()}" for st in studies]
    lines.append(f"Choose one with --study UID, or give the folder of one study; `spineassist series {index.root}` "
                 f"lists the series of each")
    return "\n".join(lines)


def _study_of(index: StudyIndex, uid: str) -> StudyInfo:
    for st in index.studies():
        if st.study_instance_uid == uid:
            return st
    raise StudyError(f"no study with StudyInstanceUID {uid} in {index.root}; `spineassist series {index.root}` lists "
                     f"the studies and their series")


def choose_study(index: StudyIndex, study_uid: str | None = None, sagittal: SeriesInfo | None = None,
                 axial: SeriesInfo | None = None) -> StudyInfo:
    """Return the one study an assessment reads: the one named, else that of a named series, else the only one.

    Raises StudyError when the folder holds several studies and nothing names one, when named
    series and study disagree, or when the study's series carry different patient IDs.
    """
    named = [(role, s) for role, s in (("sagittal", sagittal), ("axial", axial)) if s is not None]
    if sagittal is not None and axial is not None and sagittal.study_instance_uid != axial.study_instance_uid:
        patients = sagittal.patient_keys and axial.patient_keys and sagittal.patient_keys != axial.patient_keys
        raise StudyError(
            f"the sagittal series {_name(sagittal)} and the axial series {_name(axial)} belong to different studies "
            f"({sagittal.study_instance_uid or 'none'} and {axial.study_instance_uid or 'none'})"
            f"{' of different patients (different patient IDs)' if patients else ''}; an assessment reads one study "
            f"of one patient. Name an axial series of the sagittal's study, or leave --axial out to let SpineAssist "
            f"choose; `spineassist series {index.root}` lists the series of each study")
    if study_uid is not None:
        study = _study_of(index, study_uid)
        for role, s in named:
            if s.study_instance_uid != study_uid:
                raise StudyError(f"the {role} series {_name(s)} belongs to study {s.study_instance_uid or 'none'}, not "
                                 f"to the chosen study {study_uid}; name a series of study {study_uid}, or leave "
                                 f"--{role} out; `spineassist series {index.root}` lists the series of each study")
    elif named:
        study = _study_of(index, named[0][1].study_instance_uid)
    else:
        studies = index.assessable_studies()
        if len(studies) > 1:
            raise StudyError(several_studies_message(index))
        # no MR study at all is reported by the sagittal search, with the series that were found
        study = studies[0] if studies else StudyInfo("", list(index.series))
    if len(study.patient_keys) > 1:
        mixed = next((s for s in study.series if len(s.patient_keys) > 1), None)
        if mixed is not None:
            example = f"series {_name(mixed)} carries more than one"
        else:
            carriers: dict[str, SeriesInfo] = {}
            for s in study.series:
                carriers.setdefault(next(iter(s.patient_keys), ""), s)
            a, b = [s for key, s in carriers.items() if key][:2]
            example = f"e.g. series {_name(a)} and {_name(b)}"
        raise StudyError(f"study {study.study_instance_uid or '(no StudyInstanceUID)'} in {index.root} holds series "
                         f"with different patient IDs ({example}): it mixes patients or was exported wrongly. "
                         f"SpineAssist assesses one patient at a time; re-export the study from the scanner or PACS, "
                         f"or give a folder that holds one patient's series")
    return study


def select_series(index: StudyIndex, sagittal_uid: str | None = None, axial_uid: str | None = None,
                  study_uid: str | None = None) -> SeriesChoice:
    """Return the sagittal T2 (required) and axial T2 (optional) series of one study of one patient.

    A given UID overrides the choice. The study is ``study_uid``, else that of the named sagittal
    (or axial) series, else the folder's only study with MR images; candidates come from it alone.
    """
    notes: list[str] = []
    sag_named = index.get(sagittal_uid) if sagittal_uid else None
    ax_named = index.get(axial_uid) if axial_uid else None
    study = choose_study(index, study_uid, sag_named, ax_named)
    where = str(index.root) if len(index.studies()) == 1 else f"study {study.study_instance_uid} of {index.root}"
    if sag_named is not None:
        sag = sag_named
        if not sag.is_image:
            raise StudyError(f"series {sagittal_uid} ({sag.description or sag.modality}) holds no images")
    else:
        cands = _candidates(index, "sagittal", study.study_instance_uid)
        if not cands:
            found = ", ".join(f"{s.description or '?'} ({s.plane}, {s.weighting}{', localizer' if s.is_localizer else ''})"
                              for s in study.series if s.is_image) or "none"
            raise StudyError(f"no sagittal MR series in {where} (series found: {found}). SpineAssist needs a "
                             f"sagittal T2 of the lumbar spine; name one with --sagittal UID if it was missed")
        sag = cands[0]
        if sag.weighting != "T2":
            notes.append(f"no sagittal T2 found; using {sag.description or sag.series_instance_uid} ({sag.weighting})")
    if ax_named is not None:
        ax = ax_named
    else:
        cands = [s for s in _candidates(index, "axial", study.study_instance_uid) if s is not sag]
        ax = cands[0] if cands else None
        if ax is None:
            notes.append(NO_AXIAL_WARNING)
        elif ax.weighting != "T2":
            notes.append(f"no axial T2 found; using {ax.description or ax.series_instance_uid} ({ax.weighting})")
    n_studies = len(index.assessable_studies())
    if n_studies > 1:
        notes.append(f"the folder holds {n_studies} studies; only study {study.study_instance_uid} "
                     f"({study.study_date or 'no date'}) is assessed")
    for s in (sag, ax):
        if s is not None and s.problems:
            notes.append(f"{s.description or s.series_instance_uid}: " + "; ".join(sorted(set(s.problems))))
    return SeriesChoice(sag, ax, notes, study)


# ---- reading pixels ------------------------------------------------------------------------

class FrameDataset:
    """One frame of an enhanced multi-frame image, shaped like a single-frame dataset for the loader."""

    def __init__(self, parent: Any, ref: SliceRef, pixels: np.ndarray):
        self._parent = parent
        self.pixel_array = pixels
        self.ImagePositionPatient = list(ref.origin)
        self.ImageOrientationPatient = [*ref.row_direction, *ref.column_direction]
        self.PixelSpacing = list(ref.pixel_spacing)
        self.SOPInstanceUID = ref.sop_instance_uid
        self.frame = ref.frame

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parent, name)


def read_series_datasets(series: SeriesInfo, stack: StackInfo | None = None) -> list[Any]:
    """Return the series' (or one stack's) images as pydicom datasets with pixels, in stack order.

    Frames of a multi-frame file come back as ``FrameDataset``s. Raises StudyError when pixel data
    is truncated or cannot be decoded.
    """
    import pydicom

    refs = [r for st in ([stack] if stack else series.stacks) for r in st.slices]
    cache: dict[Path, Any] = {}
    out = []
    for ref in refs:
        try:
            ds = cache.get(ref.path)
            if ds is None:
                ds = cache[ref.path] = pydicom.dcmread(ref.path)
            if ref.frame is None:
                _ = ds.pixel_array  # decode now, so a broken file is reported here
                out.append(ds)
            else:
                out.append(FrameDataset(ds, ref, ds.pixel_array[ref.frame]))
        except Exception as e:  # noqa: BLE001 - pydicom and its handlers raise many kinds
            raise StudyError(f"the pixel data of {ref.path} cannot be read ({e.__class__.__name__}: {e}). The file "
                             f"may be truncated or use a compression no installed decoder handles; re-export the "
                             f"series uncompressed, or choose another series") from None
    return out


# ---- Slicer volume nodes -------------------------------------------------------------------

def series_for_instance_uids(instance_uids: str | Sequence[str], index: StudyIndex) -> SeriesInfo:
    """Return the series holding the SOP instances of a Slicer volume's ``DICOM.instanceUIDs`` attribute."""
    uids = set(instance_uids.split() if isinstance(instance_uids, str) else instance_uids)
    if not uids:
        raise StudyError("the volume has no DICOM instance UIDs; load it through Slicer's DICOM module")
    best, overlap = None, 0
    for s in index.series:
        n = len(uids & {r.sop_instance_uid for r in s.slices})
        if n > overlap:
            best, overlap = s, n
    if best is None:
        raise StudyError(f"none of the volume's {len(uids)} instances is in {index.root}")
    return best


def series_for_volume_node(node: Any, index: StudyIndex) -> SeriesInfo:
    """Return the series a Slicer volume node was loaded from (via its ``DICOM.instanceUIDs`` attribute)."""
    return series_for_instance_uids(node.GetAttribute("DICOM.instanceUIDs") or "", index)


# ---- listing -------------------------------------------------------------------------------

def series_table(index: StudyIndex, choice: SeriesChoice | None = None) -> str:
    """Return the index as a plain-text table, the chosen series marked; one heading line per study when several."""
    chosen = {}
    if choice is not None:
        chosen[choice.sagittal.series_instance_uid] = "SAG"
        if choice.axial is not None:
            chosen[choice.axial.series_instance_uid] = "AX"
    head = f"{'use':4s} {'description':24s} {'mod':4s} {'plane':9s} {'weight':6s} {'slices':>6s} {'stacks':>6s} {'pixel mm':>9s}  uid"
    rows = [head, "-" * len(head)]
    studies = index.studies()
    chosen_study = choice.sagittal.study_instance_uid if choice is not None else None
    for study in studies:
        if len(studies) > 1:
            mark = "  <- assessed" if study.study_instance_uid == chosen_study else ""
            rows.append(f"study {study.label()}{mark}")
        for s in study.series:
            ps = f"{s.pixel_spacing[0]:.2f}" if s.pixel_spacing else "-"
            kind = "loc" if s.is_localizer else s.weighting
            rows.append(f"{chosen.get(s.series_instance_uid, ''):4s} {s.description[:24]:24s} {s.modality:4s} {s.plane:9s} "
                        f"{kind:6s} {s.n_slices:6d} {len(s.stacks):6d} {ps:>9s}  {s.series_instance_uid}")
            for p in sorted(set(s.problems)):
                rows.append(f"{'':4s}   problem: {p}")
    if index.skipped:
        rows.append(f"{len(index.skipped)} file(s) skipped: " + "; ".join(sorted({why for _, why in index.skipped})[:4]))
    return "\n".join(rows)


# ---- many studies ----------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyFolder:
    """One study found in a folder tree: its UID, the deepest folder holding all its files, and
    their count (a batch assesses each ``folder`` with ``study_uid``)."""

    study_uid: str
    folder: Path
    files: int
    modalities: tuple[str, ...]


def studies_under(root: str | os.PathLike[str], *, skip: Sequence[Path] = (),
                  cancel: Callable[[], None] | None = None) -> list[StudyFolder]:
    """Return every study under ``root`` (files read up to the study UID only), in folder order.

    ``skip``: folders not to search (a batch's output folder inside the tree). A file that is not
    DICOM, or has no StudyInstanceUID, is passed over: an archive holds reports and thumbnails too.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(root)
    if not root.is_dir():
        raise StudyError(f"{root} is not a folder; give the folder tree that holds the studies")
    skipped = [p.resolve() for p in skip]
    files: dict[str, list[Path]] = {}
    modalities: dict[str, set[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() not in skipped)
        if cancel is not None:
            cancel()
        for name in sorted(filenames):
            f = here / name
            if name.upper() == "DICOMDIR" or not _looks_like_dicom(f):
                continue
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True, force=True,
                                     specific_tags=["StudyInstanceUID", "Modality"])
            except (InvalidDicomError, OSError, ValueError, EOFError, KeyError):
                continue
            uid = str(getattr(ds, "StudyInstanceUID", "") or "")
            if uid:
                files.setdefault(uid, []).append(f)
                modalities.setdefault(uid, set()).add(str(getattr(ds, "Modality", "") or ""))
    found = []
    for uid, paths in files.items():
        folder = Path(os.path.commonpath([str(p.parent) for p in paths]))
        found.append(StudyFolder(uid, folder, len(paths), tuple(sorted(m for m in modalities[uid] if m))))
    return sorted(found, key=lambda s: (str(s.folder), s.study_uid))
