"""Which requirements are missing, compared with what is installed; torch is left to the PyTorch extension."""

from __future__ import annotations

import sys

import pytest

from SpineAssistLib.ui.dependencies import (install_command, missing_requirements, read_requirements, requirements_path,
                                         split_torch)

REQS = """# pinned
torch==2.14.1
torchvision==0.29.1
ultralytics==8.4.190
SimpleITK==2.5.7
pylibjpeg-libjpeg==2.5.0   # comment after a pin
numpy
scipy>=1.10
"""


def fake_versions(**installed):
    def version_of(name):
        return installed.get(name.lower().replace("-", "_"))
    return version_of


def test_missing_lists_absent_and_wrong_pins_and_accepts_any_torch(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text(REQS)
    version_of = fake_versions(torch="2.5.1+cu121", simpleitk="2.5.7", pylibjpeg_libjpeg="2.4.0", numpy="2.1.0",
                               scipy="1.9.3")
    assert missing_requirements(path, version_of) == [
        "torchvision==0.29.1", "ultralytics==8.4.190", "pylibjpeg-libjpeg==2.5.0", "scipy>=1.10"]
    everything = fake_versions(torch="2.14.1", torchvision="0.29.1", ultralytics="8.4.190", simpleitk="2.5.7",
                               pylibjpeg_libjpeg="2.5.0", numpy="1.0", scipy="1.10.0")
    assert missing_requirements(path, everything) == []


def test_torch_goes_to_the_pytorch_extension_and_the_rest_to_pip():
    torch, other = split_torch(["torchvision==0.29.1", "ultralytics==8.4.190", "torch==2.14.1"])
    assert torch == ["torchvision==0.29.1", "torch==2.14.1"] and other == ["ultralytics==8.4.190"]
    assert install_command(["torch==2.14.1", "monai==1.6.1"], python="/py") == ["/py", "-m", "pip", "install",
                                                                               "monai==1.6.1"]
    assert install_command(["torch==2.14.1"]) == []
    assert install_command(["monai"])[0] == sys.executable


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("numpy\nthis is not a requirement\n")
    with pytest.raises(ValueError, match=r"requirements.txt:2: cannot read requirement"):
        read_requirements(path)


def test_the_bundled_requirements_parse_and_this_environment_has_them_but_torch_versions():
    reqs = read_requirements(requirements_path())
    assert {"torch", "ultralytics", "monai", "pydicom", "highdicom"} <= {r.name for r in reqs}
    assert all(isinstance(r, str) for r in missing_requirements())
