"""Locate the files SpineAssist ships beside its code (model weights, schema, terminology)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from SpineAssistLib.errors import ResourcesError

_ENV = "SPINEASSIST_RESOURCES"


def resources_dir() -> Path:
    """Return the folder holding SpineAssist's bundled resources.

    Looked up in order: ``$SPINEASSIST_RESOURCES``; ``SpineAssistLib/Resources`` (the layout a Slicer
    extension build installs); ``<repository>/Resources`` (a source checkout or editable install).
    """
    override = os.environ.get(_ENV)
    if override:
        path = Path(override)
        if not path.is_dir():
            raise ResourcesError(f"{_ENV}={override} is not a folder; unset it or point it at SpineAssist's Resources folder")
        return path
    here = Path(__file__).resolve().parent
    for candidate in (here / "Resources", here.parent / "Resources"):
        if (candidate / "findings.schema.json").is_file():
            return candidate
    raise ResourcesError(
        f"SpineAssist's Resources folder was not found next to {here}; reinstall SpineAssist "
        f"(pip install -e . from a source checkout) or set {_ENV}"
    )


def resource_path(*parts: str) -> Path:
    """Return the path of one bundled resource file, e.g. ``resource_path("Models", "manifest.json")``."""
    return resources_dir().joinpath(*parts)


def cache_root() -> Path:
    """Return the project's cache folder (``.cache`` of a writable checkout, else one in the temp folder)."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file() and os.access(repo, os.W_OK):
        return repo / ".cache"
    return Path(tempfile.gettempdir()) / "spineassist-cache"
