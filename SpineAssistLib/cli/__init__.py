"""The ``spineassist`` command: the same library the Slicer module runs, from a terminal.

Each subcommand lives in its own module in this package and is listed in
``COMMANDS``; a module provides ``add_parser(subparsers)`` and sets ``func`` on its parser. Heavy
packages (torch, ultralytics, monai) are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from SpineAssistLib.errors import Cancelled, SpineAssistError
from SpineAssistLib.version import __version__

# Subcommand modules, in the order `--help` lists them.
COMMANDS: tuple[str, ...] = ("assess", "batch", "view", "series", "phantom", "data", "train", "evaluate", "export", "schema", "prepare")

EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130
EXIT_BROKEN_PIPE = 141    # as a shell reports a command ended by SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spineassist",
        description="Lumbar spine MRI assessment: disc herniation (MSU), Pfirrmann grade and "
        "spondylolisthesis (Meyerding) from sagittal and axial T2 DICOM series. "
        "Research software: not validated for clinical use.",
    )
    parser.add_argument("--version", action="version", version=f"spineassist {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)     # as given: a trained model records its command
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()      # here, where a closed pipe is caught, not at exit
        return rc
    except Cancelled as e:
        print(f"spineassist: cancelled: {e}; nothing was left half-written", file=sys.stderr)
        return EXIT_CANCELLED
    except SpineAssistError as e:
        print(f"spineassist: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("spineassist: interrupted; the outputs already in the output folder are unchanged", file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:
        # the reader of our output went away (`spineassist series DIR | head`): stop quietly, and keep
        # the interpreter from complaining again when it flushes stdout on exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def entry() -> None:
    """The ``spineassist`` command (and ``python -m SpineAssistLib.cli``): ``main``, then exit.

    What the run left in memory (torch, pydicom and VTK objects: millions) is moved out of the
    garbage collector's reach before the interpreter exits; its final collection otherwise keeps
    the user waiting after the work is done. Files are closed and written by then; nothing is skipped but
    that collection.
    """
    import gc

    rc = main()
    gc.freeze()
    sys.exit(rc)

