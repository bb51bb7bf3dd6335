"""A video classifier over time: what a long video shows, window by window (``uniformer predict --timeline``).

Windows of ``window`` seconds start every ``stride`` seconds from the video's start; a window that would run past
the end is not made, and a video shorter than one window is one window. Each window is classified from one clip of
the model's own sampling (its frame count and stride, or its segments) placed within the window, centre crop: the
frame range is a :class:`~uniformer.data.VideoRecord` ``span``, read with the decoders every prediction uses, so a
window costs one clip's frames and memory holds a batch of clips whatever the video's length. Seconds become
frames at the video's average frame rate.

The result is written as JSON (each window's start, end and top classes) and as a PNG: the probability of the
classes that lead somewhere on the timeline, over time.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from uniformer._fileio import atomic_write, atomic_write_text
from uniformer.data.decode import video_info
from uniformer.engine.predict import Predictor

__all__ = ["Timeline", "video_timeline", "window_spans"]


def window_spans(num_frames: int, fps: float, window: float, stride: float) -> list[tuple[float, float, int, int]]:
    """``(start s, end s, first frame, end frame)`` of each window of a ``num_frames``-frame video at ``fps``."""
    if not (math.isfinite(window) and window > 0 and math.isfinite(stride) and stride > 0):
        raise ValueError(f"--window and --stride must be positive seconds, got {window} and {stride}")
    if fps <= 0:
        raise ValueError("the video does not say its frame rate, so seconds cannot be turned into frames")
    duration = num_frames / fps
    if duration <= window:
        return [(0.0, duration, 0, num_frames)]
    spans = []
    for k in range(int((duration - window) / stride + 1e-9) + 1):
        start = k * stride
        first = min(round(start * fps), num_frames - 1)
        spans.append((start, start + window, first, max(first + 1, min(round((start + window) * fps), num_frames))))
    return spans


@dataclass
class Timeline:
    """The class probabilities ``(windows, classes)`` of each window of one video."""

    path: str
    model: str
    window: float
    stride: float
    labels: list[str]
    spans: list[tuple[float, float, int, int]]
    probabilities: np.ndarray

    def leaders(self, count: int = 5) -> list[int]:
        """Up to ``count`` classes that lead some window (by how many), then those with the highest peak."""
        best = self.probabilities.argmax(1)
        wins = np.bincount(best, minlength=len(self.labels))
        order = sorted(range(len(self.labels)), key=lambda c: (-wins[c], -self.probabilities[:, c].max()))
        return order[:count]

    def to_dict(self, topk: int = 5) -> dict[str, Any]:
        windows = []
        for (start, end, first, stop), probs in zip(self.spans, self.probabilities, strict=True):
            top = np.argsort(-probs, kind="stable")[:topk]
            windows.append({
                "start": round(start, 3),
                "end": round(end, 3),
                "frames": [first, stop],
                "top": [{"index": int(c), "label": self.labels[c], "probability": float(probs[c])} for c in top],
            })  # fmt: skip
        return {"path": self.path, "model": self.model, "window": self.window, "stride": self.stride,
                "windows": windows}  # fmt: skip

    def write(self, out_dir: str | os.PathLike[str], topk: int = 5) -> list[Path]:
        """``<stem>_timeline.json`` (:meth:`to_dict`) and ``<stem>_timeline.png`` (:meth:`figure`) in ``out_dir``."""
        stem = Path(self.path).stem
        json_path, png_path = Path(out_dir) / f"{stem}_timeline.json", Path(out_dir) / f"{stem}_timeline.png"
        atomic_write_text(json_path, json.dumps(self.to_dict(topk), indent=1) + "\n")
        figure = self.figure()
        atomic_write(png_path, lambda tmp: FigureCanvasAgg(figure).print_png(tmp))
        return [json_path, png_path]

    def figure(self, classes: int = 5) -> Figure:
        """The probability of the :meth:`leaders` at each window's centre, over time."""
        figure = Figure(figsize=(10, 3.2), layout="constrained")
        ax = figure.subplots()
        centres = [(start + end) / 2 for start, end, _, _ in self.spans]
        for c in self.leaders(classes):
            ax.plot(centres, self.probabilities[:, c], "o-" if len(centres) < 40 else "-", ms=3, label=self.labels[c])
        ax.set(xlabel="time (s)", ylabel="probability", ylim=(0, 1), title=f"{Path(self.path).name}: {self.model}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        return figure


def video_timeline(
    predictor: Predictor,
    path: str | os.PathLike[str],
    *,
    window: float = 2.0,
    stride: float = 1.0,
    progress: bool = False,
) -> Timeline:
    """Classify each ``window``-second window, ``stride`` seconds apart, of the video at ``path``."""
    path = os.fspath(path)
    info = video_info(path)
    spans = window_spans(info.num_frames, info.fps, window, stride)
    predictions = predictor.predict_spans(
        path, [(first, stop) for _, _, first, stop in spans], topk=len(predictor.setup.labels), progress=progress
    )
    probabilities = np.zeros((len(spans), len(predictor.setup.labels)), np.float64)
    for row, prediction in zip(probabilities, predictions, strict=True):
        if prediction.error:
            raise ValueError(f"{path}: {prediction.error}")
        for index, _, probability in prediction.top:
            row[index] = probability
    return Timeline(path, predictor.info.name, window, stride, list(predictor.setup.labels), spans, probabilities)
