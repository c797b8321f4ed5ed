"""findings.json: the assessment in the ``spineassist.findings/2`` schema (see DESIGN.md).

Usage::

    from SpineAssistLib.export.findings_json import write_findings_json
    write_findings_json(assessment, "out/findings.json")
"""

from __future__ import annotations

import os
from pathlib import Path

from SpineAssistLib.export.atomic import atomic_write
from SpineAssistLib.findings import Assessment


def write_findings_json(assessment: Assessment, path: str | os.PathLike[str]) -> Path:
    """Write the assessment as findings.json (UTF-8, indented) atomically; return the path."""
    path = Path(path)
    with atomic_write(path, "w") as f:
        f.write(assessment.to_json() + "\n")
    return path
