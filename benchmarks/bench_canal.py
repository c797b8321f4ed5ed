"""The canal U-Net and the canal AP measurement on SPIDER's held-out real patients
(``training.canal_eval``): canal Dice, and the AP diameter at each lumbar disc from the model's mask
against the manual mask's, with the Verbiest grade. Needs the SPIDER folder (not in the repository):
``--spider DIR`` or ``SPINEASSIST_SPIDER_DIR``; without it the section is left as it is.

    python -m benchmarks.run canal
    python -m benchmarks.bench_canal --spider Data/t2_SPACE --store     # also into the manifest entry
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmarks.results import machine, write_section

TITLE = "Central canal (SPIDER held-out patients)"


def main(argv: list[str] | None = None) -> int:
    from SpineAssistLib.training.canal_eval import (
        evaluate_canal,
        markdown_table,
        store_canal_in_manifest,
    )

    ap = argparse.ArgumentParser()
    ap.add_argument("--spider", type=Path, default=os.environ.get("SPINEASSIST_SPIDER_DIR"))
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--store", action="store_true", help="write the summary into sag_canal_unet's manifest entry")
    a = ap.parse_args(argv)
    if a.spider is None or not Path(a.spider).is_dir():
        print("   skipped: no SPIDER folder (--spider DIR or SPINEASSIST_SPIDER_DIR)")
        return 0
    report = evaluate_canal(a.spider, n_boot=a.bootstrap, progress=lambda m: print("  ", m, flush=True))
    body = ("`sag_canal_unet` on each slice of the 12 held-out SPIDER patients (never trained on, never used to "
            "choose a setting), scored by `training.canal_eval` (`python -m benchmarks.bench_canal`). Canal Dice is "
            "per patient; the AP diameter is measured by `grading.canal` at each lumbar disc of the canal's "
            "mid-sagittal slice (where the manual canal is largest) on the model's mask and on the manual mask, from "
            "the same disc corners (from the manual masks), so the difference is the segmentation's. Bias and errors: model - manual. Intervals: 95 % bootstrap "
            "over patients. The PNG mirror's pixel spacing is estimated per patient (37 mm per lumbar segment): "
            "the millimetres are approximate, alike in both masks. Machine: " + machine() + ".\n\n"
            + markdown_table(report))
    write_section(TITLE, body)
    if a.store:
        store_canal_in_manifest(report)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
