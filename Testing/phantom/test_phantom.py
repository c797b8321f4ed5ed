"""The synthetic lumbar MRI phantom: parameters, geometry of the written files, keypoints on their
structures, truth grades, determinism and the ``spineassist phantom`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from SpineAssistLib.anatomy import (HERNIATION_LABEL, MSU_KEYPOINTS, NEURAL_LABEL, POSTERIOR_ELEMENTS_LABEL,
                                    THECAL_SAC_LABEL, VERTEBRA_LABELS)
from SpineAssistLib.findings import Assessment, MSUGrade, validate_findings_json
from SpineAssistLib.geometry import world_to_index
from SpineAssistLib.phantom import PhantomParams, generate_study, sample_params, write_study

LEFT_FACET, RIGHT_FACET, DISC_MARGIN, APEX, CANAL = MSU_KEYPOINTS
SEED = 11
OVERRIDES = dict(
    pfirrmann={"L1-L2": 1, "L2-L3": 2, "L3-L4": 3, "L4-L5": 4, "L5-S1": 5},
    msu={"L1-L2": MSUGrade(0), "L2-L3": MSUGrade(1, "A"), "L3-L4": MSUGrade(2, "B", "left"),
         "L4-L5": MSUGrade(2, "AB", "right"), "L5-S1": MSUGrade(3, "AB", "left")},
    slip_percent={"L4-L5": 18.0, "L2-L3": -9.0, "L1-L2": 0.0, "L3-L4": 0.0, "L5-S1": 0.0, "T12-L1": 0.0},
    lumbar_count=5,
)
# The sagittal findings of schema 2 that change the images, switched off: no Modic bands but the
# spine's own, no endplate notch, no stenosis. Such a study is the one the phantom drew before them.
_ALL_LEVELS = ("T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
NO_NEW_DRAWS = dict(modic={lv: None for lv in _ALL_LEVELS}, endplate_upper={lv: False for lv in _ALL_LEVELS},
                    endplate_lower={lv: False for lv in _ALL_LEVELS}, canal_ap_mm={lv: None for lv in _ALL_LEVELS})
OVERRIDES.update(NO_NEW_DRAWS)
# SHA-256 of the pixel data and label maps this study had before those findings were added
# (commit 3442ce1's phantom), and of the parameters drawn for seeds 0-59 without them.
BEFORE_SCHEMA_2 = {
    "sagittal images": "8d097ef0ee32a8ad437de04181347c0ca248c28d19b43a6cda146f9515413fa2",
    "sagittal labels": "01c0ed7128d760165ca0facd9fe7037f1dffa094fb564a9720340e048e72ce76",
    "axial images": "0b4fcff42005a55ef6ce05bd277f41c4027521e6a716883e9b8ab1647b4b4bef",
    "axial labels": "7a865cf39360de34b651e02535b2513b85a465fed2e6a373bcf062d652fca0fd",
}
PARAMS_BEFORE_SCHEMA_2 = "188209505dd90ce6cfde370c2f51b12a16bdc9ae24f9966d33e823b5e8f05b25"
SEED_4_BEFORE_SCHEMA_2 = {
    "sagittal images": "5e5af18e6b5e8456cedb8374ab078daa003148d7ea31e593ccdfd94485348fcf",
    "axial images": "9bcd1d3cf17583da4cabb416cd95d496e95a1c0a088fd029fcb565ed40429889",
}


@pytest.fixture(scope="module")
def study():
    return generate_study(SEED, sample_params(SEED, **OVERRIDES))


@pytest.fixture(scope="module")
def written(study, tmp_path_factory) -> Path:
    return write_study(study, tmp_path_factory.mktemp("phantom") / "study")


# --- parameters ---------------------------------------------------------------------------------

def test_sample_params_is_deterministic_and_takes_overrides():
    a, b = sample_params(5), sample_params(5)
    assert a.to_dict() == b.to_dict()
    assert sample_params(6).to_dict() != a.to_dict()
    p = sample_params(5, pfirrmann={"L4-L5": 5}, slip_percent={"L5-S1": 30.0})
    assert p.pfirrmann["L4-L5"] == 5 and p.slip_percent["L5-S1"] == 30.0
    assert p.pfirrmann["L1-L2"] == a.pfirrmann["L1-L2"]          # the rest stays as drawn


def test_sample_params_rejects_bad_choices_with_clear_errors():
    with pytest.raises(TypeError, match="unknown phantom parameter"):
        sample_params(1, colour="red")
    with pytest.raises(ValueError, match="pfirrmann"):
        sample_params(1, pfirrmann={"L4-L5": 6})
    with pytest.raises(ValueError, match="not a disc"):
        sample_params(1, pfirrmann={"L6-S1": 2})
    with pytest.raises(ValueError, match="slip_percent"):
        sample_params(1, slip_percent={"L4-L5": 80.0})
    with pytest.raises(ValueError, match="seed"):
        sample_params(-1)
    with pytest.raises(ValueError, match="zones A and AB"):
        sample_params(1, msu={"L4-L5": MSUGrade(3, "C", "left")})
    with pytest.raises(ValueError, match="lumbar_count"):
        PhantomParams(lumbar_count=7).validate()


def test_prevalences_over_many_subjects_are_plausible():
    ps = [sample_params(s) for s in range(400)]
    lumbar5 = [p for p in ps if p.lumbar_count == 5]
    assert 0.8 < len(lumbar5) / len(ps) < 0.97                   # transitional anatomy in a few
    l45 = np.mean([p.msu["L4-L5"].size > 0 for p in lumbar5])
    l12 = np.mean([p.msu["L1-L2"].size > 0 for p in lumbar5])
    assert 0.12 < l45 < 0.45 and l12 < 0.1                       # herniations are low lumbar
    g_low = np.mean([p.pfirrmann["L5-S1"] for p in lumbar5])
    g_high = np.mean([p.pfirrmann["L1-L2"] for p in lumbar5])
    assert g_low > g_high + 0.5                                  # degeneration rises caudally
    assert {g for p in ps for g in p.pfirrmann.values()} == {1, 2, 3, 4, 5}


# --- series and geometry ------------------------------------------------------------------------

def test_series_are_a_clinical_lumbar_protocol(study):
    p = study.params
    sag, ax = study.sagittal, study.axial
    assert 13 <= sag.images.shape[0] <= 17 and sag.images.dtype == np.uint16
    assert 0.5 <= sag.slices[0].pixel_spacing[0] <= 0.9 and 3.0 <= sag.slices[0].thickness <= 4.0
    assert len(ax.blocks()) == 5 and all(b - a == p.ax_slices_per_block for a, b in ax.blocks())
    assert [ax.slices[a].level for a, _ in ax.blocks()] == p.lumbar_levels
    for (a, _), level in zip(ax.blocks(), p.lumbar_levels):
        normal = study.spine.disc(level).normal
        assert abs(abs(ax.slices[a].normal @ normal) - 1) < 1e-9     # each block parallel to its disc
    # T2: CSF and fat bright, muscle and cortex dark (mean over the mid-sagittal label map)
    mid = sag.images.shape[0] // 2
    img, lab = sag.images[mid].astype(float), sag.labels[mid]
    csf = img[lab == THECAL_SAC_LABEL].mean()
    marrow = img[lab == VERTEBRA_LABELS["L3"]].mean()
    assert csf > 1.5 * marrow


def test_labels_hold_every_structure(study):
    sag = set(np.unique(study.sagittal.labels))
    for name in ("T12", "L1", "L2", "L3", "L4", "L5", "S1"):
        assert VERTEBRA_LABELS[name] in sag
    for d in study.spine.discs:
        if d.name in study.params.lumbar_levels:
            assert d.label in sag
    assert {THECAL_SAC_LABEL, NEURAL_LABEL, POSTERIOR_ELEMENTS_LABEL, HERNIATION_LABEL} <= sag
    assert HERNIATION_LABEL in set(np.unique(study.axial.labels))


def test_dicom_files_load_with_the_geometry_they_claim(study, written):
    import pydicom
    import SimpleITK as sitk

    files = sorted((written / "DICOM" / "SAG").glob("IM*.dcm"))
    assert len(files) == study.sagittal.images.shape[0]
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"          # MR Image Storage
    assert ds.SeriesDescription == "T2 TSE SAG" and ds.Modality == "MR"
    assert str(ds.PatientName) == f"PHANTOM^SYNTHETIC^{SEED}" and ds.PatientID == f"SYNTH-{SEED}"
    assert 88 <= float(ds.EchoTime) <= 120 and 3000 <= float(ds.RepetitionTime) <= 5000
    assert ds.StudyInstanceUID == study.uids["study"] and ds.FrameOfReferenceUID == study.uids["frame_of_reference"]
    np.testing.assert_array_equal(ds.pixel_array, study.sagittal.images[0])

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(written / "DICOM" / "SAG")))
    img = reader.Execute()
    A = study.sagittal.affine()
    # SimpleITK indexes (column, row, slice); our affine (slice, row, column)
    for idx in ((0, 0, 0), (10, 20, 3), (100, 5, img.GetSize()[2] - 1)):
        lps = img.TransformIndexToPhysicalPoint(idx)
        np.testing.assert_allclose(lps, (A @ [idx[2], idx[1], idx[0], 1])[:3], atol=1e-3)
    arr = sitk.GetArrayFromImage(img)
    assert arr.shape == study.sagittal.images.shape

    labels = sitk.ReadImage(str(written / "truth" / "labels_sag.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), study.sagittal.labels)
    np.testing.assert_allclose(labels.GetOrigin(), img.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(labels.GetDirection(), img.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(labels.GetSpacing(), img.GetSpacing(), atol=1e-4)

    ax_files = sorted((written / "DICOM" / "AX").glob("IM*.dcm"))
    assert len(ax_files) == study.axial.images.shape[0]
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in ax_files}
    assert uids == {study.uids["axial"]}
    for k, (a, b) in enumerate(study.axial.blocks(), start=1):
        block = sitk.ReadImage(str(written / "truth" / f"labels_ax_block{k:02d}.nii.gz"))
        first = pydicom.dcmread(ax_files[a], stop_before_pixels=True)
        np.testing.assert_allclose(block.GetOrigin(), [float(v) for v in first.ImagePositionPatient], atol=1e-3)
        iop = np.array([float(v) for v in first.ImageOrientationPatient])
        np.testing.assert_allclose(np.array(block.GetDirection()).reshape(3, 3)[:, :2].T.ravel(), iop, atol=1e-5)
        assert block.GetSize()[2] == b - a


# --- keypoints ----------------------------------------------------------------------------------

def test_every_sagittal_corner_lands_on_its_vertebral_body(study):
    A = study.sagittal.affine()
    corners = study.keypoints["sagittal"]["points"]
    lumbar = [n for n in corners if n.split()[0] in ("L1", "L2", "L3", "L4", "L5", "S1")]
    assert len(lumbar) == 4 * 5 + 2                              # L1-L5 four corners, S1 two (T11/T12 if in view)
    for name, p in corners.items():
        k, r, c = np.rint(world_to_index(p, A)).astype(int)     # A is "slice,row,col"
        assert study.sagittal.labels[k, r, c] == VERTEBRA_LABELS[name.split()[0]], name


def test_every_axial_keypoint_lands_on_its_structure(study):
    ax = study.axial
    assert {k["level"] for k in study.keypoints["axial"]} == set(study.params.lumbar_levels)
    expected = {LEFT_FACET: {POSTERIOR_ELEMENTS_LABEL}, RIGHT_FACET: {POSTERIOR_ELEMENTS_LABEL},
                APEX: {HERNIATION_LABEL}, CANAL: {THECAL_SAC_LABEL, NEURAL_LABEL}}
    for entry in study.keypoints["axial"]:
        i = entry["slice_index"]
        A = ax.affine(i)
        disc_label = study.spine.disc(entry["level"]).label
        for name, p in entry["keypoints"].items():
            if p is None:
                continue
            k, r, c = np.rint(world_to_index(p, A)).astype(int)
            assert k == 0, f"{name} is not on slice {i}"
            got = ax.labels[i, r, c]
            assert got in expected.get(name, {disc_label}), (entry["level"], i, name, got)


# --- truth --------------------------------------------------------------------------------------

def test_truth_json_is_valid_and_equals_the_drawn_findings(study, written):
    data = json.loads((written / "truth.json").read_text())
    validate_findings_json(data)
    truth = Assessment.from_dict(data)
    p = study.params
    for name in p.lumbar_levels:
        lv = truth.level(name)
        assert lv.pfirrmann.value.grade == p.pfirrmann[name]
        assert lv.ldh.value == p.msu[name], name
    assert truth.level("L4-L5").listhesis.value.grade == 1
    assert truth.level("L4-L5").listhesis.value.slip_percent == pytest.approx(18.0, abs=0.5)
    assert truth.level("L4-L5").listhesis.value.direction == "antero"
    assert truth.level("L2-L3").listhesis.value.direction == "retro"
    assert truth.level("L3-L4").listhesis.value.grade == 0
    assert truth.level("T12-L1").ldh.status == "not_assessed"
    assert truth.level("L5-S1").ldh.measurement("depth_ratio").value > 1.0


def test_truth_equals_what_grading_computes_from_the_truth_keypoints_and_masks(study):
    grading = pytest.importorskip("SpineAssistLib.grading")
    corners = study.keypoints["sagittal"]["points"]
    for lv in study.truth.levels:
        upper, lower = lv.name.split("-")
        r = grading.meyerding_grade(p=corners[f"{lower} posterior-superior"], q=corners[f"{lower} anterior-superior"],
                                    r=corners[f"{upper} posterior-inferior"])
        assert r.value == lv.listhesis.value, lv.name
    ax = study.axial
    for level in study.params.lumbar_levels:
        results = []
        for entry in (e for e in study.keypoints["axial"] if e["level"] == level):
            i = entry["slice_index"]
            kp = entry["keypoints"]
            rows, cols = np.nonzero(ax.labels[i] == HERNIATION_LABEL)
            A = ax.affine(i)
            pts = (A @ np.stack([np.zeros_like(rows), rows, cols, np.ones_like(rows)]).astype(float))[:3].T
            results.append(grading.msu_grade(kp[LEFT_FACET], kp[RIGHT_FACET], kp[DISC_MARGIN], kp[CANAL],
                                             kp[APEX], pts if len(pts) else None,
                                             bulge=study.params.msu[level].bulge))
        best = grading.select_maximal_extrusion(results)
        assert best.value == study.truth.level(level).ldh.value, level


def _sha256(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()


def test_without_the_new_sagittal_findings_a_seed_draws_the_study_it_drew_before_them(study):
    assert _sha256(study.sagittal.images) == BEFORE_SCHEMA_2["sagittal images"]
    assert _sha256(study.sagittal.labels) == BEFORE_SCHEMA_2["sagittal labels"]
    assert _sha256(study.axial.images) == BEFORE_SCHEMA_2["axial images"]
    assert _sha256(study.axial.labels) == BEFORE_SCHEMA_2["axial labels"]


def test_the_new_draws_leave_every_earlier_draw_of_a_seed_as_it_was():
    import hashlib

    new = {"modic", "endplate_upper", "endplate_lower", "narrowing", "canal_ap_mm"}
    earlier = [{k: v for k, v in sample_params(s).to_dict().items() if k not in new} for s in range(60)]
    text = json.dumps(json.loads(json.dumps(earlier)), sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest() == PARAMS_BEFORE_SCHEMA_2


@pytest.mark.slow
def test_a_default_seed_without_new_findings_draws_the_images_it_drew_before_them():
    levels = sample_params(4).levels
    off = {k: {lv: v[next(iter(v))] for lv in levels} for k, v in NO_NEW_DRAWS.items()}
    st = generate_study(4, sample_params(4, **off))
    assert _sha256(st.sagittal.images) == SEED_4_BEFORE_SCHEMA_2["sagittal images"]
    assert _sha256(st.axial.images) == SEED_4_BEFORE_SCHEMA_2["axial images"]


def test_a_slice_renders_the_same_twice():
    from SpineAssistLib.phantom.acquisition import Scanner, axial_planes
    from SpineAssistLib.phantom.spine import build_spine

    p = sample_params(2)
    spine = build_spine(p)
    g = axial_planes(spine)[0]
    a = Scanner(spine).acquire(g, p.ax_acq_fraction, p.ax_phase_fraction, 0.0)
    b = Scanner(spine).acquire(g, p.ax_acq_fraction, p.ax_phase_fraction, 0.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.slow
def test_the_same_seed_writes_the_same_bytes(tmp_path):
    a = write_study(generate_study(4), tmp_path / "a")
    b = write_study(generate_study(4), tmp_path / "b")
    files_a = sorted(f.relative_to(a) for f in a.rglob("*") if f.is_file())
    assert files_a == sorted(f.relative_to(b) for f in b.rglob("*") if f.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_the_study_loader_picks_the_right_series(study, written):
    loader = pytest.importorskip("SpineAssistLib.dicom.index")
    if not hasattr(loader, "index_folder") or not hasattr(loader, "select_series"):
        pytest.skip("SpineAssistLib.dicom.index has no index_folder / select_series yet")
    choice = loader.select_series(loader.index_folder(written))
    assert choice.sagittal.series_instance_uid == study.uids["sagittal"]
    assert choice.axial is not None and choice.axial.series_instance_uid == study.uids["axial"]


# --- command ------------------------------------------------------------------------------------

def test_phantom_command_writes_the_study_layout(study, tmp_path, monkeypatch, capsys):
    import SpineAssistLib.phantom as phantom
    from SpineAssistLib.cli import main

    seeds = []

    def fake(seed, params=None):
        seeds.append(seed)
        return study

    monkeypatch.setattr(phantom, "generate_study", fake)
    assert main(["phantom", str(tmp_path / "one"), "--seed", str(SEED)]) == 0
    out = tmp_path / "one"
    assert (out / "truth.json").is_file() and (out / "truth" / "keypoints.json").is_file()
    assert len(list((out / "DICOM" / "SAG").glob("IM*.dcm"))) == study.sagittal.images.shape[0]
    assert main(["phantom", str(tmp_path / "many"), "--seed", "7", "--count", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["case-0000", "case-0001"]
    assert seeds == [SEED, 7, 8]
    assert "L4-L5" in capsys.readouterr().out


def test_phantom_command_rejects_bad_arguments(tmp_path, capsys):
    from SpineAssistLib.cli import main

    assert main(["phantom", str(tmp_path / "x"), "--seed", "-3"]) == 2
    assert "--seed" in capsys.readouterr().err
    assert main(["phantom", str(tmp_path / "x"), "--count", "0"]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["phantom", str(tmp_path / "file")]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("seed, grades", [
    (21, [(1, "C", "left"), (2, "BC", "right"), (1, "B", "right"), (3, "A"), (0, None, None, True)]),
    (31, [(2, "C", "right"), (1, "AB", "left"), (2, "A", "left"), (1, "BC", "left"), (3, "AB", "right")]),
])
def test_every_zone_and_size_reads_back_as_requested(seed, grades):
    grading = pytest.importorskip("SpineAssistLib.grading")
    levels = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    msu = {lv: MSUGrade(*g) for lv, g in zip(levels, grades)}
    st = generate_study(seed, sample_params(seed, msu=msu, lumbar_count=5))
    for lv in levels:
        results = []
        for e in (e for e in st.keypoints["axial"] if e["level"] == lv):
            i, kp = e["slice_index"], e["keypoints"]
            rows, cols = np.nonzero(st.axial.labels[i] == HERNIATION_LABEL)
            A = st.axial.affine(i)
            pts = (A @ np.stack([np.zeros_like(rows), rows, cols, np.ones_like(rows)]).astype(float))[:3].T
            results.append(grading.msu_grade(kp[LEFT_FACET], kp[RIGHT_FACET], kp[DISC_MARGIN], kp[CANAL], kp[APEX],
                                             pts if len(pts) else None, bulge=msu[lv].bulge))
        assert grading.select_maximal_extrusion(results).value == msu[lv], lv


def test_dicom_files_pass_dciodvfy(written):
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    for f in (written / "DICOM" / "SAG" / "IM0001.dcm", written / "DICOM" / "AX" / "IM0002.dcm"):
        out = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], f"{f.name}: {errors}"


def test_herniation_enriched_training_phantoms():
    from SpineAssistLib.phantom.params import herniation_enriched_msu

    every = herniation_enriched_msu(7000, 1.0)
    assert every and all(g["msu_size"] > 0 for g in every.values())
    assert all(g["msu_size"] == 0 for g in herniation_enriched_msu(7000, 0.0).values())
    assert herniation_enriched_msu(7001, 0.5) == herniation_enriched_msu(7001, 0.5)        # deterministic
    p = sample_params(7001, msu=herniation_enriched_msu(7001, 0.5))                         # valid phantom params
    assert set(p.msu) == set(sample_params(7001).msu)
    with pytest.raises(ValueError, match="0-1"):
        herniation_enriched_msu(1, 1.5)
