"""``spineassist data``: import real labelled scans into the training sets of the sagittal models."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from SpineAssistLib.errors import SpineAssistError


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
    s.add_argument("--models", nargs="+", default=None, help="sagittal models to build sets for (default: the four "
                   "the pipeline runs; the canal U-Net, sag_canal_unet, when named)")
    s.add_argument("--copies", type=int, default=2, help="augmented copies of each training image (default 2)")
    s.add_argument("--val-patients", type=int, default=4, help="patients kept for validation (default 4)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run)
    ph = dsub.add_parser("phantom", help="sagittal-only phantom studies into the sagittal models' training sets")
    ph.add_argument("--out", type=Path, required=True, help="training-set folder (sets there grow)")
    ph.add_argument("--sagittal-phantoms", type=int, default=16, help="sagittal-only phantoms (default 16)")
    ph.add_argument("--sagittal-first-seed", type=int, default=5000, help="first phantom seed (default 5000)")
    ph.add_argument("--models", nargs="+", default=None, help="sagittal models to build sets for (default: all four)")
    ph.add_argument("--copies", type=int, default=2, help="augmented copies of each training image (default 2)")
    ph.add_argument("--synthetic-contrast", type=float, default=0.5,
                    help="share of training copies whose structures get random brightness, SynthSeg-style, for "
                    "every sagittal model but the Pfirrmann classifier (default 0.5; 0: the phantom's own contrast)")
    ph.add_argument("--pfirrmann-brightness", type=float, nargs=2, default=(0.7, 1.3), metavar=("LOW", "HIGH"),
                    help="the Pfirrmann crops' random brightness factor range (default 0.7 1.3)")
    ph.add_argument("--cache", type=Path, default=None, help="phantom render cache (default OUT/../phantom-cache)")
    ph.add_argument("--seed", type=int, default=0)
    ph.set_defaults(func=run_phantom)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _record_step(out: Path, args: argparse.Namespace, what: dict) -> None:
    """Append this command and what it wrote to OUT/recipe.json: how the sets were made, which a
    training run records beside its weights."""
    path = out / "recipe.json"
    steps = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    given = list(getattr(args, "argv", None) or [])
    steps.append({"command": "spineassist " + shlex.join(given) if given else "", **what})
    path.write_text(json.dumps(steps, indent=1) + "\n", encoding="utf-8")


def _held_out() -> frozenset[str]:
    from SpineAssistLib.training.spider import HELD_OUT_PATIENTS

    return HELD_OUT_PATIENTS


def run(args: argparse.Namespace) -> int:
    from SpineAssistLib.training.spider import SAGITTAL_MODELS, build_real_sets, find_gradings, read_gradings

    if not args.root.is_dir():
        raise SpineAssistError(f"{args.root} is not a folder; give the folder that holds images/ and masks/")
    if args.copies < 1:
        raise SpineAssistError(f"--copies must be 1 or more; got {args.copies}")
    csv_path = find_gradings(args.root, args.gradings)
    gradings = read_gradings(csv_path)
    done = build_real_sets(args.root, args.out, gradings, args.models or SAGITTAL_MODELS, copies=args.copies,
                           val_patients=args.val_patients, seed=args.seed, progress=lambda m: print(m, flush=True))
    record = {"source": "SPIDER (van der Graaf et al., Sci Data 2024; CC BY 4.0)", "root": str(args.root),
              "gradings": str(csv_path), "copies": args.copies, "seed": args.seed, **done}
    (args.out / "spider.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    _record_step(args.out, args, {"source": record["source"], "patients": done["patients"],
                                  "held_out_left_out": sorted(_held_out(), key=int)})
    for m, c in done["models"].items():
        print(f"{m}: {c['train']} training and {c['val']} validation samples added under {c['path']}")
    print(f"patients: {len(done['patients']['train'])} training, {len(done['patients']['val'])} validation "
          f"({', '.join(done['patients']['val'])}); held-out test patients left out")
    return 0


def run_phantom(args: argparse.Namespace) -> int:
    from SpineAssistLib.training.datasets import build_from_phantoms
    from SpineAssistLib.training.phantom_cache import load_phantom
    from SpineAssistLib.training.spider import SAGITTAL_MODELS

    if args.sagittal_phantoms < 1:
        raise SpineAssistError(f"--sagittal-phantoms must be 1 or more; got {args.sagittal_phantoms}")
    if not 0.0 <= args.synthetic_contrast <= 1.0:
        raise SpineAssistError(f"--synthetic-contrast is a share between 0 and 1; got {args.synthetic_contrast}")
    lo, hi = args.pfirrmann_brightness
    if not 0 < lo <= hi:
        raise SpineAssistError(f"--pfirrmann-brightness needs 0 < LOW <= HIGH; got {lo} {hi}")
    models = args.models or list(SAGITTAL_MODELS)
    bad = [m for m in models if m not in SAGITTAL_MODELS]
    if bad:
        raise SpineAssistError(f"sagittal-only phantoms train {', '.join(SAGITTAL_MODELS)}; not {', '.join(bad)}")
    cache = args.cache or args.out.parent / "phantom-cache"
    seeds = list(range(args.sagittal_first_seed, args.sagittal_first_seed + args.sagittal_phantoms))
    studies = []
    for seed in seeds:
        print(f"sagittal-only phantom {seed} ...", flush=True)
        studies.append(load_phantom(seed, None, cache, sagittal_only=True))
    # every phantom trains: the real patients' validation split chooses the weights
    done = build_from_phantoms(studies, args.out, models, copies=args.copies, val_fraction=0.0, seed=args.seed,
                               synthetic_contrast=args.synthetic_contrast, pfirrmann_brightness=(lo, hi))
    _record_step(args.out, args, {"source": "SpineAssist phantom (synthetic; not patients)",
                                  "sagittal_only_seeds": [seeds[0], seeds[-1]], "copies": args.copies,
                                  "synthetic_contrast": args.synthetic_contrast, "pfirrmann_brightness": [lo, hi]})
    for m, c in done.items():
        print(f"{m}: {c['train']} training and {c['val']} validation samples added under {c['path']}")
    return 0
