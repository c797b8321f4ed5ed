"""The folder tree the batch tests assess: three phantom studies and one folder that is no spine study."""

from __future__ import annotations

import shutil
from pathlib import Path

# the batch's output folder names for them
GOOD = ("siteA__case1", "siteA__case2", "siteB__case3")
BROKEN = "siteB__knee"


def write_archive(root: Path, study_dir: Path) -> Path:
    """Write the tree into ``root``: ``study_dir`` (the session's phantom) and phantoms of seeds 21 and
    22, and a folder holding one MR image of no spine (pydicom's MR_small)."""
    from pydicom.data import get_testdata_file

    from SpineAssistLib.phantom import generate_study, write_study

    shutil.copytree(study_dir, root / "siteA" / "case1")
    write_study(generate_study(21), root / "siteA" / "case2")
    write_study(generate_study(22), root / "siteB" / "case3")
    (root / "siteB" / "knee").mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), root / "siteB" / "knee" / "image.dcm")
    return root
