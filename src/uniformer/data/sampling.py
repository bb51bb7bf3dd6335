"""Which frames make a clip: the two temporal sampling protocols of the official UniFormer code.

* ``dense`` (Kinetics): a window of ``stride * num_frames`` frames (rescaled from ``target_fps`` to the video's
  ``fps``) placed at random for training, or at ``num_clips`` evenly spaced offsets for the multi-view test.
  Follows ``get_start_end_idx`` (with ``use_offset=True``, as every UniFormer Kinetics config sets
  ``USE_OFFSET_SAMPLING``) and ``temporal_sampling`` of ``video_classification/slowfast/datasets/decoder.py`` in
  Sense-X/UniFormer.
* ``segment`` (Something-Something, TSN style): the video is cut into ``num_frames`` equal segments and one frame
  is taken from each; a random one for training, a fixed offset per test view. Follows ``Sth.get_seq_frames`` of
  ``video_classification/slowfast/datasets/sth.py``; that code numbers frame files from 1 and adds 1 to every
  index, here indices stay 0-based and :func:`uniformer.data.decode.frame_folder_files` maps them to files.

Both return plain 0-based frame indices; videos shorter than a clip repeat frames instead of failing.
"""

from __future__ import annotations

import math
import random
from typing import Literal, Protocol

import torch

SamplingMode = Literal["dense", "segment"]


class _Rng(Protocol):
    def uniform(self, a: float, b: float) -> float: ...

    def randint(self, a: int, b: int) -> int: ...


def clip_indices(
    num_video_frames: int,
    *,
    num_frames: int,
    stride: int | None = None,
    mode: SamplingMode = "dense",
    train: bool = False,
    clip_idx: int = 0,
    num_clips: int = 1,
    fps: float = 30.0,
    target_fps: float = 30.0,
    rng: _Rng | None = None,
) -> list[int]:
    """0-based indices of the ``num_frames`` frames of one clip of a ``num_video_frames``-frame video.

    Dense (``stride`` required)::

        window = stride * num_frames                       if fps == target_fps (decord path)
               = stride * num_frames / target_fps * fps    otherwise (PyAV path; float64, in this order)
        delta  = max(num_video_frames - window, 0)
        start  = uniform(0, delta)                  if train
               = floor(delta / 2)                   if num_clips == 1
               = clip_idx * floor(delta / (num_clips - 1))   otherwise
        indices = clamp(torch.linspace(start, start + window - 1, num_frames), 0, num_video_frames - 1).long()

    The points are computed as the official ``temporal_sampling`` does, by ``torch.linspace`` in float32 and
    truncated: where a point lies on an integer in exact arithmetic, float32 may land just below it and take the
    frame before, as the official code does (100 frames at 25 fps, 8x4 at 30 fps, clip 5 of 10: frame 61, not
    62). With the defaults ``fps == target_fps`` the window is the integer
    ``stride * num_frames``, which is what the released UniFormer Kinetics models were trained and tested with
    (their decord path ignores the video's frame rate; PyAV's expression can exceed that integer by a rounding
    error, e.g. 7 * 8 / 25 * 25); pass the video's real ``fps`` to resample to ``target_fps`` as PySlowFast's
    PyAV path does.

    Segment (``stride`` ignored)::

        seg = (num_video_frames - 1) / num_frames
        segment i spans round(seg * i) .. round(seg * (i + 1))           (inclusive, round half to even)
        train:  a uniformly random frame of each segment
        test:   round(seg * i) + int(seg / (num_clips + 1) * (clip_idx + 1))

    Args:
        num_video_frames: frames in the video (from :func:`uniformer.data.video_info`), at least 1.
        num_frames: frames per clip.
        stride: dense mode's sampling rate (frames between two clip frames at ``target_fps``).
        mode: ``"dense"`` or ``"segment"``.
        train: random placement (``clip_idx``/``num_clips`` ignored) instead of the deterministic test view.
        clip_idx: which of the ``num_clips`` temporal test views, ``0 <= clip_idx < num_clips``.
        num_clips: temporal views per video at test time (the official test uses 4 dense / 1-2 segment).
        fps: the video's frame rate (dense mode only).
        target_fps: the frame rate ``stride`` is expressed in (dense mode only).
        rng: source of randomness for training (``random.Random``); ``None`` uses the ``random`` module, which
            PyTorch's DataLoader seeds differently in every worker.

    Returns:
        ``num_frames`` non-decreasing indices in ``[0, num_video_frames)``.
    """
    if num_video_frames < 1:
        raise ValueError(f"num_video_frames must be >= 1, got {num_video_frames} (empty video?)")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not train and not 0 <= clip_idx < num_clips:
        raise ValueError(f"clip_idx must be in [0, num_clips={num_clips}), got {clip_idx}")
    rand: _Rng = rng if rng is not None else random  # type: ignore[assignment]
    if mode == "dense":
        if stride is None or stride < 1:
            raise ValueError(f"dense sampling needs stride >= 1, got {stride}")
        if fps <= 0 or target_fps <= 0:
            raise ValueError(f"fps and target_fps must be positive, got fps={fps}, target_fps={target_fps}")
        window = stride * num_frames if fps == target_fps else stride * num_frames / target_fps * fps
        delta = max(num_video_frames - window, 0)
        if train:
            start = rand.uniform(0, delta)
        elif num_clips == 1:
            start = math.floor(delta / 2)
        else:
            start = clip_idx * math.floor(delta / (num_clips - 1))
        points = torch.linspace(start, start + window - 1, num_frames, dtype=torch.float32)
        return torch.clamp(points, 0, num_video_frames - 1).long().tolist()
    if mode == "segment":
        seg = (num_video_frames - 1) / num_frames
        bounds = [(round(seg * i), round(seg * (i + 1))) for i in range(num_frames)]
        if train:
            return [rand.randint(lo, hi) for lo, hi in bounds]
        offset = int(seg / (num_clips + 1) * (clip_idx + 1))
        return [min(lo + offset, num_video_frames - 1) for lo, _ in bounds]
    raise ValueError(f"sampling mode must be 'dense' or 'segment', got {mode!r}")
