"""Writing files so that a crash never leaves a half-written one behind.

Shared by checkpoint conversion (:mod:`uniformer.models.checkpoint`) and training checkpoints, metrics and
reports (:mod:`uniformer.engine`): whatever kills the process (SIGKILL, OOM, power loss after the rename), a
reader sees either the previous complete file or the new complete file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, flush it to disk, then rename it over ``path``.

    The temporary file lives in the same folder (``os.replace`` is atomic only within one file system) and is
    removed if ``write`` fails, so the folder never accumulates partial files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:  # durability: the data must be on disk before the rename publishes it
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
