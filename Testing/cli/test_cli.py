"""The `spineassist` command: help, version, and the exit status contract for user errors."""

import json
import subprocess
import sys

import pytest

from SpineAssistLib import __version__
from SpineAssistLib.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "SpineAssistLib.cli", *args], capture_output=True, text=True, timeout=120)


def test_version_and_help_from_a_real_process():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"spineassist {__version__}"
    r = run_cli("--help")
    assert r.returncode == 0
    assert "not validated for clinical use" in r.stdout
    assert "schema" in r.stdout


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: spineassist" in capsys.readouterr().out


def test_schema_command_validates_files(tmp_path, capsys):
    from SpineAssistLib.findings import Assessment, Level, PfirrmannGrade

    good = Level("L4-L5")
    good.pfirrmann.model = PfirrmannGrade(2)
    path = Assessment("1.2", [good]).save(tmp_path / "findings.json")
    assert main(["schema", str(path)]) == 0
    assert "valid spineassist.findings/2, 1 levels" in capsys.readouterr().out

    data = json.loads(path.read_text())
    data["levels"][0]["ldh"]["msu_zone"] = "D"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert main(["schema", str(bad)]) == 2
    assert "INVALID" in capsys.readouterr().out


def test_missing_file_is_a_clear_error_without_traceback(tmp_path):
    r = run_cli("schema", str(tmp_path / "nope.json"))
    assert r.returncode == 2
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("module", ["SpineAssistLib.findings", "SpineAssistLib.cli", "SpineAssistLib.mrml",
                                    "SpineAssistLib.anatomy", "SpineAssistLib.ui.widget"])
def test_library_imports_no_heavy_package_at_import_time(module):
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'ultralytics', 'monai', 'slicer', 'qt') if m in sys.modules];"
            "print(','.join(heavy))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
