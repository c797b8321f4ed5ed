"""Index a 2,000-file DICOM folder (headers only) and pick the series, as `spineassist series` does.

    python -m benchmarks.run study_index
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results import machine, write_section

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))   # the tests' helpers: package `support`


def build(root: Path, files: int = 2000) -> None:
    """A PACS-like export: 40 series of 50 slices (sagittal, axial, T1/T2), 256x256, one file per slice."""
    from support.dicom_fixtures import AX_IOP, SAG_IOP, make_series

    per = 50
    for s in range(files // per):
        sag = s % 2 == 0
        make_series(root / f"S{s:03d}", per, iop=SAG_IOP if sag else AX_IOP, step=(3.5, 0, 0) if sag else (0, 0, 4.0),
                    rows=256, cols=256, description=("T2 TSE SAG" if sag else "T2 TSE AX") if s % 4 < 2 else "T1 TSE",
                    te=100.0 if s % 4 < 2 else 10.0, tr=4000.0 if s % 4 < 2 else 500.0)


def main(argv: list[str] | None = None) -> int:
    from SpineAssistLib.dicom.index import index_folder, select_series

    work = Path(tempfile.mkdtemp(prefix="spineassist-index-bench-"))
    try:
        build(work)
        n = sum(1 for _ in work.rglob("*.dcm"))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            index = index_folder(work)
            select_series(index)
            times.append(time.perf_counter() - t0)
        best, worst = min(times), max(times)
        body = (f"Machine: {machine()}. {n} files (40 series x 50 slices, 256x256, uncompressed), headers only "
                f"(pixel data deferred), grouped, classified, split into stacks, series chosen.\n\n"
                f"| files | best of 3 (s) | worst (s) | files per second |\n|---|---|---|---|\n"
                f"| {n} | {best:.2f} | {worst:.2f} | {n / best:.0f} |")
        write_section("Study indexing", body)
        print(body)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
