"""Dataset preparation before training at scale: re-encode videos, extract frames, build the annotation lists.

What the published recipes do once, before the first epoch (mmaction2's ``tools/data``, VideoMAE's
``DATASET.md``): Kinetics videos re-encoded to a short side of 320 (decoding a 320p clip costs a fraction of the
release's 720p/1080p one), Something-Something V2 frames extracted at 30 fps, and the lists written in the format
the training code reads.

Every tool here walks a source tree, runs one job per file on a process pool, and writes each output atomically
(to a ``*.part`` name, renamed when complete). A rerun therefore skips every finished output and redoes every
half-written one (a killed run leaves only ``*.part`` files, which are removed). A source that cannot be decoded is
skipped and reported with the reason in :class:`PrepareReport`; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from uniformer._fileio import atomic_write_text
from uniformer._progress import progress_bar
from uniformer.data.decode import is_video_path
from uniformer.data.images import DecodeError

__all__ = [
    "PrepareReport",
    "build_lists",
    "extract_frames",
    "find_videos",
    "resize_videos",
    "scaled_size",
]

PART = ".part"


@dataclass
class PrepareReport:
    """What a preparation run did: outputs ``written`` now, ``existing`` ones left as they were (a rerun),
    ``failed`` sources as ``(path, reason)``, and the ``*.part`` leftovers of an earlier killed run it removed."""

    written: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    removed_partial: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line of counts, then one line per failed source."""
        lines = [
            f"{len(self.written)} written, {len(self.existing)} already done, {len(self.failed)} failed"
            + (f", {len(self.removed_partial)} half-written outputs redone" if self.removed_partial else "")
        ]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "existing": self.existing,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "removed_partial": self.removed_partial,
        }


def find_videos(src: str | os.PathLike[str]) -> list[Path]:
    """Every video file under ``src`` (by extension, see ``VIDEO_EXTENSIONS``), sorted; hidden entries skipped."""
    root = Path(src)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: source folder not found")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in files if not f.startswith(".") and is_video_path(f)]
    return sorted(found)


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(width, height)`` with the shorter side ``short_side`` and the aspect ratio kept, both even (yuv420p), as
    FFmpeg's ``scale=-2:320`` that mmaction2's ``resize_videos.py`` runs."""
    if width <= 0 or height <= 0:
        raise ValueError(f"video size {width}x{height} is not a picture size")
    if width <= height:
        return short_side, max(2, round(height * short_side / width / 2) * 2)
    return max(2, round(width * short_side / height / 2) * 2), short_side


def _clean_partials(root: Path) -> list[str]:
    """Remove the ``*.part`` files and folders an interrupted run left under ``root``."""
    removed = []
    if not root.is_dir():
        return removed
    for folder, dirs, files in os.walk(root):
        for name in [*files, *dirs]:
            if name.endswith(PART):
                path = Path(folder) / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(str(path))
        dirs[:] = [d for d in dirs if not d.endswith(PART)]
    return sorted(removed)


def _run(
    jobs: Sequence[tuple[Any, ...]],
    work: Callable[[tuple[Any, ...]], tuple[str, str, str]],
    *,
    workers: int,
    desc: str,
    progress: bool,
    report: PrepareReport,
) -> None:
    """Run ``work`` over ``jobs`` (in ``workers`` processes), collecting ``(status, output or source, reason)``."""
    results: Iterable[tuple[str, str, str]]
    if workers > 1 and len(jobs) > 1:
        pool = ProcessPoolExecutor(min(workers, len(jobs)))
        results = pool.map(work, jobs, chunksize=1)
    else:
        pool, results = None, map(work, jobs)
    try:
        with progress_bar(len(jobs), desc=desc, enabled=progress, unit="file") as bar:
            for status, name, reason in results:
                if status == "written":
                    report.written.append(name)
                elif status == "existing":
                    report.existing.append(name)
                else:
                    report.failed.append((name, reason))
                bar.update()
    finally:
        if pool is not None:
            pool.shutdown()
    report.written.sort()
    report.existing.sort()
    report.failed.sort()


# ----------------------------------------------------------------------------------------------------------------
# resize


def _encoder_options(codec: str) -> dict[str, str]:
    return {"preset": "veryfast", "crf": "20"} if codec == "libx264" else {}


def _resize_one(job: tuple[str, str, int, float | None, str]) -> tuple[str, str, str]:
    """Decode and re-encode one video frame by frame (a long 1080p video never sits in memory whole)."""
    import av

    src, dst, short_side, fps, codec = job
    if os.path.exists(dst):
        return "existing", dst, ""
    part = dst + PART
    try:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        with av.open(src) as source, av.open(part, "w", format="mp4") as target:
            if not source.streams.video:
                raise DecodeError("has no video stream")
            stream = source.streams.video[0]
            rate = Fraction(stream.average_rate or stream.guessed_rate or stream.base_rate or 30)
            out_rate = Fraction(fps if fps is not None else rate).limit_denominator(1001)
            out: Any = None
            emitted, previous, first, last = 0, None, None, 0.0

            def emit(frame: Any) -> None:
                nonlocal out, emitted
                if out is None:
                    width, height = scaled_size(frame.width, frame.height, short_side)
                    out = target.add_stream(codec, rate=out_rate, options=_encoder_options(codec))
                    out.width, out.height, out.pix_fmt = width, height, "yuv420p"
                    out.codec_context.thread_count = 1
                picture = frame.reformat(width=out.width, height=out.height, format="yuv420p")
                picture.pts, picture.time_base = emitted, 1 / out_rate
                target.mux(out.encode(picture))
                emitted += 1

            for index, frame in enumerate(source.decode(stream)):
                if fps is None:  # every frame at the source's rate: same frame count, fps and duration
                    emit(frame)
                    continue
                # a constant rate, as FFmpeg's fps filter: output frame k shows the last input frame at or
                # before k / fps
                time = float(frame.pts * stream.time_base) if frame.pts is not None else index / float(rate)
                first = time if first is None else first
                last = time - first
                while previous is not None and emitted / float(out_rate) < last - 1e-9:
                    emit(previous)
                previous = frame
            if previous is not None:
                end = last + 1 / float(rate)
                while emitted == 0 or emitted / float(out_rate) < end - 1e-9:
                    emit(previous)
            if out is None:
                raise DecodeError("video stream holds no frames")
            target.mux(out.encode())
        os.replace(part, dst)
        return "written", dst, ""
    except Exception as exc:  # a damaged source may raise anything from FFmpeg; it is reported, never fatal
        if os.path.exists(part):
            os.unlink(part)
        return "failed", src, f"{type(exc).__name__}: {exc}"


def resize_videos(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    short_side: int = 320,
    fps: float | None = None,
    codec: str | None = None,
    workers: int = 1,
    progress: bool = False,
) -> PrepareReport:
    """Re-encode every video under ``src`` to ``dst`` (same relative path, ``.mp4``) with the short side
    ``short_side``, keeping the frame rate and duration, or at a constant ``fps`` (the official "fps 30" option
    of Something-Something V2), video only (the models read no audio). ``codec`` defaults to libx264 where PyAV
    has it (else mpeg4)."""
    from uniformer.data.synth import video_codec

    if short_side < 2 or short_side % 2:
        raise ValueError(f"--short-side must be an even number >= 2, got {short_side}")
    if fps is not None and fps <= 0:
        raise ValueError(f"--fps must be positive, got {fps}")
    source, target = Path(src), Path(dst)
    report = PrepareReport(removed_partial=_clean_partials(target))
    codec = codec or video_codec()
    jobs = [
        (str(path), str((target / path.relative_to(source)).with_suffix(".mp4")), short_side, fps, codec)
        for path in find_videos(source)
    ]
    _check_unique_outputs([job[1] for job in jobs], "resize")
    _run(jobs, _resize_one, workers=workers, desc="resize", progress=progress, report=report)
    return report


def _check_unique_outputs(outputs: list[str], what: str) -> None:
    seen: dict[str, int] = {}
    for out in outputs:
        seen[out] = seen.get(out, 0) + 1
    clashes = sorted(out for out, n in seen.items() if n > 1)
    if clashes:
        raise ValueError(
            f"{what}: several sources would write the same output (same name, other extension): {clashes[:5]}"
        )


# ----------------------------------------------------------------------------------------------------------------
# frames


def _frames_one(job: tuple[str, str, float | None, str, int | None, int]) -> tuple[str, str, str]:
    import av

    src, dst, fps, template, short_side, quality = job
    if os.path.isdir(dst):
        return "existing", dst, ""
    part = dst + PART
    try:
        os.makedirs(part)
        with av.open(src) as source:
            if not source.streams.video:
                raise DecodeError("has no video stream")
            stream = source.streams.video[0]
            written, next_time, first = 0, 0.0, None
            for frame in source.decode(stream):
                time = float(frame.pts * stream.time_base) if frame.pts is not None else None
                if fps is not None and time is not None:
                    first = time if first is None else first
                    if time - first + 1e-9 < next_time:
                        continue  # fewer frames than the source: keep the first at or after each 1/fps tick
                    next_time += 1 / fps
                image = frame.to_image()
                if short_side is not None:
                    image = image.resize(scaled_size(image.width, image.height, short_side))
                image.save(os.path.join(part, template.format(written + 1)), quality=quality)
                written += 1
            if not written:
                raise DecodeError("video stream holds no frames")
        os.replace(part, dst)
        return "written", dst, ""
    except Exception as exc:  # reported, never fatal (see resize)
        shutil.rmtree(part, ignore_errors=True)
        return "failed", src, f"{type(exc).__name__}: {exc}"


def extract_frames(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    fps: float | None = 30.0,
    template: str = "{:05d}.jpg",
    short_side: int | None = None,
    quality: int = 95,
    workers: int = 1,
    progress: bool = False,
) -> PrepareReport:
    """Write the frames of every video under ``src`` as JPEG files in ``dst/<relative path without suffix>/``,
    numbered from 1 by ``template`` (``00001.jpg``, as Something-Something V1's release names them and the lists'
    frame folders expect), at ``fps`` (``None``: every frame), optionally resized to ``short_side``. A frame
    folder is complete once it has its final name."""
    if "{" not in template:
        raise ValueError(f"--template must hold a number field such as '{{:05d}}.jpg', got {template!r}")
    if fps is not None and fps <= 0:
        raise ValueError(f"--fps must be positive, got {fps}")
    source, target = Path(src), Path(dst)
    report = PrepareReport(removed_partial=_clean_partials(target))
    jobs = [
        (str(path), str((target / path.relative_to(source)).with_suffix("")), fps, template, short_side, quality)
        for path in find_videos(source)
    ]
    _check_unique_outputs([job[1] for job in jobs], "frames")
    _run(jobs, _frames_one, workers=workers, desc="frames", progress=progress, report=report)
    return report


# ----------------------------------------------------------------------------------------------------------------
# lists


def _package_labels(name: str) -> list[str]:
    from uniformer.data.lists import read_classes

    return read_classes(Path(__file__).resolve().parent.parent / "labels" / name)


def official_class_order(names: Iterable[str]) -> list[str]:
    """The class order the released models were trained with: Kinetics-400/600's label files shipped with the
    package when ``names`` are exactly their classes, else sorted names (the order of Kinetics' own label files
    and of torchvision's ``ImageFolder``)."""
    wanted = set(names)
    for shipped in ("kinetics400.tsv", "kinetics600.tsv"):
        labels = _package_labels(shipped)
        if set(labels) == wanted:
            return labels
    return sorted(wanted)


def kinetics_file_name(youtube_id: str, start: str, end: str) -> str:
    """The file name Kinetics downloaders give a clip: ``<id>_<start:06d>_<end:06d>`` (seconds)."""
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}"


def build_lists(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    annotations: str | os.PathLike[str] | None = None,
    frames: bool = False,
    name: str = "train",
) -> tuple[Path, Path, list[tuple[str, str]]]:
    """Write ``out/<name>.txt`` (``path label``, paths relative to ``src``; with ``frames``: frame folders as
    ``path num_frames label``, the official Something-Something lists) and ``out/classes.txt``.

    The videos come from ``src``'s class folders (``src/<class>/<video>``), or from ``annotations``, a Kinetics
    csv with a header naming ``youtube_id``, ``time_start``, ``time_end`` and ``label`` (the release's columns),
    whose clips are looked up under ``src`` by the downloaders' file name. Listed clips that are missing are
    returned as ``(clip, reason)`` and left out of the list (and reported by the command).
    """
    root = Path(src)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: source folder not found")
    entries: list[tuple[str, str]] = []  # (path relative to root, class name)
    missing: list[tuple[str, str]] = []
    if annotations is None:
        for class_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
            for item in sorted(class_dir.iterdir(), key=lambda p: p.name):
                if (item.is_dir() and frames) or (item.is_file() and not frames and is_video_path(item.name)):
                    entries.append((item.relative_to(root).as_posix(), class_dir.name))
        if not entries:
            raise ValueError(f"{root}: no {'frame folders' if frames else 'videos'} found in class sub-folders")
    else:
        entries, missing = _entries_from_csv(Path(annotations), root, frames)
    classes = official_class_order(label for _, label in entries)
    index = {label: i for i, label in enumerate(classes)}
    lines = []
    for relative, label in entries:
        if frames:
            count = sum(1 for f in os.listdir(root / relative) if not f.startswith("."))
            lines.append(f"{relative} {count} {index[label]}\n")
        else:
            lines.append(f"{relative} {index[label]}\n")
    target = Path(out)
    list_path, classes_path = target / f"{name}.txt", target / "classes.txt"
    atomic_write_text(list_path, "".join(lines))
    atomic_write_text(classes_path, "".join(f"{c}\n" for c in classes))
    return list_path, classes_path, missing


def _entries_from_csv(path: Path, root: Path, frames: bool) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation csv not found")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
        columns = rows[0].keys() if rows else []
    needed = ("youtube_id", "time_start", "time_end", "label")
    absent = [c for c in needed if c not in columns]
    if absent:
        raise ValueError(f"{path}: the header lacks column(s) {', '.join(absent)} (Kinetics csv: {','.join(needed)})")
    # the downloaders keep clips either flat or in class folders: index what is there once, by name
    available: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for item in dirs if frames else [f for f in files if is_video_path(f)]:
            relative = (Path(folder) / item).relative_to(root).as_posix()
            available.setdefault(item if frames else Path(item).stem, relative)
    entries, missing = [], []
    for number, row in enumerate(rows, 2):
        stem = kinetics_file_name(row["youtube_id"], row["time_start"], row["time_end"])
        if stem in available:
            entries.append((available[stem], row["label"].strip()))
        else:
            missing.append((stem, f"{path}:{number}: clip not found under {root}"))
    if not entries:
        raise ValueError(f"{path}: none of the {len(rows)} listed clips was found under {root}")
    return entries, missing


def write_report(report: PrepareReport, path: str | os.PathLike[str]) -> None:
    """The report as JSON, written atomically."""
    atomic_write_text(Path(path), json.dumps(report.to_dict(), indent=1) + "\n")
