"""A study folder to written outputs (pipeline.run): reruns keep the reader's corrections, a relative
output folder, no scipy import, and the terminal's findings table.

The oracle models answer from the phantom's ground truth (Testing/support/oracle_models.py; fixtures
``study_dir`` and ``assessed`` in Testing/conftest.py), so these tests check the pipeline's own work,
not model accuracy.
"""

import shutil
import subprocess
import sys

from support.oracle_models import oracle_for as _oracle

from SpineAssistLib.findings import Assessment, PfirrmannGrade
from SpineAssistLib.pipeline.run import run_assessment


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


def test_relative_output_folder_works(assessed, study_dir, tmp_path, monkeypatch):
    # `make demo` passes a relative --out; Slicer's bundle writer needs absolute paths
    monkeypatch.chdir(tmp_path)
    done = run_assessment(study_dir, "relative-out", models=_oracle(study_dir))
    assert (tmp_path / "relative-out" / "scene.mrb").is_file()
    assert "scene.mrb" in done.written.files


def test_an_assessment_with_the_bundled_models_does_not_import_scipy(study_dir, tmp_path, repo_root):
    """scipy.ndimage is a large share of a fresh `spineassist assess` (each of Slicer's runs): the pipeline's
    mask steps use OpenCV's equivalents (``models.imaging``), so a whole run, outputs included,
    never imports it."""
    code = ("import sys; from SpineAssistLib.pipeline.run import run_assessment; "
            f"done = run_assessment({str(study_dir)!r}, {str(tmp_path / 'out')!r}, device='cpu', parallel_outputs=False); "
            "print(len(done.result.assessment.levels), sorted(done.written.files) == sorted(__import__('SpineAssistLib.export.outputs').export.outputs.OUTPUT_FILES), 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    levels, complete, scipy = out.stdout.split()[-3:]
    assert int(levels) >= 5 and complete == "True" and scipy == "False", out.stdout


def test_findings_table_marks_uncertain_levels():
    from SpineAssistLib.findings import Level
    from SpineAssistLib.pipeline.run import findings_table

    table = findings_table(Assessment("1.2", levels=[Level("L4-L5", confidence=0.9), Level("L5-S1", confidence=0.1)]))
    rows = table.splitlines()[2:]
    assert rows[0].startswith("L4-L5 ") and rows[1].startswith("L5-S1? ")


def test_findings_table_adds_the_sagittal_findings_only_when_graded():
    from support import export_case

    from SpineAssistLib.findings import Level
    from SpineAssistLib.pipeline.run import findings_table

    assert "Modic" not in findings_table(Assessment("1.2", levels=[Level("L4-L5")]))   # none graded: one table
    first, second = findings_table(export_case.assessment()).split("\n\n")
    assert first.splitlines()[0].startswith("level   herniation (MSU)")                # the first table as it was
    assert second.splitlines()[0].split() == ["level", "Modic", "upper", "EP", "lower", "EP", "narrowing", "bulging",
                                              "herniation", "canal", "AP"]
    l34, l45, l5s1 = second.splitlines()[2:]
    assert l45.split() == ["L4-L5", "Modic", "1", "*", "yes", "no", "yes", "no", "*", "yes", "9.2", "mm,", "relative",
                           "stenosis", "*"]
    assert l34.split() == ["L3-L4"] + ["n/a"] * 7
    assert l5s1.split()[6] == "yes"          # the herniation the sagittal series showed where no axial slice was
