"""``spineassist data``: import real labelled scans into the training sets of the sagittal models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import SpineAssistError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="import real labelled scans (SPIDER) into the sagittal models' training sets",
                       description="Read SPIDER (the original .mha layout, or the PNG-slice mirror) and add its "
                       "patients to the training sets of the sagittal models under --out: disc masks (U-Net), "
                       "vertebra boxes and corners (pose), the corners around each disc (disc-corner windows) and "
                       "Pfirrmann crops with the radiologists' grades. Levels are counted up from the most caudal "
                       "disc (L5-S1). The held-out test patients (" + ", ".join(sorted(_held_out(), key=int)) +
                       ") are never written. Train with `spineassist train NAME --data OUT`.")
    dsub = p.add_subparsers(dest="source", metavar="SOURCE")
    s = dsub.add_parser("spider", help="a SPIDER folder: images/ + masks/ (.mha or PNG slices)")
    s.add_argument("root", type=Path, help="folder holding images/ and masks/")
    s.add_argument("--gradings", type=Path, default=None,
                   help="radiological_gradings.csv (default: the first one found under ROOT)")
    s.add_argument("--out", type=Path, required=True, help="training-set folder (sets there grow)")
    s.add_argument("--models", nargs="+", default=None, help="sagittal models to build sets for (default: all four)")
    s.add_argument("--copies", type=int, default=2, help="augmented copies of each training image (default 2)")
    s.add_argument("--val-patients", type=int, default=4, help="patients kept for validation (default 4)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _held_out() -> frozenset[str]:
    from ..training.spider import HELD_OUT_PATIENTS

    return HELD_OUT_PATIENTS


def run(args: argparse.Namespace) -> int:
    from ..training.spider import SAGITTAL_MODELS, build_real_sets, read_gradings

    if not args.root.is_dir():
        raise SpineAssistError(f"{args.root} is not a folder; give the folder that holds images/ and masks/")
    if args.copies < 1:
        raise SpineAssistError(f"--copies must be 1 or more; got {args.copies}")
    csv_path = args.gradings or next(iter(sorted(args.root.glob("**/radiological_gradings.csv"))), None)
    if csv_path is None:
        raise SpineAssistError(f"no radiological_gradings.csv under {args.root}; pass --gradings CSV "
                               "(without grades no Pfirrmann crops can be labelled)")
    gradings = read_gradings(csv_path)
    done = build_real_sets(args.root, args.out, gradings, args.models or SAGITTAL_MODELS, copies=args.copies,
                           val_patients=args.val_patients, seed=args.seed, progress=lambda m: print(m, flush=True))
    record = {"source": "SPIDER (van der Graaf et al., Sci Data 2024; CC BY 4.0)", "root": str(args.root),
              "gradings": str(csv_path), "copies": args.copies, "seed": args.seed, **done}
    (args.out / "spider.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    for m, c in done["models"].items():
        print(f"{m}: {c['train']} training and {c['val']} validation samples added under {c['path']}")
    print(f"patients: {len(done['patients']['train'])} training, {len(done['patients']['val'])} validation "
          f"({', '.join(done['patients']['val'])}); held-out test patients left out")
    return 0
