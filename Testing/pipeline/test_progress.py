"""Progress reaches 1 in order, and cancelling leaves no output (pipeline.progress).

The oracle models answer from the phantom's ground truth (Testing/support/oracle_models.py; fixtures
``study_dir`` and ``assessed`` in Testing/conftest.py), so these tests check the pipeline's own work,
not model accuracy.
"""

import pytest
from support.oracle_models import oracle_for as _oracle

from SpineAssistLib.errors import Cancelled
from SpineAssistLib.pipeline.progress import CancelToken
from SpineAssistLib.pipeline.run import run_assessment


def test_progress_reaches_one_in_order(assessed):
    _, _, events = assessed
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"loading", "sagittal models", "levels", "axial models", "outputs"} <= {e.stage for e in events}


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
