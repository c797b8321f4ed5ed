"""The review page's speed as a reader meets it, in real Chromium on this machine.

- open: the page is up; Open of an assessed study, timed from the click until the level table shows the
  study and both slice views have drawn a new picture.
- regrade: a sagittal corner dragged with the mouse (alternately 6 mm forward and back); the level is
  regraded at every move of a drag, so the time is taken for the drag's last step (0.6 mm, after the
  page has settled): from the mouse move until the level's slip % in the table shows the new value.

Two phantom studies are assessed with the shipped models first (not timed). The page server is the
browser tests' (Testing/support/web_harness.py), which adds a route saying where a keypoint is drawn.

    python -m benchmarks.bench_web [--rounds 5] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.results import machine, write_section

LEVEL, CORNER = "L4-L5", "L4 posterior-inferior"


def _assessed(work: Path, seeds: tuple[int, ...]) -> list[Path]:
    from SpineAssistLib.phantom import generate_study, write_study

    outs = []
    for seed in seeds:
        study = write_study(generate_study(seed), work / f"study-{seed}")
        out = work / f"out-{seed}"
        subprocess.run([sys.executable, "-m", "SpineAssistLib.cli", "assess", str(study), "--out", str(out),
                        "--device", "cpu"], check=True, capture_output=True, timeout=600)
        outs.append(out)
    return outs


def _json(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.load(r)


def _image_sources(page) -> list[str]:
    return page.evaluate("() => Array.from(document.querySelectorAll('img.image-display-area')).map(i => i.src)")


def measure(outs: list[Path], rounds: int) -> dict[str, list[float]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
    from playwright.sync_api import sync_playwright
    from support.web_harness import page_server

    opens, regrades = [], []
    with page_server(outs[0], outs[0].parent / "logs") as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 850})
        page.set_default_timeout(60_000)
        page.goto(base + "/")
        page.wait_for_selector("#levels")
        page.wait_for_function("() => document.querySelectorAll('img.image-display-area').length === 2")
        page.wait_for_timeout(1000)
        for i in range(rounds):
            target = outs[(i + 1) % len(outs)]
            before = _image_sources(page)
            page.locator("#run-out").fill(str(target))
            t0 = time.perf_counter()
            page.locator("#open").click()
            page.wait_for_function(
                "([out, before]) => document.querySelector('#status').textContent.includes(out)"
                " && document.querySelectorAll('tr[data-level]').length > 0"
                " && Array.from(document.querySelectorAll('img.image-display-area')).every((im, k) => im.src !== before[k])",
                arg=[str(target), before])
            opens.append(time.perf_counter() - t0)
        page.locator(f"tr[data-level='{LEVEL}']").click()
        page.locator("#unlock").check()
        page.wait_for_timeout(500)
        for i in range(rounds):
            step = 6.0 if i % 2 == 0 else -6.0
            spot = _json(base, f"/harness/keypoint?view=Yellow&label={CORNER.replace(' ', '%20')}&da={step}")
            box = page.locator("img.image-display-area").first.bounding_box()
            x0, y0 = box["x"] + spot["x"] * box["width"], box["y"] + spot["y"] * box["height"]
            x1, y1 = box["x"] + spot["to_x"] * box["width"], box["y"] + spot["to_y"] * box["height"]
            page.mouse.move(x0 + 4, y0 + 4)
            page.mouse.move(x0, y0)
            page.wait_for_timeout(400)
            page.mouse.down()
            for k in range(1, 10):            # most of the way, then let the page settle
                page.mouse.move(x0 + (x1 - x0) * k / 10, y0 + (y1 - y0) * k / 10)
                page.wait_for_timeout(30)
            page.wait_for_timeout(800)
            slip = page.locator(f"tr[data-level='{LEVEL}'] td[data-kind='slip']").inner_text().strip()
            t0 = time.perf_counter()          # the last step of the drag: to the slip % shown for it
            page.mouse.move(x1, y1)
            page.wait_for_function(
                f"(s) => document.querySelector(\"tr[data-level='{LEVEL}'] td[data-kind='slip']\").textContent.trim() !== s",
                arg=slip)
            page.mouse.up()
            regrades.append(time.perf_counter() - t0)
            page.wait_for_timeout(300)
        browser.close()
    return {"open": opens, "regrade": regrades}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="spineassist-bench-web-"))
    try:
        times = measure(_assessed(work, (3, 4)), args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [f"Machine: {machine()}; Chromium (Debian) driven by Playwright on the same machine, page 1400x850, "
             f"views rendered offscreen by the server (Mesa EGL, CPU). {args.rounds} rounds each; two phantom "
             "studies assessed with the shipped models.", "",
             "| action | median (s) | max (s) | target (s) |", "|---|---|---|---|"]
    for name, target, what in (("open", 5.0, "Open an assessed study (click to table and both views drawn)"),
                               ("regrade", 0.5, "drag a corner: a mouse move to the new slip % in the table")):
        t = times[name]
        lines.append(f"| {what} | {statistics.median(t):.2f} | {max(t):.2f} | {target} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("Review page (spineassist view)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
