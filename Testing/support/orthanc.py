"""A real Orthanc server with its DICOMweb plugin, for the tests: private to one test session, reachable
from 127.0.0.1 only, with a random user and password.

Usage::

    with orthanc_server(tmp_path) as pacs:
        pacs.upload(files)                               # REST, not DICOMweb: the code under test is the DICOMweb side
        server = connect(pacs.url)          # SPINEASSIST_DICOMWEB_USER and _PASSWORD set to pacs.user, pacs.password

Orthanc 1.10 has no bind-address option: ``RemoteAccessAllowed: false`` makes it refuse every client
that is not on this machine, and its DICOM (DIMSE) port is off.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from support.net import free_port

ORTHANC = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
START_WITHIN_S = 30.0
STOP_WITHIN_S = 10.0
PORT_TRIES = 3


class OrthancUnavailable(RuntimeError):
    """Orthanc or its DICOMweb plugin is not installed."""


@dataclass
class OrthancServer:
    """A running Orthanc: ``url`` is its DICOMweb root, ``rest`` its REST API root."""

    port: int
    user: str
    password: str = field(repr=False)
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    def request(self, method: str, path: str, body: bytes | None = None, timeout_s: float = 30.0) -> Any:
        """Return the decoded JSON answer of a REST call (``path`` below ``rest``), authenticated."""
        auth = b64encode(f"{self.user}:{self.password}".encode()).decode()
        req = urllib.request.Request(self.rest + path, data=body, method=method,
                                     headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            data = r.read()
        return json.loads(data) if data else None

    def qido(self, path: str) -> list[dict]:
        """Return the DICOM JSON answer of a QIDO-RS query (``path`` below the DICOMweb root, e.g. ``studies?...``)."""
        return self.request("GET", "/dicom-web/" + path) or []

    def upload(self, files: Iterable[Path | bytes]) -> list[str]:
        """Store DICOM files (paths, or their bytes) through the REST API; return their Orthanc instance ids."""
        return [self.request("POST", "/instances", f if isinstance(f, bytes) else Path(f).read_bytes())["ID"]
                for f in files]

    def delete(self, uid: str) -> None:
        """Remove the study, series or instance with this DICOM UID, and everything in it, if present."""
        for found in self.request("POST", "/tools/lookup", uid.encode()) or []:
            self.request("DELETE", found["Path"])


def _config(folder: Path, port: int, user: str, password: str) -> dict:
    return {
        "Name": "SpineAssistTest",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "DicomServerEnabled": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {user: password},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "SaveJobs": False,
        "HttpThreadsCount": 8,       # a test machine has two cores; the default 50 threads only wait
        "ConcurrentJobs": 1,
    }


def _wait_until_up(server: OrthancServer, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with status {server.process.returncode}; its log:\n{server.log()}")
        try:
            server.request("GET", "/system", timeout_s=2.0)
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Orthanc did not answer GET /system within {within_s:.0f} s; its log:\n{server.log()}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_WITHIN_S)


@contextlib.contextmanager
def orthanc_server(folder: Path, *, start_within_s: float = START_WITHIN_S) -> Iterator[OrthancServer]:
    """Start Orthanc with its storage in ``folder``, yield it once ``GET /system`` answers, stop it at exit."""
    if shutil.which(ORTHANC) is None or not DICOMWEB_PLUGIN.exists():
        raise OrthancUnavailable("Orthanc and its DICOMweb plugin are needed: apt-get install orthanc orthanc-dicomweb")
    folder.mkdir(parents=True, exist_ok=True)
    user, password = f"u{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    for attempt in range(1, PORT_TRIES + 1):
        # another process may take the free port before Orthanc binds it: then Orthanc exits, and a new port is tried
        port = free_port()
        config = folder / "orthanc.json"
        config.write_text(json.dumps(_config(folder, port, user, password), indent=1))
        log_path = folder / f"orthanc-{attempt}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([ORTHANC, str(config)], stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        server = OrthancServer(port, user, password, log_path, process)
        try:
            _wait_until_up(server, start_within_s)
        except RuntimeError:
            exited = process.poll() is not None         # a port taken exits at once; a hang is not a port problem
            _stop(process)
            if attempt == PORT_TRIES or not exited:
                raise
            continue
        try:
            yield server
        finally:
            _stop(process)
        return
