"""``spineassist assess`` with the bundled models: JSON progress, several studies in one command, a wrong weights file."""

import json
import shutil

from support.cli import run_cli as _cli

from SpineAssistLib.export.outputs import OUTPUT_FILES
from SpineAssistLib.findings import Assessment


def test_assess_command_with_the_bundled_models_and_json_progress(study_dir, tmp_path):
    r = _cli("assess", str(study_dir), "--out", str(tmp_path / "out"), "--device", "cpu", "--json-progress")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "progress" and events[-1]["event"] == "done"
    assert events[-1]["findings"] == str(tmp_path / "out" / "findings.json")
    a = Assessment.load(tmp_path / "out" / "findings.json")
    assert [m.name for m in a.models] == ["sag_disc_unet", "sag_vertebra_pose", "sag_disc_corners", "sag_pfirrmann_cls",
                                          "sag_disc_grades", "sag_canal_unet", "ax_disc_seg", "ax_disc_window_seg",
                                          "ax_msu_pose"]
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


def test_a_study_the_folder_does_not_hold_is_refused_before_the_models_run(study_dir, tmp_path):
    r = _cli("assess", str(study_dir), "--out", str(tmp_path / "out"), "--study", "2.25.999", "--json-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "no study with StudyInstanceUID 2.25.999" in r.stderr.strip().splitlines()[-1]
    assert not [e for e in r.stdout.splitlines() if '"sagittal models"' in e]
    assert not (tmp_path / "out").exists()
