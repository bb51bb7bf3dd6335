"""Where a released checkpoint can be downloaded from: a Hugging Face Hub file, a plain URL or a Google Drive file.

A release lists its sources in preference order (:attr:`~uniformer.models.zoo.schema.Release.sources`);
:mod:`uniformer.models.download` tries them in that order. A source knows the file's SHA-256 when a published page
states it (the Hub's Git LFS pointer, OpenMMLab's ``-xxxxxxxx`` file-name suffix, which is the first 8 hex digits
of the SHA-256) and the file's size when it is published; a downloaded file that does not match is refused. Drive
needs the optional ``gdown`` client (``pip install uniformer[drive]``); the other two download with the clients
the package already has.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import ClassVar, Literal
from urllib.parse import urlsplit

__all__ = [
    "HubFile",
    "UrlFile",
    "DriveFile",
    "Source",
    "gdown_installed",
    "describe",
    "MMACTION2_UNIFORMER",
    "MMPOSE_UNIFORMER",
]

# OpenMMLab's re-hosted UniFormer files (mmaction2 ``configs/recognition/uniformer``, mmpose ``projects/uniformer``)
MMACTION2_UNIFORMER = "https://download.openmmlab.com/mmaction/v1.0/recognition/uniformerv1/"
MMPOSE_UNIFORMER = "https://download.openmmlab.com/mmpose/v1/projects/uniformer/"

_SHA256 = re.compile(r"[0-9a-f]{8,64}")


def gdown_installed() -> bool:
    """Whether the optional Google Drive client is importable."""
    return importlib.util.find_spec("gdown") is not None


class _Published:
    """What the sources share: the published digest, checked when the zoo is built (``_check`` adds a source's
    own checks), and a file that ``pretrained=True`` downloads by itself or a person from ``url``."""

    sha256: str | None
    size: int | None
    label: str
    url: str

    def __post_init__(self) -> None:
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"{self.label}: sha256 {self.sha256!r} is not 8 to 64 lowercase hex digits")
        if self.size is not None and self.size <= 0:
            raise ValueError(f"{self.label}: size {self.size} is not a positive byte count")
        self._check()

    def _check(self) -> None:
        pass

    @property
    def automatic(self) -> bool:
        return True

    def manual_step(self) -> str:
        return self.url


@dataclass(frozen=True)
class HubFile(_Published):
    """``filename`` in the Hugging Face Hub model repository ``repo`` (fetched into the standard Hub cache)."""

    repo: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    kind: ClassVar[Literal["hub"]] = "hub"

    @property
    def name(self) -> str:
        return self.filename

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/main/{self.filename}"

    @property
    def label(self) -> str:
        return f"Hub {self.repo}/{self.filename}"


@dataclass(frozen=True)
class UrlFile(_Published):
    """A file at ``url`` (fetched with ``torch.hub`` into its checkpoint cache under the URL's file name).

    ``sha256`` (a prefix of at least 8 hex digits) is required: a plain HTTP download has no other check that it
    arrived whole."""

    url: str
    sha256: str
    size: int | None = None
    kind: ClassVar[Literal["url"]] = "url"

    def _check(self) -> None:
        if urlsplit(self.url).scheme not in ("http", "https") or not self.name:
            raise ValueError(f"UrlFile: {self.url!r} is not an http(s) URL of a file")

    @property
    def name(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name

    @property
    def label(self) -> str:
        return f"URL {self.url}"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


@dataclass(frozen=True)
class DriveFile(_Published):
    """A Google Drive file, by id (fetched with ``gdown`` when it is installed, into ``torch.hub``'s cache)."""

    file_id: str
    sha256: str | None = None
    size: int | None = None
    kind: ClassVar[Literal["drive"]] = "drive"

    def _check(self) -> None:
        if not re.fullmatch(r"[0-9A-Za-z_-]{20,}", self.file_id):
            raise ValueError(f"DriveFile: {self.file_id!r} is not a Google Drive file id")

    @property
    def name(self) -> str:
        return f"gdrive-{self.file_id}.pth"

    @property
    def url(self) -> str:
        return f"https://drive.google.com/file/d/{self.file_id}/view"

    @property
    def label(self) -> str:
        return f"Google Drive {self.url}"

    @property
    def automatic(self) -> bool:
        return gdown_installed()

    def manual_step(self) -> str:
        return f"{self.url} (`pip install gdown` makes pretrained=True fetch it)"


Source = HubFile | UrlFile | DriveFile


def describe(source: Source) -> str:
    """One line for ``uniformer info``: where the file is, its published SHA-256 and size, whether
    ``pretrained=True`` downloads it by itself."""
    facts = [f"SHA-256 {source.sha256}"] if source.sha256 else []
    facts += [f"{source.size / 1e6:.1f} MB"] if source.size else []
    if source.kind == "drive":
        how = "downloads automatically" if source.automatic else "downloads automatically once gdown is installed"
    else:
        how = "downloads automatically"
    return f"{source.label} ({', '.join([*facts, how])})"
