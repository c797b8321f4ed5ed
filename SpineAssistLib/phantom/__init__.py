"""Synthetic lumbar spine MRI studies with ground truth: SpineAssist's test data and the source
of its bundled models' training data. Deterministic from a seed.

One file per idea: ``params`` (every settable choice, drawn from the seed with clinical
prevalences), ``spine`` (vertebrae, discs, spinal curve), ``tissues`` (T2 signal and labels of
any point), ``canal`` (the canal's AP diameter at a disc, and a stenosis drawn to a diameter),
``acquisition`` (slice planes, partial volume, k-space, noise, coil), ``truth`` (keypoints and
grades), ``dicom`` (MR Image Storage files), ``study`` (the whole study in memory and on disk).

Usage::

    from SpineAssistLib.phantom import generate_study, sample_params, write_study
    study = generate_study(3, sample_params(3, pfirrmann={"L4-L5": 4}))
    write_study(study, "phantom-3")
"""

from SpineAssistLib.phantom.params import PhantomParams, sample_params
from SpineAssistLib.phantom.study import PhantomStudy, generate_study, write_study

__all__ = ["PhantomParams", "PhantomStudy", "generate_study", "sample_params", "write_study"]
