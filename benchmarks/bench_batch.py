"""Studies per hour of ``spineassist batch`` on phantom studies: local workers and Ray actors.

    python -m benchmarks.run batch
    python -m benchmarks.bench_batch --studies 8 --configs local:1 local:2 ray:2

Each configuration is one fresh ``spineassist batch`` process over the same folder tree, timed from
its start to its end (Python start, the search, worker start, model loading and the summary
included), so the rate is what a user of that command gets for a batch of this size. The per-study
seconds are the workers' own (the batch log): fetch, assess, write, mark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results import machine, write_section

DEFAULT_CONFIGS = ("local:1", "local:2", "ray:2")


def _tree(root: Path, studies: int) -> None:
    from SpineAssistLib.phantom import generate_study, write_study

    for i in range(studies):
        write_study(generate_study(700 + i), root / f"site{i % 2}" / f"study{i:03d}")


def run_config(tree: Path, out: Path, engine: str, workers: int, device: str) -> dict[str, float]:
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "SpineAssistLib.cli", "batch", str(tree), "--out", str(out), "--engine", engine,
           "--workers", str(workers), "--device", device]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{engine}:{workers} failed ({r.returncode}): {r.stderr[-2000:]}")
    events = [json.loads(line) for line in (out / "batch-log.jsonl").read_text().splitlines()]
    per_study = [e["seconds"] for e in events if e["event"] == "done"]
    first = min(time.mktime(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S")) for e in events if e["event"] == "started")
    begin = min(time.mktime(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S")) for e in events if e["event"] == "begin")
    return {"studies": len(per_study), "wall_s": wall, "per_hour": len(per_study) / wall * 3600,
            "median_study_s": statistics.median(per_study), "to_first_start_s": first - begin}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=8)
    ap.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="ENGINE:WORKERS ...")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="spineassist-bench-batch-"))
    rows = []
    try:
        _tree(work / "tree", args.studies)
        for config in args.configs:
            engine, workers = config.split(":")
            out = work / f"out-{engine}-{workers}"
            r = run_config(work / "tree", out, engine, int(workers), args.device)
            rows.append((engine, int(workers), r))
            print(f"{engine} x{workers}: {r['per_hour']:.0f} studies/h ({r['wall_s']:.1f} s for {r['studies']}, "
                  f"median {r['median_study_s']:.2f} s a study in a worker)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"Machine: {machine()}; device {args.device}. {args.studies} phantom studies (sagittal + axial T2, all "
        "outputs), one fresh `spineassist batch` process per row, timed from start to end: Python start, the "
        "folder search, worker start and model loading (once per worker), and the summary tables included. "
        "'per study in a worker' is the median of the workers' own times (assess, write, mark) from the batch log.",
        "",
        "| engine | workers | studies/hour | wall (s) | per study in a worker (s) |",
        "|---|---|---|---|---|",
    ]
    for engine, workers, r in rows:
        lines.append(f"| {engine} | {workers} | {r['per_hour']:.0f} | {r['wall_s']:.1f} | {r['median_study_s']:.2f} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("Batch (spineassist batch)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
