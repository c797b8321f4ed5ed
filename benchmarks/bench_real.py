"""The shipped sagittal pipeline on SPIDER's held-out real patients, stored as the scanner stored them
and as other acquisitions would (``training.real_eval.variant_case``): flipped, thick-sliced,
off-centre. Needs the SPIDER folder (not in the repository): ``--spider DIR`` or
``SPINEASSIST_SPIDER_DIR``; without it the section is left as it is.

    python -m benchmarks.run real
    python -m benchmarks.bench_real --spider Data/t2_SPACE --gradings radiological_gradings.csv
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmarks.results import machine, write_section

KEYS = (("disc Dice", "disc_dice"), ("discs named right", "discs_named_right"),
        ("Pfirrmann exact", "pfirrmann_exact"), ("Pfirrmann kappa", "pfirrmann_kappa"),
        ("listhesis specificity", "listhesis_specificity"))
# the sag_disc_grades findings as the pipeline reports them: (column, path in the summary)
GRADING_KEYS = (("upper endplate", ("disc_gradings", "endplate_upper", "balanced_accuracy")),
                ("lower endplate", ("disc_gradings", "endplate_lower", "balanced_accuracy")),
                ("narrowing", ("disc_gradings", "narrowing", "balanced_accuracy")),
                ("bulging", ("disc_gradings", "bulging", "balanced_accuracy")),
                ("Modic type accuracy", ("disc_gradings", "modic", "type_accuracy")))


def main(argv: list[str] | None = None) -> int:
    from SpineAssistLib.training.real_eval import VARIANTS, evaluate_real, format_ci

    ap = argparse.ArgumentParser()
    ap.add_argument("--spider", type=Path, default=os.environ.get("SPINEASSIST_SPIDER_DIR"))
    ap.add_argument("--gradings", type=Path, default=None)
    ap.add_argument("--bootstrap", type=int, default=500)
    a = ap.parse_args(argv)
    if a.spider is None or not Path(a.spider).is_dir():
        print("   skipped: no SPIDER folder (--spider DIR or SPINEASSIST_SPIDER_DIR)")
        return 0
    from SpineAssistLib.errors import SpineAssistError
    from SpineAssistLib.training.spider import find_gradings

    try:
        gradings = find_gradings(a.spider, a.gradings)
    except SpineAssistError as e:
        print(f"   skipped: {e}")
        return 0
    rows = ["| stored as | " + " | ".join(k for k, _ in KEYS) + " | patients all named | flagged for review | "
            "s per patient |", "|---|" + "---|" * (len(KEYS) + 3)]
    graded = ["| stored as | " + " | ".join(k for k, _ in GRADING_KEYS) + " |", "|---|" + "---|" * len(GRADING_KEYS)]
    for variant in VARIANTS:
        r = evaluate_real(a.spider, gradings, n_boot=a.bootstrap, variant=variant)
        s = r["summary"]
        cells = [format_ci(s[key]) for _, key in KEYS]
        rows.append(f"| {variant} | " + " | ".join(cells) + f" | {s['patients_all_named']} of {s['patients']} | "
                    f"{s['patients_flagged_for_review']} | {r['seconds_per_patient']} |")
        cells = []
        for _, path in GRADING_KEYS:
            m = s
            for k in path:
                m = m[k]
            cells.append(format_ci(m))
        graded.append(f"| {variant} | " + " | ".join(cells) + " |")
    body = (f"The 12 held-out SPIDER patients ({', '.join(r['patients'])}), scored as `spineassist evaluate --real "
            "--variant V` scores them (value and 95 % interval, patients resampled). flipped: anterior on the image "
            "right and the slices reversed; thick: every fourth slice at 4x the slice distance; off-centre: the "
            "mid-line two slices from the stack's edge. Machine: " + machine() + ".\n\n" + "\n".join(rows)
            + "\n\nThe disc gradings of `sag_disc_grades` as the pipeline reports them (window on the pipeline's own "
            "disc; lumbar discs found and named right; balanced accuracy, target >= 0.80, and the Modic type accuracy, "
            "target >= 0.85):\n\n" + "\n".join(graded))
    write_section("Real MRI (SPIDER held-out patients) as other acquisitions store it", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
