"""A local Ray head for the tests: ``ray start --head`` on this machine with two CPUs (two actors), the
test's environment (the DICOMweb credentials a worker reads on its node), stopped at exit."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from support.net import free_port

START_WITHIN_S = 120


def _ray() -> str:
    ray = Path(sys.executable).with_name("ray")
    return str(ray) if ray.exists() else (shutil.which("ray") or "ray")


@contextlib.contextmanager
def ray_head(env: dict[str, str], cpus: int = 2) -> Iterator[str]:
    """Yield the address (127.0.0.1:PORT) of a Ray head started with ``env`` added to this process's."""
    port = free_port()
    full = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **env}
    start = subprocess.run([_ray(), "start", "--head", f"--port={port}", f"--num-cpus={cpus}", "--num-gpus=0",
                            "--include-dashboard=false", "--disable-usage-stats"], capture_output=True, text=True,
                           env=full, timeout=START_WITHIN_S)
    try:
        if start.returncode != 0:
            raise RuntimeError(f"ray start failed ({start.returncode}):\n{start.stdout}\n{start.stderr}")
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([_ray(), "stop", "--force"], capture_output=True, env=full, timeout=60)
