"""Remote dataset roots: any fsspec URL (``s3://``, ``gs://``, ``http(s)://``, ...) where a local path would go.

A path is remote when it carries a protocol (``s3://bucket/k400/abc.mp4``); everything else is a local path and
takes the usual ``open``/``os`` route, so local runs do not change. Remote files are opened through fsspec as
seekable file objects that fetch byte ranges on demand, so the decoder reads the container index and the few
GOPs a clip needs, not the whole video. A local cache is fsspec's own URL chaining: a root of
``filecache::s3://bucket/k400`` keeps each file it reads under fsspec's cache folder (set it with the environment
variable ``FSSPEC_FILECACHE_CACHE_STORAGE``, read when fsspec is imported, or ``fsspec.config.conf``) and reads it
from there afterwards; ``simplecache::`` does the same
for one process's lifetime. Credentials and endpoints come from each filesystem's usual configuration (for S3:
the ``AWS_*`` environment variables, ``~/.aws``, ``AWS_ENDPOINT_URL`` for an S3-compatible server).
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import IO, Any

__all__ = ["exists", "is_url", "join", "open_binary", "read_bytes", "read_text", "stamp"]

_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::|^[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an fsspec URL (``proto://...`` or a chained ``cache::proto://...``)."""
    return isinstance(path, str) and bool(_PROTOCOL.match(path))


def join(root: str | os.PathLike[str], relative: str) -> str:
    """``relative`` under ``root``; an absolute path or a URL stays as it is."""
    if is_url(relative) or os.path.isabs(relative):
        return relative
    root = os.fspath(root)
    if is_url(root):
        return posixpath.join(root.rstrip("/") + "/", relative)
    return os.path.join(root, relative)


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:  # an unknown protocol, or its package (s3fs, gcsfs) not installed
        raise ValueError(
            f"{url}: cannot open this URL: {exc} (pip install 'uniformer[scale]' for s3 and http)"
        ) from exc


def open_binary(path: str) -> IO[bytes]:
    """A seekable binary file object for a URL (byte ranges fetched on demand) or a local path."""
    if not is_url(path):
        return open(path, "rb")
    fs, inner = _fs(path)
    try:
        return fs.open(inner, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None


def read_bytes(path: str, start: int | None = None, end: int | None = None) -> bytes:
    """The bytes ``[start, end)`` of a file (all of it by default): one ranged request for a URL."""
    if not is_url(path):
        with open(path, "rb") as handle:
            handle.seek(start or 0)
            return handle.read() if end is None else handle.read(end - (start or 0))
    fs, inner = _fs(path)
    try:
        return fs.cat_file(inner, start=start, end=end)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None


def read_text(path: str | os.PathLike[str]) -> str:
    """A whole text file (UTF-8), local or remote."""
    path = os.fspath(path)
    if not is_url(path):
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    return read_bytes(path).decode("utf-8")


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether a file or folder exists, local or remote."""
    path = os.fspath(path)
    if not is_url(path):
        return os.path.exists(path)
    fs, inner = _fs(path)
    return bool(fs.exists(inner))


def stamp(path: str) -> tuple[int, str]:
    """``(size, version)`` of a remote file, what per-process caches key on so a replaced object is read again
    (the version is the store's ETag or modification time where it gives one)."""
    fs, inner = _fs(path)
    try:
        info = fs.info(inner)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such video file") from None
    version = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime") or ""
    return int(info.get("size") or 0), str(version)
