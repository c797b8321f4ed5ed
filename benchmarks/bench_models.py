"""Inference time of each bundled model on one phantom slice (CPU; ONNX Runtime and torch), and the weights' sizes;
writes the ``## Models`` section of benchmarks/RESULTS.md."""

from __future__ import annotations

import time

from .results import machine, write_section


def _import_seconds(modules: str) -> float:
    """Return the seconds a fresh Python process takes to import ``modules`` (median of 3)."""
    import statistics
    import subprocess
    import sys

    code = f"import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True).stdout) for _ in range(3))


def _time_model(name: str, image, runtime: str) -> tuple[float, float]:
    """Return (load s, median predict ms of 10 after one warm-up) of one model in one CPU runtime."""
    import os

    import numpy as np

    from SpineAssistLib.models import load_model

    os.environ["SPINEASSIST_CPU_RUNTIME"] = runtime
    try:
        t = time.perf_counter()
        model = load_model(name, device="cpu")
        load_s = time.perf_counter() - t
        assert model.runtime == runtime, (name, model.runtime)
        model.predict(image)
        times = []
        for _ in range(10):
            t = time.perf_counter()
            model.predict(image)
            times.append(time.perf_counter() - t)
    finally:
        os.environ.pop("SPINEASSIST_CPU_RUNTIME", None)
    return load_s, 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    from SpineAssistLib.models import load_manifest, model_spec, verified_path
    from SpineAssistLib.training.phantom_cache import render_training_phantom
    from SpineAssistLib.models.runtime import prepare

    st = render_training_phantom(11, sag_slices=1, ax_blocks=1, extra_block=False)
    manifest = load_manifest()
    prepare([model_spec(n) for n in manifest], verified_path, report=lambda line: None)   # the ONNX copies exist
    ort_import, torch_import = _import_seconds("onnxruntime"), _import_seconds("torch, ultralytics")
    import onnxruntime  # noqa: F401  (imported here: "load s" leaves the once-per-process imports out)
    import torch  # noqa: F401
    import ultralytics  # noqa: F401
    sag, ax = st["sag_images"][0], st["ax_images"][len(st["ax_images"]) // 2]
    rows = ["| model | task | input | file MB | load s: onnx / torch | predict ms: onnx / torch (median of 10) |",
            "|---|---|---|---|---|---|"]
    total = 0.0
    for name, spec in manifest.items():
        image = ax if name.startswith("ax_") else sag
        if spec.task == "classify":
            image = sag[sag.shape[0] // 2 - 40:sag.shape[0] // 2 + 40, sag.shape[1] // 2 - 40:sag.shape[1] // 2 + 40]
        elif spec.input.get("crop"):     # a window model sees a window of its input size (models.crops)
            from SpineAssistLib.models.imaging import normalize_slice, to_uint8

            n, (h, w) = spec.input_size, image.shape
            image = to_uint8(normalize_slice(image))[(h - n) // 2:(h + n) // 2, (w - n) // 2:(w + n) // 2]
        onnx_load, onnx_ms = _time_model(name, image, "onnx")
        torch_load, torch_ms = _time_model(name, image, "torch")
        mb = spec.path.stat().st_size / 1e6
        total += mb
        rows.append(f"| {name} | {spec.task} | {image.shape[1]} x {image.shape[0]} px | {mb:.1f} | "
                    f"{onnx_load:.2f} / {torch_load:.2f} | {onnx_ms:.0f} / {torch_ms:.0f} |")
    body = "\n".join([f"Machine: {machine()}; device cpu. Weights together: {total:.1f} MB (limit 40 MB). On a CPU the "
                      "networks run in ONNX Runtime from ONNX copies made once on the machine (`spineassist prepare`); "
                      "\"torch\" is the same model with SPINEASSIST_CPU_RUNTIME=torch (the GPU runtime). Import in a "
                      f"fresh process (median of 3): onnxruntime {ort_import:.2f} s, torch and ultralytics "
                      f"{torch_import:.2f} s, once per process and not in \"load s\" (which includes the SHA-256 "
                      "checks).", "",
                      *rows, "", "Accuracy: see Resources/Models/MODEL_CARD.md (`spineassist evaluate`)."])
    write_section("Models", body)
    print(body)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
