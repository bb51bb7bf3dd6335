"""WebDataset tar shards: a dataset as a few large files instead of hundreds of thousands of small ones.

:func:`write_shards` packs the videos of a :class:`~uniformer.data.lists.VideoList` into tar shards with the
``webdataset`` library's ``ShardWriter`` (a new shard when one passes ``max_bytes``). Each sample is the standard
WebDataset layout: ``<key>.<ext>`` (the video file's bytes, untouched), ``<key>.cls`` (the label) and
``<key>.json`` (label, class name, the source's path), so any WebDataset reader streams the shards as they are.
Beside the shards, ``index.json`` (written last, atomically: a folder without it is incomplete) lists the
classes and, for every sample, its shard and the byte range of its video inside the tar.

Training reads a sample through that index: one byte-range read of its video (a ranged GET on an object store)
instead of a file per video. So the shards take the engine's data order (:mod:`uniformer.engine.loader`: one
seeded permutation per epoch, cut into per-rank micro-batches, worker-independent augmentation), which is what
makes a run from shards equal, step for step, to the same run from the original files, and a mid-epoch resume
exact; no shuffle buffer or per-worker shard split is needed for that. :func:`~uniformer.data.lists.read_shard_index`
turns the index into the :class:`VideoList` that :class:`~uniformer.data.datasets.VideoDataset` reads
(``data.format=webdataset``, the index as the list file).
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uniformer._fileio import atomic_write_text
from uniformer._progress import progress_bar
from uniformer.data.lists import INDEX_KIND, VideoList

__all__ = ["INDEX_NAME", "ShardReport", "stream_samples", "write_shards"]

INDEX_NAME = "index.json"


@dataclass
class ShardReport:
    """What :func:`write_shards` wrote: the shard files, the index, the samples packed and the sources left out
    with the reason (a missing or empty file)."""

    index: str
    shards: list[str]
    samples: int
    bytes: int
    failed: list[tuple[str, str]] = field(default_factory=list)


def _members(tar_path: str) -> dict[str, tuple[int, int]]:
    """``{member name: (offset of its data, size)}`` of a finished tar file."""
    with tarfile.open(tar_path) as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}


def write_shards(
    videos: VideoList,
    out: str | os.PathLike[str],
    *,
    max_bytes: int = 1 << 30,
    prefix: str = "shard",
    progress: bool = False,
) -> ShardReport:
    """Pack ``videos`` (in list order) into ``out/<prefix>-000000.tar``, ... and write ``out/index.json``.

    A sample's key is its position in the list (``%08d``); a shard is closed once it holds ``max_bytes`` or more.
    Sources that cannot be read are left out and reported. Existing shards of an earlier run are replaced.
    """
    import webdataset

    if max_bytes < 1:
        raise ValueError(f"--max-bytes must be positive, got {max_bytes}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX_NAME).unlink(missing_ok=True)  # the folder is incomplete until the new index is written
    for stale in folder.glob(f"{prefix}-*.tar"):
        stale.unlink()
    finished: list[str] = []
    pattern = str(folder / f"{prefix}-%06d.tar")
    writer = webdataset.ShardWriter(pattern, maxsize=max_bytes, verbose=0, post=finished.append)
    placed: list[tuple[int, str, str]] = []  # (list position, key, extension) in writing order
    shard_of: list[int] = []
    failed: list[tuple[str, str]] = []
    total = 0
    bar = progress_bar(len(videos.records), desc="shard", enabled=progress, unit="video")
    try:
        for position, record in enumerate(videos.records):
            bar.update()
            try:
                data = Path(record.path).read_bytes()
            except OSError as exc:
                failed.append((record.path, f"{type(exc).__name__}: {exc}"))
                continue
            if not data:
                failed.append((record.path, "empty file (0 bytes)"))
                continue
            key = f"{position:08d}"
            extension = Path(record.path).suffix.lstrip(".").lower() or "mp4"
            name = videos.classes[record.label] if videos.classes and 0 <= record.label < len(videos.classes) else None
            meta = {"label": record.label, "class": name, "path": record.path}
            writer.write({"__key__": key, extension: data, "cls": str(record.label), "json": json.dumps(meta)})
            placed.append((position, key, extension))
            shard_of.append(writer.shard - 1)
            total += len(data)
    finally:
        writer.close()
        bar.close()
    shard_names = sorted({Path(name).name for name in finished})
    members = {name: _members(str(folder / name)) for name in shard_names}
    samples = []
    for (position, key, extension), shard in zip(placed, shard_of, strict=True):
        name = f"{prefix}-{shard:06d}.tar"
        offset, size = members[name][f"{key}.{extension}"]
        record = videos.records[position]
        samples.append(
            {"key": key, "ext": extension, "shard": shard, "offset": offset, "size": size, "label": record.label}
        )
    index = {"kind": INDEX_KIND, "version": 1, "classes": videos.classes, "shards": shard_names, "samples": samples}
    atomic_write_text(folder / INDEX_NAME, json.dumps(index, separators=(",", ":")) + "\n")
    return ShardReport(str(folder / INDEX_NAME), [str(folder / n) for n in shard_names], len(samples), total, failed)


def stream_samples(shards: list[str]) -> Any:
    """The shards' samples in stored order as the ``webdataset`` library streams them (dicts of raw bytes with
    ``__key__``); for sequential readers and for checking that the shards are standard WebDataset."""
    import webdataset

    return iter(webdataset.WebDataset(shards, shardshuffle=False, empty_check=False))
