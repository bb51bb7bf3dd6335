"""Frame-exact video decoding: read exactly the frames a sampler asked for, from a file or a frame folder.

Everything downstream (sampling, test-time views, the check command) speaks in 0-based frame indices in
presentation order. Containers do not: they store packets in decode order, stamped with timestamps, and seek to
keyframes. This module is the one place that translates between the two, per backend:

* ``pyav`` (default, always installed). The file is demuxed once (no decoding, so this is cheap) to list every
  packet's presentation timestamp; sorting them gives the pts of frame ``i``. A read then seeks to the keyframe
  before the first wanted frame, decodes forward, keeps only the wanted timestamps, and seeks again only when the
  next wanted frame lies beyond a later keyframe. A short clip of a long video therefore costs a few GOPs, not the
  whole file. The index is cached per process (keyed by path, size and mtime), so the 3 x 4 test views of a video
  demux it once.
* ``torchcodec`` (extra ``uniformer[torchcodec]``; needs FFmpeg 4-8 shared libraries on the system) in its exact
  seek mode, which builds the same kind of index.
* ``decord`` (extra ``uniformer[decord]``).
* Frame folders (a directory of images, e.g. Something-Something V1's ``00001.jpg``...): frame ``i`` is the
  ``i``-th image file in sorted order, so 1-based file numbering never leaks into indices.

A video is a local path, an fsspec URL (``s3://``, ``http(s)://``, ...; PyAV reads it through a seekable file
object that fetches byte ranges on demand, the other backends get its bytes) or the file's bytes (a member of a
WebDataset shard).

A whole video is read by :class:`FrameStream`: one pass from the start to the end (no seeks), every K-th frame
handed out in batches, the frame indices those of the packet index, a damaged packet a skipped frame.

Backends agree on which frame an index means (tests check each against a plain sequential decode); pixel values
can differ by a few levels because each library converts YUV to RGB with its own scaler.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from uniformer.data.images import IMAGE_EXTENSIONS, DecodeError, read_image
from uniformer.data.remote import is_url, open_binary, read_bytes, stamp

BACKENDS: tuple[str, ...] = ("pyav", "torchcodec", "decord")
DEFAULT_BACKEND = "pyav"
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg"})
_INSTALL_HINT = {"torchcodec": "pip install 'uniformer[torchcodec]'", "decord": "pip install 'uniformer[decord]'"}


@dataclass(frozen=True)
class VideoInfo:
    """What a sampler needs to know about a video, measured rather than trusted.

    ``num_frames`` is the number of frames a sequential decode yields (counted from the packet index, or the
    image files of a frame folder). ``header_frames`` is what the container claims (``None`` when it does not
    say); ``count_mismatch`` is True when the claim is wrong, which is common for webm, AVI and re-muxed files and
    is why the claim is never used for sampling.
    """

    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    header_frames: int | None
    count_mismatch: bool
    codec: str


# ----------------------------------------------------------------------------------------------------------------
# Frame folders


def _natural_key(name: str) -> list[Any]:
    """Sort ``img_2.jpg`` before ``img_10.jpg`` even without zero padding."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@functools.lru_cache(maxsize=4096)
def _frame_files(folder: str, mtime_ns: int) -> tuple[str, ...]:
    del mtime_ns  # part of the cache key only: a folder that changed is listed again
    names = [n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
    return tuple(os.path.join(folder, n) for n in sorted(names, key=_natural_key))


def frame_folder_files(folder: str | os.PathLike[str]) -> tuple[str, ...]:
    """The image files of a frame folder in frame order: frame index ``i`` is element ``i``.

    This is the single place where 0-based frame indices meet file names: Something-Something V1 numbers its
    files from ``00001.jpg`` (the official loader adds 1 to every index), here the first file is frame 0.
    """
    folder = os.fspath(folder)
    files = _frame_files(folder, os.stat(folder).st_mtime_ns)
    if not files:
        raise DecodeError(f"{folder}: frame folder holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


# ----------------------------------------------------------------------------------------------------------------
# PyAV


@dataclass(frozen=True)
class _PacketIndex:
    """Presentation timestamps of every frame (sorted) and of the keyframes, from one demux pass."""

    pts: tuple[int, ...]
    keyframe_pts: tuple[int, ...]
    fps: float
    width: int
    height: int
    header_frames: int | None
    codec: str


VideoSource = Union[str, "os.PathLike[str]", bytes]
"""A video to decode: a local path, an fsspec URL (see :mod:`uniformer.data.remote`) or the file's bytes."""


def _name(source: VideoSource) -> str:
    """How a source is named in messages."""
    return f"<video in memory, {len(source)} bytes>" if isinstance(source, bytes) else os.fspath(source)


@contextlib.contextmanager
def _opened(source: VideoSource) -> Iterator[Any]:
    """A PyAV container of ``source``; a URL is read through a seekable fsspec file (byte ranges on demand)."""
    import av

    name, handle = _name(source), None
    if isinstance(source, bytes):
        if not source:
            raise DecodeError(f"{name}: empty (0 bytes)")
        handle = io.BytesIO(source)
    elif is_url(name):
        handle = open_binary(name)
    elif not os.path.exists(name):
        raise FileNotFoundError(f"{name}: no such video file")
    elif os.path.getsize(name) == 0:
        raise DecodeError(f"{name}: empty file (0 bytes)")
    try:
        try:
            container = av.open(handle if handle is not None else name)
        except av.error.FFmpegError as exc:
            raise DecodeError(f"{name}: cannot open as a video: {exc}") from exc
        try:
            if not container.streams.video:
                raise DecodeError(f"{name}: has no video stream")
            yield container
        finally:
            container.close()
    finally:
        if handle is not None:
            handle.close()


def _build_index(source: VideoSource) -> _PacketIndex:
    import av

    name = _name(source)
    with _opened(source) as container:
        stream = container.streams.video[0]
        pts: list[int] = []
        keyframes: list[int] = []
        try:
            for packet in container.demux(stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None or packet.size == 0 or packet.is_discard:
                    continue  # flush packets and packets the demuxer marks as not to be shown
                pts.append(stamp)
                if packet.is_keyframe:
                    keyframes.append(stamp)
        except av.error.FFmpegError as exc:
            raise DecodeError(f"{name}: container is damaged after {len(pts)} packets: {exc}") from exc
        if not pts:
            raise DecodeError(f"{name}: video stream holds no frames")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return _PacketIndex(
            pts=tuple(sorted(pts)),
            keyframe_pts=tuple(sorted(keyframes)) or (min(pts),),
            fps=float(rate) if rate else 0.0,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            header_frames=stream.frames or None,
            codec=stream.codec_context.name,
        )


@functools.lru_cache(maxsize=1024)
def _packet_index(path: str, size: int, version: int | str) -> _PacketIndex:
    del size, version  # cache key only: a file that changed is indexed again
    return _build_index(path)


def _index_for(source: VideoSource) -> _PacketIndex:
    """The packet index, cached per process for files (keyed by size and mtime, or a URL's size and ETag)."""
    if isinstance(source, bytes):
        return _build_index(source)
    path = os.fspath(source)
    if is_url(path):
        return _packet_index(path, *stamp(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such video file") from None
    return _packet_index(path, st.st_size, st.st_mtime_ns)


def _frame_pts(frame: Any) -> int | None:
    return frame.pts if frame.pts is not None else frame.dts


def _pyav_read(source: VideoSource, indices: list[int]) -> list[np.ndarray]:
    """Decode the frames at sorted, unique ``indices`` with as few seeks and as little decoding as possible."""
    import av

    path = _name(source)
    index = _index_for(source)
    wanted = [index.pts[i] for i in indices]
    frames: list[np.ndarray] = []
    with _opened(source) as container:
        # No frame threading here: it adds a pipeline delay per seek that costs more than it saves on the few GOPs
        # a clip needs (and DataLoader workers already use the cores).
        stream = container.streams.video[0]
        decoder: Any = None
        last_pts: int | None = None
        for i, target in zip(indices, wanted, strict=True):
            keyframe = index.keyframe_pts[max(bisect.bisect_right(index.keyframe_pts, target) - 1, 0)]
            if decoder is None or last_pts is None or keyframe > last_pts:
                # The target lies beyond a keyframe not reached yet: jump there instead of decoding through.
                decoder, last_pts = _seek(container, stream, keyframe, target, index), None
            try:
                for frame in decoder:
                    last_pts = _frame_pts(frame)
                    if last_pts is not None and last_pts >= target:
                        break
                else:
                    raise DecodeError(f"{path}: stream ends before frame {i}; the file is truncated")
            except av.error.FFmpegError as exc:
                raise DecodeError(f"{path}: decoding failed near frame {i}: {exc}") from exc
            if last_pts != target:
                raise DecodeError(f"{path}: frame {i} (pts {target}) did not decode; the stream is damaged there")
            frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def _seek(container: Any, stream: Any, keyframe: int, target: int, index: _PacketIndex) -> Any:
    """Seek so that decoding starts at or before ``target`` and return a fresh frame iterator.

    Seeking lands on the keyframe at or before the requested timestamp; for containers whose seek index is
    coarse it can land later, so the first decoded timestamp is checked and the seek repeated from an earlier
    keyframe (finally from the start) until decoding begins no later than the target.
    """
    k = bisect.bisect_right(index.keyframe_pts, keyframe) - 1
    while True:
        start = index.keyframe_pts[k] if k >= 0 else index.pts[0]
        if k < 0:
            container.seek(0, backward=True, any_frame=False, stream=stream)
        else:
            container.seek(start, backward=True, any_frame=False, stream=stream)
        frames = container.decode(stream)
        first = next((f for f in frames if _frame_pts(f) is not None), None)
        if first is None or _frame_pts(first) <= target or k < 0:
            return _prepend(first, frames)
        k -= 1


def _prepend(first: Any, rest: Any) -> Any:
    if first is not None:
        yield first
    yield from rest


# ----------------------------------------------------------------------------------------------------------------
# Optional backends


def _local_or_bytes(source: VideoSource) -> str | bytes:
    """What the optional backends open: a local path, or the bytes of an in-memory or remote file (they take no
    fsspec file object)."""
    if isinstance(source, bytes):
        return source
    path = os.fspath(source)
    return read_bytes(path) if is_url(path) else path


def _torchcodec_read(source: str | bytes, path: str, indices: list[int]) -> torch.Tensor:
    from torchcodec.decoders import VideoDecoder

    try:
        decoder = VideoDecoder(source, seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=1)
    except (RuntimeError, ValueError) as exc:
        raise DecodeError(f"{path}: torchcodec cannot open the video: {exc}") from exc
    count = decoder.metadata.num_frames or 0
    _check_range(path, indices, count)
    try:
        return decoder.get_frames_at(indices=indices).data
    except (RuntimeError, IndexError) as exc:
        raise DecodeError(f"{path}: torchcodec failed to decode frames {indices}: {exc}") from exc


def _decord_read(source: str | bytes, path: str, indices: list[int]) -> np.ndarray:
    import decord

    try:
        reader = decord.VideoReader(
            io.BytesIO(source) if isinstance(source, bytes) else source, ctx=decord.cpu(0), num_threads=1
        )
    except (RuntimeError, decord.DECORDError) as exc:
        raise DecodeError(f"{path}: decord cannot open the video: {exc}") from exc
    count = len(reader)
    _check_range(path, indices, count)
    try:
        return reader.get_batch(indices).asnumpy()
    except (RuntimeError, decord.DECORDError) as exc:
        raise DecodeError(f"{path}: decord failed to decode frames {indices}: {exc}") from exc


def _tiny_video_bytes() -> bytes:
    """A 4-frame 32x32 mpeg4 video made in memory, to check that an optional backend really decodes."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 60 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


@functools.cache
def backend_status(name: str) -> str | None:
    """``None`` when backend ``name`` is installed and decodes a test video, else the reason it cannot be used.

    torchcodec imports fine without FFmpeg's shared libraries and only fails on first use, hence a real decode.
    """
    if name == "pyav":
        return None
    if name not in BACKENDS:
        return f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}"
    data = _tiny_video_bytes()
    try:
        if name == "torchcodec":
            from torchcodec.decoders import VideoDecoder

            VideoDecoder(data, seek_mode="exact").get_frames_at(indices=[0, 3])
        else:
            import decord

            decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0)).get_batch([0, 3])
    except ImportError:
        return f"{name} is not installed ({_INSTALL_HINT[name]})"
    except Exception as exc:  # any failure of a third-party library means "not usable here"; say why
        return f"{name} is installed but cannot decode here: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


def available_backends() -> list[str]:
    """Backends that are installed and working on this machine, ``pyav`` first."""
    return [name for name in BACKENDS if backend_status(name) is None]


def _resolve_backend(backend: str | None) -> str:
    name = (backend or os.environ.get("UNIFORMER_VIDEO_BACKEND") or DEFAULT_BACKEND).lower()
    reason = backend_status(name)
    if reason is not None:
        raise ValueError(f"video backend {name!r} is not usable: {reason}")
    return name


# ----------------------------------------------------------------------------------------------------------------
# Public API


def _check_range(path: str, indices: list[int], count: int) -> None:
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise DecodeError(f"{path}: has {count} frames, frame indices {bad[:5]} are out of range [0, {count - 1}]")


def read_frames(
    path: VideoSource,
    indices: list[int] | tuple[int, ...] | np.ndarray | torch.Tensor,
    backend: str | None = None,
) -> torch.Tensor:
    """Decode exactly the frames at 0-based presentation-order ``indices`` of a video file or frame folder.

    Args:
        path: a video file, a directory of one image per frame (read in sorted file-name order), an fsspec URL
            of a video file (:mod:`uniformer.data.remote`), or a video file's bytes.
        indices: frame numbers in any order, repeats allowed (short videos repeat frames to fill a clip).
        backend: ``"pyav"`` (default), ``"torchcodec"`` or ``"decord"``; ``None`` takes the environment variable
            ``UNIFORMER_VIDEO_BACKEND`` or ``pyav``. Ignored for frame folders.

    Returns:
        ``uint8`` tensor ``(len(indices), H, W, 3)``, RGB, in the order of ``indices``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DecodeError: the file is empty, damaged, not a video, or an index is outside ``[0, num_frames)``.
        ValueError: the requested backend is not installed or does not work here.
    """
    source, path = path, _name(path)
    wanted = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]
    if not wanted:
        raise ValueError(f"{path}: read_frames needs at least one frame index")
    unique = sorted(set(wanted))
    if not isinstance(source, bytes) and os.path.isdir(path):
        files = frame_folder_files(path)
        _check_range(path, unique, len(files))
        decoded = {i: read_image(files[i]).permute(1, 2, 0) for i in unique}
        frames = [decoded[i] for i in wanted]
        if len({tuple(f.shape) for f in frames}) > 1:
            raise DecodeError(f"{path}: frame images differ in size")
        return torch.stack(frames)
    name = _resolve_backend(backend)
    if name == "pyav":
        _check_range(path, unique, len(_index_for(source).pts))
        arrays = _pyav_read(source, unique)
        batch = torch.from_numpy(np.stack(arrays))
    elif name == "torchcodec":
        batch = _torchcodec_read(_local_or_bytes(source), path, unique)
    else:
        batch = torch.from_numpy(_decord_read(_local_or_bytes(source), path, unique))
    position = {i: k for k, i in enumerate(unique)}
    return batch[[position[i] for i in wanted]].contiguous()


def video_info(path: VideoSource) -> VideoInfo:
    """Frame count, fps, size and codec of a video file or frame folder, plus whether the container's count lies.

    The frame count comes from demuxing every packet (no decoding), which equals the number of frames a
    sequential decode yields for any intact file; ``uniformer data check`` additionally decodes every frame to
    catch damage inside the stream.
    """
    source, path = path, _name(path)
    if not isinstance(source, bytes) and os.path.isdir(path):
        files = frame_folder_files(path)
        _, height, width = read_image(files[0]).shape
        return VideoInfo(path, len(files), 0.0, width, height, None, False, "images")
    index = _index_for(source)
    count = len(index.pts)
    return VideoInfo(
        path=path,
        num_frames=count,
        fps=index.fps,
        width=index.width,
        height=index.height,
        header_frames=index.header_frames,
        count_mismatch=index.header_frames is not None and index.header_frames != count,
        codec=index.codec,
    )


def count_decoded_frames(path: VideoSource) -> int:
    """Decode a whole video sequentially without keeping frames; returns how many frames came out.

    Raises ``DecodeError`` when decoding fails part-way (damaged stream), naming how far it got.
    """
    import av

    if not isinstance(path, bytes) and os.path.isdir(path):
        files = frame_folder_files(path)
        for file in files:
            read_image(file)
        return len(files)
    count = 0
    with _opened(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for _ in container.decode(stream):
                count += 1
        except av.error.FFmpegError as exc:
            raise DecodeError(f"{_name(path)}: decoding failed after {count} frames: {exc}") from exc
    return count


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a video file by its extension (used when walking folders)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


# ----------------------------------------------------------------------------------------------------------------
# Streaming a whole video


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive frames of a :class:`FrameStream`: their 0-based indices, their times in seconds (the frame's
    pts in the stream's time base; ``None`` for a frame folder) and their pixels ``(N, H, W, 3)`` uint8 RGB."""

    indices: list[int]
    times: list[float | None]
    frames: torch.Tensor


class FrameStream:
    """Every ``every``-th frame of a video (indices 0, K, 2K, ...), decoded once from the start to the end and handed
    out ``batch_size`` at a time: memory holds one batch, whatever the video's length.

    Frame ``i`` is the frame :func:`read_frames` reads at index ``i`` (the same packet index). With PyAV (the
    default) a packet the decoder refuses, or a frame it never puts out, is skipped and listed in :attr:`skipped`
    instead of ending the stream; the other backends read the same indices through :func:`read_frames`. A file
    that holds no video stream, or a stream without frames, is a :class:`DecodeError` naming it when the stream is
    made. :attr:`rotation` is the display rotation in degrees the stream's frames carry (phone videos):
    frames are handed out as stored, as every decoder here reads them.
    """

    def __init__(self, source: VideoSource, *, every: int = 1, batch_size: int = 8, backend: str | None = None) -> None:
        if every < 1 or batch_size < 1:
            raise ValueError(f"every and batch_size must be >= 1, got {every} and {batch_size}")
        self.source = source
        self.info = video_info(source)
        self.every, self.batch_size = every, batch_size
        self.backend = "images" if self.info.codec == "images" else _resolve_backend(backend)
        self.skipped: list[int] = []
        self.rotation = 0
        self._next = 0  # the next wanted index not handed out or skipped yet

    @property
    def num_wanted(self) -> int:
        """How many frames the stream hands out when every frame decodes: ``ceil(num_frames / every)``."""
        return -(-self.info.num_frames // self.every)

    def __iter__(self) -> Iterator[FrameBatch]:
        self.skipped, self._next = [], 0
        decoded = self._pyav_frames() if self.backend == "pyav" else self._indexed_frames()
        indices: list[int] = []
        times: list[float | None] = []
        frames: list[torch.Tensor] = []
        for index, time, frame in decoded:
            indices.append(index)
            times.append(time)
            frames.append(frame)
            if len(indices) == self.batch_size:
                yield FrameBatch(indices, times, torch.stack(frames))
                indices, times, frames = [], [], []
        if indices:
            yield FrameBatch(indices, times, torch.stack(frames))
        self._reached(self.info.num_frames)

    def _reached(self, index: int) -> None:
        """Record the wanted frames before ``index`` that never came as skipped."""
        while self._next < index:
            self.skipped.append(self._next)
            self._next += self.every

    def _pyav_frames(self) -> Iterator[tuple[int, float | None, torch.Tensor]]:
        import av

        position = {pts: i for i, pts in enumerate(_index_for(self.source).pts)}
        with _opened(self.source) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # one front-to-back pass: frame threading pays here
            for packet in container.demux(stream):  # demuxed whole once already, for the index
                try:
                    found = packet.decode()
                except av.error.FFmpegError:
                    continue  # a damaged packet: its frame never comes and is counted as skipped
                for frame in found:
                    index = position.get(_frame_pts(frame))
                    if index is None or index < self._next or index % self.every:
                        continue
                    self.rotation = self.rotation or int(frame.rotation)
                    self._reached(index)
                    self._next = index + self.every
                    yield index, float(frame.time), torch.from_numpy(frame.to_ndarray(format="rgb24"))

    def _indexed_frames(self) -> Iterator[tuple[int, float | None, torch.Tensor]]:
        wanted = list(range(0, self.info.num_frames, self.every))
        fps = self.info.fps
        for start in range(0, len(wanted), self.batch_size):
            chunk = wanted[start : start + self.batch_size]
            frames = read_frames(self.source, chunk, backend=None if self.backend == "images" else self.backend)
            for index, frame in zip(chunk, frames, strict=True):
                self._next = index + self.every
                yield index, (index / fps if fps > 0 else None), frame
