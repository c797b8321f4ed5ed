"""Which part of the external acquisition makes the Pfirrmann classifier over-grade.

The external test phantoms (``phantom_cache.EXTERNAL_OVERRIDES``) are re-rendered (sagittal
only) with one group of settings put back to the training generator's, and the bundled
classifier grades crops of the true disc masks on the mid-sagittal slice (the classifier alone,
as ``evaluate``'s diagnostic row). Extra noise and blur on the internal slices are scored too.

    python -m benchmarks.run pfirrmann_shift
    python -m benchmarks.bench_pfirrmann_shift --studies 6 --cache /tmp/sa-cache
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping

import numpy as np

from benchmarks.results import machine, write_section

GROUPS = {   # external settings put back to the internal generator's, one group at a time
    "all external settings": (),
    "internal tissue signals (fat, marrow, muscle)": ("tissue_signal",),
    "internal SNR and bias field": ("snr", "bias_strength", "bias_length_mm"),
    "no obliquity": ("sag_obliquity_deg",),
    "internal resolution (matrix, field of view, acquired fraction)": ("sag_matrix", "sag_fov_mm", "sag_acq_fraction"),
}


def grade_errors(classifier: Any, st: Mapping[str, Any], rng: np.random.Generator, noise: float = 0.0,
                 blur: float = 0.0) -> list[int]:
    """Return predicted minus true grade for each disc of the study's mid-sagittal slice (true-mask crops)."""
    from scipy import ndimage

    from SpineAssistLib.models.crops import disc_crop
    from SpineAssistLib.training.datasets import DISC_NAMES
    from SpineAssistLib.models.imaging import normalize_slice, to_uint8
    from SpineAssistLib.models.orientation import canonical_study

    st = canonical_study(st)
    mid = int(st["sag_mid"])
    grades = st["params"]["pfirrmann"]
    x = normalize_slice(st["sag_images"][mid])
    if blur:
        x = ndimage.gaussian_filter(x, blur)
    if noise:
        x = np.sqrt((x + rng.normal(0, noise, x.shape)) ** 2 + rng.normal(0, noise, x.shape) ** 2)
    if noise or blur:
        x = normalize_slice(x)
    out = []
    for value, level in DISC_NAMES.items():
        mask = st["sag_labels"][mid] == value
        if level in grades and mask.sum() >= 40:
            out.append(classifier.predict(to_uint8(disc_crop(x, mask))).top_class + 1 - int(grades[level]))
    return out


def _row(name: str, errors: list[int]) -> str:
    e = np.asarray(errors)
    return f"| {name} | {len(e)} | {np.mean(e == 0):.3f} | {np.mean(e):+.2f} | {np.mean(e > 0):.2f} | {np.mean(e < 0):.2f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=6, help="external test seeds 3000.. (default 6, as evaluate)")
    parser.add_argument("--cache", default=None, help="phantom render cache (default: phantom_cache's)")
    args = parser.parse_args(argv)
    from SpineAssistLib.models import load_model
    from SpineAssistLib.training.phantom_cache import EXTERNAL_OVERRIDES, load_phantom

    classifier = load_model("sag_pfirrmann_cls", device="cpu")
    seeds = range(3000, 3000 + args.studies)
    rng = np.random.default_rng(0)
    lines = [f"Machine: {machine()}. The bundled sag_pfirrmann_cls on crops of the true disc masks (mid-sagittal slice) "
             f"of {args.studies} external test phantoms (seeds {seeds[0]}-{seeds[-1]}), each re-rendered with one group "
             f"of the external settings put back to the training generator's; and of the same seeds' internal "
             f"phantoms with extra Rician noise or blur. Error = predicted - true grade.", "",
             "| phantoms | discs | accuracy | mean error | over-graded | under-graded |", "|---|---|---|---|---|---|"]
    for name, keys in GROUPS.items():
        overrides = {k: v for k, v in EXTERNAL_OVERRIDES.items() if k not in keys}
        errors = sum((grade_errors(classifier, load_phantom(s, overrides, args.cache, sagittal_only=True), rng)
                      for s in seeds), [])
        lines.append(_row(f"external: {name}", errors))
    internal = [load_phantom(s, None, args.cache, sagittal_only=True) for s in seeds]
    for name, noise, blur in (("internal", 0.0, 0.0), ("internal + noise (sigma 0.1 of the range)", 0.1, 0.0),
                              ("internal + blur (sigma 1 px)", 0.0, 1.0)):
        lines.append(_row(name, sum((grade_errors(classifier, st, rng, noise, blur) for st in internal), [])))
    lines += ["", "A group whose row is far better than \"all external settings\" is what the classifier is "
              "sensitive to; see Resources/Models/MODEL_CARD.md (sag_pfirrmann_cls)."]
    write_section("Pfirrmann classifier under acquisition shifts", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
