"""``spineassist export training OUT --dest DIR``: add a reviewed assessment to training sets."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a reviewed assessment (training data for `spineassist train`)",
                       description="Export what an assessment holds in another form. `export training OUT --dest "
                       "DIR` adds the case in OUT (its scene.mrb with the segmentation and keypoints as the reader "
                       "left them, and the grades in force in findings.json) to the YOLO and MONAI training sets "
                       "under DIR. Files carry a case pseudonym, never a name, ID or UID.")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    t = what.add_parser("training", help="add the case to training sets (sag_disc_unet, sag_pfirrmann_cls, "
                        "sag_vertebra_pose, ax_msu_pose)")
    t.add_argument("out", type=Path, help="the assessment folder (`spineassist assess ... --out OUT`)")
    t.add_argument("--dest", type=Path, required=True, help="the training-data folder; cases accumulate there")
    t.add_argument("--salt", default="", help="a project secret mixed into the case pseudonym (recommended)")
    t.add_argument("--case-id", default=None, help="name the case yourself (letters, digits, - and _)")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from SpineAssistLib.training.reader_cases import write_training_data

    result = write_training_data(args.out, args.dest, salt=args.salt, case_id=args.case_id)
    print(result.summary())
    print(f"train with: spineassist train NAME --data {args.dest}")
    return 0
