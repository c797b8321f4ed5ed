"""The options of ``spineassist train``: what a training run records in the manifest and what a
replay (``training.replay``) parses again. The command line (``cli.train``) adds them to its parser."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_FIRST_SEED = 1000
DEFAULT_SAGITTAL_FIRST_SEED = 5000


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Add the options of ``spineassist train`` to ``p``."""
    p.add_argument("name", help="model name (see `spineassist train --list`) or 'all'", nargs="?")
    p.add_argument("--list", action="store_true", help="list the model names and exit")
    p.add_argument("--data", type=Path, help="training data folder (see above)")
    p.add_argument("--gradings", type=Path, default=None, metavar="CSV",
                   help="SPIDER's radiological_gradings.csv, where it is not inside --data (sag_disc_grades; "
                   "default: the first one found under --data)")
    p.add_argument("--phantoms", type=int, default=None, help="build the training set from N phantom studies first")
    p.add_argument("--sagittal-phantoms", type=int, default=0,
                   help="extra sagittal-only phantom studies for the sagittal models (cheap to render)")
    p.add_argument("--first-seed", type=int, default=DEFAULT_FIRST_SEED, help="seed of the first phantom (default 1000)")
    p.add_argument("--sagittal-first-seed", type=int, default=DEFAULT_SAGITTAL_FIRST_SEED,
                   help="seed of the first sagittal-only phantom (default 5000)")
    p.add_argument("--cache", type=Path, default=None, help="phantom render cache (default DATA/../phantom-cache)")
    p.add_argument("--herniation-rate", type=float, default=None, metavar="R",
                   help="training phantoms get a herniation at each lumbar level with probability R (0-1) instead "
                   "of the clinical 4-30 %%: class balancing for the axial models (default: clinical rates)")
    p.add_argument("--init", type=Path, default=None, metavar="WEIGHTS",
                   help="fine-tune from these weights (e.g. the bundled Resources/Models/NAME.pt) instead of "
                   "training from scratch; YOLO models only")
    p.add_argument("--tissue-jitter", type=float, default=None, metavar="S",
                   help="training phantoms' fat, marrow, muscle and other background tissue signals scaled by "
                   "exp(N(0, S)) (within exp(+-2S)) each, wider than the phantom's own +-8 %% (e.g. 0.25): models "
                   "that do not depend on one scanner's tissue contrasts (default: off)")
    p.add_argument("--copies", type=int, default=2, help="augmented copies of each training image (default 2)")
    p.add_argument("--pfirrmann-brightness", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="cut the Pfirrmann classifier's training crops from slices scaled by a random factor in "
                   "[LOW, HIGH] (e.g. 0.7 1.3), so the grade is learnt from contrast, not brightness (default: off)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the full setting of each model)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: each model's setting)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--out", type=Path, default=None, help="weights + manifest folder (default: the bundled Resources/Models)")
    p.add_argument("--replay", action="store_true",
                   help="retrain every bundled model as its shipped weights were made: the training commands the "
                   "manifest records, root first, with their phantoms, seeds and settings (what `make models` runs)")
    p.add_argument("--scratch", type=Path, default=Path(".cache/replay"),
                   help="with --replay: folder for training sets, renders and each step's weights (default "
                   ".cache/replay; finished steps are kept, so a stopped replay goes on where it stopped)")
    p.add_argument("--dry-run", action="store_true", help="with --replay: print the steps and their recorded times only")
