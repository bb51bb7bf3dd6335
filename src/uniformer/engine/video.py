"""A dense model (detection, segmentation, pose) over every frame of a video: an annotated video and a JSON line
per frame.

The video is streamed (:class:`~uniformer.data.decode.FrameStream`: decoded once, front to back, a batch of frames
in memory at a time). Each batch is predicted by the same code as images are: its frames are written losslessly
(PNG) to a scratch folder and handed to :meth:`Predictor.predict`, so a frame's predictions are exactly what
``uniformer predict`` says of that frame saved as an image, and every option of the task (score thresholds, pose's
detector) applies unchanged. Each frame is drawn by the task's own picture (:meth:`PredictTask.draw_prediction`,
cut to the frame: segmentation's legend is left out) and appended to the annotated video
(:class:`~uniformer.data.encode.VideoWriter`), and its predictions are one line of the JSON Lines file. Pose's people
keep an id from frame to frame (:class:`~uniformer.tasks.pose.tracking.PoseTracker`), drawn in a colour each.

Both files are written under temporary names and moved into place when the run ends, finished or stopped
(Ctrl-C): what is there is then a playable video and complete lines of the frames done.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from PIL import Image

from uniformer._progress import progress_bar
from uniformer.data.decode import FrameStream
from uniformer.data.encode import VideoWriter
from uniformer.engine.predict import Predictor
from uniformer.tasks.pose.tracking import PoseTracker

__all__ = ["FramesFile", "VideoResult", "predict_video", "video_outputs"]

DENSE_TASKS = ("detection", "segmentation", "pose")


@dataclass
class VideoResult:
    """What one video's run wrote and what it met: the annotated ``video`` (``None`` when no frame was done),
    the ``frames`` JSON Lines file, the frames processed, the frame indices that did not decode (``skipped``),
    the frames whose prediction failed (``failed``: index -> reason), the stream's display ``rotation`` (degrees;
    frames are used as stored), the encoder, and whether Ctrl-C stopped the run."""

    path: str
    video: Path | None
    frames: Path
    processed: int
    wanted: int
    fps: float
    codec: str
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    rotation: int = 0
    interrupted: bool = False

    def lines(self) -> list[str]:
        """What ``uniformer predict`` prints of the run."""
        out = [f"{self.path}: {self.processed} of {self.wanted} frames at {self.fps:.3g} fps"]
        if self.interrupted:
            out.append(f"  interrupted: the outputs hold the {self.processed} frames done")
        if self.skipped:
            shown = ", ".join(map(str, self.skipped[:10])) + (", ..." if len(self.skipped) > 10 else "")
            out.append(f"  {len(self.skipped)} frames did not decode (damaged stream) and were skipped: {shown}")
        if self.failed:
            first = min(self.failed)
            out.append(f"  {len(self.failed)} frames could not be predicted; frame {first}: {self.failed[first]}")
        if self.rotation:
            out.append(f"  the stream asks to be shown rotated by {self.rotation} degrees; frames are used as stored")
        if self.video is not None:
            out.append(f"wrote {self.video} ({self.codec})")
        out.append(f"wrote {self.frames}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "video": None if self.video is None else os.fspath(self.video),
            "frames": os.fspath(self.frames),
            "processed": self.processed,
            "wanted": self.wanted,
            "fps": self.fps,
            "codec": self.codec,
            "skipped": self.skipped,
            "failed": {str(k): v for k, v in self.failed.items()},
            "rotation": self.rotation,
            "interrupted": self.interrupted,
        }


class FramesFile:
    """A JSON Lines file written line by line under a temporary name, moved into place by :meth:`close`: the file
    at ``path`` only ever holds whole lines."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(f".{self.path.name}.partial")
        self._file: TextIO | None = open(self._partial, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise ValueError(f"{self.path}: written after it was closed")
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> Path:
        if self._file is not None:
            self._file.close()
            self._file = None
            os.replace(self._partial, self.path)
        return self.path


def video_outputs(path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Where :func:`predict_video` writes for ``path``: ``<out_dir>/<stem>_annotated.mp4`` and
    ``<out_dir>/<stem>_frames.jsonl``."""
    stem = Path(path).stem
    return Path(out_dir) / f"{stem}_annotated.mp4", Path(out_dir) / f"{stem}_frames.jsonl"


def predict_video(
    predictor: Predictor,
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    every: int = 1,
    progress: bool = True,
    setup: Any = None,
) -> VideoResult:
    """Run ``predictor`` (a detection, segmentation or pose model) on every ``every``-th frame of the video at
    ``path``, ``predictor.batch_size`` frames at a time, writing the annotated video (the input's frame size, its
    frame rate divided by ``every``) and a JSON line per frame done: ``frame`` (0-based index), ``time`` (seconds,
    from the stream's time base) and the frame's predictions as :meth:`Prediction.to_dict` gives them for an image
    (less its ``path``; pose's people with their ``id``). Ctrl-C ends the run with both files whole. ``setup``
    replaces the predictor's for this call only, as in :meth:`Predictor.predict`.

    A file without a video stream or without frames is a :class:`~uniformer.data.images.DecodeError` naming it.
    """
    task = predictor.task.name
    if task not in DENSE_TASKS:
        raise ValueError(
            f"{predictor.info.name} is a {task} model; video in, video out takes a detection, segmentation or pose "
            "model (a video classifier classifies the video, or labels it over time with --timeline)"
        )
    source, setup = os.fspath(path), predictor.setup if setup is None else setup
    stream = FrameStream(source, every=every, batch_size=predictor.batch_size)
    info = stream.info
    video_path, frames_path = video_outputs(source, out_dir)
    tracker = PoseTracker() if task == "pose" else None
    writer = VideoWriter(video_path, fps=info.fps / every, width=info.width, height=info.height)
    lines = FramesFile(frames_path)
    result = VideoResult(source, None, frames_path, 0, stream.num_wanted, info.fps / every, writer.codec)
    bar = progress_bar(stream.num_wanted, desc=Path(source).name, enabled=progress, unit="frame")
    try:
        with tempfile.TemporaryDirectory(prefix="uniformer-frames-") as scratch:
            for batch in stream:
                files = []
                for index, frame in zip(batch.indices, batch.frames, strict=True):
                    files.append(os.path.join(scratch, f"frame_{index:08d}.png"))
                    Image.fromarray(frame.numpy()).save(files[-1], compress_level=1)
                predictions = predictor.predict(files, progress=False, setup=setup)
                for index, time, frame, prediction in zip(
                    batch.indices, batch.times, batch.frames, predictions, strict=True
                ):
                    if tracker is not None and prediction.error is None:
                        prediction.persons = tracker.update(prediction.persons)
                    record = {k: v for k, v in prediction.to_dict().items() if k != "path"}
                    if prediction.error is None:
                        picture = predictor.task.draw_prediction(prediction, setup)
                        drawn = np.asarray(picture.convert("RGB").crop((0, 0, info.width, info.height)))
                    else:
                        result.failed[index] = prediction.error
                        drawn = frame.numpy()
                    writer.write(drawn)
                    lines.write({"frame": index, "time": time, **record})
                    result.processed += 1
                for file in files:
                    os.remove(file)
                bar.update(len(batch.indices))
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
        result.video = writer.close()
        lines.close()
        result.skipped, result.rotation = list(stream.skipped), stream.rotation
    return result
