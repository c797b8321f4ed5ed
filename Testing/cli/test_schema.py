"""`spineassist schema --check`: schema, value rules, and values in force that disagree with model and reader."""

import json

import pytest
from support.cli import run_cli

from SpineAssistLib.cli import main
from SpineAssistLib.findings import Assessment, Level, PfirrmannGrade


@pytest.fixture
def saved(tmp_path):
    lv = Level("L4-L5")
    lv.pfirrmann.model = PfirrmannGrade(3)
    return Assessment("2.25.1", [lv]).save(tmp_path / "findings.json")


def _set_grade(path, grade):
    data = json.loads(path.read_text(encoding="utf-8"))
    data["levels"][0]["pfirrmann"]["grade"] = grade
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_consistent_file_exits_0(saved, capsys):
    assert main(["schema", "--check", str(saved)]) == 0
    assert capsys.readouterr().out == f"{saved}: valid spineassist.findings/2, 1 levels\n"


def test_edited_value_in_force_is_reported_with_model_and_reader_values_and_exits_2(saved, capsys):
    _set_grade(saved, 4)
    assert main(["schema", "--check", str(saved)]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{saved}: L4-L5 pfirrmann: value in force Pfirrmann IV, model Pfirrmann III, reader not set"
    assert lines[1].startswith(f"{saved}: INCONSISTENT: 1 value in force disagrees with the model and reader values")
    assert len(lines) == 2
    assert Assessment.load(saved).level("L4-L5").pfirrmann.reader == PfirrmannGrade(4)   # the check wrote nothing back


def test_files_given_plainly_are_checked_too(saved, capsys):
    _set_grade(saved, 4)
    assert main(["schema", str(saved)]) == 2
    assert "INCONSISTENT" in capsys.readouterr().out


def test_invalid_value_in_force_names_level_and_allowed_values(saved, capsys):
    _set_grade(saved, 7)
    assert main(["schema", "--check", str(saved)]) == 2
    [line] = capsys.readouterr().out.splitlines()
    assert line == (f"{saved}: INVALID: findings.json is invalid at levels/0/pfirrmann/grade (level L4-L5): "
                    f"must be one of null, 1, 2, 3, 4, 5")


@pytest.mark.parametrize("content, says", [
    ("[]", "INVALID: findings.json is invalid at (top level): must be an object"),
    ("null", "INVALID: findings.json is invalid at (top level): must be an object"),
    ("{not json", "INVALID: not a JSON file"),
])
def test_malformed_files_exit_2_with_one_line(tmp_path, content, says, capsys):
    path = tmp_path / "findings.json"
    path.write_text(content)
    assert main(["schema", "--check", str(path)]) == 2
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{path}: {says}")


def test_levels_as_a_string_exits_2_without_repeating_the_string(saved, capsys):
    data = json.loads(saved.read_text(encoding="utf-8"))
    data["levels"] = "Jane Doe"
    saved.write_text(json.dumps(data))
    assert main(["schema", "--check", str(saved)]) == 2
    [line] = capsys.readouterr().out.splitlines()
    assert line == f"{saved}: INVALID: findings.json is invalid at levels: must be a list"


def test_a_folder_exits_2_and_points_at_its_findings_json(saved, capsys):
    assert main(["schema", "--check", str(saved.parent)]) == 2
    [line] = capsys.readouterr().out.splitlines()
    assert line == f"{saved.parent}: INVALID: a folder, not a findings file; check {saved}"


def test_malformed_file_from_a_real_process_has_no_traceback(tmp_path):
    (tmp_path / "findings.json").write_text("[]")
    r = run_cli("schema", "--check", str(tmp_path / "findings.json"))
    assert r.returncode == 2
    assert r.stdout.count("\n") == 1 and "INVALID" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
