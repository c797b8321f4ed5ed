"""Inference time of each bundled model on one phantom slice (CPU), and the weights' sizes;
writes the ``## Models`` section of benchmarks/RESULTS.md."""

from __future__ import annotations

import time

from .results import machine, write_section


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from SpineAssistLib.models import load_manifest, load_model
    from SpineAssistLib.models.phantom_cache import render_training_phantom

    st = render_training_phantom(11, sag_slices=1, ax_blocks=1, extra_block=False)
    t = time.perf_counter()
    import torch  # noqa: F401  (imported once per process: timed apart from each model's load)
    import ultralytics  # noqa: F401
    import_s = time.perf_counter() - t
    sag, ax = st["sag_images"][0], st["ax_images"][len(st["ax_images"]) // 2]
    rows = ["| model | task | input | file MB | load s | predict ms (median of 10) |", "|---|---|---|---|---|---|"]
    total = 0.0
    for name, spec in load_manifest().items():
        t = time.perf_counter()
        model = load_model(name, device="cpu")
        load_s = time.perf_counter() - t
        image = ax if name.startswith("ax_") else sag
        if spec.task == "classify":
            image = sag[sag.shape[0] // 2 - 40:sag.shape[0] // 2 + 40, sag.shape[1] // 2 - 40:sag.shape[1] // 2 + 40]
        elif spec.input.get("crop"):     # a window model sees a window of its input size (models.crops)
            from SpineAssistLib.models.imaging import normalize_slice, to_uint8

            n, (h, w) = spec.input_size, image.shape
            image = to_uint8(normalize_slice(image))[(h - n) // 2:(h + n) // 2, (w - n) // 2:(w + n) // 2]
        model.predict(image)
        times = []
        for _ in range(10):
            t = time.perf_counter()
            model.predict(image)
            times.append(time.perf_counter() - t)
        mb = spec.path.stat().st_size / 1e6
        total += mb
        rows.append(f"| {name} | {spec.task} | {image.shape[1]} x {image.shape[0]} px | {mb:.1f} | {load_s:.2f} | "
                    f"{1000 * float(np.median(times)):.0f} |")
    body = "\n".join([f"Machine: {machine()}; device cpu. Weights together: {total:.1f} MB (limit 40 MB). "
                      f"Importing torch and ultralytics, once per process, took {import_s:.2f} s before the first "
                      "load (not in \"load s\").", "",
                      *rows, "", "Accuracy: see Resources/Models/MODEL_CARD.md (`spineassist evaluate`)."])
    write_section("Models", body)
    print(body)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
