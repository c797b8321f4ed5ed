"""Return a whole synthetic lumbar MRI study in memory (``generate_study``) and write it to disk
as DICOM plus ground truth (``write_study``).

Usage::

    from SpineAssistLib.phantom import generate_study, write_study, sample_params
    study = generate_study(7)                                  # ~2-5 s, nothing written
    study.sagittal.images.shape, study.sagittal.affine()       # (slices, rows, cols), index -> LPS
    study.truth.level("L4-L5").pfirrmann.value
    write_study(study, "out/case-7")                           # DICOM/SAG, DICOM/AX, truth.json, truth/
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from SpineAssistLib.anatomy import (
    DISC_LABELS,
    HERNIATION_LABEL,
    NEURAL_LABEL,
    POSTERIOR_ELEMENTS_LABEL,
    THECAL_SAC_LABEL,
    VERTEBRA_LABELS,
)
from SpineAssistLib.findings import Assessment
from SpineAssistLib.geometry import itk_geometry, world_to_index
from SpineAssistLib.phantom.acquisition import Scanner, Series, axial_planes, sagittal_planes
from SpineAssistLib.phantom.canal import measure_canal
from SpineAssistLib.phantom.dicom import phantom_uid, write_series
from SpineAssistLib.phantom.params import PhantomParams, sample_params
from SpineAssistLib.phantom.spine import Spine, build_spine
from SpineAssistLib.phantom.tissues import TissueModel
from SpineAssistLib.phantom.truth import DISC_MARGIN, axial_keypoints, build_assessment, msu_ratio, sagittal_corners

# An axial slice gets MSU keypoints when its disc margin lies within this of the mid-plane's.
MARGIN_TOLERANCE_MM = 1.0


@dataclass
class PhantomStudy:
    """One synthetic study: both series (images, labels, planes), keypoints and the truth Assessment."""

    params: PhantomParams
    spine: Spine
    sagittal: Series
    axial: Series
    uids: dict[str, str]
    sop_uids: dict[str, list[str]]
    keypoints: dict[str, Any]
    truth: Assessment
    window: tuple[float, float] = (1000.0, 2000.0)
    timings: dict[str, float] = field(default_factory=dict)


def generate_study(seed: int, params: PhantomParams | None = None) -> PhantomStudy:
    """Return the phantom study of ``seed`` rendered in memory (no files written).

    ``params`` (from ``sample_params(seed, ...)``) sets every choice; without it they are drawn
    from the seed. The same seed and params give the same arrays.
    """
    import time

    t0 = time.perf_counter()
    if params is None:
        params = sample_params(seed)
    elif params.seed != seed:
        params = dataclasses.replace(params, seed=int(seed))
    params.validate()
    spine = build_spine(params)
    model = TissueModel(spine)
    scanner = Scanner(spine, model)
    t1 = time.perf_counter()

    sag_planes = sagittal_planes(spine)
    sag_imgs, sag_labs = [], []
    for g in sag_planes:
        img, lab = scanner.acquire(g, params.sag_acq_fraction, params.sag_phase_fraction, params.ghost_amplitude)
        sag_imgs.append(img)
        sag_labs.append(lab)
    t2 = time.perf_counter()
    ax_planes = axial_planes(spine)
    ax_imgs, ax_labs = [], []
    for g in ax_planes:
        img, lab = scanner.acquire(g, params.ax_acq_fraction, params.ax_phase_fraction, params.ghost_amplitude * 0.5)
        ax_imgs.append(img)
        ax_labs.append(lab)
    t3 = time.perf_counter()

    sag_step = params.sag_thickness_mm + params.sag_gap_mm
    ax_step = params.ax_thickness_mm + params.ax_gap_mm
    sagittal = Series("SAG", "T2 TSE SAG", _to_uint16(sag_imgs), np.stack(sag_labs), sag_planes, sag_step)
    axial = Series("AX", "T2 TSE AX", _to_uint16(ax_imgs), np.stack(ax_labs), ax_planes, ax_step)

    s = params.seed
    uids = {"study": phantom_uid(s, "study"), "sagittal": phantom_uid(s, "series", "SAG"),
            "axial": phantom_uid(s, "series", "AX"), "frame_of_reference": phantom_uid(s, "frame")}
    sop = {"SAG": [phantom_uid(s, "SAG", i) for i in range(len(sag_planes))],
           "AX": [phantom_uid(s, "AX", i) for i in range(len(ax_planes))]}

    corners = sagittal_corners(spine)
    axial_kp = []
    margin_mid: dict[str, float] = {}
    for i, g in enumerate(ax_planes):
        d = spine.disc(g.level)
        offset = float((g.position - d.center) @ d.normal)
        pts = axial_keypoints(model, d, offset)
        if pts is None or not (axial.labels[i] == d.label).any():
            continue
        # MSU is read where the slice cuts the disc's posterior margin at full depth: not on slices
        # grazing an endplate, where the rounded disc edge moves the margin forward
        if g.level not in margin_mid:
            mid_pts = axial_keypoints(model, d, 0.0)
            margin_mid[g.level] = float((np.array(mid_pts[DISC_MARGIN]) - d.center) @ d.R[:, 1]) if mid_pts else 0.0
        if abs(float((np.array(pts[DISC_MARGIN]) - d.center) @ d.R[:, 1]) - margin_mid[g.level]) > MARGIN_TOLERANCE_MM:
            continue
        depth, h, r = msu_ratio(pts)
        axial_kp.append({"slice_index": i, "instance_number": i + 1, "sop_instance_uid": sop["AX"][i],
                         "block": g.block, "level": g.level, "offset_mm": offset, "keypoints": pts,
                         "depth_mm": depth, "facet_line_distance_mm": h, "depth_ratio": r})
    mid = int(np.argmin([abs(float((g.position - spine.vertebra("L3").center) @ g.normal)) for g in sag_planes]))

    def sag_sop_at(point) -> str:
        return sop["SAG"][int(np.argmin([abs(float((g.position - np.asarray(point)) @ g.normal)) for g in sag_planes]))]

    canal = {d.name: measure_canal(model, d) for d in spine.discs if d.label}
    truth = build_assessment(spine, uids["study"], uids["sagittal"], uids["axial"], corners, axial_kp, sop["SAG"][mid],
                             canal, sag_sop_at)
    keypoints = {
        "coordinate_system": "LPS",
        "units": "mm",
        "sagittal": {"series_instance_uid": uids["sagittal"], "mid_sagittal_sop_instance_uid": sop["SAG"][mid],
                     "mid_sagittal_instance_number": mid + 1, "points": _in_view(corners, sagittal)},
        "axial": [{k: v for k, v in a.items() if k not in ("depth_mm", "facet_line_distance_mm", "depth_ratio")}
                  | {"series_instance_uid": uids["axial"]} for a in axial_kp],
    }
    csf = scanner.scale
    study = PhantomStudy(params, spine, sagittal, axial, uids, sop, keypoints, truth,
                         window=(round(csf * 0.55), round(csf * 1.2)))
    study.timings = {"geometry_s": t1 - t0, "sagittal_s": t2 - t1, "axial_s": t3 - t2,
                     "truth_s": time.perf_counter() - t3}
    return study


def _in_view(points: dict[str, list[float]], series: Series) -> dict[str, list[float]]:
    """Return the points that fall inside the series' field of view (slab included)."""
    A = series.affine()
    shape = series.images.shape
    out = {}
    for name, p in points.items():
        idx = world_to_index(p, A)
        if all(-0.5 <= i <= n - 0.5 for i, n in zip(idx, shape)):
            out[name] = p
    return out


def _to_uint16(images: list[np.ndarray]) -> np.ndarray:
    return np.clip(np.rint(np.stack(images)), 0, 4095).astype(np.uint16)


LABEL_DOC = """# Phantom ground truth

Synthetic data from SpineAssist's lumbar MRI phantom (seed {seed}); not a patient.

## Files
- `../DICOM/SAG/IM*.dcm`: sagittal T2 TSE, one file per slice.
- `../DICOM/AX/IM*.dcm`: axial T2 TSE, one series of {blocks} blocks (one per lumbar disc), each
  {per_block} parallel slices angled to its disc.
- `../truth.json`: every level's grades in the findings schema (`spineassist.findings/2`); the
  model value of each finding is the truth.
- `labels_sag.nii.gz`: label map of the sagittal series on its exact voxel grid.
- `labels_ax_blockNN.nii.gz`: label map of axial block NN (slices in the series' order).
- `keypoints.json`: named keypoints in patient LPS mm: the corners of every vertebral body on the
  mid-sagittal plane (`"L4 posterior-superior"` ...), and per axial slice (by SOP Instance UID)
  the MSU keypoints (left/right medial facet, posterior disc margin, herniation apex or null,
  posterior canal) with the disc level it belongs to.
- `params.json`: every choice the phantom was drawn with.

Each label is the structure at the voxel centre (nearest render sample, within 0.25 mm).
Corner keypoints sit 1 mm inside the sharp body corner; disc margin, sac margin and apex 0.7 mm
inside their structure, so every keypoint lands on its labelled structure.

## Label values
| value | structure |
|---|---|
| 0 | background (soft tissue, fat, muscle, air, unnamed vertebrae above T11) |
{vertebrae}
| {pe} | posterior elements: pedicles, laminae, facet joints, spinous and transverse processes |
| {sac} | thecal sac (CSF) |
| {neural} | conus medullaris, filum terminale, cauda equina roots |
| {hern} | disc material beyond the disc margin: herniation, or a bulge (a level with MSU size 0) |
{discs}
"""


def _labels_doc(study: PhantomStudy) -> str:
    p = study.params
    vert = "\n".join(f"| {v} | vertebral body {n}{' (whole sacrum, S1-S5)' if n == 'S1' else ''} |"
                     for n, v in VERTEBRA_LABELS.items() if n in p.vertebrae)
    discs = "\n".join(f"| {DISC_LABELS[n]} | disc {n} |" for n in p.levels if n in DISC_LABELS)
    return LABEL_DOC.format(seed=p.seed, blocks=len(p.lumbar_levels), per_block=p.ax_slices_per_block,
                            vertebrae=vert, pe=POSTERIOR_ELEMENTS_LABEL, sac=THECAL_SAC_LABEL,
                            neural=NEURAL_LABEL, hern=HERNIATION_LABEL, discs=discs)


def _write_label_image(labels: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(labels)
    origin, spacing, direction = itk_geometry(affine, "slice,row,col")
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    sitk.WriteImage(img, str(path), useCompression=True)


def write_study(study: PhantomStudy, out_dir: str | Path) -> Path:
    """Write the study as DICOM (``DICOM/SAG``, ``DICOM/AX``), ``truth.json`` and ``truth/``; return
    ``out_dir``. Files are written under temporary names first, so a failed run leaves no study."""
    import shutil

    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write_series(study, "SAG", tmp / "DICOM" / "SAG")
    write_series(study, "AX", tmp / "DICOM" / "AX")
    truth_dir = tmp / "truth"
    truth_dir.mkdir()
    _write_label_image(study.sagittal.labels, study.sagittal.affine(), truth_dir / "labels_sag.nii.gz")
    for k, (a, b) in enumerate(study.axial.blocks(), start=1):
        _write_label_image(study.axial.labels[a:b], study.axial.affine(a), truth_dir / f"labels_ax_block{k:02d}.nii.gz")
    (truth_dir / "keypoints.json").write_text(json.dumps(study.keypoints, indent=1) + "\n", encoding="utf-8")
    (truth_dir / "params.json").write_text(json.dumps(study.params.to_dict(), indent=1) + "\n", encoding="utf-8")
    (truth_dir / "README.md").write_text(_labels_doc(study), encoding="utf-8")
    (tmp / "truth.json").write_text(study.truth.to_json() + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out
