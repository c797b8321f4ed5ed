"""Fixtures of the model tests."""

import pytest


@pytest.fixture(scope="package")
def phantom_slices():
    """One sagittal slice and one axial block of training phantom 11, shared by the tests of the shipped models."""
    from SpineAssistLib.training.phantom_cache import render_training_phantom

    return render_training_phantom(11, sag_slices=1, ax_blocks=1, extra_block=False)
