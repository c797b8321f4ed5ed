"""``make demo``: make a synthetic lumbar study, assess it with the bundled models, write every output,
and print the per-level findings next to the phantom's truth; then assess the bundled real scan (a
sagittal T2 lumbar MRI from the Spinal Cord Toolbox's tutorial data) and say what it found.

    python -m SpineAssistLib.cli.demo --out demo-output [--seed 7] [--device auto]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.findings import Assessment
from SpineAssistLib.pipeline.progress import text_printer
from SpineAssistLib.resources import resource_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m SpineAssistLib.cli.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--seed", type=int, default=7, help="phantom seed (default 7)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    args = parser.parse_args(argv)

    from SpineAssistLib.export.outputs import WriterProcesses
    from SpineAssistLib.phantom import generate_study, sample_params, write_study
    from SpineAssistLib.pipeline.run import findings_table, run_assessment

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
    print()
    real_scan(args.out / "real-scan", args.device)
    print()
    print("Research software: the sagittal models were trained on public real scans (SPIDER) and the synthetic "
          "phantom, the axial ones on the phantom only; not validated for clinical use.")
    return 0


def real_scan(out: Path, device: str) -> bool:
    """Assess the bundled real scan into ``out`` and print what came of it; return True if levels were named."""
    from SpineAssistLib.pipeline.run import findings_table, run_assessment
    study = resource_path("SampleData", "sct_t2_lumbar", "DICOM")
    print(f"SpineAssist demo, part 2: a real sagittal T2 MRI ({study}; Spinal Cord Toolbox tutorial data, MIT "
          "licence). Its field of view runs from the lower thoracic spine to the mid lumbar spine: the sacrum is "
          "not in it.")
    try:
        done = run_assessment(study, out, device=device, progress=text_printer(sys.stderr))
    except SpineAssistError as e:
        print(f"  no levels named: {e}")
        return False
    a = done.result.assessment
    print(findings_table(a))
    if a.needs_review:
        print("  needs review: " + "; ".join(a.review_reasons))
    print(f"  outputs in {out}")
    return True


if __name__ == "__main__":
    sys.exit(main())
