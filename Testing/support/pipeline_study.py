"""The phantom study the pipeline tests assess (fixtures ``study_dir`` and ``assessed`` in Testing/conftest.py):
seed 11 with an L4-L5 slip of 22 % (Meyerding I) and chosen Pfirrmann grades at L4-L5 and L2-L3."""

from __future__ import annotations

from pathlib import Path

SEED = 11


def write_pipeline_study(folder: Path) -> Path:
    """Write the study's DICOM files and truth into ``folder`` and return it."""
    from SpineAssistLib.phantom import generate_study, sample_params, write_study

    params = sample_params(SEED, slip_percent={"L4-L5": 22.0}, pfirrmann={"L4-L5": 4, "L2-L3": 1})
    return write_study(generate_study(SEED, params), folder)
