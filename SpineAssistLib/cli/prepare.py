"""``spineassist prepare``: make the ONNX copies of the bundled models that the CPU runs (once per machine)."""

from __future__ import annotations

import argparse

from SpineAssistLib.models import model_names, model_spec, verified_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="make the CPU copies (ONNX) of the bundled models ahead of the first run",
                       description="On a CPU the models' networks run in ONNX Runtime from ONNX copies of the "
                       "shipped .pt files, made once on this machine into the cache (about 15 s for all). "
                       "Without this command the first run makes them. Each copy is checked against torch "
                       "when it is made, and against its recorded SHA-256 when it is used.")
    p.add_argument("models", nargs="*", help="model names (default: every bundled model)")
    p.add_argument("--prune", action="store_true",
                   help="first delete the copies of earlier or candidate weights of these models, and copies "
                        "optimised for another CPU or ONNX Runtime version")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from SpineAssistLib.models.runtime import cpu_runtime, onnx_dir, prepare

    if cpu_runtime() != "onnx":
        print("onnxruntime is not installed (or SPINEASSIST_CPU_RUNTIME=torch): the CPU runs the models in torch, "
              "nothing to prepare")
        return 0
    names = args.models or model_names()
    prepare([model_spec(n) for n in names], verified_path, report=print, prune=args.prune)   # a ModelError says what is wrong
    print(f"ONNX copies in {onnx_dir()}")
    return 0
