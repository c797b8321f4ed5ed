"""``spineassist view OUT`` or ``spineassist view STUDY --out OUT``: review and correct in a browser.

Serves the review page (``SpineAssistLib.web``) on 127.0.0.1: Slicer's slice views of the study with
the segmentation, keypoints, boxes and measurement lines, the level table, an editor per grade,
keypoints that regrade as they are dragged, Save (findings.json and scene.mrb as one set), a run
with progress and Cancel, and the teaching steps. Given a study folder, it assesses the study into
OUT first, on the page. Another address needs ``--allow-remote`` and the page then asks for the
random token printed with its address.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.export.outdir import check_out_dir
from SpineAssistLib.web.access import is_loopback, new_token, page_url

DEFAULT_PORT = 8080
ASSESSED_MARKERS = ("scene.mrb", "findings.json")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="review and correct an assessment in a web browser (serves 127.0.0.1)",
                       description="Open an assessed study (an --out folder of `spineassist assess`) on a page in "
                       "the browser, or assess a DICOM study folder into --out and open it. The page shows the "
                       "sagittal and axial views with the model's drawings, the levels and their grades; corrections "
                       "and dragged keypoints are saved into OUT beside the model's values.")
    p.add_argument("path", type=Path, metavar="OUT_OR_STUDY",
                   help="an assessed output folder (holds scene.mrb), or a DICOM folder of one study")
    p.add_argument("--out", type=Path, help="with a study folder: where to write the assessment "
                   "(default: a folder named STUDY-spineassist beside it)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other machines can reach; the page then needs the random token in its URL")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="for the assessment it runs")
    p.add_argument("--reader", help="the name corrections are recorded under (default: your login name)")
    p.set_defaults(func=run)


def _plan(args: argparse.Namespace) -> tuple[Path | None, Path | None, Path]:
    """Return (study to assess or None, OUT to open or None, OUT) after checking the paths."""
    path = args.path.expanduser()
    if not path.is_dir():
        raise SpineAssistError(f"{path} is not a folder: give an assessed output folder (with scene.mrb) or the "
                               f"DICOM folder of a study")
    if (path / "scene.mrb").is_file():
        if args.out is not None:
            raise SpineAssistError(f"{path} is an assessed output folder already: leave out --out, or give the "
                                   f"study's DICOM folder to assess it again")
        return None, path, path
    if (path / "findings.json").is_file():
        raise SpineAssistError(f"{path} has findings.json but no scene.mrb: rerun `spineassist assess` into it "
                               f"to write the Slicer scene the page shows")
    out = args.out if args.out is not None else path.parent / f"{path.name}-spineassist"
    check_out_dir(out, [path], create=True)
    return path, None, out


def _check_port(host: str, port: int) -> None:
    """Fail before anything is loaded when the address cannot be served (a port in use, an unknown host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
    except OSError as e:
        raise SpineAssistError(f"cannot serve on {host}:{port} ({e.strerror or e}): choose another --port, or stop "
                               f"what serves there") from None


def run(args: argparse.Namespace) -> int:
    if not is_loopback(args.host) and not args.allow_remote:
        raise SpineAssistError(f"--host {args.host} can be reached from other machines: add --allow-remote to serve "
                               f"there (the page will then need the random token printed with its address), or "
                               f"leave --host out to serve 127.0.0.1 only")
    if not 0 <= args.port <= 65535:
        raise SpineAssistError(f"--port {args.port} is not a port number (0-65535)")
    _check_port(args.host, args.port)
    study, opened, out = _plan(args)
    try:
        from SpineAssistLib.web.app import SpineAssistWebApp, start_page
    except ImportError as e:
        raise SpineAssistError(f"the browser view needs trame-slicer ({e.name or e} is missing): run `make setup`, "
                               f"or pip install -r requirements-web.txt") from None
    token = None if is_loopback(args.host) else new_token()
    # Slicer's bundle reader and the views keep temporary files: in a folder of this run, removed at exit
    scratch = Path(tempfile.mkdtemp(prefix="spineassist-view-"))
    tempfile.tempdir = str(scratch)
    os.environ["TMPDIR"] = str(scratch)
    try:
        app = SpineAssistWebApp(reader=args.reader, device=args.device, locked_paths=token is not None,
                                quiet=not getattr(args, "verbose", False))
        app.set_paths(study, out)
        if opened is not None:
            app.panel.open(opened)

        def ready(port: int) -> None:
            print(f"SpineAssist is serving {out} at {page_url(args.host, port, token)}", flush=True)
            print("Open that address in a browser; Ctrl-C stops the server (unsaved corrections are lost).",
                  flush=True)
            if study is not None:
                app.panel.attempt(lambda: app.panel.run(study, out, device=args.device), "Cannot run")

        try:
            start_page(app, host=args.host, port=args.port, token=token, on_ready=ready)
        except OSError as e:
            raise SpineAssistError(f"cannot serve on {args.host}:{args.port} ({e.strerror or e}): choose another "
                                   f"--port") from None
        finally:
            app.panel.close()
    finally:
        tempfile.tempdir = None
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.flush()
    return 0
