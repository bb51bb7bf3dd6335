"""``uniformer data check``: decode every video of a list or folder and report which ones are broken.

Run it once on a new dataset before training: each file is opened, its packets indexed and every frame decoded
(in worker processes), and the result is one of

* ``ok``: decodes fully, and the container, the packet index and the list (if it gives a count) agree;
* ``mismatch``: decodes, but a frame count is wrong somewhere (the container header, or a count in the list).
  Training is unaffected, since sampling uses the measured count, but the report says where the claim is false;
* ``broken``: missing, empty, not a video, or decoding fails part-way, with the reason.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uniformer._fileio import atomic_write_text
from uniformer._progress import progress_bar
from uniformer.data.decode import VideoSource, count_decoded_frames, is_video_path, read_frames, video_info
from uniformer.data.images import IMAGE_EXTENSIONS
from uniformer.data.lists import VideoRecord, read_kinetics_list, read_video_list


@dataclass
class FileCheck:
    """The verdict on one video."""

    path: str
    status: str
    reason: str = ""
    frames: int | None = None
    header_frames: int | None = None
    listed_frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None


@dataclass
class CheckReport:
    """Verdicts on every video of a source, in the source's order."""

    source: str
    files: list[FileCheck] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Number of files with ``status`` (``ok``, ``mismatch`` or ``broken``)."""
        return sum(f.status == status for f in self.files)

    @property
    def broken(self) -> list[FileCheck]:
        """The files that cannot be decoded."""
        return [f for f in self.files if f.status == "broken"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: totals first, then one entry per file."""
        return {
            "source": self.source,
            "total": len(self.files),
            "ok": self.count("ok"),
            "mismatch": self.count("mismatch"),
            "broken": self.count("broken"),
            "files": [asdict(f) for f in self.files],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as indented JSON."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")


def _decode_as_training_does(path: VideoSource, indexed: int) -> int:
    """Decode ``path`` completely and through :func:`read_frames`, the reader training uses; returns the decoded
    frame count. A frame folder is read whole (its images must share one size, as a clip needs); a video file is
    decoded sequentially, then its first and last indexed frames are read the way training seeks to them."""
    if isinstance(path, str) and os.path.isdir(path):
        read_frames(path, range(indexed))
        return indexed
    decoded = count_decoded_frames(path)
    read_frames(path, sorted({0, max(min(indexed, decoded) - 1, 0)}))
    return decoded


def check_file(record: VideoRecord) -> FileCheck:
    """Fully decode one video (or frame folder) and classify it; never raises for a bad file."""
    result = FileCheck(record.name, "ok", listed_frames=record.num_frames)
    try:
        source = record.source()
        info = video_info(source)
        decoded = _decode_as_training_does(source, info.num_frames)
    except Exception as exc:  # noqa: BLE001 - a checker reports every failure of untrusted files, whatever its type
        result.status, result.reason = "broken", f"{type(exc).__name__}: {exc}"
        return result
    result.frames, result.header_frames = decoded, info.header_frames
    result.fps, result.width, result.height = info.fps, info.width, info.height
    problems = []
    if decoded != info.num_frames:
        problems.append(f"packet index has {info.num_frames} frames but {decoded} decode")
    if info.header_frames is not None and info.header_frames != decoded:
        problems.append(f"container header says {info.header_frames} frames, {decoded} decode")
    if record.num_frames is not None and record.num_frames != decoded:
        problems.append(f"list says {record.num_frames} frames, {decoded} decode")
    if problems:
        result.status, result.reason = "mismatch", "; ".join(problems)
    return result


def collect_videos(source: str | os.PathLike[str], **list_options: Any) -> list[VideoRecord]:
    """The videos named by ``source``: a folder is walked recursively for video files and frame folders; a file is
    read as a list (``path label`` by default, or ``format=...`` with the options of
    :func:`uniformer.data.read_video_list`)."""
    source = os.fspath(source)
    options = {k: v for k, v in list_options.items() if v is not None}
    fmt, root = options.pop("format", None), options.pop("root", None)
    if fmt in ("folder", "hmdb51"):
        return read_video_list(fmt, root or source, list_file=source if fmt == "hmdb51" else None, **options).records
    if fmt is not None:
        return read_video_list(fmt, root or os.path.dirname(source), list_file=source, **options).records
    if os.path.isfile(source):
        return read_kinetics_list(source, root).records
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source}: no such list file or folder")
    records = []
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        if any(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in files):
            records.append(VideoRecord(folder, -1))
        records += [VideoRecord(os.path.join(folder, f), -1) for f in sorted(files) if is_video_path(f)]
    if not records:
        raise ValueError(f"{source}: no video files or frame folders found")
    return records


def check_videos(
    source: str | os.PathLike[str], *, workers: int = 2, progress: bool = True, **list_options: Any
) -> CheckReport:
    """Check every video of ``source`` (see :func:`collect_videos`) with ``workers`` processes and a progress bar."""
    records = collect_videos(source, **list_options)
    results: list[FileCheck | None] = [None] * len(records)
    with progress_bar(len(records), unit="video", desc="checking", enabled=progress) as bar:
        if workers <= 1:
            for i, record in enumerate(records):
                results[i] = check_file(record)
                bar.update()
        else:
            # spawned, not forked: decoding through torch in a child forked after the parent ran torch's OpenMP
            # thread pool can crash (SIGSEGV seen with torch 2.14.1), and a checker must not die on its tool
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(check_file, record): i for i, record in enumerate(records)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update()
    return CheckReport(os.fspath(source), [r for r in results if r is not None])
