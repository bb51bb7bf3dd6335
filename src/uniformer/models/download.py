"""Released weights fetched from their sources, verified, into the standard caches.

:func:`fetch_release` tries a release's sources (:mod:`uniformer.models.zoo.sources`) in order, each through its
well-kept client:

* a Hub file: ``huggingface_hub.hf_hub_download`` into the Hugging Face Hub cache (it resumes an interrupted
  download);
* a URL: ``torch.hub.download_url_to_file`` into ``torch.hub``'s checkpoint cache (``$TORCH_HOME/hub/checkpoints``),
  with its SHA-256 prefix check; the file is written under a temporary name and moved into place only once
  complete and verified;
* a Google Drive file: ``gdown`` (optional; it handles Drive's confirmation step for large files) into the same
  folder, verified the same way.

A file whose SHA-256 (or size) is not the published one is refused with both values named, and removed from the
cache, so nothing half-written or wrong stays there. A file already in a cache is used without the network: a URL
or Drive file was verified when it was written; a Hub file is named in the Hub cache by its ETag, a Git LFS
file's SHA-256, which is compared with the published one on every use (the file is hashed when it is not).

Offline (``HF_HUB_OFFLINE=1``, or the source's host name does not resolve) only the caches are looked at, without
retries, and the error says which file to fetch from where and how to pass it (``checkpoint_path=`` /
``--checkpoint``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import tempfile
import urllib.error
from pathlib import Path
from urllib.parse import urlsplit

import huggingface_hub.constants
import torch.hub
from huggingface_hub import hf_hub_download
from huggingface_hub.utils import LocalEntryNotFoundError

from uniformer.models.zoo.schema import Release
from uniformer.models.zoo.sources import DriveFile, HubFile, Source, UrlFile, gdown_installed

__all__ = ["ChecksumError", "fetch_release", "download_hub_file", "weights_cache_dir"]

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A downloaded file whose SHA-256 or size is not the published one (it has been removed)."""


class _Unavailable(Exception):
    """A source that cannot give its file now (offline, unreachable, missing client, no such file)."""


def weights_cache_dir() -> Path:
    """Where URL and Drive downloads are kept: ``torch.hub``'s checkpoint folder (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _offline() -> bool:
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _resolves(url: str) -> bool:
    """Whether the host of ``url`` has an address: a machine without network fails here at once, instead of in a
    client's retries."""
    parts = urlsplit(url)
    try:
        socket.getaddrinfo(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError):
        return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, source: Source, known_sha256: str | None = None) -> None:
    """Refuse ``path`` (remove it) when its size or SHA-256 differs from the published one; ``known_sha256``: a
    digest the cache already vouches for (the Hub cache's file name)."""
    size = path.stat().st_size
    problem = None
    if source.size is not None and size != source.size:
        problem = f"its size {size} bytes is not the published {source.size}"
    elif source.sha256 is not None:
        actual = known_sha256 if known_sha256 and known_sha256.startswith(source.sha256) else _sha256(path)
        if not actual.startswith(source.sha256):
            problem = f"its SHA-256 {actual} does not match the published {source.sha256}"
    if problem is not None:
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{source.name} from {source.label}: {problem}; the file was removed from {path.parent}")


def download_hub_file(repo: str, filename: str, revision: str | None = None) -> Path:
    """``filename`` of the Hub repository ``repo`` from the Hub cache, fetched first when it is not there.

    Offline (``HF_HUB_OFFLINE`` or the Hub's host does not resolve) only the cache is read. ``FileNotFoundError``
    says how to get the file otherwise."""
    try:
        return _hub_file(repo, filename, revision)
    except _Unavailable as exc:
        raise FileNotFoundError(
            f"could not fetch {filename} from the Hugging Face Hub repository {repo} ({exc}). Download it where the "
            f"Hub is reachable (https://huggingface.co/{repo}/resolve/{revision or 'main'}/{filename}) and pass it as "
            f"checkpoint_path='.../{filename}' (CLI: --checkpoint FILE)."
        ) from None


def _no_network(url: str) -> str | None:
    """Why ``url`` is not to be asked now (offline mode, or its host does not resolve); ``None`` when it may be."""
    if _offline():
        return "offline (HF_HUB_OFFLINE)"
    if not _resolves(url):
        return f"{urlsplit(url).hostname} does not resolve (no network?)"
    return None


def _hub_file(repo: str, filename: str, revision: str | None = None) -> Path:
    why = _no_network(huggingface_hub.constants.ENDPOINT)
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision, local_files_only=bool(why)))
    except LocalEntryNotFoundError:
        raise _Unavailable(f"{why or 'the Hub is not reachable'}, and not in the Hub cache") from None
    except Exception as exc:  # no such repository or file, an HTTP error: all end the same way here
        first = str(exc).splitlines()[0] if str(exc) else "no details"
        raise _Unavailable(f"{type(exc).__name__}: {first}") from None


def _fetch_hub(source: HubFile) -> Path:
    path = _hub_file(source.repo, source.filename)
    blob = path.resolve()  # the Hub cache names a file's blob by its ETag, the SHA-256 of a Git LFS file
    try:
        _verify(blob, source, known_sha256=blob.name if blob != path else None)
    except ChecksumError:
        path.unlink(missing_ok=True)
        raise
    return path


def _fetch_url(source: UrlFile) -> Path:
    target = weights_cache_dir() / source.name
    if target.is_file():
        return target
    if why := _no_network(source.url):
        raise _Unavailable(f"{why}, and not in {target.parent}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # download_url_to_file writes a temporary file beside the target, checks the hash prefix and only then moves
    # it into place; on any failure it deletes the temporary file
    try:
        torch.hub.download_url_to_file(source.url, str(target), hash_prefix=source.sha256, progress=True)
    except RuntimeError as exc:
        if "invalid hash value" not in str(exc):
            raise
        raise ChecksumError(
            f"{source.name} from {source.label}: SHA-256 {str(exc).removeprefix('invalid hash value ')}; nothing "
            f"was kept in {target.parent}"
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # HTTP errors, refused connections
        raise _Unavailable(f"{type(exc).__name__}: {exc}") from None
    _verify(target, source, known_sha256=source.sha256)  # torch.hub has checked the digest; the size remains
    return target


def _fetch_drive(source: DriveFile) -> Path:
    target = weights_cache_dir() / source.name
    if target.is_file():
        return target
    if not gdown_installed():
        raise _Unavailable("Google Drive needs the gdown client (pip install gdown, or uniformer[drive])")
    if why := _no_network(source.url):
        raise _Unavailable(f"{why}, and not in {target.parent}")
    import gdown

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{source.name}.", suffix=".partial")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        if gdown.download(id=source.file_id, output=str(tmp), quiet=False) is None:
            raise _Unavailable("gdown could not download it (quota or permissions on the Drive file)")
        _verify(tmp, source)
        shutil.move(tmp, target)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (_Unavailable, ChecksumError)):
            raise
        raise _Unavailable(f"{type(exc).__name__}: {exc}") from None
    return target


_FETCHERS = {"hub": _fetch_hub, "url": _fetch_url, "drive": _fetch_drive}


def fetch_release(name: str, release: Release) -> Path:
    """The checkpoint file of ``release`` of zoo model ``name``: from a cache, or downloaded from the first of its
    sources that gives it, verified.

    ``ValueError`` when nothing was released; :class:`ChecksumError` when a file is not the published one;
    ``FileNotFoundError`` when no source gives the file now, naming each source, what went wrong and how to pass
    the file by hand."""
    if not release.sources:
        raise ValueError(f"{name}: no checkpoint was released for this model; pass checkpoint_path=")
    failures = []
    for source in release.sources:
        try:
            return _FETCHERS[source.kind](source)
        except _Unavailable as exc:
            failures.append(f"  {source.label}: {exc}")
    first = release.sources[0]
    # a Drive download keeps the uploader's file name, which the Drive id does not tell
    path = "DOWNLOADED.pth" if isinstance(first, DriveFile) else f".../{first.name}"
    raise FileNotFoundError(
        f"{name}: could not fetch the released weights:\n"
        + "\n".join(failures)
        + f"\nDownload the file where the network is reachable ({first.manual_step()}) and pass it as "
        f"checkpoint_path='{path}' (CLI: --checkpoint FILE)."
    )
