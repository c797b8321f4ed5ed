"""Studies per hour of ``spineassist batch`` on phantom studies: local workers and Ray actors.

    python -m benchmarks.run batch
    python -m benchmarks.bench_batch --studies 8 --configs local:1 local:2 ray:2 pacs-local:2

``pacs-local:N`` reads the studies from a PACS instead of the folder: a private Orthanc with its
DICOMweb plugin on 127.0.0.1 (as the tests start it) holding the same studies, found by a
date-range query, fetched with WADO-RS, and the SEG and SR stored back with STOW-RS (``--store``).

Each configuration is one fresh ``spineassist batch`` process over the same folder tree, timed from
its start to its end (Python start, the search, worker start, model loading and the summary
included), so the rate is what a user of that command gets for a batch of this size. The per-study
seconds are the workers' own (the batch log): fetch, assess, write, mark.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from benchmarks.results import machine, write_section

DEFAULT_CONFIGS = ("local:1", "local:2", "local:3", "ray:2", "pacs-local:2")


def _tree(root: Path, studies: int) -> None:
    from SpineAssistLib.phantom import generate_study, write_study

    for i in range(studies):
        write_study(generate_study(700 + i), root / f"site{i % 2}" / f"study{i:03d}")


@contextlib.contextmanager
def _pacs(folder: Path, tree: Path) -> Iterator[Any]:
    """An Orthanc as the tests start it (Testing/support/orthanc.py), holding the tree's studies."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
    from support.orthanc import orthanc_server

    with orthanc_server(folder) as server:
        server.upload(sorted(tree.rglob("*.dcm")))
        yield server


def run_config(tree: Path, out: Path, engine: str, workers: int, device: str, pacs: Any = None) -> dict[str, float]:
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    source = [str(tree)]
    if pacs is not None:
        env.update({"SPINEASSIST_DICOMWEB_USER": pacs.user, "SPINEASSIST_DICOMWEB_PASSWORD": pacs.password})
        source = ["--dicomweb", pacs.url, "--date-from", "19000101", "--store"]
    cmd = [sys.executable, "-m", "SpineAssistLib.cli", "batch", *source, "--out", str(out), "--engine", engine,
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
        with contextlib.ExitStack() as stack:
            for config in args.configs:
                engine, workers = config.split(":")
                pacs = None
                if engine.startswith("pacs-"):
                    pacs = stack.enter_context(_pacs(work / "orthanc", work / "tree"))
                out = work / f"out-{engine}-{workers}"
                r = run_config(work / "tree", out, engine.removeprefix("pacs-"), int(workers), args.device, pacs)
                rows.append((engine.replace("pacs-", "PACS, ") if pacs else engine, int(workers), r))
            print(f"{engine} x{workers}: {r['per_hour']:.0f} studies/h ({r['wall_s']:.1f} s for {r['studies']}, "
                  f"median {r['median_study_s']:.2f} s a study in a worker)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"Machine: {machine()}; device {args.device}. {args.studies} phantom studies (sagittal + axial T2, all "
        "outputs), one fresh `spineassist batch` process per row, timed from start to end: Python start, the "
        "folder search, worker start and model loading (once per worker), and the summary tables included. "
        "'per study in a worker' is the median of the workers' own times (fetch, assess, write, store, mark) from the "
        "batch log. 'PACS': the same studies read from a local Orthanc (DICOMweb plugin) by a date-range query, "
        "fetched with WADO-RS, the SEG and SR stored back with STOW-RS.",
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
