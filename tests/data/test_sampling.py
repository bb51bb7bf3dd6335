"""Clip indices against cases worked by hand from the official formulas (see uniformer.data.sampling) and against
those formulas restated with the official arithmetic on a sweep."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from uniformer.data import clip_indices


class Extreme:
    """A stand-in RNG that always returns the low (or high) end of the range, to pin down train sampling."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a

    def randint(self, a: int, b: int) -> int:
        return b if self.high else a


@pytest.mark.parametrize(
    ("clip_idx", "expected"),
    [
        # 300 frames, 8x8: window 64, delta 236, step floor(236 / 3) = 78; linspace step 63 / 7 = 9.
        (0, [0, 9, 18, 27, 36, 45, 54, 63]),
        (1, [78, 87, 96, 105, 114, 123, 132, 141]),
        (3, [234, 243, 252, 261, 270, 279, 288, 297]),
    ],
)
def test_dense_test_views_kinetics_8x8_four_clips(clip_idx: int, expected: list[int]) -> None:
    assert clip_indices(300, num_frames=8, stride=8, clip_idx=clip_idx, num_clips=4) == expected


def test_dense_single_clip_is_centred_and_truncates_fractions() -> None:
    # 300 frames, 8x8, K=1: start floor(236 / 2) = 118.
    assert clip_indices(300, num_frames=8, stride=8) == [118, 127, 136, 145, 154, 163, 172, 181]
    # 100 frames, 4x2: window 8, delta 92, start 46, linspace(46, 53, 4) = 46, 48.33, 50.67, 53.
    assert clip_indices(100, num_frames=4, stride=2) == [46, 48, 50, 53]


def test_dense_short_video_repeats_last_frame() -> None:
    # 10 frames, 8x4: window 32 > 10, delta 0, linspace(0, 31, 8) = 0, 4.43, 8.86, 13.3, ... clamped to 9.
    assert clip_indices(10, num_frames=8, stride=4) == [0, 4, 8, 9, 9, 9, 9, 9]
    assert clip_indices(1, num_frames=4, stride=2, clip_idx=2, num_clips=3) == [0, 0, 0, 0]


def test_dense_window_follows_frame_rate() -> None:
    # 60 fps video, stride 2 at 30 fps: window 2 * 4 * 60 / 30 = 16, delta 284, start 142.
    assert clip_indices(300, num_frames=4, stride=2, fps=60.0, target_fps=30.0) == [142, 147, 152, 157]


def test_dense_points_are_truncated_from_float32_as_the_official_linspace() -> None:
    # 100 frames at 25 fps, 8x4 at 30 fps: window 4 * 8 / 30 * 25 = 26.67, delta 73.33, clip 5 of 10 starts at
    # 5 * floor(73.33 / 9) = 40; point 6 is 40 + 6 * 25.67 / 7 = 62 in exact arithmetic, 61.99999 in float32.
    got = clip_indices(100, num_frames=8, stride=4, clip_idx=5, num_clips=10, fps=25.0, target_fps=30.0)
    assert got == [40, 43, 47, 51, 54, 58, 61, 65]


def _official_start_end(video_size: int, clip_size: float, clip_idx: int, num_clips: int) -> tuple[float, float]:
    """``get_start_end_idx`` of the official ``decoder.py`` with ``use_offset=True``, restated."""
    delta = max(video_size - clip_size, 0)
    if num_clips == 1:
        start_idx = math.floor(delta / 2)
    else:
        start_idx = clip_idx * math.floor(delta / (num_clips - 1))
    return start_idx, start_idx + clip_size - 1


def _official_temporal_sampling(start_idx: float, end_idx: float, num_samples: int, video_size: int) -> list[int]:
    """``temporal_sampling``'s indices, restated: float32 (torch's default dtype there) and truncation."""
    index = torch.linspace(start_idx, end_idx, num_samples, dtype=torch.float32)
    return torch.clamp(index, 0, video_size - 1).long().tolist()


def test_dense_test_views_equal_the_official_arithmetic_on_a_sweep() -> None:
    rng = random.Random(0)
    float64_disagrees = 0
    for _ in range(10_000):
        video_size, num_frames, stride = rng.randint(1, 1000), rng.choice([8, 16, 32]), rng.randint(1, 8)
        num_clips = rng.randint(1, 10)
        clip_idx = rng.randrange(num_clips)
        fps = rng.choice([30.0, 23.976, 29.97, float(rng.randint(24, 60))])
        # decord path (the released configs) when the rates agree, else PyAV's expression in its order
        clip_size = stride * num_frames if fps == 30.0 else stride * num_frames / 30.0 * fps
        start_idx, end_idx = _official_start_end(video_size, clip_size, clip_idx, num_clips)
        expected = _official_temporal_sampling(start_idx, end_idx, num_frames, video_size)
        got = clip_indices(
            video_size, num_frames=num_frames, stride=stride, clip_idx=clip_idx, num_clips=num_clips, fps=fps
        )
        assert got == expected, (video_size, num_frames, stride, clip_idx, num_clips, fps)
        in_float64 = np.clip(np.linspace(start_idx, end_idx, num_frames), 0, video_size - 1).astype(int).tolist()
        float64_disagrees += in_float64 != expected
    assert float64_disagrees > 0  # the sweep reaches points that only float32 arithmetic truncates right


def test_dense_train_start_spans_zero_to_delta() -> None:
    assert clip_indices(100, num_frames=4, stride=2, train=True, rng=Extreme(False)) == [0, 2, 4, 7]
    assert clip_indices(100, num_frames=4, stride=2, train=True, rng=Extreme(True)) == [92, 94, 96, 99]


# 50 frames, 8 segments: seg = 49 / 8 = 6.125; starts round(6.125 i) = 0 6 12 18 24 31 37 43 (24.5 -> 24, half even).
SEGMENT_STARTS = [0, 6, 12, 18, 24, 31, 37, 43]


@pytest.mark.parametrize(
    ("clip_idx", "num_clips", "offset"),
    [(0, 1, 3), (0, 2, 2), (1, 2, 4)],  # int(6.125 / (K + 1) * (k + 1))
)
def test_segment_test_views(clip_idx: int, num_clips: int, offset: int) -> None:
    got = clip_indices(50, num_frames=8, mode="segment", clip_idx=clip_idx, num_clips=num_clips)
    assert got == [s + offset for s in SEGMENT_STARTS]


def test_segment_train_picks_within_each_segment() -> None:
    assert clip_indices(50, num_frames=8, mode="segment", train=True, rng=Extreme(False)) == SEGMENT_STARTS
    assert clip_indices(50, num_frames=8, mode="segment", train=True, rng=Extreme(True)) == [
        6,
        12,
        18,
        24,
        31,
        37,
        43,
        49,
    ]


def test_segment_short_video_repeats_frames() -> None:
    # 5 frames, 8 segments: seg 0.5, starts round(0.5 i) = 0 0 1 2 2 2 3 4, offset int(0.25) = 0.
    assert clip_indices(5, num_frames=8, mode="segment") == [0, 0, 1, 2, 2, 2, 3, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_video_frames": 0, "num_frames": 8, "stride": 4}, "num_video_frames"),
        ({"num_video_frames": 50, "num_frames": 8}, "stride"),
        ({"num_video_frames": 50, "num_frames": 8, "stride": 2, "clip_idx": 4, "num_clips": 4}, "clip_idx"),
        ({"num_video_frames": 50, "num_frames": 8, "stride": 2, "mode": "sparse"}, "sampling mode"),
    ],
)
def test_invalid_arguments_are_named(kwargs: dict, message: str) -> None:
    count = kwargs.pop("num_video_frames")
    with pytest.raises(ValueError, match=message):
        clip_indices(count, **kwargs)
