"""Atomic file writing: an interrupted export never leaves a half-written file under its final name.

Every writer in :mod:`SpineAssistLib.export` writes to a temporary file in the destination folder
(same file system, so the final rename is atomic) and renames it into place only when the block
finished without an exception. On error the temporary file is removed and the destination is left
as it was (absent, or the previous complete version).

Usage::

    from SpineAssistLib.export.atomic import atomic_path, atomic_write

    with atomic_write("out/findings.csv", "w", newline="") as f:
        f.write("level\\n")

    with atomic_path("out/seg.dcm") as tmp:      # for libraries that want a path
        dataset.save_as(tmp)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


def _temporary_in(path: Path) -> Path:
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name to write (e.g. {path / 'report.html'})")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {path.parent} does not exist; create it first (mkdir -p {path.parent})")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    return Path(name)


def _commit(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:  # flush the data to disk before the rename makes it visible
        os.fsync(f.fileno())
    # mkstemp creates 0600; give the final file the permissions an ordinary new file gets.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    Raises ``FileNotFoundError`` when the destination folder does not exist. If the block raises,
    the temporary file is deleted and ``path`` is untouched.
    """
    path = Path(path)
    tmp = _temporary_in(path)
    try:
        yield tmp
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Yield an open file (``mode`` ``"w"`` text or ``"wb"`` binary) that becomes ``path`` on success.

    ``open_kwargs`` go to :func:`open` (e.g. ``encoding="utf-8"``, ``newline=""`` for csv). Text
    mode defaults to UTF-8.
    """
    if mode not in ("w", "wb", "wt", "x", "xb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb' (write a new file); got {mode!r}")
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp:
        with open(tmp, mode.replace("x", "w"), **open_kwargs) as f:
            yield f
