"""Time the phantom: one whole study rendered in memory (generate_study) and written to disk
(write_study), over several seeds; writes the "Phantom" section of benchmarks/RESULTS.md.

    python -m benchmarks.run phantom
    python -m benchmarks.bench_phantom --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from .results import machine, write_section

TARGET_S = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_phantom")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    from SpineAssistLib.phantom import generate_study, write_study

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            load = os.getloadavg()[0]
            t0, c0 = time.perf_counter(), time.process_time()
            study = generate_study(seed)
            t1, c1 = time.perf_counter(), time.process_time()
            write_study(study, Path(tmp) / f"case-{seed}")
            t2 = time.perf_counter()
            sag, ax = study.sagittal.images.shape, study.axial.images.shape
            rows.append((seed, t1 - t0, t2 - t1, study.timings, sag, ax, load, c1 - c0))
            print(f"seed {seed}: generate {t1 - t0:.2f} s wall, {c1 - c0:.2f} s CPU (sagittal {study.timings['sagittal_s']:.2f}, axial "
                  f"{study.timings['axial_s']:.2f}, truth {study.timings['truth_s']:.2f}), write {t2 - t1:.2f} s; "
                  f"{sag[0]} sag {sag[1]}x{sag[2]}, {ax[0]} ax {ax[1]}x{ax[2]}; load {load:.1f}", flush=True)
    gen = [r[1] for r in rows]
    cpu = [r[7] for r in rows]
    total = [r[1] + r[2] for r in rows]
    lines = [
        f"Machine: {machine()}. One process, one thread (numpy). The machine is shared: the 1-minute load "
        f"average before each study is given, and the process CPU time, which is what the study costs "
        f"when it has a core to itself. Target: one study in under {TARGET_S:.0f} s.",
        "",
        "| seed | generate_study CPU s | generate_study wall s | sagittal s | axial s | truth s | write_study s | sagittal slices | axial slices | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, g, w, t, sag, ax, load, c in rows:
        lines.append(f"| {seed} | {c:.2f} | {g:.2f} | {t['sagittal_s']:.2f} | {t['axial_s']:.2f} | {t['truth_s']:.2f} | {w:.2f} | "
                     f"{sag[0]} x {sag[1]}x{sag[2]} | {ax[0]} x {ax[1]}x{ax[2]} | {load:.1f} |")
    lines += ["", f"generate_study CPU time: median {statistics.median(cpu):.2f} s, worst {max(cpu):.2f} s "
              f"({'within' if max(cpu) < TARGET_S else 'over'} the {TARGET_S:.0f} s target). Wall time (shared "
              f"machine): generate + write median {statistics.median(total):.2f} s, worst {max(total):.2f} s."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("Phantom", text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
