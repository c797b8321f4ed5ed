"""The bundled real scan (Spinal Cord Toolbox tutorial data ``t2_lumbar``, MIT licence): a sagittal T2
whose field of view runs from the lower thoracic to the mid lumbar spine, with no sacrum in it.

Its six discs were marked by hand on the middle slice (row, column of each disc's centre, 1 mm
pixels, rows head to feet, columns front to back). The levels cannot be counted from the sacrum,
so the disc names are not known: SpineAssist must find the discs and must not hand out lumbar
names as if they were sure."""

from __future__ import annotations

import numpy as np
import pytest

from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.resources import resource_path

DISC_MARKS = [(13, 165), (38, 162), (67, 160), (98, 152), (132, 150), (163, 145)]
MARKED_SLICE = 12           # of 24, left to right
FOUND_MM = 6.0


@pytest.fixture(scope="module")
def sample():
    from SpineAssistLib.pipeline.assess import SAGITTAL_MODELS, ModelSet
    from SpineAssistLib.dicom.stacks import load_stacks

    loaded = load_stacks(resource_path("SampleData", "sct_t2_lumbar", "DICOM"))
    return loaded, ModelSet.load(SAGITTAL_MODELS, device="cpu")


def test_the_sample_is_a_real_sagittal_t2_without_axial_series(sample):
    loaded, _ = sample
    assert loaded.sagittal.voxels.shape == (24, 201, 257)
    assert loaded.axial == []
    assert np.allclose(np.linalg.norm(loaded.sagittal.affine[:3, :3], axis=0), 1.0)     # 1 mm isotropic


def test_every_hand_marked_disc_is_segmented(sample):
    from SpineAssistLib.pipeline.assess import STAGES, _segment_disc_slices
    from SpineAssistLib.pipeline.progress import StageReporter

    loaded, models = sample
    masks = _segment_disc_slices(models["sag_disc_unet"], loaded.sagittal, StageReporter(STAGES))
    near = masks[MARKED_SLICE - 2:MARKED_SLICE + 3].any(axis=0)
    rows, cols = np.nonzero(near)
    for r, c in DISC_MARKS:
        assert np.hypot(rows - r, cols - c).min() <= FOUND_MM, f"no disc segmented near row {r}, column {c}"


def test_levels_are_not_named_as_if_the_sacrum_were_seen(sample):
    from SpineAssistLib.pipeline.assess import assess

    loaded, models = sample
    try:
        result = assess(loaded.sagittal, loaded.axial, study_instance_uid="sct", models=models)
    except SpineAssistError as e:           # refusing to name levels is safe too, with a reason
        assert "sacrum" in str(e)
        return
    a = result.assessment
    assert a.needs_review
    assert any("sacrum" in r or "low confidence" in r for r in a.review_reasons)
    assert all(lv.confidence is not None and lv.confidence < 0.5 for lv in a.levels)
