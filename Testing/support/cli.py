"""Run the ``spineassist`` command line in a fresh process, as a user would."""

import os
import subprocess
import sys


def run_cli(*args, env=None):
    """Run ``python -m SpineAssistLib.cli *args`` (``env``: variables added to this process's) and return the finished process."""
    return subprocess.run([sys.executable, "-m", "SpineAssistLib.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})
