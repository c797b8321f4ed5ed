"""``spineassist phantom OUT --seed N [--count K]``: write synthetic lumbar MRI studies with truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from SpineAssistLib.errors import SpineAssistError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantom", help="write synthetic lumbar MRI studies (DICOM) with ground truth",
                       description="Write a synthetic lumbar spine MRI study (sagittal and axial T2 DICOM "
                       "series) with its ground truth (truth.json in the findings schema, label maps, keypoints). "
                       "The same seed always writes the same bytes. With --count K, write OUT/case-0000 ... "
                       "for seeds N .. N+K-1.")
    p.add_argument("out", type=Path, help="output folder (a study folder, or the parent of case-NNNN folders)")
    p.add_argument("--seed", type=int, default=0, help="seed of the (first) study, >= 0 (default 0)")
    p.add_argument("--count", type=int, default=None, help="write K studies into OUT/case-0000 ... (default: one study in OUT)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from SpineAssistLib.phantom import generate_study, write_study

    if args.seed < 0:
        raise SpineAssistError(f"--seed must be 0 or more; got {args.seed}")
    if args.count is not None and args.count < 1:
        raise SpineAssistError(f"--count must be 1 or more; got {args.count}")
    if args.out.exists() and not args.out.is_dir():
        raise SpineAssistError(f"{args.out} exists and is not a folder; choose another output folder")
    jobs = [(args.seed, args.out)] if args.count is None else [
        (args.seed + k, args.out / f"case-{k:04d}") for k in range(args.count)]
    for seed, out in jobs:
        study = generate_study(seed)
        write_study(study, out)
        levels = ", ".join(f"{lv.name}: {_summary(lv)}" for lv in study.truth.levels if lv.name != "T12-L1")
        print(f"{out}: seed {seed}, {len(study.sagittal.slices)} sagittal + {len(study.axial.slices)} axial slices; {levels}")
        sys.stdout.flush()
    return 0


def _summary(level) -> str:
    parts = [level.pfirrmann.value.label.replace("Pfirrmann ", "P")]
    if level.ldh.value is not None and (level.ldh.value.size or level.ldh.value.bulge):
        parts.append(f"MSU {level.ldh.value.label}")
    if level.listhesis.value is not None and level.listhesis.value.grade:
        parts.append(level.listhesis.value.label)
    return " ".join(parts)
