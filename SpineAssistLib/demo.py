"""``make demo``: make a synthetic lumbar study, assess it with the bundled models, write every output,
and print the per-level findings next to the phantom's truth.

    python -m SpineAssistLib.demo --out demo-output [--seed 7] [--device auto]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from .errors import SpineAssistError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m SpineAssistLib.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--seed", type=int, default=7, help="phantom seed (default 7)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    args = parser.parse_args(argv)

    from .findings import Assessment
    from .outputs import WriterProcesses
    from .phantom import generate_study, sample_params, write_study
    from .pipeline import findings_table, run_assessment
    from .progress import text_printer

    study_dir = args.out / "study"
    assessment_dir = args.out / "assessment"
    print(f"SpineAssist demo: synthetic lumbar MRI study, seed {args.seed} (not a patient)")
    # the writer processes start first: they import their libraries while the study is made
    with WriterProcesses.start() or contextlib.nullcontext() as writers:
        t0 = time.perf_counter()
        params = sample_params(args.seed)
        write_study(generate_study(args.seed, params), study_dir)
        print(f"  study written in {time.perf_counter() - t0:.1f} s: {study_dir}/DICOM (sagittal + axial T2), "
              f"truth in {study_dir}/truth")
        try:
            done = run_assessment(study_dir, assessment_dir, device=args.device, progress=text_printer(sys.stderr),
                                  writers=writers)
        except SpineAssistError as e:
            print(f"spineassist demo: error: {e}", file=sys.stderr)
            return 2
    truth = Assessment.load(study_dir / "truth.json")
    print()
    print(findings_table(done.result.assessment, truth))
    print()
    print(done.summary().split("\n\n", 1)[1])
    print()
    print(f"Open {assessment_dir / 'report.html'} in a browser, or load {assessment_dir / 'scene.mrb'} in 3D Slicer.")
    print("Research software: the models were trained on synthetic data only and are not validated on patients.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
