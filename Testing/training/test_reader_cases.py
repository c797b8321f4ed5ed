"""Training data from a reviewed assessment (training.reader_cases, ``spineassist export training``):
the reader's values, not the model's, and nothing that identifies the patient."""

import json
import shutil

import numpy as np
import pydicom
from support.cli import run_cli as _cli

from SpineAssistLib.findings import Assessment, PfirrmannGrade


def _label_files(root, model):
    return sorted((root / model / "labels").rglob("*.txt"))


def test_training_export_writes_every_reviewable_set_with_the_readers_values(assessed, study_dir, tmp_path):
    from SpineAssistLib.anatomy import MSU_KEYPOINTS
    from SpineAssistLib.training.reader_cases import write_training_data
    from SpineAssistLib.training.datasets import parse_label_line

    _, out, _ = assessed
    case = tmp_path / "out"
    shutil.copytree(out, case)
    corrected = Assessment.load(case / "findings.json")
    corrected.level("L2-L3").pfirrmann.correct(PfirrmannGrade(3), reader="dr.test", note="bands")
    corrected.save(case / "findings.json")

    result = write_training_data(case, tmp_path / "train", salt="site-secret")
    dest = tmp_path / "train"
    assert set(result.counts) == {"sag_disc_unet", "sag_pfirrmann_cls", "sag_vertebra_pose", "sag_disc_corners",
                                  "ax_msu_pose"}
    assert all(n > 0 for n in result.counts.values()), result.summary()
    # the reader's Pfirrmann grade, not the model's, names the crop's class
    l23 = list(dest.glob("sag_pfirrmann_cls/*/*/*_L2-L3.png"))
    assert [p.parent.name for p in l23] == ["grade3"]
    # MSU keypoints: one labelled slice per assessed level; an apex exactly where a herniation is in force
    assessed_levels = [lv for lv in corrected.levels if lv.ldh.status == "assessed"]
    pose = _label_files(dest, "ax_msu_pose")
    assert len(pose) == len(assessed_levels)
    apices = 0
    for f in pose:
        obj = parse_label_line(f.read_text().splitlines()[0], len(MSU_KEYPOINTS))
        assert obj["keypoints"][[0, 1, 2, 4], 2].tolist() == [2, 2, 2, 2]
        apices += int(obj["keypoints"][3, 2] > 0)
    assert apices == sum(1 for lv in assessed_levels if lv.ldh.value.size > 0)
    # corner windows: one per reported disc on the mid-sagittal slice, each with the four corners bounding
    # that disc as the scene holds them, where they fall in the window
    from PIL import Image

    from SpineAssistLib import mrml
    from SpineAssistLib.anatomy import disc_space_corners
    from SpineAssistLib.training.reader_cases import training_case

    in_scene = training_case(mrml.read_mrb(case / "scene.mrb"))[0]["corners"]
    windows = _label_files(dest, "sag_disc_corners")
    assert {f.stem.rsplit("_", 1)[1] for f in windows} == {lv.name for lv in corrected.levels
                                                           if lv.pfirrmann.status == "assessed"}
    for f in windows:
        obj = parse_label_line(f.read_text().splitlines()[0], 4)
        level = f.stem.rsplit("_", 1)[1]
        assert obj["keypoints"][:, 2].tolist() == [2 if n in in_scene else 0 for n in disc_space_corners(level)]
        assert Image.open(f.parent.parent.parent / "images" / f.parent.name / (f.stem + ".png")).size == (192, 192)
    # vertebra pose: boxes hold their corners
    for line in _label_files(dest, "sag_vertebra_pose")[0].read_text().splitlines():
        obj = parse_label_line(line, 4)
        cx, cy, w, h = obj["box"]
        for x, y, v in obj["keypoints"]:
            if v:
                assert abs(x - cx) <= w / 2 + 1e-3 and abs(y - cy) <= h / 2 + 1e-3
    # nothing identifying leaves: no UID or patient name in any file name or text file
    patient = pydicom.dcmread(next((study_dir / "DICOM").rglob("*.dcm")), stop_before_pixels=True)
    secrets = {str(patient.PatientName), str(patient.PatientID), str(patient.StudyInstanceUID)}
    for f in dest.rglob("*"):
        assert not any(s in f.name for s in secrets if s)
        if f.suffix in (".txt", ".yaml", ".json"):
            assert not any(s in f.read_text() for s in secrets if s)
    log = json.loads((dest / "exports.json").read_text())
    assert [c["case"] for c in log["cases"]] == [result.case_id] and log["cases"][0]["corrections"] >= 1
    # exporting the same case again replaces it instead of adding a second copy
    again = write_training_data(case, dest, salt="site-secret")
    assert again.case_id == result.case_id and len(_label_files(dest, "ax_msu_pose")) == len(pose)
    assert len(json.loads((dest / "exports.json").read_text())["cases"]) == 1


def test_training_export_follows_a_moved_keypoint(assessed, tmp_path):
    from SpineAssistLib import mrml
    from SpineAssistLib.training.reader_cases import training_case

    _, out, _ = assessed
    scene = mrml.read_mrb(out / "scene.mrb")
    _, nodes = mrml.load_state(scene)
    before, _ = training_case(scene)
    node = nodes.keypoints["sagittal"]
    name = node.GetNthControlPointLabel(0)
    ras = [0.0, 0.0, 0.0]
    node.GetNthControlPointPosition(0, ras)
    node.SetLocked(0)
    node.SetNthControlPointPosition(0, ras[0], ras[1] + 4.0, ras[2])     # 4 mm anterior (RAS +y)
    after, _ = training_case(scene)
    moved = np.array(after["corners"][name]) - np.array(before["corners"][name])
    assert np.allclose(moved, [0.0, -4.0, 0.0], atol=1e-6)                 # LPS: anterior is -y


def test_export_training_command_and_its_errors(assessed, tmp_path):
    _, out, _ = assessed
    ok = _cli("export", "training", str(out), "--dest", str(tmp_path / "t"))
    assert ok.returncode == 0, ok.stderr
    assert "ax_msu_pose" in ok.stdout and (tmp_path / "t" / "ax_msu_pose" / "data.yaml").is_file()
    bad = _cli("export", "training", str(tmp_path), "--dest", str(tmp_path / "t2"))
    assert bad.returncode == 2 and "no scene.mrb" in bad.stderr and "Traceback" not in bad.stderr
