"""Writing a video: RGB frames in, one playable file out, even when the run stops part-way.

Frames are encoded with PyAV at a constant frame rate, H.264 (libx264) where the local FFmpeg has that encoder
(PyAV's wheels do), MPEG-4 part 2 otherwise (:func:`uniformer.data.synth.video_codec` chooses; :attr:`VideoWriter.codec`
says which). The file is written under a temporary name beside the target and moved into place when the writer
closes, whether the run finished or stopped (an exception, Ctrl-C): the encoder is flushed and the container's index
written first, so the file at the target is always a whole video of the frames written so far, never a torn one.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from uniformer.data.synth import video_codec

__all__ = ["VideoWriter"]


class VideoWriter:
    """An encoder of ``width`` x ``height`` RGB frames at ``fps`` into ``path`` (the container follows its suffix).

    ``yuv420p`` (what players expect) for even sizes; a frame of odd width or height is kept whole in ``yuv444p``
    with H.264, and refused with MPEG-4, which has no such format. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, fps: float | Fraction, width: int, height: int, codec: str | None = None
    ) -> None:
        import av

        self.path = Path(path)
        self.codec = codec or video_codec()
        odd = width % 2 or height % 2
        if odd and self.codec != "libx264":
            raise ValueError(f"{self.path}: {self.codec} cannot encode an odd frame size ({width}x{height})")
        if not fps or fps <= 0:
            raise ValueError(f"{self.path}: the frame rate must be positive, got {fps}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.rate = Fraction(fps).limit_denominator(100_000)
        self.width, self.height, self.frames = width, height, 0
        options = {"preset": "veryfast", "crf": "20"} if self.codec == "libx264" else {}
        self._container: Any = av.open(os.fspath(self._partial), "w")
        try:
            self._stream = self._container.add_stream(self.codec, rate=self.rate, options=options)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv444p" if odd else "yuv420p"
            if self.codec != "libx264":
                self._stream.bit_rate = 4_000_000
        except BaseException:
            self._container.close()
            self._partial.unlink(missing_ok=True)
            raise

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(height, width, 3)`` uint8 RGB frame."""
        import av

        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: frame {self.frames} is {frame.dtype} {frame.shape}, expected uint8 "
                f"({self.height}, {self.width}, 3)"
            )
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames
        self._container.mux(self._stream.encode(video_frame))
        self.frames += 1

    def close(self) -> Path | None:
        """Flush the encoder, finish the file and move it into place; returns its path (``None`` when no frame was
        written: nothing is left behind)."""
        if self._container is None:
            return self.path if self.path.exists() else None
        try:
            if self.frames:
                self._container.mux(self._stream.encode())
        finally:
            self._container.close()
            self._container = None
        if not self.frames:
            self._partial.unlink(missing_ok=True)
            return None
        os.replace(self._partial, self.path)
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
