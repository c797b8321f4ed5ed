"""``spineassist evaluate`` (training.evaluate) scores what the pipeline returns: with oracle models, every grade is right."""

import numpy as np
from support.oracle_models import oracle_models
from support.pipeline_study import SEED

from SpineAssistLib.dicom.stacks import load_stacks


def test_evaluation_scores_what_the_pipeline_returns(study_dir):
    """``spineassist evaluate`` runs ``pipeline.assess`` on each phantom's arrays: with perfect (oracle)
    models every truth level is named right and every grade equals the truth."""
    from SpineAssistLib.training.evaluate import _new_acc, _pipeline_summary, evaluate_pipeline, study_stacks
    from SpineAssistLib.training.phantom_cache import render_phantom

    st = render_phantom(SEED, {"slip_percent": {"L4-L5": 22.0}, "pfirrmann": {"L4-L5": 4, "L2-L3": 1}})
    sagittal, axial = study_stacks(st)
    loaded = load_stacks(study_dir)
    assert np.allclose(sagittal.affine, loaded.sagittal.affine, atol=1e-4)   # the DICOM series' geometry (DS rounding)
    assert len(axial) == len(loaded.axial)
    assert all(np.allclose(a.affine, b.affine, atol=1e-4) for a, b in zip(axial, loaded.axial))
    # the oracle looks its keypoints up by SOP Instance UID: lend the arrays the series' headers
    sagittal.datasets = loaded.sagittal.datasets
    for a, b in zip(axial, loaded.axial):
        a.datasets = b.datasets
    acc = _new_acc()
    evaluate_pipeline(oracle_models(study_dir, [sagittal, *axial]), st, acc, (sagittal, axial))
    s = _pipeline_summary(acc, n_boot=20)
    assert s["levels_named_right"]["value"] == 1.0 and s["studies_stopped"] == 0
    assert s["pfirrmann_accuracy"]["value"] == 1.0 and s["meyerding_accuracy"]["value"] == 1.0
    assert acc["pipe_hern_true"] == acc["pipe_hern_pred"] and not s["msu_graded_without_axial_slice"]
