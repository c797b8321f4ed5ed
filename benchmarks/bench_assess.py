"""Time a whole assessment (loading included) per stage and in total, and its peak memory, with the bundled models.

    python -m benchmarks.run assess            # CPU, and CUDA where present
    python -m benchmarks.bench_assess --studies 3 --device cpu
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results import machine, write_section


def _stage_times(events: list[tuple[float, str]], end: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for (t, stage), (t_next, _) in zip(events, events[1:] + [(end, "")]):
        out[stage] = out.get(stage, 0.0) + (t_next - t)
    return out


def run(studies: int, device: str, keep_models: bool = False) -> tuple[list[dict[str, float]], list[float], float]:
    """Assess ``studies`` phantom studies (after one warm-up) in this process; return the per-stage
    and total seconds of each, and the peak memory. ``keep_models``: load the models once and keep
    them for every study, as a batch command does; else load and check them per study."""
    import contextlib

    from SpineAssistLib.export.outputs import WriterProcesses
    from SpineAssistLib.phantom import generate_study, write_study
    from SpineAssistLib.pipeline.assess import AXIAL_MODELS, SAGITTAL_MODELS, ModelSet
    from SpineAssistLib.pipeline.run import run_assessment

    cache: list[ModelSet] = []

    def kept(_loaded) -> ModelSet:
        if not cache:
            cache.append(ModelSet.load(SAGITTAL_MODELS + AXIAL_MODELS, device=device))
        return cache[0]

    work = Path(tempfile.mkdtemp(prefix="spineassist-bench-"))
    per_stage, totals = [], []
    try:
        # as a batch command does: writer processes started first, shared by every study
        with WriterProcesses.start() or contextlib.nullcontext() as writers:
            for i in range(studies + 1):  # the first run warms up (imports, model loading caches)
                study = write_study(generate_study(500 + i), work / f"study{i}")
                events: list[tuple[float, str]] = []
                t0 = time.perf_counter()
                run_assessment(study, work / f"out{i}", device=device, writers=writers, models=kept if keep_models else None,
                               progress=lambda e: events.append((time.perf_counter(), e.stage))
                               if not events or events[-1][1] != e.stage else None)
                end = time.perf_counter()
                if i == 0:
                    continue
                totals.append(end - t0)
                per_stage.append(_stage_times(events, end))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return per_stage, totals, peak_mb


def cold_command_runs(runs: int) -> list[tuple[float, dict[str, float]]]:
    """Return the wall time of ``runs`` fresh ``spineassist assess`` processes on one phantom study,
    each with its stage times from the arrival of its ``--json-progress`` lines ("start": until the
    first line, Python start and the CLI; "exit": from the last line to the end of the process)."""
    import json
    import subprocess

    from SpineAssistLib.phantom import generate_study, write_study

    work = Path(tempfile.mkdtemp(prefix="spineassist-bench-cold-"))
    try:
        study = write_study(generate_study(600), work / "study")
        _compile_package()
        exe = Path(sys.executable).with_name("spineassist")
        out = []
        for i in range(runs):
            events: list[tuple[float, str]] = []
            t0 = time.perf_counter()
            proc = subprocess.Popen([str(exe), "assess", str(study), "--out", str(work / f"out{i}"), "--device", "cpu",
                                     "--json-progress"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                stage = event.get("stage") or event.get("event", "")
                if stage == "done":
                    stage = "exit"
                if not events or events[-1][1] != stage:
                    events.append((time.perf_counter() - t0, stage))
            if proc.wait() != 0:
                raise RuntimeError(f"spineassist assess exited with {proc.returncode}")
            total = time.perf_counter() - t0
            stages = {"start": events[0][0] if events else total}
            stages.update(_stage_times([(t, s) for t, s in events], total))
            out.append((total, stages))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _compile_package() -> None:
    """Compile SpineAssistLib's bytecode first, as ``make setup`` and a wheel install do and as Python
    does on a user's first run: where PYTHONDONTWRITEBYTECODE is set (the project's machines) a fresh
    process would otherwise compile every module it imports, each time."""
    import compileall

    import SpineAssistLib

    compileall.compile_dir(str(Path(SpineAssistLib.__file__).parent), quiet=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=3)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cpu, plus cuda where present)")
    args = parser.parse_args(argv)
    from SpineAssistLib.models.device import select_device
    from SpineAssistLib.models.runtime import cpu_runtime
    from SpineAssistLib.pipeline.assess import AXIAL_MODELS, SAGITTAL_MODELS

    # no GPU driver: torch is not imported (as in a CPU assessment)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if select_device("auto").startswith("cuda") else [])
    n_models = len(SAGITTAL_MODELS + AXIAL_MODELS)
    lines = [f"Machine: {machine()}. One phantom study per run (sagittal ~15 slices + axial ~20 slices in angled "
             f"blocks), loading from DICOM, all {n_models} bundled models, grading, and every output (findings, report, "
             f"SEG, SR, scene.mrb, written by two writer processes started first and shared by every study, as in "
             f"a batch command). Each study is loaded and assessed anew, models included (the bundled models are "
             f"loaded and SHA-256 checked per study); the last column keeps the models loaded from study to study, as "
             f"`spineassist assess A B C` does. Median over {args.studies} studies after one warm-up run; "
             f"seconds. On the CPU the networks run in {'ONNX Runtime' if cpu_runtime() == 'onnx' else 'torch'} "
             f"(SPINEASSIST_CPU_RUNTIME={os.environ.get('SPINEASSIST_CPU_RUNTIME', 'auto')}).", ""]
    for device in devices:
        load_before = os.getloadavg()[0]     # other work on the machine (the run itself keeps 2 cores busy)
        per_stage, totals, peak = run(args.studies, device)
        kept_stage, kept_totals, kept_peak = run(args.studies, device, keep_models=True)
        peak = max(peak, kept_peak)
        stages = list(per_stage[0])
        lines.append(f"### {device}")
        lines.append("")
        lines.append("| stage | median s | models kept loaded: median s |")
        lines.append("|---|---|---|")
        for s in stages:
            lines.append(f"| {s} | {statistics.median(p.get(s, 0.0) for p in per_stage):.2f} | "
                         f"{statistics.median(p.get(s, 0.0) for p in kept_stage):.2f} |")
        lines.append(f"| **total** | **{statistics.median(totals):.2f}** (min {min(totals):.2f}, max {max(totals):.2f}) | "
                     f"**{statistics.median(kept_totals):.2f}** (min {min(kept_totals):.2f}, max {max(kept_totals):.2f}) |")
        lines.append("")
        lines.append(f"Peak resident memory of the benchmark process: {peak:.0f} MB. 1-minute load average just before "
                     f"the run: {load_before:.1f} on {os.cpu_count()} cores (above ~0.3 other work shared the machine "
                     f"and the times are inflated).")
        lines.append("")
    cold_runs = cold_command_runs(args.studies)
    cold = [t for t, _ in cold_runs]
    lines.append(f"### a fresh `spineassist assess` process (cpu)")
    lines.append("")
    lines.append(f"Wall time of the whole command, from start to exit: Python start, imports (numpy, pydicom, "
                 f"onnxruntime; no torch on a CPU with the ONNX copies made), model loading and SHA-256 checks, the assessment above, and the outputs, written by two writer "
                 f"processes the command starts first (they import slicer-core and highdicom while the "
                 f"models run). Median of {len(cold)}: **{statistics.median(cold):.2f} s** (min {min(cold):.2f}, "
                 f"max {max(cold):.2f}). SpineAssistLib's bytecode is compiled first, as `make setup` and a wheel "
                 f"install do (this machine sets PYTHONDONTWRITEBYTECODE=1, so Python would otherwise compile every "
                 f"module it imports in every process). A batch (`spineassist assess A B C --out OUT`) pays the start "
                 f"once and about the per-study time above per study; each run from the Slicer module starts one such "
                 f"process.")
    lines.append("")
    stages = list(cold_runs[0][1])
    lines.append("| stage of the fresh process | median s |")
    lines.append("|---|---|")
    for s in stages:
        lines.append(f"| {s} | {statistics.median(r.get(s, 0.0) for _, r in cold_runs):.2f} |")
    lines.append("")
    lines.append("Stages from the arrival times of the `--json-progress` lines: \"start\" is Python start and the "
                 "command line until the first line; \"loading\" includes the imports and "
                 f"loading the {n_models} models; \"exit\" is from the last line to the end of the process.")
    lines.append("")
    lines.append("Targets (issue 8): under 5 s per study on this 2-core CPU, under 1 s on a GPU; the published system took 14.5 s.")
    write_section("Assessment (spineassist assess)", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
