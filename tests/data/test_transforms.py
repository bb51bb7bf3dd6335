"""Clip transforms: test-crop geometry, clip-consistent augmentation, normalisation, 5-D Mixup/CutMix."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from uniformer.data import (
    ClipRandAugment,
    ClipRandomErasing,
    EvalTransform,
    TrainTransform,
    VideoMixup,
    normalize,
    short_side_resize,
    uniform_crop,
)
from uniformer.models.zoo.datasets import VIDEO_MEAN, VIDEO_STD


def coordinate_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """(T, C, H, W) int clip whose channel 0 holds the row and channel 1 the column of each pixel."""
    rows = torch.arange(height).view(height, 1).expand(height, width)
    cols = torch.arange(width).view(1, width).expand(height, width)
    return torch.stack([rows, cols, torch.zeros_like(rows)]).expand(frames, 3, height, width)


def three_crop(clip: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The three test crops along the clip's long side."""
    return [uniform_crop(clip, size, i) for i in range(3)]


def top_left(crop: torch.Tensor) -> tuple[int, int]:
    return int(crop[0, 0, 0, 0]), int(crop[0, 1, 0, 0])


def test_three_crop_landscape_is_left_centre_right() -> None:
    clip = coordinate_clip(2, 224, 298)
    crops = three_crop(clip, 224)
    # centre offset rounds up as PySlowFast's uniform_crop does: ceil((298 - 224) / 2) = 37
    assert [top_left(c) for c in crops] == [(0, 0), (0, 37), (0, 74)]
    assert all(c.shape == (2, 3, 224, 224) for c in crops)


def test_three_crop_portrait_is_top_centre_bottom() -> None:
    clip = coordinate_clip(2, 301, 224)
    assert [top_left(c) for c in three_crop(clip, 224)] == [(0, 0), (39, 0), (77, 0)]


def test_uniform_crop_works_on_channel_first_clips_and_rejects_small_inputs() -> None:
    clip = coordinate_clip(4, 100, 150).permute(1, 0, 2, 3)  # (C, T, H, W)
    assert top_left(uniform_crop(clip, 64, 2).permute(1, 0, 2, 3)) == (18, 86)
    with pytest.raises(ValueError, match="cannot take a 128x128 crop from a 100x150 clip"):
        uniform_crop(clip, 128, 1)


def test_short_side_resize_keeps_aspect_with_floor() -> None:
    assert short_side_resize(torch.zeros(2, 3, 240, 320), 224).shape[-2:] == (224, 298)
    assert short_side_resize(torch.zeros(2, 3, 341, 256), 224).shape[-2:] == (298, 224)


def test_eval_transform_views_of_a_landscape_clip() -> None:
    frames = torch.zeros(8, 240, 320, 3, dtype=torch.uint8)
    frames[..., :10, :] = 255  # a bright left edge only the left crop sees
    transform = EvalTransform(224, num_crops=3, mean=VIDEO_MEAN, std=VIDEO_STD)
    views = [transform(frames, i) for i in range(3)]
    assert all(v.shape == (3, 8, 224, 224) and v.dtype == torch.float32 for v in views)
    bright = (1.0 - 0.45) / 0.225
    assert torch.allclose(views[0][:, :, :, 0], torch.tensor(bright)) and views[1][:, :, :, 0].lt(0).all()
    with pytest.raises(ValueError, match="crop_idx must be in"):
        transform(frames, 3)


def test_normalize_uses_video_mean_and_std() -> None:
    clip = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 1, 1)
    out = normalize(clip, VIDEO_MEAN, VIDEO_STD, channel_dim=1)
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([-0.45 / 0.225, 0.55 / 0.225]))


def test_train_transform_flip_switch() -> None:
    frames = torch.zeros(4, 64, 96, 3, dtype=torch.uint8)
    frames[:, :, :8] = 255  # bright left edge
    full_frame = {"scale": (1.0, 1.0), "ratio": (1.5, 1.5), "rand_augment": None, "erasing_prob": 0.0}
    no_flip = TrainTransform(64, flip=False, **full_frame, mean=VIDEO_MEAN, std=VIDEO_STD)
    flip = TrainTransform(64, flip=True, **full_frame, mean=VIDEO_MEAN, std=VIDEO_STD)
    torch.manual_seed(0)
    assert all(no_flip(frames)[:, :, :, 0].gt(0).all() for _ in range(20))
    flipped = [bool(flip(frames)[:, :, :, -1].gt(0).all()) for _ in range(20)]
    assert 0 < sum(flipped) < 20


def test_rand_augment_applies_the_same_ops_to_every_frame() -> None:
    random.seed(1)
    np.random.seed(1)
    frame = torch.randint(0, 256, (1, 3, 48, 48), dtype=torch.uint8)
    out = ClipRandAugment("rand-m9-n4-mstd0.5-inc1")(frame.repeat(6, 1, 1, 1))
    assert all(torch.equal(out[0], out[t]) for t in range(1, 6))
    assert not torch.equal(out[0], frame[0])


def test_random_erasing_cuts_one_box_through_all_frames() -> None:
    random.seed(0)
    clip = torch.zeros(3, 5, 32, 32)
    ClipRandomErasing(p=1.0)(clip)
    masks = clip.ne(0).any(0)  # (T, H, W)
    assert masks[0].any() and all(torch.equal(masks[0], masks[t]) for t in range(5))


def test_video_mixup_mixes_clips_and_returns_soft_targets() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    video = torch.stack([torch.full((3, 4, 16, 16), float(i)) for i in range(4)])
    mixup = VideoMixup(num_classes=5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    mixed, target = mixup(video, torch.tensor([0, 1, 2, 3]))
    assert mixed.shape == (4, 3, 4, 16, 16) and target.shape == (4, 5)
    assert torch.allclose(target.sum(1), torch.ones(4))
    pasted = mixed[0].ne(0)  # clip 0 receives a box from clip 3 (batch flipped), the same box in every frame
    assert all(torch.equal(pasted[:, 0], pasted[:, t]) for t in range(4))
    assert target[0, 3] == pytest.approx(pasted[0, 0].float().mean().item())
    with pytest.raises(ValueError, match="even batch size"):
        mixup(video[:3], torch.tensor([0, 1, 2]))
