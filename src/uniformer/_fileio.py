"""Writing files so that a crash never leaves a half-written one behind, and reading a user's JSON files.

Shared by checkpoint conversion (:mod:`uniformer.models.checkpoint`) and training checkpoints, metrics and
reports (:mod:`uniformer.engine`): whatever kills the process (SIGKILL, OOM, power loss after the rename), a
reader sees either the previous complete file or the new complete file.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "read_json"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, flush it to disk, then rename it over ``path``.

    The temporary file lives in the same folder (``os.replace`` is atomic only within one file system) and is
    removed if ``write`` fails, so the folder never accumulates partial files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # created like open() would (mode 0666 less the umask; mkstemp would make it 0600), exclusively
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
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


def read_json(path: str | os.PathLike[str], what: str) -> object:
    """The content of the JSON file ``path``; a missing or malformed file is an error naming ``what`` it should
    be (``"keypoint annotations"``, ``"--boxes"``) and the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path}: no such file") from None
    except (OSError, ValueError) as exc:  # a JSON or UTF-8 error is a ValueError
        raise ValueError(f"{what} {path}: not a readable JSON file ({exc})") from None
