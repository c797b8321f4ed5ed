"""SpineAssist's Python dependencies: which are missing, and how to install them (never at import time).

``Resources/requirements.txt`` lists them, pinned. torch and torchvision are special: in Slicer
they come from the PyTorch extension (``PyTorchUtils``), which picks the build that matches the
computer's GPU, so any installed version is accepted and a missing one is installed through it.

Usage (Slicer's Python console; the panel does this on first use)::

    from SpineAssistLib.ui import dependencies
    dependencies.missing_requirements()           # ['ultralytics==8.4.190', 'monai==1.6.1']
    dependencies.install_in_slicer()              # asks first, then installs; returns what it installed
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from SpineAssistLib.resources import resource_path

TORCH_PACKAGES = ("torch", "torchvision")
MINIMUM_TORCH = "2.0"

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:(==|>=)\s*([A-Za-z0-9.+!*-]+))?\s*(?:;.*)?$")


@dataclass(frozen=True)
class Requirement:
    """One line of requirements.txt: a distribution name and, optionally, ``==`` or ``>=`` a version."""

    name: str
    op: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.version}" if self.op else self.name

    @property
    def is_torch(self) -> bool:
        return normalize(self.name) in TORCH_PACKAGES


def normalize(name: str) -> str:
    """Return a distribution name in PEP 503 normal form (``SimpleITK`` -> ``simpleitk``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_path() -> Path:
    """Return the bundled requirements.txt."""
    return resource_path("requirements.txt")


def read_requirements(path: str | Path | None = None) -> list[Requirement]:
    """Return the requirements of a requirements.txt (comments and blank lines skipped)."""
    path = Path(path) if path is not None else requirements_path()
    out = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _REQ.match(line)
        if not m:
            raise ValueError(f"{path}:{number}: cannot read requirement {raw.strip()!r}; expected name, name==version "
                             f"or name>=version")
        out.append(Requirement(m.group(1), m.group(2), m.group(3)))
    return out


def _version_tuple(v: str) -> tuple[int, ...]:
    parts = []
    for piece in re.split(r"[.+-]", v):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def installed_version(name: str) -> str | None:
    """Return the installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def is_satisfied(req: Requirement, installed: str | None) -> bool:
    """Return True if ``installed`` (a version, or None) meets ``req``; torch accepts any version."""
    if installed is None:
        return False
    if req.is_torch or req.op is None:
        return True
    if req.op == "==":
        return _version_tuple(installed.split("+")[0]) == _version_tuple(req.version or "")
    return _version_tuple(installed) >= _version_tuple(req.version or "")


def missing_requirements(path: str | Path | None = None,
                         version_of: Callable[[str], str | None] = installed_version) -> list[str]:
    """Return the requirements (as pip writes them) not met by what is installed, in file order."""
    return [str(r) for r in read_requirements(path) if not is_satisfied(r, version_of(r.name))]


def split_torch(requirements: Iterable[str]) -> tuple[list[str], list[str]]:
    """Return (torch requirements, the others) from requirement strings."""
    torch, other = [], []
    for r in requirements:
        name = _REQ.match(r)
        (torch if name and normalize(name.group(1)) in TORCH_PACKAGES else other).append(r)
    return torch, other


def install_command(requirements: Iterable[str], python: str | None = None) -> list[str]:
    """Return the pip command installing ``requirements`` (torch excluded: it comes from the PyTorch extension)."""
    _, other = split_torch(requirements)
    if not other:
        return []
    return [python or sys.executable, "-m", "pip", "install", *other]


def install_in_slicer(path: str | Path | None = None, ask: bool = True) -> list[str]:
    """Install what is missing inside 3D Slicer; return what was installed ([] if nothing, or the user declined).

    torch comes through the PyTorch extension's installer (it asks itself); the rest through
    ``slicer.util.pip_install``, after one confirmation listing them.
    """
    import slicer

    missing = missing_requirements(path)
    if not missing:
        return []
    torch, other = split_torch(missing)
    installed: list[str] = []
    if torch:
        try:
            import PyTorchUtils  # the PyTorch extension, a dependency of SpineAssist
        except ImportError:
            raise RuntimeError("SpineAssist needs PyTorch: install the 'PyTorch' extension from the Extensions "
                               "Manager, restart Slicer, then open SpineAssist again") from None
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=ask,
                                                         torchVersionRequirement=f">={MINIMUM_TORCH}") is None:
            return installed
        installed += torch
    if other:
        if ask and not slicer.util.confirmOkCancelDisplay(
                "SpineAssist needs these Python packages, which are not installed yet:\n\n  " + "\n  ".join(other)
                + "\n\nInstall them now? This downloads them once and may take a few minutes.",
                "SpineAssist: install dependencies"):
            return installed
        slicer.util.pip_install(" ".join(other))
        installed += other
    return installed
