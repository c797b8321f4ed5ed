"""Return (and run) the plan that retrains every bundled model the way its shipped weights were made.

Each manifest entry records the ``spineassist train`` command that made its weights and, for a
fine-tune, the record of the weights it started from (``training.initialised_from.training``),
back to a training from scratch. The plan is those commands, root first, each run again with
its recorded phantoms, seeds and settings; only the paths change: training sets and renders go
to a scratch folder, every ``--init`` names the weights the plan's previous step made, and the
last step of each model writes into the models folder. A step shared by two models (the corner
model starts from the vertebra model's weights) runs once.

Usage::

    from SpineAssistLib.training.replay import training_plan
    for step in training_plan():
        print(step.model, step.recorded_seconds, step.command)

    spineassist train --replay --scratch .cache/replay          # what `make models` runs
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.models.registry import models_dir, sha256_file
from SpineAssistLib.training.command import add_train_options
from SpineAssistLib.training.train import update_manifest

# `spineassist train` options that define a phantom training set (and so its folder)
DATASET_OPTIONS = ("phantoms", "first_seed", "sagittal_phantoms", "sagittal_first_seed", "herniation_rate",
                   "tissue_jitter", "copies", "pfirrmann_brightness", "seed")


@dataclass(frozen=True)
class Step:
    """One recorded training run: the model it trains, its command as recorded, the key of the
    step whose weights it starts from (None: from scratch), the seconds it took then, and whether
    it makes its model's shipped weights (``final``; it may also be another model's start)."""

    key: str
    model: str
    command: str
    parent: str | None
    recorded_seconds: float | None
    final: bool = False
    recipe: tuple = ()        # the `spineassist data` commands that made its prepared training set


def _train_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="spineassist", add_help=False)
    add_train_options(root.add_subparsers(dest="command").add_parser("train", add_help=False))
    return root


def _parse(command: str) -> argparse.Namespace:
    words = shlex.split(command)
    if words[:2] != ["spineassist", "train"]:
        raise SpineAssistError(f"recorded command is not a `spineassist train` command: {command!r}")
    try:
        return _train_parser().parse_args(words[1:])
    except SystemExit:
        raise SpineAssistError(f"recorded command cannot be read by this version's `spineassist train`: {command!r}") from None


def _lineage(training: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Return the training records of one model's weights, from the first training to the last."""
    chain = []
    record: Mapping[str, Any] | None = training
    while record:
        chain.append(record)
        record = (record.get("initialised_from") or {}).get("training")
    return chain[::-1]


def training_plan(manifest: Mapping[str, Any] | None = None) -> list[Step]:
    """Return the steps that retrain every model of ``manifest`` (default: the bundled one's JSON),
    parents before the steps that start from their weights; shared steps appear once."""
    if manifest is None:
        manifest = json.loads((models_dir() / "manifest.json").read_text(encoding="utf-8"))
    steps: dict[str, Step] = {}
    for entry in manifest.get("models", []):
        parent = None
        path: list[str] = []
        for record in _lineage(entry.get("training") or {}):
            command = record.get("command")
            if not command:
                raise SpineAssistError(f"{entry.get('name')}: a training record has no command; it cannot be replayed")
            args = _parse(command)
            if args.init is not None and parent is None:
                raise SpineAssistError(f"{entry.get('name')}: {command!r} starts from weights whose training is not "
                                       "recorded; it cannot be replayed")
            path.append(command)
            key = hashlib.sha256("\n".join(path).encode()).hexdigest()[:12]
            if key not in steps:
                steps[key] = Step(key, args.name, command, parent, record.get("seconds"),
                                  recipe=tuple((record.get("data") or {}).get("recipe") or ()))
            parent = key
        if parent is None:
            raise SpineAssistError(f"{entry.get('name')}: no training is recorded; it cannot be replayed")
        if steps[parent].model != entry.get("name"):
            raise SpineAssistError(f"{entry.get('name')}: its last recorded training trains {steps[parent].model}")
        steps[parent] = dataclasses.replace(steps[parent], final=True)
    return list(steps.values())


def final_steps(plan: Sequence[Step]) -> dict[str, Step]:
    """Return the step that makes each model's shipped weights (the last step of its lineage)."""
    return {s.model: s for s in plan if s.final}


def replay_argv(step: Step, scratch: Path, init: Path | None, device: str, check: bool = True) -> list[str]:
    """Return the ``spineassist train`` arguments that rerun ``step`` with scratch paths.
    ``check=False`` (a dry run): a prepared training set that is not here is named as recorded."""
    args = _parse(step.command)
    argv = ["train", args.name]
    if args.phantoms:
        ident = json.dumps({k: getattr(args, k) for k in DATASET_OPTIONS}, sort_keys=True)
        data = scratch / "data" / hashlib.sha256(ident.encode()).hexdigest()[:12]
        argv += ["--data", str(data), "--cache", str(scratch / "phantom-cache"), "--phantoms", str(args.phantoms),
                 "--first-seed", str(args.first_seed), "--sagittal-phantoms", str(args.sagittal_phantoms),
                 "--sagittal-first-seed", str(args.sagittal_first_seed), "--copies", str(args.copies)]
        for option, value in (("--herniation-rate", args.herniation_rate), ("--tissue-jitter", args.tissue_jitter)):
            if value is not None:
                argv += [option, str(value)]
        if args.pfirrmann_brightness:
            argv += ["--pfirrmann-brightness", *map(str, args.pfirrmann_brightness)]
    elif args.data is not None and (Path(args.data).exists() or not check):
        argv += ["--data", str(args.data)]
        if args.gradings is not None:      # a SPIDER folder's gradings kept elsewhere (sag_disc_grades)
            argv += ["--gradings", str(args.gradings)]
    else:
        how = "; ".join(s["command"] for s in step.recipe if s.get("command"))
        raise SpineAssistError(f"{step.model}: {step.command!r} trained on a prepared set at {args.data}, which is "
                               "not here; " + (f"make it again with: {how} (real data such as SPIDER must be "
                                               "fetched first), then replay" if how else
                                               "put it back to replay this step"))
    argv += ["--seed", str(args.seed), "--device", device, "--out", str(scratch / "models" / step.key)]
    for option, value in (("--epochs", args.epochs), ("--batch", args.batch)):
        if value is not None:
            argv += [option, str(value)]
    if init is not None:
        argv += ["--init", str(init)]
    return argv


def run_replay(scratch: Path, out_dir: Path | None = None, device: str = "cpu", dry_run: bool = False,
               manifest: Mapping[str, Any] | None = None, runner: Any = None) -> list[list[str]]:
    """Run every step of the plan (or, with ``dry_run``, only return their arguments), then put each
    model's final weights and manifest entry into ``out_dir`` (default: the bundled models folder;
    metrics emptied until ``spineassist evaluate --update-manifest`` scores them). ``runner`` runs
    one argument list of ``spineassist`` (the command line passes its ``main``)."""
    import shutil

    plan = training_plan(manifest)
    scratch = Path(scratch)
    by_key = {s.key: s for s in plan}
    all_argv = []
    for step in plan:
        init = None
        if step.parent is not None:
            parent = by_key[step.parent]
            init = scratch / "models" / parent.key / f"{parent.model}.pt"
        all_argv.append(replay_argv(step, scratch, init, device, check=not dry_run))
    if dry_run:
        return all_argv
    if runner is None:
        raise ValueError("run_replay needs a runner (the command line's `main`) unless dry_run is set")
    for step, argv in zip(plan, all_argv):
        done = scratch / "models" / step.key / f"{step.model}.pt"
        if done.is_file():
            print(f"step {step.key} ({step.model}) already done: {done}", flush=True)
            continue
        print(f"step {step.key}: spineassist {shlex.join(argv)}", flush=True)
        if runner(argv) != 0:
            raise SpineAssistError(f"step {step.key} ({step.model}) failed; fix it and run the replay again "
                                   "(finished steps are kept)")
    target = Path(out_dir) if out_dir is not None else models_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name, step in final_steps(plan).items():
        folder = scratch / "models" / step.key
        entry = next(e for e in json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["models"]
                     if e["name"] == name)
        shutil.copyfile(folder / entry["file"], target / entry["file"])
        if sha256_file(target / entry["file"]) != entry["sha256"]:
            raise SpineAssistError(f"{name}: the copied weights do not match their manifest entry")
        update_manifest({**entry, "metrics": {}}, target / "manifest.json")
        print(f"{name}: {target / entry['file']}", flush=True)
    return all_argv


__all__ = ["Step", "final_steps", "replay_argv", "run_replay", "training_plan"]
