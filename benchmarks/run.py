"""Run every benchmark (benchmarks/bench_*.py); each writes its own section of benchmarks/RESULTS.md.

    python -m benchmarks.run            # all
    python -m benchmarks.run phantom    # those whose module name contains 'phantom'
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        try:
            module.main([])
        except Exception as e:  # keep going: one broken benchmark must not hide the others' numbers
            failed.append(name)
            print(f"   FAILED: {e!r}", flush=True)
        print(f"   {time.perf_counter() - t0:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
