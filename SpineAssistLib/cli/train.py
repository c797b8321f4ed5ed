"""``spineassist train NAME|all --data DIR``: retrain bundled models from phantom studies, a site's
own labelled data (YOLO / image-folder / npz formats) or the public SPIDER lumbar MRI set."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from SpineAssistLib.cli import main
from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.models.catalog import MODEL_DEFS
from SpineAssistLib.training.command import add_train_options
from SpineAssistLib.training.replay import run_replay, training_plan


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="retrain a bundled model (or all) from phantom studies, your own labelled data, or SPIDER",
        description="Train model NAME (or 'all') and write its weights and manifest entry (SHA-256, data, seeds, "
        "settings) into the models folder. --data DIR is either a prepared training set (YOLO data.yaml, an "
        "image folder of classes, or {train,val}/*.npz for the U-Net; DIR or DIR/NAME), a SPIDER folder "
        "(images/*.mha, masks/*.mha, radiological_gradings.csv: trains sag_disc_unet and sag_pfirrmann_cls, and "
        "sag_disc_grades, whose --gradings CSV may lie elsewhere), "
        "or, with --phantoms N, the folder to build a phantom training set in.")
    add_train_options(p)
    p.set_defaults(func=run)


def _replay(args: argparse.Namespace) -> int:
    plan = training_plan()
    argv = run_replay(args.scratch, args.out, device=args.device, dry_run=True)
    total = sum(s.recorded_seconds or 0.0 for s in plan)
    for step, a in zip(plan, argv):
        took = f"{step.recorded_seconds / 60:.0f} min" if step.recorded_seconds else "time not recorded"
        print(f"{step.model:18s} ({took}): spineassist {shlex.join(a)}")
    print(f"{len(plan)} steps; {total / 3600:.1f} h as recorded (one core each, on the 2-core CPU they were trained on)")
    if args.dry_run:
        return 0

    run_replay(args.scratch, args.out, device=args.device, runner=main)
    return 0


def _prepared(data: Path, name: str, task: str) -> Path | None:
    for root in (data / name, data):
        if task in ("pose", "segment", "detect") and (root / "data.yaml").is_file():
            return root / "data.yaml"
        if task == "classify" and (root / "train").is_dir() and any((root / "train").iterdir()) \
                and all(p.is_dir() for p in (root / "train").iterdir()):
            return root
        if task == "unet-segment" and any((root / "train").glob("*.npz")):
            return root
    return None


def run(args: argparse.Namespace) -> int:
    if args.replay:
        return _replay(args)
    if args.list or not args.name:
        for d in MODEL_DEFS.values():
            print(f"{d.name:20s} {d.task:13s} {d.architecture}: {d.description}")
        return 0 if args.list else 2
    names = list(MODEL_DEFS) if args.name == "all" else [args.name]
    for n in names:
        if n not in MODEL_DEFS:
            raise SpineAssistError(f"no model named {n!r}; models are {', '.join(MODEL_DEFS)} (or 'all')")
    if args.data is None:
        raise SpineAssistError("--data DIR is required: a prepared training set, a SPIDER folder, or (with "
                               "--phantoms N) where to build a phantom training set")
    given = list(getattr(args, "argv", None) or [])
    command = "spineassist " + shlex.join(given) if given[:1] == ["train"] else f"spineassist train {args.name} --data {args.data}"
    record: dict = {"path": str(args.data)}
    recipe = args.data / "recipe.json"
    if recipe.is_file():       # sets made by `spineassist data`: how, so the run can be made again
        record["recipe"] = json.loads(recipe.read_text(encoding="utf-8"))
        record["source"] = " + ".join(dict.fromkeys(step.get("source", "?") for step in record["recipe"]))
    data = args.data
    grade_models = [n for n in names if MODEL_DEFS[n].task == "disc-grades"]
    if grade_models:
        names = [n for n in names if n not in grade_models]
        if args.phantoms or not _is_spider(data):
            if args.name != "all":
                raise SpineAssistError(f"{args.name} trains on SPIDER's gradings only: --data must be a SPIDER folder "
                                       "(images/, masks/) and --gradings its radiological_gradings.csv")
            print(f"skipping {', '.join(grade_models)}: it trains on a SPIDER folder, not on {data}", flush=True)
        else:
            _train_disc_grades(args, data, command if args.name != "all" else
                               f"spineassist train {grade_models[0]} --data {data} --seed {args.seed}")
        if not names:
            return 0
    if args.phantoms:
        record = _build_phantoms(args, names)
    elif _is_spider(data):
        from SpineAssistLib.training.spider import SAGITTAL_MODELS, build_real_sets, find_gradings, read_gradings

        spider_models = [n for n in names if n in SAGITTAL_MODELS]
        if not spider_models:
            raise SpineAssistError(f"SPIDER is sagittal: it trains {', '.join(SAGITTAL_MODELS)}; not {', '.join(names)}")
        names = spider_models
        built = data.parent / f"{data.name}-spineassist-sets"
        done = build_real_sets(data, built, read_gradings(find_gradings(data)), spider_models, copies=args.copies, seed=args.seed)
        record = {"source": "SPIDER", "path": str(data), "patients": done["patients"]}
        data = built
    from SpineAssistLib.training.train import train_model

    for n in names:
        defn = MODEL_DEFS[n]
        prepared = _prepared(data, n, defn.task)
        if prepared is None:
            raise SpineAssistError(f"{data} holds no training set for {n} ({defn.task}); expected "
                                   f"{'data.yaml' if defn.task != 'classify' and defn.task != 'unet-segment' else 'train/ ...'} "
                                   f"in {data / n} or {data}, or pass --phantoms N to build one")
        print(f"training {n} on {prepared} ...", flush=True)
        entry = train_model(n, prepared, epochs=args.epochs, batch=args.batch, seed=args.seed, device=args.device,
                            out_dir=args.out, data_record=record, command=command, init=args.init)
        print(f"{n}: {entry['file']} {entry['size_bytes'] / 1e6:.1f} MB sha256 {entry['sha256'][:12]}... "
              f"in {entry['training']['seconds'] / 60:.1f} min", flush=True)
    return 0


def _is_spider(data: Path) -> bool:
    return (data / "images").is_dir() and any(p.suffix in (".mha", ".png") for p in (data / "images").iterdir())


def _train_disc_grades(args: argparse.Namespace, data: Path, command: str) -> None:
    """Train sag_disc_grades on a SPIDER folder (training.disc_grades): its own network and loop."""
    from SpineAssistLib.training.disc_grades import NAME, train_and_register
    from SpineAssistLib.training.spider import find_gradings

    if args.init is not None:
        raise SpineAssistError(f"--init: {NAME} trains from scratch (a few minutes on a CPU)")
    print(f"training {NAME} on {data} ...", flush=True)
    entry = train_and_register(data, find_gradings(data, args.gradings), epochs=args.epochs, batch=args.batch,
                               seed=args.seed, device=args.device, out_dir=args.out, command=command)
    print(f"{NAME}: {entry['file']} {entry['size_bytes'] / 1e6:.2f} MB sha256 {entry['sha256'][:12]}... "
          f"in {entry['training']['seconds'] / 60:.1f} min", flush=True)


def _build_phantoms(args: argparse.Namespace, names: list[str]) -> dict:
    from SpineAssistLib.training.datasets import build_from_phantoms
    from SpineAssistLib.training.phantom_cache import load_phantom

    if args.phantoms < 2:
        raise SpineAssistError(f"--phantoms must be 2 or more (one is kept for validation); got {args.phantoms}")
    if args.tissue_jitter is not None and not 0 < args.tissue_jitter <= 1:
        raise SpineAssistError(f"--tissue-jitter needs 0 < S <= 1; got {args.tissue_jitter}")
    brightness = list(args.pfirrmann_brightness) if args.pfirrmann_brightness else None
    if brightness is not None and not 0 < brightness[0] <= brightness[1]:
        raise SpineAssistError(f"--pfirrmann-brightness needs 0 < LOW <= HIGH; got {brightness[0]} {brightness[1]}")
    cache = args.cache or args.data.parent / "phantom-cache"
    seeds = list(range(args.first_seed, args.first_seed + args.phantoms))
    sag_seeds = list(range(args.sagittal_first_seed, args.sagittal_first_seed + args.sagittal_phantoms))
    if set(seeds) & set(sag_seeds):
        raise SpineAssistError("--first-seed/--phantoms and --sagittal-first-seed/--sagittal-phantoms overlap; "
                               "choose seed ranges apart")
    studies = []
    # sagittal-only studies first: the validation split (the last studies) keeps axial slices
    for s in sag_seeds:
        print(f"sagittal-only phantom {s} ...", flush=True)
        studies.append(load_phantom(s, _training_overrides(s, None, args.tissue_jitter), cache, sagittal_only=True))
    for s in seeds:
        print(f"phantom {s} ...", flush=True)
        studies.append(load_phantom(s, _training_overrides(s, args.herniation_rate, args.tissue_jitter), cache,
                                    partial=True))
    val_fraction = 0.1 * len(seeds) / len(studies)
    key = {"seeds": [int(s["seed"]) for s in studies], "copies": args.copies, "seed": args.seed,
           "val_fraction": val_fraction, "herniation_rate": args.herniation_rate, "pfirrmann_brightness": brightness,
           "tissue_jitter": args.tissue_jitter}
    done = args.data / "datasets.json"
    built = json.loads(done.read_text(encoding="utf-8")) if done.is_file() else {}
    if {k: built.get(k) for k in key} == key and set(names) <= set(built.get("models", {})):
        print(f"reusing the training sets in {args.data} (same phantoms and settings)", flush=True)
    else:
        # every model's set at once, so that a later `train NAME` with the same phantoms reuses it
        build_from_phantoms(studies, args.data, None, copies=args.copies, seed=args.seed, val_fraction=val_fraction,
                            pfirrmann_brightness=tuple(brightness) if brightness else None)
        built = json.loads(done.read_text(encoding="utf-8"))
        built["herniation_rate"] = args.herniation_rate
        built["tissue_jitter"] = args.tissue_jitter
        done.write_text(json.dumps(built, indent=1), encoding="utf-8")
    return {"source": "SpineAssist phantom (synthetic; not patients)", "phantom_seeds": [seeds[0], seeds[-1]],
            "sagittal_only_seeds": [sag_seeds[0], sag_seeds[-1]] if sag_seeds else [], "copies": args.copies,
            "render": "phantom_cache.render_training_phantom",
            **({"herniation_rate": args.herniation_rate} if args.herniation_rate is not None else {}),
            **({"pfirrmann_brightness": brightness} if brightness is not None else {}),
            **({"tissue_jitter": args.tissue_jitter} if args.tissue_jitter is not None else {})}


def _training_overrides(seed: int, rate: float | None, tissue_jitter: float | None = None) -> dict | None:
    overrides: dict = {}
    if rate is not None:
        from SpineAssistLib.phantom.params import herniation_enriched_msu

        try:
            overrides["msu"] = herniation_enriched_msu(seed, rate)
        except ValueError as e:
            raise SpineAssistError(f"--herniation-rate: {e}") from None
    if tissue_jitter is not None:
        from SpineAssistLib.phantom.params import jittered_tissue_signal

        overrides["tissue_signal"] = jittered_tissue_signal(seed, tissue_jitter)
    return overrides or None