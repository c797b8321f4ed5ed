"""``spineassist evaluate``: run the bundled models on held-out phantom studies and write the
published metric tables (95 % bootstrap intervals), internal and external test sets apart."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from SpineAssistLib.errors import SpineAssistError

INTERNAL_FIRST_SEED = 3000


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score the bundled models on held-out phantom studies (metrics with 95 %% CIs)",
                       description="Render held-out phantom studies (seeds never used in training), run every "
                       "bundled model, grade with SpineAssist's rules, and write metrics.json and metrics.md: disc "
                       "IoU/Dice, keypoint error (mm, px), herniation 4-grade/region/category P/R/F1 and kappa, "
                       "Pfirrmann accuracy/sensitivity/specificity/AUC/kappa, Meyerding accuracy and slip error. "
                       "The external set shifts the acquisition (resolution, SNR, orientation, contrast).")
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default ./evaluation)")
    p.add_argument("--studies", type=int, default=20, help="studies per test set (default 20)")
    p.add_argument("--external-studies", type=int, default=None, help="studies in the external set (default: --studies)")
    p.add_argument("--first-seed", type=int, default=INTERNAL_FIRST_SEED, help="first test seed (default 3000)")
    p.add_argument("--cache", type=Path, default=None, help="phantom render cache folder (reused between runs)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--real", type=Path, default=None, metavar="DIR",
                   help="instead: score the shipped pipeline on the held-out real patients of a SPIDER folder "
                   "(images/ + masks/, .mha or PNG slices); writes real_metrics.json and real_metrics.md")
    p.add_argument("--gradings", type=Path, default=None,
                   help="with --real: SPIDER's radiological_gradings.csv (default: the first under DIR)")
    p.add_argument("--variant", default="as-stored", choices=("as-stored", "flipped", "thick", "off-centre"),
                   help="with --real: store each scan as another acquisition would (anterior on the right and "
                   "slices reversed; every 4th slice at 4x the distance; the mid-line two slices from the edge)")
    p.add_argument("--patients", nargs="+", default=None,
                   help="with --real: score these patients instead of the fixed held-out twelve")
    p.add_argument("--update-manifest", action="store_true",
                   help="store the headline metrics in Resources/Models/manifest.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from SpineAssistLib.training.evaluate import evaluate_models, markdown_tables, store_in_manifest

    if args.real is not None:
        return _run_real(args)
    if args.studies < 1:
        raise SpineAssistError(f"--studies must be 1 or more; got {args.studies}")
    n_ext = args.studies if args.external_studies is None else args.external_studies
    if n_ext < 1:
        raise SpineAssistError(f"--external-studies must be 1 or more; got {n_ext}")
    seeds = list(range(args.first_seed, args.first_seed + args.studies))
    ext = list(range(args.first_seed, args.first_seed + n_ext))
    report = evaluate_models(seeds, ext, cache_dir=args.cache, device=args.device, n_boot=args.bootstrap)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    md = markdown_tables(report)
    (args.out / "metrics.md").write_text(md, encoding="utf-8")
    print(md)
    if args.update_manifest:
        store_in_manifest(report)
    return 0


def _run_real(args: argparse.Namespace) -> int:
    from SpineAssistLib.training.real_eval import evaluate_real, markdown_table, store_real_in_manifest
    from SpineAssistLib.training.spider import find_gradings

    if not args.real.is_dir():
        raise SpineAssistError(f"--real {args.real}: not a folder; give the SPIDER folder holding images/ and masks/")
    report = evaluate_real(args.real, find_gradings(args.real, args.gradings), patients=args.patients, device=args.device, n_boot=args.bootstrap,
                           progress=lambda m: print(m, flush=True), variant=args.variant)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "real_metrics" if args.variant == "as-stored" else f"real_metrics_{args.variant}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    md = markdown_table(report)
    (args.out / f"{stem}.md").write_text(md, encoding="utf-8")
    print(md)
    if args.update_manifest:
        if args.patients or args.variant != "as-stored":
            raise SpineAssistError("--update-manifest stores the held-out twelve's figures as stored only; drop "
                                   "--patients and --variant")
        store_real_in_manifest(report)
    return 0
