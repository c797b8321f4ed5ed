"""The batch tests' folder tree, written once per session."""

import pytest

from support.batch_archive import write_archive


@pytest.fixture(scope="session")
def archive(study_dir, tmp_path_factory):
    """Three phantom studies in a folder tree, and one folder holding a single MR image of no spine."""
    return write_archive(tmp_path_factory.mktemp("archive"), study_dir)
