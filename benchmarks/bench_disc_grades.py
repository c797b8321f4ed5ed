"""The bundled sag_disc_grades on SPIDER's held-out real patients: per grading accuracy, balanced
accuracy, AUC with 95 % patient-bootstrap intervals and confusion matrices (``training.disc_grades``),
for the series as stored and with every fourth slice kept (4 times the slice distance: the side
channels then come from the neighbouring slices). Needs the SPIDER folder (not in the repository):
``--spider DIR`` or ``SPINEASSIST_SPIDER_DIR``, and ``--gradings CSV`` where the gradings are not in
it; without them the section is left as it is.

    python -m benchmarks.run disc_grades
    python -m benchmarks.bench_disc_grades --spider Data/t2_SPACE --gradings radiological_gradings.csv
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmarks.results import machine, write_section

TITLE = "Disc gradings (sag_disc_grades, SPIDER held-out patients)"


def main(argv: list[str] | None = None) -> int:
    from SpineAssistLib.errors import SpineAssistError
    from SpineAssistLib.models.disc_grades import BINARY_GRADINGS
    from SpineAssistLib.training.disc_grades import LABELS, evaluate, markdown_table
    from SpineAssistLib.training.spider import find_gradings

    ap = argparse.ArgumentParser()
    ap.add_argument("--spider", type=Path, default=os.environ.get("SPINEASSIST_SPIDER_DIR"))
    ap.add_argument("--gradings", type=Path, default=os.environ.get("SPINEASSIST_SPIDER_GRADINGS"))
    ap.add_argument("--bootstrap", type=int, default=1000)
    a = ap.parse_args(argv)
    if a.spider is None or not Path(a.spider).is_dir():
        print("   skipped: no SPIDER folder (--spider DIR or SPINEASSIST_SPIDER_DIR)")
        return 0
    try:
        gradings = find_gradings(a.spider, a.gradings)
    except SpineAssistError as e:
        print(f"   skipped: {e}")
        return 0
    stored = evaluate(a.spider, gradings, n_boot=a.bootstrap)
    thick = evaluate(a.spider, gradings, n_boot=a.bootstrap, variant="thick")

    def cell(m):
        return "n/a" if m["value"] is None else f"{m['value']:.3f}"

    rows = ["| stored as | " + " | ".join(f"{LABELS[n]}: balanced accuracy / AUC" for n in BINARY_GRADINGS)
            + " | Modic type accuracy |", "|---|" + "---|" * (len(BINARY_GRADINGS) + 1)]
    for name, r in (("as-stored", stored), ("thick (every fourth slice)", thick)):
        s = r["summary"]
        rows.append(f"| {name} | " + " | ".join(f"{cell(s[n]['balanced_accuracy'])} / {cell(s[n]['auc'])}"
                                                for n in BINARY_GRADINGS)
                    + f" | {cell(s['modic']['accuracy'])} |")
    body = (f"Machine: {machine()}; `python -m SpineAssistLib.training.disc_grades evaluate` (the bundled weights "
            "run as the predictor runs them). As stored:\n\n" + markdown_table(stored) + "\nThe same discs with "
            "every fourth slice kept (the slice distance 4 times SPIDER's, as a 2D sequence's thick slices; no "
            "partial-volume blur added):\n\n" + "\n".join(rows) + "\n\nSee Resources/Models/MODEL_CARD.md "
            "(sag_disc_grades) for what these numbers mean and where the targets are missed.")
    write_section(TITLE, body)
    print(body)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
