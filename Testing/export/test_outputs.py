"""Every output of an assessment (export.outputs): written and valid, read back by Slicer, the same
whether written in one process, in parallel or by the command line's writer processes, and nothing
left behind by a failing or cancelled writer. The assessment is the oracle models' (fixture
``assessed`` in Testing/conftest.py)."""

import json
import shutil
import subprocess

import pydicom
import pytest

from SpineAssistLib.errors import Cancelled, SpineAssistError
from SpineAssistLib.findings import Assessment, validate_findings_json


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
    with pytest.raises(SpineAssistError, match="writing .* failed \\(disk full\\).*unchanged"):
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
        with pytest.raises(SpineAssistError, match="writing sr.dcm .* failed \\(disk full\\)"):
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


def _corrected_copy(out, level_name=None, grade=1):
    from SpineAssistLib.findings import PfirrmannGrade

    a = Assessment.load(out / "findings.json")
    level = next(lv for lv in a.levels if lv.pfirrmann.model is not None and (level_name in (None, lv.name)))
    level.pfirrmann.correct(PfirrmannGrade(grade), reader="dr.window")
    return a, level.name


@pytest.mark.parametrize("how", ["an editor, without the lock", "the panel's save, under the lock"])
def test_a_correction_saved_while_the_outputs_are_written_is_kept(assessed, tmp_path, monkeypatch, how):
    """The window between reading OUT's findings.json and swapping in the new set loses nothing:
    an edit that bypasses the lock is seen before the swap and merged again; a locked save waits
    for the swap and is merged into the new findings."""
    import threading

    from SpineAssistLib.export import outputs

    out = tmp_path / "out"
    shutil.copytree(assessed[1], out)
    edit, name = _corrected_copy(out)
    real_report, saver = outputs._report, []

    def report_with_an_edit(result, path):
        if not saver:
            if how.startswith("an editor"):
                saver.append(None)
                edit.save(out / "findings.json")
            else:
                t = threading.Thread(target=outputs.save_reader_findings, args=(edit, out))
                saver.append(t)
                t.start()
                t.join(0.5)
                assert t.is_alive()             # it waits for the run's lock
        return real_report(result, path)

    monkeypatch.setattr(outputs, "_report", report_with_an_edit)
    result = assessed[0].result
    outputs.write_outputs(result, out, parallel=False)
    if saver[0] is not None:
        saver[0].join(10)
    kept = Assessment.load(out / "findings.json")
    assert kept.level(name).pfirrmann.reader is not None and kept.level(name).pfirrmann.value.grade == 1
    assert kept.created == result.assessment.created           # the new run's findings, with the correction
    assert sorted(p.name for p in out.iterdir()) == sorted(outputs.OUTPUT_FILES)
    if how.startswith("an editor"):                            # merged before the swap: the whole set has it
        import csv

        rows = {r["level"]: r for r in csv.DictReader((out / "findings.csv").open())}
        assert rows[name]["pfirrmann_grade"] == "1" and "dr.window" in rows[name]["readers"]


def test_a_second_writer_waits_and_is_told_who_holds_the_folder(assessed, tmp_path, monkeypatch):
    import threading

    from SpineAssistLib.export import outdir, outputs

    out = tmp_path / "out"
    real_sr, told = outputs._sr, []

    def slow_sr(result, path):
        import time
        time.sleep(1.0)
        return real_sr(result, path)

    monkeypatch.setattr(outputs, "_sr", slow_sr)
    first = threading.Thread(target=outputs.write_outputs, args=(assessed[0].result, out), kwargs={"parallel": False})
    first.start()
    import time
    time.sleep(0.3)
    with pytest.raises(outdir.OutDirError, match="being written by process"):
        outputs.write_outputs(assessed[0].result, out, lock_wait_s=0)
    outputs.write_outputs(assessed[0].result, out, lock_wait_s=30, on_wait=told.append)
    first.join(30)
    assert len(told) == 1 and "waiting for" in told[0]
    assert sorted(p.name for p in out.iterdir()) == sorted(outputs.OUTPUT_FILES)
