"""The browser tests' server: ``spineassist view``'s page over one OUT, plus routes that tell a test where
things are on screen and what the server holds.

Run as ``python -m support.web_harness OUT PORT`` (from Testing/); prints ``READY <port>`` once the page
is served. Extra routes, on 127.0.0.1 only and only in this harness:

- ``GET /harness/keypoint?view=Yellow&label=L4 posterior-inferior&da=8`` -> where the keypoint is drawn,
  and where it would be ``da`` mm further anterior (``dr``, ``ds``: right, superior), as fractions of the
  view's image (x from the left, y from the top): ``{"x", "y", "to_x", "to_y"}``.
- ``GET /harness/state`` -> the page state the server holds (``web.app.page_state``).

Both run on the server's event loop, the thread that owns the scene and the views.

Tests start it with ``page_server(OUT)`` (or the real command with ``view_command([...])``), which yields
the page's address and stops the server afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from support.net import free_port

TESTING = Path(__file__).resolve().parents[1]
START_WITHIN_S = 90.0
URL_LINE = re.compile(r"at (http://127\.0\.0\.1:\d+/\S*)")


@contextlib.contextmanager
def _served(argv: list[str], ready: "re.Pattern[str]", log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start ``argv``, wait for a stdout line matching ``ready`` (group 1: the address), yield it, stop it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w+", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, cwd=TESTING, stdout=subprocess.PIPE, stderr=out, text=True,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            deadline = time.monotonic() + START_WITHIN_S
            url = None
            while url is None:
                line = proc.stdout.readline()    # type: ignore[union-attr]
                if not line and proc.poll() is not None:
                    out.seek(0)
                    raise RuntimeError(f"the page server stopped (exit {proc.returncode}): {out.read()[-3000:]}")
                match = ready.search(line)
                url = match.group(1) if match else None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the page server did not start within {START_WITHIN_S:.0f} s")
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@contextlib.contextmanager
def page_server(out: Path, log_dir: Path) -> Iterator[str]:
    """The review page over ``out`` with this harness's routes; yields its address (``http://127.0.0.1:PORT``)."""
    port = free_port()
    with _served([sys.executable, "-m", "support.web_harness", str(out), str(port)], re.compile(r"READY (\d+)"),
                 log_dir / "page-server.log") as found:
        yield f"http://127.0.0.1:{found}"


@contextlib.contextmanager
def view_command(args: list[str], log_dir: Path) -> Iterator[str]:
    """``spineassist view ARGS --port P`` (the real command); yields the address it prints."""
    port = free_port()
    argv = [sys.executable, "-m", "SpineAssistLib.cli", "view", *args, "--port", str(port)]
    with _served(argv, URL_LINE, log_dir / "view.log") as url:
        yield url.rstrip("/")


def keypoint_on_screen(app: Any, view_name: str, label: str, offset_ras: tuple[float, float, float]) -> dict[str, float]:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    _, node = app._slice_view(view_name)   # noqa: SLF001 - the harness reads the page's own view
    nodes = app.panel.logic.nodes
    for markups in nodes.keypoints.values():
        for i in range(markups.GetNumberOfControlPoints()):
            if markups.GetNthControlPointLabel(i) == label:
                ras = [0.0, 0.0, 0.0]
                markups.GetNthControlPointPositionWorld(i, ras)
                break
        else:
            continue
        break
    else:
        raise KeyError(f"no keypoint labelled {label!r}")
    ras_to_xy = vtkMatrix4x4()
    vtkMatrix4x4.Invert(node.GetXYToRAS(), ras_to_xy)
    width, height, _ = node.GetDimensions()

    def fractions(p: list[float]) -> tuple[float, float]:
        x, y, _, _ = ras_to_xy.MultiplyPoint([*p, 1.0])
        return x / width, 1.0 - y / height     # VTK's y grows upwards, the page's downwards

    x, y = fractions(ras)
    to_x, to_y = fractions([ras[i] + offset_ras[i] for i in range(3)])
    return {"x": x, "y": y, "to_x": to_x, "to_y": to_y, "ras": ras}


def main(out: str, port: int) -> None:
    from aiohttp import web

    from SpineAssistLib.web.app import SpineAssistWebApp, page_state, start_page

    app = SpineAssistWebApp(reader="dr.browser", quiet=True)
    started = time.perf_counter()
    app.panel.open(Path(out))
    opened_s = time.perf_counter() - started

    async def keypoint(request: Any) -> Any:
        q = request.query
        offset = (float(q.get("dr", 0)), float(q.get("da", 0)), float(q.get("ds", 0)))
        try:
            return web.json_response(keypoint_on_screen(app, q.get("view", "Yellow"), q["label"], offset))
        except KeyError as e:
            return web.json_response({"error": str(e)}, status=404)

    async def state(_request: Any) -> Any:
        return web.json_response({**page_state(app.panel), "opened_s": opened_s})

    @app.server.controller.add("on_server_bind")
    def _routes(wslink_server: Any) -> None:
        wslink_server.app.router.add_get("/harness/keypoint", keypoint)
        wslink_server.app.router.add_get("/harness/state", state)

    start_page(app, host="127.0.0.1", port=port, token=None,
               on_ready=lambda p: print(f"READY {p}", flush=True))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
