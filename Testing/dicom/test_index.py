"""Study loading: indexing, plane/weighting/localizer, angled blocks, exact geometry, selection, clear errors."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from support.dicom_fixtures import AX_IOP, CT, SAG_IOP, make_lumbar_study, make_series, make_slice, tilted_axial_iop

from SpineAssistLib.dicom.index import (
    index_folder,
    plane_of,
    read_series_datasets,
    select_series,
    series_for_instance_uids,
    series_table,
    split_stacks,
    weighting_of,
)
from SpineAssistLib.dicom.stacks import load_stacks
from SpineAssistLib.errors import StudyError
from SpineAssistLib.pipeline.result import ImageStack


def _snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


@pytest.mark.parametrize("iop,plane", [
    (SAG_IOP, "sagittal"), (AX_IOP, "axial"), ((1, 0, 0, 0, 0, -1), "coronal"),
    (tilted_axial_iop(20), "axial"), (tilted_axial_iop(50), "oblique"), ((1, 0, 0, 1, 0, 0), "unknown"),
])
def test_plane_from_orientation(iop, plane):
    assert plane_of(iop) == plane


@pytest.mark.parametrize("desc,te,tr,ti,expected", [
    ("T2 TSE SAG", 100, 4000, None, "T2"), ("t1_tse_sag", 10, 500, None, "T1"), ("STIR SAG", 60, 4000, 150, "STIR"),
    ("", 110, 3500, None, "T2"), ("", 12, 450, None, "T1"), ("", 20, 3000, None, "PD"), ("DWI", 80, 900, None, "other"),
])
def test_weighting_from_description_and_timing(desc, te, tr, ti, expected):
    ds = pydicom.Dataset()
    ds.SeriesDescription, ds.EchoTime, ds.RepetitionTime = desc, te, tr
    if ti is not None:
        ds.InversionTime = ti
    assert weighting_of(ds) == expected


def test_index_a_clinical_protocol_and_pick_the_t2s(tmp_path):
    uids = make_lumbar_study(tmp_path)
    before = _snapshot(tmp_path)
    index = index_folder(tmp_path)
    by = {s.series_instance_uid: s for s in index.series}
    assert by[uids["sag_t2"]].plane == "sagittal" and by[uids["sag_t2"]].weighting == "T2"
    assert by[uids["sag_t1"]].weighting == "T1"
    assert by[uids["localizer"]].is_localizer
    ax = by[uids["ax_t2"]]
    assert ax.n_slices == 12 and len(ax.stacks) == 3          # three angled blocks of four slices
    assert all(len(st.slices) == 4 for st in ax.stacks)
    choice = select_series(index)
    assert choice.sagittal.series_instance_uid == uids["sag_t2"]
    assert choice.axial.series_instance_uid == uids["ax_t2"]
    table = series_table(index, choice)
    assert "SAG" in table and "AX" in table and "loc" in table
    assert _snapshot(tmp_path) == before                       # nothing in the input folder was written


def test_user_override_by_uid(tmp_path):
    uids = make_lumbar_study(tmp_path)
    index = index_folder(tmp_path)
    assert select_series(index, sagittal_uid=uids["sag_t1"]).sagittal.series_instance_uid == uids["sag_t1"]
    with pytest.raises(StudyError, match="no series with SeriesInstanceUID 9.9.9"):
        select_series(index, sagittal_uid="9.9.9")


def test_angled_block_keeps_each_slice_plane_and_exact_affine(tmp_path):
    iop = tilted_axial_iop(15)
    normal = np.cross(iop[:3], iop[3:])
    uid = make_series(tmp_path, 4, iop=iop, start=(-10.0, 20.0, -150.0), step=tuple(4.0 * normal),
                      spacing=(0.6, 0.5), description="T2 TSE AX", rows=24, cols=20)
    index = index_folder(tmp_path)
    s = index.get(uid)
    datasets = read_series_datasets(s)
    from SpineAssistLib.dicom.stacks import _to_stack

    stack: ImageStack = _to_stack(datasets, "axial", "axial block 1")
    # hand-computed: pixel (row 2, col 3) of slice 1 = origin + 1*4 mm*normal + 3*0.5*row_dir + 2*0.6*col_dir
    expected = np.array([-10.0, 20.0, -150.0]) + 4.0 * normal + 3 * 0.5 * np.array(iop[:3]) + 2 * 0.6 * np.array(iop[3:])
    assert np.allclose(stack.pixel_to_lps(1, np.array(2.0), np.array(3.0)), expected, atol=1e-6)
    assert np.allclose(stack.lps_to_index(expected), [3, 2, 1], atol=1e-6)
    assert stack.voxels.shape == (4, 24, 20)
    assert [int(v) for v in stack.voxels[:, 0, 0]] == [100, 101, 102, 103]   # sorted along the normal


def test_missing_slice_and_duplicate_reported(tmp_path):
    uid = make_series(tmp_path, 8, skip=(4,))
    dup = next(tmp_path.glob("*_002.dcm"))
    shutil.copy(dup, tmp_path / "copy_of_002.dcm")
    s = index_folder(tmp_path).get(uid)
    assert s.n_slices == 7
    assert any("1 missing slice" in p for p in s.problems)
    assert any(p.startswith("1 duplicate slice (one copy of each kept): ") for p in s.problems)


def test_missing_slice_loads_the_longest_evenly_spaced_run_with_exact_geometry(tmp_path):
    make_series(tmp_path, 9, skip=(2,), description="T2 TSE SAG")   # x = 0, 3.5, _, 10.5, ... 28
    loaded = load_stacks(tmp_path, use_axial=False)
    st = loaded.sagittal
    assert st.voxels.shape[0] == 6                                       # slices 3..8 (the run after the gap)
    xs = [float(ds.ImagePositionPatient[0]) for ds in st.datasets]
    for k, x in enumerate(xs):                                           # the affine hits every kept slice
        assert st.pixel_to_lps(k, np.array(0.0), np.array(0.0))[0] == pytest.approx(x)
    assert any("uneven slice spacing" in w and "6 evenly spaced slices" in w for w in loaded.warnings)


def test_mixed_sizes_load_the_majority_size_with_a_warning(tmp_path):
    uid = make_series(tmp_path, 4, description="T2 TSE SAG")
    make_slice(tmp_path / "odd.dcm", study_uid="2.25.100", series_uid=uid, origin=(14.0, 0, 0), iop=SAG_IOP,
               rows=16, cols=16, instance=5)
    loaded = load_stacks(tmp_path, use_axial=False)
    assert loaded.sagittal.voxels.shape == (4, 32, 32)
    assert any("mixed image sizes" in w for w in loaded.warnings)


def test_rescale_slope_intercept_applied(tmp_path):
    make_series(tmp_path, 3, slope=2.0, intercept=-50.0, description="T2 TSE SAG")
    loaded = load_stacks(tmp_path, use_axial=False)
    # stored values 100, 101, 102 (slices sorted along the normal, so any order) → 2 v - 50
    assert sorted(loaded.sagittal.voxels[:, 0, 0].tolist()) == [150.0, 152.0, 154.0]


def test_compressed_rle_series_loads(tmp_path):
    from pydicom.uid import RLELossless

    uid = make_series(tmp_path, 3, description="T2 TSE SAG")
    for p in tmp_path.glob("*.dcm"):
        ds = pydicom.dcmread(p)
        ds.compress(RLELossless)
        ds.save_as(p)
    loaded = load_stacks(tmp_path, use_axial=False)
    assert loaded.sagittal.voxels.shape == (3, 32, 32)
    assert str(pydicom.dcmread(next(tmp_path.glob("*.dcm"))).file_meta.TransferSyntaxUID) == RLELossless
    assert uid


def test_real_world_multiframe_without_geometry_is_a_clear_error():
    from pydicom.data import get_testdata_file

    # pydicom-data's enhanced MR sample carries no plane position/orientation at all
    with pytest.raises(StudyError, match="none has usable image geometry .*10 frames without per-frame geometry"):
        index_folder(get_testdata_file("emri_small.dcm"))


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_real_world_compressed_and_legacy_syntaxes_decode_to_the_same_pixels(name, tmp_path):
    from pydicom.data import get_testdata_file

    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    shutil.copy(get_testdata_file(name), tmp_path / name)
    s = index_folder(tmp_path).series[0]
    (ds,) = read_series_datasets(s)
    assert np.array_equal(ds.pixel_array, reference)


def test_real_world_truncated_file_is_a_clear_error(tmp_path):
    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("MR_truncated.dcm"), tmp_path / "MR_truncated.dcm")
    s = index_folder(tmp_path).series[0]
    with pytest.raises(StudyError, match="MR_truncated.dcm cannot be read"):
        read_series_datasets(s)


def test_real_world_single_frame_mr_from_pydicom_data(tmp_path):
    from pydicom.data import get_testdata_file

    src = get_testdata_file("MR_small.dcm")
    shutil.copy(src, tmp_path / "MR_small.dcm")
    s = index_folder(tmp_path).series[0]
    ds = pydicom.dcmread(src)
    assert s.slices[0].origin == tuple(float(v) for v in ds.ImagePositionPatient)
    assert s.pixel_spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert plane_of(ds.ImageOrientationPatient) == s.plane


def test_slicer_instance_uids_map_back_to_the_series(tmp_path):
    uids = make_lumbar_study(tmp_path)
    index = index_folder(tmp_path)
    sag = index.get(uids["sag_t2"])
    attr = " ".join(r.sop_instance_uid for r in sag.slices)
    assert series_for_instance_uids(attr, index) is sag
    with pytest.raises(StudyError, match="no DICOM instance UIDs"):
        series_for_instance_uids("", index)


def test_split_stacks_groups_parallel_planes():
    from SpineAssistLib.dicom.index import SliceRef

    refs = [SliceRef(str(i), None, None, (0, 0, float(z)), (1, 0, 0), (0, 1, 0), (1, 1), 2, 2) for i, z in enumerate((6, 0, 3))]
    refs.append(SliceRef("t", None, None, (0, 0, 50), (1, 0, 0), tuple(tilted_axial_iop(20)[3:]), (1, 1), 2, 2))
    stacks = split_stacks(refs)
    assert sorted(len(s.slices) for s in stacks) == [1, 3]
    three = next(s for s in stacks if len(s.slices) == 3)
    assert [r.origin[2] for r in three.slices] == [0, 3, 6] and three.spacing_mm == 3


# ---- bad input: a clear StudyError, and exit status 2 from the CLI --------------------------

def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(StudyError, match="does not exist"):
        index_folder(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(StudyError, match="is empty"):
        index_folder(tmp_path)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StudyError, match=r"no DICOM images .*\(not a DICOM file\)"):
        index_folder(tmp_path)


def test_only_non_image_dicom(tmp_path):
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", "2.25.5"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "2.25.1", "2.25.2", "SR"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.preamble = b"\0" * 128
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    with pytest.raises(StudyError, match="no images .*SR"):
        index_folder(tmp_path)


def test_ct_instead_of_mr(tmp_path):
    make_series(tmp_path, 3, modality="CT", sop_class=CT, description="CT L-SPINE")
    with pytest.raises(StudyError, match="CT images but no MR series"):
        index_folder(tmp_path)


def test_no_sagittal_series(tmp_path):
    make_series(tmp_path, 5, iop=AX_IOP, step=(0, 0, 4), description="T2 TSE AX")
    with pytest.raises(StudyError, match="no sagittal MR series .*T2 TSE AX \\(axial, T2\\)"):
        select_series(index_folder(tmp_path))


def test_truncated_pixel_data(tmp_path):
    make_series(tmp_path, 3, description="T2 TSE SAG")
    victim = sorted(tmp_path.glob("*.dcm"))[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 900])
    index = index_folder(tmp_path)
    with pytest.raises(StudyError, match="cannot be read .*truncated"):
        read_series_datasets(select_series(index).sagittal)


def test_unreadable_folder(tmp_path):
    if os.geteuid() == 0:
        # root reads anything; check the message path through a file that is not a folder of DICOM instead
        (tmp_path / "x.bin").write_bytes(b"\0" * 10)
        with pytest.raises(StudyError, match="no DICOM images"):
            index_folder(tmp_path)
        return
    d = tmp_path / "locked"
    d.mkdir()
    d.chmod(0)
    try:
        with pytest.raises(StudyError, match="permission denied"):
            index_folder(d)
    finally:
        d.chmod(0o755)


def test_cli_series_lists_and_errors_exit_2_without_traceback(tmp_path):
    make_lumbar_study(tmp_path / "study")
    r = subprocess.run([sys.executable, "-m", "SpineAssistLib.cli", "series", str(tmp_path / "study")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "T2 TSE SAG" in r.stdout and "T2 TSE AX" in r.stdout
    (tmp_path / "empty").mkdir()
    for args in (["series", str(tmp_path / "empty")], ["assess", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]):
        r = subprocess.run([sys.executable, "-m", "SpineAssistLib.cli", *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2
        assert "is empty" in r.stderr and "Traceback" not in r.stderr
