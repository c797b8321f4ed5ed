"""End-to-end assessment with oracle models: a phantom study in, the truth's grades and every output file out.

The oracle models answer from the phantom's ground truth (Testing/oracle_models.py), so these
tests check the pipeline's own work — loading, pixel↔LPS geometry, level naming from the
sacrum, sagittal→axial mapping, grading, outputs, reruns, cancellation — not model accuracy.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from oracle_models import oracle_models

from SpineAssistLib.errors import Cancelled
from SpineAssistLib.findings import Assessment, PfirrmannGrade, validate_findings_json
from SpineAssistLib.grading import msu_grade
from SpineAssistLib.export.outputs import OUTPUT_FILES
from SpineAssistLib.phantom import generate_study, sample_params, write_study
from SpineAssistLib.pipeline.assess import run_assessment
from SpineAssistLib.dicom.stacks import load_stacks
from SpineAssistLib.pipeline.progress import CancelToken

SEED = 11


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    params = sample_params(SEED, slip_percent={"L4-L5": 22.0}, pfirrmann={"L4-L5": 4, "L2-L3": 1})
    return write_study(generate_study(SEED, params), tmp_path_factory.mktemp("phantom") / "study")


def _oracle(study_dir):
    return lambda loaded: oracle_models(study_dir, [loaded.sagittal, *loaded.axial])


@pytest.fixture(scope="module")
def assessed(study_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    events = []
    done = run_assessment(study_dir, out, models=_oracle(study_dir), progress=events.append)
    return done, out, events


def test_levels_and_sagittal_grades_equal_the_truth(assessed, study_dir):
    done, _, _ = assessed
    truth = Assessment.load(study_dir / "truth.json")
    got = done.result.assessment
    names = [lv.name for lv in got.levels]
    # the phantom's truth lists T12-L1 to L5-S1; a thoracic disc partly in view may be reported too
    assert [n for n in names if n != "T11-T12"] == [lv.name for lv in truth.levels]
    for t in truth.levels:
        lv = got.level(t.name)
        assert lv.pfirrmann.value == t.pfirrmann.value, lv.name
        assert lv.listhesis.value.grade == t.listhesis.value.grade, lv.name
        assert lv.listhesis.value.slip_percent == pytest.approx(t.listhesis.value.slip_percent, abs=1.0), lv.name
    l45 = got.level("L4-L5")
    assert l45.listhesis.value.grade == 1 and l45.listhesis.value.direction == "antero"
    assert l45.pfirrmann.measurement("signal_intensity_ratio") is not None


def test_msu_equals_the_grading_rules_on_the_truth_keypoints(assessed, study_dir):
    done, _, _ = assessed
    keypoints = json.loads((study_dir / "truth" / "keypoints.json").read_text())["axial"]
    for lv in done.result.assessment.levels:
        mine = [e for e in keypoints if e["level"] == lv.name]
        if not mine:
            assert lv.ldh.status == "not_assessed"
            continue
        ratios = []
        for e in mine:
            p = e["keypoints"]
            ratios.append(msu_grade(p["left medial facet"], p["right medial facet"], p["posterior disc margin"],
                                    p["posterior canal"], p["herniation apex"]).size)
        assert lv.ldh.value.size == max(ratios), lv.name


def test_every_output_is_written_and_valid(assessed):
    done, out, _ = assessed
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["findings.json", "findings.csv", "report.html", "seg.dcm", "sr.dcm", "scene.mrb"])
    validate_findings_json(json.loads((out / "findings.json").read_text()))
    seg = pydicom.dcmread(out / "seg.dcm")
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == [f"{lv.name} intervertebral disc" for lv in done.result.assessment.levels]
    sr = pydicom.dcmread(out / "sr.dcm")
    assert sr.Modality == "SR"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "L4-L5" in html and "http://" not in html.replace("http://www.w3.org", "")


def test_dciodvfy_finds_no_errors(assessed):
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy (Debian dicom3tools) is not installed; `make setup` installs it as root")
    _, out, _ = assessed
    for name in ("seg.dcm", "sr.dcm"):
        r = subprocess.run(["dciodvfy", str(out / name)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], f"{name}: {errors}"


def test_scene_loads_into_a_fresh_slicer_scene(assessed):
    from SpineAssistLib import mrml

    done, out, _ = assessed
    scene = mrml.read_mrb(out / "scene.mrb")
    assessment, nodes = mrml.load_state(scene)
    assert assessment.to_json() == Assessment.load(out / "findings.json").to_json()
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") >= 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1


def test_progress_reaches_one_in_order(assessed):
    _, _, events = assessed
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"loading", "sagittal models", "levels", "axial models", "outputs"} <= {e.stage for e in events}


def test_rerun_keeps_the_readers_corrections(assessed, study_dir, tmp_path):
    _, out, _ = assessed
    shutil.copytree(out, tmp_path / "out")
    corrected = Assessment.load(tmp_path / "out" / "findings.json")
    corrected.level("L2-L3").pfirrmann.correct(PfirrmannGrade(3), reader="dr.test", note="bands")
    corrected.save(tmp_path / "out" / "findings.json")
    done = run_assessment(study_dir, tmp_path / "out", models=_oracle(study_dir))
    again = Assessment.load(tmp_path / "out" / "findings.json")
    lv = again.level("L2-L3")
    assert lv.pfirrmann.value == PfirrmannGrade(3) and lv.pfirrmann.model == PfirrmannGrade(1)
    assert lv.pfirrmann.corrections[0].reader == "dr.test"
    assert any("L2-L3 pfirrmann: reader Pfirrmann III, new model Pfirrmann I" in w for w in again.warnings)
    assert done.written.disagreements


def test_sagittal_only_study_reports_herniation_not_assessed(study_dir, tmp_path):
    only_sag = tmp_path / "study"
    shutil.copytree(study_dir / "DICOM" / "SAG", only_sag / "SAG")
    shutil.copytree(study_dir / "truth", only_sag / "truth")
    shutil.copy(study_dir / "truth.json", only_sag / "truth.json")
    done = run_assessment(only_sag, tmp_path / "out", models=_oracle(only_sag))
    a = done.result.assessment
    assert all(lv.ldh.status == "not_assessed" and "axial" in lv.ldh.reason for lv in a.levels)
    assert all(lv.pfirrmann.status == "assessed" for lv in a.levels)
    # said once, in one wording, although both the series choice and the assessment notice it
    assert [w for w in a.warnings if "axial" in w] == ["no axial series: herniation (MSU) not assessed"]


def test_cancel_leaves_no_output(study_dir, tmp_path):
    token = CancelToken()
    seen = []

    def progress(event):
        seen.append(event.stage)
        if event.stage == "axial models":
            token.cancel()

    with pytest.raises(Cancelled):
        run_assessment(study_dir, tmp_path / "out", models=_oracle(study_dir), progress=progress, cancel=token)
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True


def test_outputs_in_parallel_equal_outputs_one_by_one(assessed, tmp_path):
    """The forked writer (report, SEG, scene) and this process (SR) together write what one process writes."""
    from SpineAssistLib.export import outputs

    done = assessed[0]
    serial = outputs.write_outputs(done.result, tmp_path / "serial", keep_corrections=False, parallel=False)
    both = outputs.write_outputs(done.result, tmp_path / "parallel", keep_corrections=False, parallel=True)
    assert sorted(serial.files) == sorted(both.files) == sorted(outputs.OUTPUT_FILES)
    assert (tmp_path / "serial" / "findings.json").read_bytes() == (tmp_path / "parallel" / "findings.json").read_bytes()
    assert outputs.WRITER_GROUPS[0] == ("report.html", "seg.dcm", "scene.mrb")
    for name in outputs.WRITER_GROUPS[0]:                    # written by the child: complete and readable
        assert (tmp_path / "parallel" / name).stat().st_size > 0.9 * (tmp_path / "serial" / name).stat().st_size
    import pydicom
    assert len(pydicom.dcmread(tmp_path / "parallel" / "seg.dcm").SegmentSequence) == \
        len(pydicom.dcmread(tmp_path / "serial" / "seg.dcm").SegmentSequence)
    assert sorted(p.name for p in (tmp_path / "parallel").iterdir()) == sorted(outputs.OUTPUT_FILES)   # no staging left


@pytest.mark.parametrize("where", ["child", "parent"])
def test_a_failing_writer_in_either_process_leaves_the_folder_as_it_was(assessed, tmp_path, monkeypatch, where):
    from SpineAssistLib.export import outputs

    def broken(result, path):
        path.write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "_report" if where == "child" else "_sr", broken)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the reader's")
    with pytest.raises((RuntimeError, OSError), match="disk full"):
        outputs.write_outputs(assessed[0].result, out, keep_corrections=False, parallel=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_cancelling_while_the_child_writes_stops_it_and_moves_nothing(assessed, tmp_path, monkeypatch):
    import multiprocessing

    from SpineAssistLib.export import outputs

    def slow_report(result, path):
        import time
        time.sleep(30)
        return True

    def cancel():
        raise Cancelled("cancelled")

    monkeypatch.setattr(outputs, "_report", slow_report)
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        outputs.write_outputs(assessed[0].result, out, keep_corrections=False, parallel=True, check=cancel)
    assert not multiprocessing.active_children() and list(out.iterdir()) == []


def test_writer_processes_serve_several_results_and_write_what_one_process_writes(assessed, tmp_path, monkeypatch):
    """The command line's writer processes, started before the models run, write every result sent."""
    import multiprocessing

    import pydicom

    from SpineAssistLib.export import outputs

    done = assessed[0]
    serial = outputs.write_outputs(done.result, tmp_path / "serial", keep_corrections=False, parallel=False)
    with outputs.WriterProcesses() as writers:
        def broken(result, path):
            raise OSError("not the writer process's code")

        monkeypatch.setattr(outputs, "_scene", broken)   # patched after they started: they write their own
        for name in ("a", "b"):
            got = outputs.write_outputs(done.result, tmp_path / name, keep_corrections=False, writers=writers)
            assert sorted(got.files) == sorted(serial.files) == sorted(outputs.OUTPUT_FILES)
            assert not writers.busy and not writers.closed
            assert (tmp_path / name / "findings.json").read_bytes() == (tmp_path / "serial" / "findings.json").read_bytes()
            for f in ("report.html", "seg.dcm", "sr.dcm", "scene.mrb"):
                assert (tmp_path / name / f).stat().st_size > 0.9 * (tmp_path / "serial" / f).stat().st_size
            assert len(pydicom.dcmread(tmp_path / name / "sr.dcm").ContentSequence) == \
                len(pydicom.dcmread(tmp_path / "serial" / "sr.dcm").ContentSequence)
            # the writers get headers without pixel data: the same segmentation frames all the same
            seg, serial_seg = (pydicom.dcmread(d / "seg.dcm") for d in (tmp_path / name, tmp_path / "serial"))
            assert seg.PixelData == serial_seg.PixelData and seg.NumberOfFrames == serial_seg.NumberOfFrames
    assert writers.closed and not multiprocessing.active_children()


def test_the_writer_processes_are_sent_the_result_without_pixel_data(assessed):
    from SpineAssistLib.export import outputs

    result = assessed[0].result
    sent = outputs._without_pixel_data(result)
    assert sent.assessment is result.assessment and len(sent.axial) == len(result.axial) >= 1
    for mine, theirs in zip(result.stacks(), sent.stacks()):
        assert theirs.voxels is mine.voxels and theirs.labels is mine.labels and theirs.name == mine.name
        assert len(theirs.datasets) == len(mine.datasets) >= 1
        assert all("PixelData" in ds for ds in mine.datasets)                 # the result itself keeps them
        assert not any("PixelData" in ds for ds in theirs.datasets)
        assert [ds.SOPInstanceUID for ds in theirs.datasets] == [ds.SOPInstanceUID for ds in mine.datasets]


def test_the_sr_writer_is_sent_no_voxels_and_writes_the_same_report(assessed, tmp_path):
    """The SR writer's message leaves out the voxels and label maps (38 MB of a phantom study): its SR
    has the same content items, measurements and references as one written from the whole result."""
    import pickle

    import pydicom

    from SpineAssistLib.export import outputs

    result = assessed[0].result
    sent = outputs._without_pixel_data(result, voxels=False)
    for mine, theirs in zip(result.stacks(), sent.stacks()):
        assert theirs.voxels.shape == (mine.voxels.shape[0], 0, 0) and theirs.labels is None
        assert [ds.SOPInstanceUID for ds in theirs.datasets] == [ds.SOPInstanceUID for ds in mine.datasets]
    assert len(pickle.dumps(sent)) < 0.05 * len(pickle.dumps(outputs._without_pixel_data(result)))
    assert outputs._sr(sent, tmp_path / "a.dcm") and outputs._sr(result, tmp_path / "b.dcm")
    a, b = (pydicom.dcmread(tmp_path / n) for n in ("a.dcm", "b.dcm"))

    def items(ds):
        out = []
        for item in ds.ContentSequence:
            out.append((item.ValueType, item.ConceptNameCodeSequence[0].CodeValue))
            if "ContentSequence" in item:
                out += items(item)
        return out
    assert items(a) == items(b) and len(items(a)) > 100
    refs = lambda ds: sorted(r.ReferencedSOPInstanceUID for s in ds.CurrentRequestedProcedureEvidenceSequence  # noqa: E731
                             for se in s.ReferencedSeriesSequence for r in se.ReferencedSOPSequence)
    assert refs(a) == refs(b) and len(refs(a)) == len(result.source_datasets())


def test_a_failing_writer_process_stops_them_and_later_outputs_are_written_here(assessed, tmp_path, monkeypatch):
    import multiprocessing

    from SpineAssistLib.export import outputs

    real_sr = outputs._sr

    def broken(result, path):
        path.write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "_sr", broken)
    writers = outputs.WriterProcesses()                 # forked with the broken SR writer
    monkeypatch.setattr(outputs, "_sr", real_sr)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the reader's")
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            outputs.write_outputs(assessed[0].result, out, keep_corrections=False, writers=writers)
        assert writers.closed and not multiprocessing.active_children()
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
        again = outputs.write_outputs(assessed[0].result, out, keep_corrections=False, writers=writers)
        assert sorted(again.files) == sorted(outputs.OUTPUT_FILES)      # written in this process instead
    finally:
        writers.close()


def test_a_result_the_writer_processes_cannot_take_is_written_here(assessed, tmp_path):
    import copy
    import multiprocessing

    from SpineAssistLib.export import outputs

    result = copy.copy(assessed[0].result)
    result.timings = {"unpicklable": lambda: None}         # a lambda cannot be pickled
    with outputs.WriterProcesses() as writers:
        got = outputs.write_outputs(result, tmp_path / "out", keep_corrections=False, writers=writers)
        assert writers.closed
    assert sorted(got.files) == sorted(outputs.OUTPUT_FILES) and not multiprocessing.active_children()


def test_cancelling_while_the_writer_processes_write_stops_them(assessed, tmp_path, monkeypatch):
    import multiprocessing
    import time

    from SpineAssistLib.export import outputs

    def slow_report(result, path):
        time.sleep(30)
        return True

    monkeypatch.setattr(outputs, "_report", slow_report)
    writers = outputs.WriterProcesses()
    calls = []

    def cancel():
        calls.append(1)
        if len(calls) > 5:          # the first checks pass (findings.json/.csv are written), then cancel
            raise Cancelled("cancelled")

    out = tmp_path / "out"
    t = time.perf_counter()
    with pytest.raises(Cancelled):
        outputs.write_outputs(assessed[0].result, out, keep_corrections=False, writers=writers, check=cancel)
    assert time.perf_counter() - t < 10
    assert writers.closed and not multiprocessing.active_children() and list(out.iterdir()) == []


def _cli(*args, env=None):
    import os
    import sys

    return subprocess.run([sys.executable, "-m", "SpineAssistLib.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def test_assess_command_with_the_bundled_models_and_json_progress(study_dir, tmp_path):
    r = _cli("assess", str(study_dir), "--out", str(tmp_path / "out"), "--device", "cpu", "--json-progress")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "progress" and events[-1]["event"] == "done"
    assert events[-1]["findings"] == str(tmp_path / "out" / "findings.json")
    a = Assessment.load(tmp_path / "out" / "findings.json")
    assert [m.name for m in a.models] == ["sag_disc_unet", "sag_vertebra_pose", "sag_disc_corners", "sag_pfirrmann_cls",
                                          "ax_disc_seg", "ax_disc_window_seg", "ax_msu_pose"]
    assert a.levels and all(lv.pfirrmann.status == "assessed" or lv.pfirrmann.reason for lv in a.levels)


def test_several_studies_in_one_command_each_get_their_folder_and_a_bad_one_is_skipped(study_dir, tmp_path):
    import shutil

    from pathlib import Path

    from SpineAssistLib.cli.assess import batch_folders

    empty = tmp_path / "no-dicom"
    empty.mkdir()
    copy = tmp_path / "b" / study_dir.name                   # the same folder name twice
    shutil.copytree(study_dir, copy)
    r = _cli("assess", str(study_dir), str(empty), str(copy), "--out", str(tmp_path / "out"), "--device", "cpu",
             "--json-progress")
    assert r.returncode == 2, r.stderr                        # one study could not be read
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    done = [e for e in events if e["event"] == "done"]
    errors = [e for e in events if e["event"] == "error"]
    assert [e["study"] for e in done] == [str(study_dir), str(copy)] and [e["study"] for e in errors] == [str(empty)]
    first, second = tmp_path / "out" / study_dir.name, tmp_path / "out" / f"{study_dir.name}-2"
    assert Assessment.load(first / "findings.json").study_instance_uid == \
        Assessment.load(second / "findings.json").study_instance_uid
    for folder in (first, second):                              # the shared writer processes wrote both
        assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES)
    assert not (tmp_path / "out" / "no-dicom").exists()
    assert "2 of 3 studies assessed" in r.stderr and "no-dicom" in r.stderr and "Traceback" not in r.stderr
    assert batch_folders([Path("a/x"), Path("b/x"), Path("c/y")], Path("o")) == [Path("o/x"), Path("o/x-2"), Path("o/y")]


def test_a_wrong_weights_file_is_refused_with_a_restore_hint(study_dir, tmp_path, repo_root):
    res = tmp_path / "Resources"
    shutil.copytree(repo_root / "Resources", res)
    (res / "Models" / "sag_disc_unet.pt").write_bytes(b"not the weights")
    r = _cli("assess", str(study_dir), "--out", str(tmp_path / "out"), "--json-progress",
             env={"SPINEASSIST_RESOURCES": str(res)})
    assert r.returncode == 2
    assert "sag_disc_unet.pt" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["event"] == "error"
    assert not (tmp_path / "out" / "findings.json").exists()


def test_relative_output_folder_works(assessed, study_dir, tmp_path, monkeypatch):
    # `make demo` passes a relative --out; Slicer's bundle writer needs absolute paths
    monkeypatch.chdir(tmp_path)
    done = run_assessment(study_dir, "relative-out", models=_oracle(study_dir))
    assert (tmp_path / "relative-out" / "scene.mrb").is_file()
    assert "scene.mrb" in done.written.files


# ---- training data from a reviewed assessment ------------------------------------------------

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


def test_the_disc_unet_runs_from_the_centre_out_to_the_last_slice_with_a_disc():
    from SpineAssistLib.models.unet import UNetResult
    from SpineAssistLib.pipeline.assess import _segment_disc_slices
    from SpineAssistLib.pipeline.result import ImageStack
    from SpineAssistLib.pipeline.progress import StageReporter

    voxels = np.zeros((15, 32, 32), np.float32)
    for k in range(15):
        voxels[k, 0:3, 2 * k:2 * k + 3] = 100.0               # slice k says which it is, raw or normalised
    seen = []

    class Unet:
        def predict(self, image, roi=None):
            cols = np.nonzero(image[1])[0]
            k = int(cols.min()) // 2 if len(cols) else -1
            seen.append(k)
            m = np.zeros(image.shape, bool)
            if 3 <= k <= 9:                                  # discs on slices 3-9 only
                m[10:20, 10:20] = True
            return UNetResult(m, m.astype(np.float32))

    sagittal = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1.0]])   # the canonical view
    stack = ImageStack("sagittal", "sagittal", voxels, sagittal)
    masks = _segment_disc_slices(Unet(), stack, StageReporter({"sagittal models": 1.0}))
    assert sorted(seen) == list(range(2, 11))                # 2 and 10 show none: the walk stops there
    assert masks[3:10].any(axis=(1, 2)).all() and not masks[:3].any() and not masks[10:].any()
    # no disc near the centre: every slice is run
    voxels[:] = 0
    voxels[0, 0:3, 6:9] = 100.0
    seen.clear()
    _segment_disc_slices(Unet(), ImageStack("sagittal", "sagittal", voxels, sagittal), StageReporter({"sagittal models": 1.0}))
    assert len(seen) == 15


def test_beyond_the_central_slices_the_unet_sees_only_the_box_around_their_discs():
    """Slices outside the centre are run on the box around the central slices' discs plus a margin in mm."""
    from SpineAssistLib.models.unet import UNetResult, segment_sagittal_stack

    calls = []

    class Unet:
        def predict(self, image, roi=None):
            calls.append(roi)
            m = np.zeros(image.shape, bool)
            m[20:30, 10:16] = True                            # discs in rows 20-29, cols 10-15
            m[40, 30] = len(calls) == 2                       # ... and one more pixel on a central slice
            if roi is not None:
                inside = np.zeros(image.shape, bool)
                inside[roi] = True
                m &= inside
            return UNetResult(m, m.astype(np.float32))

    voxels = np.zeros((9, 64, 48), np.float32)
    masks = segment_sagittal_stack(Unet(), voxels, (2.0, 0.5), margin_mm=10.0)
    assert calls[:5] == [None] * 5 and len(calls) == 9       # the five central slices whole, then 4 more
    # 10 mm = 5 rows (2 mm) or 20 columns (0.5 mm) around rows 20-40, cols 10-30
    assert calls[5:] == [(slice(15, 46), slice(0, 48))] * 4
    assert masks.any(axis=(1, 2)).all()
    calls.clear()
    segment_sagittal_stack(Unet(), voxels, (2.0, 0.5), margin_mm=None)
    assert calls == [None] * 9                                # margin None: every slice whole


def test_the_unet_runs_on_a_region_of_a_slice_normalised_whole():
    import torch

    from SpineAssistLib.models.imaging import normalize_slice
    from SpineAssistLib.models.unet import UNetModel, build_unet

    torch.manual_seed(0)
    unet = UNetModel.__new__(UNetModel)                          # a random torch network, no weights file
    unet.name, unet.device, unet._onnx, unet._net = "test", "cpu", None, build_unet().eval()
    image = np.random.default_rng(1).uniform(0, 900, (40, 56)).astype(np.float32)
    image[:, :8] = 5000.0                                      # bright outside the region: sets the whole slice's range
    roi = (slice(4, 36), slice(16, 48))
    r = unet.predict(image, roi=roi)
    assert r.probability.shape == image.shape and not r.probability[:4].any() and not r.probability[:, :16].any()
    with torch.inference_mode():
        x = torch.from_numpy(normalize_slice(image)[roi].astype(np.float32))[None, None]
        expected = torch.softmax(unet.net(x), dim=1)[0, 1].numpy()
    np.testing.assert_allclose(r.probability[roi], expected, atol=1e-6)


def test_a_region_maps_into_the_canonical_view_with_the_slice():
    from SpineAssistLib.models.orientation import SliceOrientation

    image = np.arange(6 * 9).reshape(6, 9)
    roi = (slice(1, 4), slice(2, 7))
    for o in (SliceOrientation(t, r, c) for t in (False, True) for r in (False, True) for c in (False, True)):
        view_roi = o.roi(roi, image.shape)
        assert sorted(o.image(image)[view_roi].ravel()) == sorted(image[roi].ravel()), o


def test_a_feet_first_study_with_anterior_on_the_right_grades_like_the_truth(tmp_path):
    """Models see the canonical view (models.orientation); every answer must map back to the right anatomy."""
    params = sample_params(21, patient_position="FFS", sag_anterior_left=False, lumbar_count=5, slip_percent={"L4-L5": 22.0},
                           msu={"L5-S1": {"msu_size": 2, "msu_zone": "AB", "side": "left", "bulge": False}})
    study = write_study(generate_study(21, params), tmp_path / "study")
    done = run_assessment(study, tmp_path / "out", models=_oracle(study))
    truth = Assessment.load(study / "truth.json")
    got = done.result.assessment
    for t in truth.levels:
        lv = got.level(t.name)
        assert lv.pfirrmann.value == t.pfirrmann.value, lv.name
        assert lv.listhesis.value.grade == t.listhesis.value.grade, lv.name
        assert (lv.ldh.value is None) == (t.ldh.value is None), lv.name
        if t.ldh.value is not None:
            assert (lv.ldh.value.size, lv.ldh.value.side, lv.ldh.value.bulge) == \
                (t.ldh.value.size, t.ldh.value.side, t.ldh.value.bulge), lv.name
    assert got.level("L4-L5").listhesis.value.direction == "antero"
    l5s1 = got.level("L5-S1").ldh.value
    assert (l5s1.size, l5s1.zone, l5s1.side) == (2, "AB", "left")        # the patient's left, not the image's


def test_an_assessment_with_the_bundled_models_does_not_import_scipy(study_dir, tmp_path, repo_root):
    """scipy.ndimage took 0.45 s of a fresh `spineassist assess` (one of Slicer's runs): the pipeline's
    mask steps use OpenCV's equivalents (``models.imaging``), so a whole run, outputs included,
    never imports it."""
    code = ("import sys; from SpineAssistLib.pipeline.assess import run_assessment; "
            f"done = run_assessment({str(study_dir)!r}, {str(tmp_path / 'out')!r}, device='cpu', parallel_outputs=False); "
            "print(len(done.result.assessment.levels), sorted(done.written.files) == sorted(__import__('SpineAssistLib.export.outputs').export.outputs.OUTPUT_FILES), 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    levels, complete, scipy = out.stdout.split()[-3:]
    assert int(levels) >= 5 and complete == "True" and scipy == "False", out.stdout


def test_review_reasons_flag_what_a_reader_should_check():
    from types import SimpleNamespace

    from SpineAssistLib.findings import Level
    from SpineAssistLib.pipeline.assess import review_reasons

    def levels(names, conf=0.9):
        return [Level(n, disc_center=(0.0, 0.0, -40.0 * i), confidence=conf) for i, n in enumerate(names)]

    lumbar = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    ok = SimpleNamespace(vertebral_spacing_mm=36.0)
    assert review_reasons(levels(lumbar), ok, mid=7, n_slices=15) == []
    weak = levels(lumbar)
    weak[3].confidence = 0.3
    assert review_reasons(weak, ok, 7, 15) == ["levels found or named with low confidence: L4-L5 (0.30)"]
    assert review_reasons(levels(lumbar[2:]), ok, 7, 15) == ["lumbar level(s) not reported: L1-L2, L2-L3"]
    assert review_reasons(levels(["L1-L2", "L2-L3", "L3-L4", "L4-S1"]), ok, 7, 15) == []   # four lumbar vertebrae
    far = review_reasons(levels(lumbar), SimpleNamespace(vertebral_spacing_mm=70.0), 7, 15)
    assert far and "70 mm apart" in far[0]
    flipped = levels(lumbar)[::-1]
    assert any("head-to-feet order" in r for r in review_reasons(flipped, ok, 7, 15))
    assert any("slice 2 of 15" in r for r in review_reasons(levels(lumbar), ok, 1, 15))
    below = SimpleNamespace(vertebral_spacing_mm=36.0, vertebrae=(),
                            warnings=("detections[9] (disc) lies caudal to the sacrum; dropped as spurious",))
    assert any("below the detected sacrum" in r for r in review_reasons(levels(lumbar), below, 7, 15))
    weak = SimpleNamespace(vertebral_spacing_mm=36.0, vertebrae=(SimpleNamespace(name="S1"),), warnings=())
    assert any("found only weakly (score 0.17)" in r for r in review_reasons(levels(lumbar), weak, 7, 15, 0.17))
    assert review_reasons(levels(lumbar), weak, 7, 15, 0.8) == []
    cut = review_reasons(levels(lumbar), weak, 7, 15, 0.8, sacrum_cut=True)
    assert len(cut) == 1 and "lower edge of the image" in cut[0]


def test_level_confidence_and_review_round_trip_through_findings_json():
    from SpineAssistLib.findings import Assessment, Level

    a = Assessment("1.2.3", levels=[Level("L4-L5", confidence=0.42)], review_reasons=["L4-L5 uncertain"])
    d = a.to_dict()
    assert d["review"] == {"status": "needs review", "reasons": ["L4-L5 uncertain"]}
    assert d["levels"][0]["confidence"] == 0.42
    back = Assessment.from_dict(d)
    assert back.needs_review and back.level("L4-L5").confidence == 0.42
    old = dict(d)
    del old["review"]
    assert not Assessment.from_dict(old).needs_review          # files written before the flag existed
    with pytest.raises(ValueError, match="between 0 and 1"):
        Level("L4-L5", confidence=1.5)


def test_evaluation_scores_what_the_pipeline_returns(study_dir):
    """``spineassist evaluate`` runs ``pipeline.assess`` on each phantom's arrays: with perfect (oracle)
    models every truth level is named right and every grade equals the truth."""
    from SpineAssistLib.training.evaluate import _new_acc, _pipeline_summary, evaluate_pipeline, study_stacks
    from SpineAssistLib.training.phantom_cache import render_phantom

    st = render_phantom(SEED, {"slip_percent": {"L4-L5": 22.0}, "pfirrmann": {"L4-L5": 4, "L2-L3": 1}})
    sagittal, axial = study_stacks(st)
    loaded = load_stacks(study_dir)
    assert np.allclose(sagittal.affine, loaded.sagittal.affine, atol=1e-4)   # the DICOM series' geometry (DS rounding)
    assert len(axial) == len(loaded.axial)
    assert all(np.allclose(a.affine, b.affine, atol=1e-4) for a, b in zip(axial, loaded.axial))
    # the oracle looks its keypoints up by SOP Instance UID: lend the arrays the series' headers
    sagittal.datasets = loaded.sagittal.datasets
    for a, b in zip(axial, loaded.axial):
        a.datasets = b.datasets
    acc = _new_acc()
    evaluate_pipeline(oracle_models(study_dir, [sagittal, *axial]), st, acc, (sagittal, axial))
    s = _pipeline_summary(acc, n_boot=20)
    assert s["levels_named_right"]["value"] == 1.0 and s["studies_stopped"] == 0
    assert s["pfirrmann_accuracy"]["value"] == 1.0 and s["meyerding_accuracy"]["value"] == 1.0
    assert acc["pipe_hern_true"] == acc["pipe_hern_pred"] and not s["msu_graded_without_axial_slice"]


def test_findings_table_marks_uncertain_levels():
    from SpineAssistLib.findings import Level
    from SpineAssistLib.pipeline.assess import findings_table

    table = findings_table(Assessment("1.2", levels=[Level("L4-L5", confidence=0.9), Level("L5-S1", confidence=0.1)]))
    rows = table.splitlines()[2:]
    assert rows[0].startswith("L4-L5 ") and rows[1].startswith("L5-S1? ")
