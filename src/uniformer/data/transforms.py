"""Clip transforms: the official UniFormer train and test pipelines, applied identically to every frame of a clip.

A clip is a 4-D tensor. Geometric steps (resize, crops, flip) touch only the last two dims and work on both
``(T, C, H, W)`` and ``(C, T, H, W)``; steps that need the channel dim (RandAugment, normalisation) take it as an
argument. torchvision's v2 transforms draw one set of random parameters per call, so a whole clip gets the same
crop and flip, which is what keeps motion intact. The two pipelines the datasets use:

* :class:`TrainTransform`: random resized crop (scale [0.08, 1], aspect [3/4, 4/3]) or short-side scale jitter
  plus random crop, optional horizontal flip, RandAugment ``rand-m7-n4-mstd0.5-inc1`` with the same ops and
  magnitudes on every frame, normalisation (mean 0.45, std 0.225) and random erasing of one box through all
  frames, as in the UniFormer video configs.
* :class:`EvalTransform`: short-side resize, then the centre crop or one of the three uniform crops (left /
  centre / right, or top / centre / bottom for portrait clips) of the official multi-view test.

Resizing is bilinear without antialiasing, as PySlowFast's ``F.interpolate`` does, so evaluating the released
checkpoints sees the pixels they were tested with.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

DEFAULT_RAND_AUGMENT = "rand-m7-n4-mstd0.5-inc1"  # the UniFormer video configs' RandAugment
IMAGE_RAND_AUGMENT = "rand-m9-mstd0.5-inc1"  # DeiT's, which the UniFormer image models were trained with
CropMode = Literal["resized", "jitter"]


def frames_to_clip(frames: torch.Tensor) -> torch.Tensor:
    """Decoder output ``(T, H, W, 3)`` to the ``(T, C, H, W)`` layout the transforms work in (a view, no copy)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected decoded frames of shape (T, H, W, 3), got {tuple(frames.shape)}")
    return frames.permute(0, 3, 1, 2)


def short_side_resize(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Scale so the shorter side is ``size``; the longer side becomes ``floor(long * size / short)``."""
    height, width = clip.shape[-2:]
    if min(height, width) == size:
        return clip
    if height <= width:
        new_h, new_w = size, int(math.floor(width * size / height))
    else:
        new_h, new_w = int(math.floor(height * size / width)), size
    return F.resize(clip, [new_h, new_w], interpolation=InterpolationMode.BILINEAR, antialias=False)


def rescale_size(height: int, width: int, scale: Sequence[float]) -> tuple[int, int]:
    """The largest size of the same aspect ratio within ``scale = (long, short)``: mmcv's ``rescale_size``, the
    rule of mmseg's and mmdet's ``Resize`` with ``keep_ratio=True`` (the long side at most ``long``, the short side
    at most ``short``, rounded to the nearest pixel)."""
    long, short = max(scale), min(scale)
    factor = min(long / max(height, width), short / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def uniform_crop(clip: torch.Tensor, size: int, spatial_idx: int) -> torch.Tensor:
    """Square crop number ``spatial_idx`` of the official three-crop test.

    0 / 1 / 2 are left / centre / right when the clip is at least as wide as tall, top / centre / bottom when it
    is taller (PySlowFast's ``uniform_crop``: the centre offset rounds up).
    """
    if spatial_idx not in (0, 1, 2):
        raise ValueError(f"spatial_idx must be 0, 1 or 2, got {spatial_idx}")
    height, width = clip.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot take a {size}x{size} crop from a {height}x{width} clip; resize first")
    top = math.ceil((height - size) / 2)
    left = math.ceil((width - size) / 2)
    if height > width:
        top = (0, top, height - size)[spatial_idx]
    else:
        left = (0, left, width - size)[spatial_idx]
    return clip[..., top : top + size, left : left + size]


def normalize(
    clip: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    channel_dim: int = 1,
) -> torch.Tensor:
    """Float clip ``(x / 255 - mean) / std`` for uint8 input (``x`` as is for float input in [0, 1]); ``mean`` and
    ``std`` are the model's (its zoo dataset's, :data:`uniformer.models.zoo.datasets.DATASETS`).

    The result is a new contiguous tensor in ``clip``'s dim order, so a permuted view in (a ``(T, C, H, W)`` clip
    as ``(C, T, H, W)``) comes out in the model's layout from the one copy that converts it, and the arithmetic
    runs on contiguous memory instead of the strides a crop or resize left."""
    if clip.shape[channel_dim] != len(mean) or len(mean) != len(std):
        raise ValueError(
            f"clip has {clip.shape[channel_dim]} channels at dim {channel_dim}; mean/std have {len(mean)}/{len(std)}"
        )
    out = clip.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    if clip.dtype == torch.uint8:
        out.div_(255.0)
    shape = [1] * clip.ndim
    shape[channel_dim] = len(mean)
    return out.sub_(torch.tensor(mean).view(shape)).div_(torch.tensor(std).view(shape))


class RandomShortSideScale(torch.nn.Module):
    """Scale jitter: resize the short side to a random integer in ``[min_size, max_size]`` (PySlowFast's
    ``random_short_side_scale_jitter``, the non-relative ``TRAIN_JITTER_SCALES`` path)."""

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        if not 0 < min_size <= max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.min_size, self.max_size = min_size, max_size

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return short_side_resize(clip, int(torch.randint(self.min_size, self.max_size + 1, ()).item()))


class ClipRandAugment:
    """timm's RandAugment with one draw of ops and magnitudes applied to every frame of a ``(T, C, H, W)`` uint8 clip.

    timm's policy samples from Python's and NumPy's global generators each time it is called on an image; the
    generators' state is saved before the first frame and restored before each further frame, so every frame
    replays the same draws. Hyper-parameters follow the UniFormer video configs (``AUG.AA_TYPE``,
    ``AUG.INTERPOLATION: bicubic``, translate limit 45% of the shorter side).
    """

    def __init__(self, config: str = DEFAULT_RAND_AUGMENT, interpolation: str = "bicubic") -> None:
        if not config.startswith("rand"):
            raise ValueError(f"RandAugment config must look like 'rand-m7-n4-mstd0.5-inc1', got {config!r}")
        self.config = config
        self.interpolation = interpolation
        self._policies: dict[int, object] = {}

    def _policy(self, short_side: int) -> object:
        from timm.data.auto_augment import rand_augment_transform
        from timm.data.transforms import str_to_pil_interp

        if short_side not in self._policies:
            hparams = {
                "translate_const": int(short_side * 0.45),
                "interpolation": str_to_pil_interp(self.interpolation),
            }
            self._policies[short_side] = rand_augment_transform(self.config, hparams)
        return self._policies[short_side]

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        from PIL import Image

        if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[1] != 3:
            raise ValueError(f"ClipRandAugment expects a uint8 (T, 3, H, W) clip, got {clip.dtype} {tuple(clip.shape)}")
        policy = self._policy(min(clip.shape[-2:]))
        py_state, np_state = random.getstate(), np.random.get_state()
        frames = clip.permute(0, 2, 3, 1).numpy()
        out = []
        for frame in frames:
            random.setstate(py_state)
            np.random.set_state(np_state)
            out.append(np.asarray(policy(Image.fromarray(frame))))  # type: ignore[operator]
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r}, interpolation={self.interpolation!r})"


class ClipRandomErasing:
    """Random erasing of the same box in every frame of a normalised ``(C, T, H, W)`` clip.

    Matches the PySlowFast eraser the UniFormer configs use (``RE_PROB 0.25``, ``RE_MODE pixel``, ``RE_COUNT 1``,
    cube mode): with probability ``p`` a box of 2%-33% of the area and aspect in [0.3, 3.3] is filled with
    per-pixel standard-normal noise (the normalised mean is 0, so noise looks like "anything" to the model).
    Erasing a box through time rather than per frame occludes an object instead of making it flicker.
    """

    def __init__(
        self, p: float = 0.25, area: tuple[float, float] = (0.02, 1 / 3), min_aspect: float = 0.3, count: int = 1
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"random erasing probability must be in [0, 1], got {p}")
        self.p, self.area, self.count = p, area, count
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if self.p == 0 or random.random() > self.p:
            return clip
        channels, frames, height, width = clip.shape
        for _ in range(self.count):
            for _attempt in range(100):
                target = random.uniform(*self.area) * height * width / self.count
                aspect = math.exp(random.uniform(*self.log_aspect))
                h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
                if 0 < h < height and 0 < w < width:
                    top, left = random.randint(0, height - h), random.randint(0, width - w)
                    clip[:, :, top : top + h, left : left + w] = torch.randn(channels, frames, h, w, dtype=clip.dtype)
                    break
        return clip

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, area={self.area}, count={self.count})"


class TrainTransform:
    """Decoded uint8 frames ``(T, H, W, 3)`` to one augmented, normalised ``(C, T, H, W)`` float training clip.

    Args:
        crop_size: output side (UniFormer: 224; multiples of 32 for the model's patch embeddings).
        crop: ``"resized"`` for random resized crop (UniFormer's ``TRAIN_JITTER_SCALES_RELATIVE``) or ``"jitter"``
            for short-side scale jitter in ``jitter_scales`` followed by a random square crop.
        scale, ratio: random resized crop area fraction and aspect range.
        jitter_scales: short-side range of the jitter crop (PySlowFast ``TRAIN_JITTER_SCALES``).
        flip: random horizontal flip; must be False for direction-sensitive labels (Something-Something).
        rand_augment: timm RandAugment config string, or None to disable.
        erasing_prob: probability of random erasing (0 disables).
        mean, std: normalisation, the model's (its zoo dataset's mean and std).

    RandAugment runs after the crop (timm's image order, and 3-6x cheaper than on the full frame as the
    official code does); the ops are the same, only the translate limit follows the crop size.
    """

    def __init__(
        self,
        crop_size: int = 224,
        *,
        crop: CropMode = "resized",
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (0.75, 4 / 3),
        jitter_scales: tuple[int, int] = (256, 320),
        flip: bool = True,
        rand_augment: str | None = DEFAULT_RAND_AUGMENT,
        erasing_prob: float = 0.25,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.crop_size = crop_size
        if crop == "resized":
            spatial: list[torch.nn.Module] = [
                v2.RandomResizedCrop(crop_size, scale=scale, ratio=ratio, antialias=False)
            ]
        elif crop == "jitter":
            spatial = [RandomShortSideScale(*jitter_scales), v2.RandomCrop(crop_size)]
        else:
            raise ValueError(f"crop must be 'resized' or 'jitter', got {crop!r}")
        if flip:
            spatial.append(v2.RandomHorizontalFlip())
        self.spatial = v2.Compose(spatial)
        self.rand_augment = ClipRandAugment(rand_augment) if rand_augment else None
        self.erasing = ClipRandomErasing(erasing_prob) if erasing_prob > 0 else None
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, frames: torch.Tensor, crop_idx: int | None = None) -> torch.Tensor:
        del crop_idx  # training takes a random crop; the argument keeps one call signature for both pipelines
        clip = self.spatial(frames_to_clip(frames))
        if self.rand_augment is not None:
            clip = self.rand_augment(clip.contiguous())
        clip = normalize(clip.permute(1, 0, 2, 3), self.mean, self.std, channel_dim=0)
        return self.erasing(clip) if self.erasing is not None else clip

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(spatial={self.spatial}, rand_augment={self.rand_augment}, erasing={self.erasing})"
        )


class EvalTransform:
    """Decoded uint8 frames ``(T, H, W, 3)`` to a normalised ``(C, T, H, W)`` test view: short-side resize, then
    one square crop.

    Args:
        crop_size: crop side (UniFormer tests at 224 with 3 crops, or 256 with 1 centre crop).
        short_side: short side after resizing; defaults to ``crop_size`` (the official test resizes to the crop
            size, so the three crops tile the long side).
        num_crops: 1 (centre crop) or 3 (left/centre/right or top/centre/bottom).
    """

    def __init__(
        self,
        crop_size: int = 224,
        *,
        short_side: int | None = None,
        num_crops: int = 1,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        self.crop_size, self.short_side, self.num_crops = crop_size, short_side or crop_size, num_crops
        if self.short_side < crop_size:
            raise ValueError(f"short_side {self.short_side} is smaller than crop_size {crop_size}")
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, frames: torch.Tensor, crop_idx: int | None = None) -> torch.Tensor:
        """``crop_idx`` in ``[0, num_crops)``; ``None`` means the centre crop."""
        if crop_idx is None or self.num_crops == 1:
            spatial_idx = 1
        elif 0 <= crop_idx < self.num_crops:
            spatial_idx = crop_idx
        else:
            raise ValueError(f"crop_idx must be in [0, {self.num_crops}), got {crop_idx}")
        clip = uniform_crop(short_side_resize(frames_to_clip(frames), self.short_side), self.crop_size, spatial_idx)
        return normalize(clip.permute(1, 0, 2, 3), self.mean, self.std, channel_dim=0)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(crop_size={self.crop_size}, short_side={self.short_side}, num_crops={self.num_crops})"


class VideoMixup:
    """Mixup / CutMix for video batches ``(B, C, T, H, W)`` with integer labels, returning soft targets.

    timm's :class:`timm.data.Mixup` mixes 4-D image batches and cuts boxes in the last two dims. Folding time into
    channels, ``(B, C*T, H, W)``, lets it mix whole clips and cut the same box through every frame; the result is
    unfolded again. Defaults are the UniFormer video configs (``MIXUP.ALPHA 0.8``, ``CUTMIX_ALPHA 1.0``,
    ``PROB 1.0``, ``SWITCH_PROB 0.5``, ``LABEL_SMOOTH_VALUE 0.1``). The batch size must be even (use
    ``drop_last=True`` for training loaders).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        mode: str = "batch",
    ) -> None:
        from timm.data import Mixup

        self.num_classes = num_classes
        self._mixup = Mixup(
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=prob,
            switch_prob=switch_prob,
            label_smoothing=label_smoothing,
            num_classes=num_classes,
            mode=mode,
        )

    def __call__(self, video: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix ``video`` in place; returns it and ``(B, num_classes)`` soft targets."""
        if video.ndim != 5:
            raise ValueError(f"VideoMixup expects (B, C, T, H, W) clips, got shape {tuple(video.shape)}")
        if video.shape[0] % 2:
            raise ValueError(f"VideoMixup needs an even batch size, got {video.shape[0]} (use drop_last=True)")
        batch, channels, frames, height, width = video.shape
        folded = video.reshape(batch, channels * frames, height, width)
        mixed, soft = self._mixup(folded, target)
        return mixed.reshape(batch, channels, frames, height, width), soft
