"""From a file to what an explanation needs: the model's view, the frames a person sees, and how the two align.

An explanation looks at one view of each input: the centre clip (``num_clips=1`` of the model's sampling, the
clip ``uniformer features --stage-maps`` takes) and the centre crop of the model's own test transform
(:class:`uniformer.data.EvalTransform` for videos, the timm evaluation transform for images, with the model's
mean and std). The maps are drawn on the decoded frames at their own size: the crop is mapped back onto the frame
(:class:`ViewGeometry`), and the rest of the frame, which the model did not see, carries no map. With
``crop=False`` the whole frame is the view instead: its short side is resized to the crop size and its long side
to the nearest multiple of 32 (UniFormer takes any such size).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Resize
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from uniformer.data import (
    IMAGE_EXTENSIONS,
    EvalTransform,
    clip_indices,
    image_transform,
    normalize,
    read_frames,
    read_image,
    short_side_resize,
    video_info,
)

__all__ = ["ExplainInput", "ViewGeometry", "ViewSpec", "load_input"]


class ViewSpec(Protocol):
    """The test view of a classification model, as the classification task's ``ClipSpec`` holds it (the zoo
    entry's, overlaid by what travels with trained weights; :attr:`uniformer.engine.Predictor.setup` ``.spec``).
    ``num_frames`` is ``None`` for an image model."""

    crop_size: int
    mean: Sequence[float]
    std: Sequence[float]
    num_frames: int | None
    stride: int | None
    sampling: str | None
    short_side: int | None
    crop_pct: float


@dataclass(frozen=True)
class ViewGeometry:
    """Where the model's view lies on the frame: the frame (``frame_size``) was resized to ``resized_size`` and
    the view is the ``(top, left, height, width)`` window ``window`` of the resized frame. Sizes are ``(H, W)``."""

    frame_size: tuple[int, int]
    resized_size: tuple[int, int]
    window: tuple[int, int, int, int]

    def to_frame(self, maps: torch.Tensor) -> torch.Tensor:
        """``(..., h, w)`` maps over the view (view size) to ``(..., H, W)`` over the frame; zero where the model
        saw nothing."""
        top, left, height, width = self.window
        lead = maps.shape[:-2]
        canvas = maps.new_zeros(*lead, *self.resized_size)
        canvas[..., top : top + height, left : left + width] = maps
        if self.resized_size == self.frame_size:
            return canvas
        flat = canvas.reshape(-1, 1, *self.resized_size)
        out = torch.nn.functional.interpolate(flat, size=self.frame_size, mode="bilinear", align_corners=False)
        return out.reshape(*lead, *self.frame_size).clamp_(0, 1)

    def box(self) -> tuple[float, float, float, float]:
        """The view's ``(top, left, bottom, right)`` in frame pixels."""
        top, left, height, width = self.window
        sy, sx = (f / r for f, r in zip(self.frame_size, self.resized_size, strict=True))
        return (top * sy, left * sx, (top + height) * sy, (left + width) * sx)

    def to_view(self, x: float, y: float) -> tuple[float, float]:
        """A frame location ``(x, y)`` as fractions of the frame's width and height, as fractions of the view; a
        location outside the view is an error."""
        top, left, bottom, right = self.box()
        height, width = self.frame_size
        vy, vx = (y * height - top) / (bottom - top), (x * width - left) / (right - left)
        if not (0 <= vy <= 1 and 0 <= vx <= 1):
            raise ValueError(f"query ({x:g}, {y:g}) lies outside the model's view of the frame (box {self.box()})")
        return vx, vy


@dataclass
class ExplainInput:
    """One input ready to explain: ``view`` is the model's normalised input ``(C, [T,] h, w)``, ``frames`` the
    decoded frames ``(T, H, W, 3)`` uint8 (``T = 1`` for an image), ``indices`` their frame numbers in the video."""

    path: str
    view: torch.Tensor
    frames: torch.Tensor
    geometry: ViewGeometry
    indices: list[int] | None = None


def _multiple_of_32(size: float) -> int:
    return max(32, int(round(size / 32)) * 32)


def _whole_frame_size(height: int, width: int, short: int) -> tuple[int, int]:
    scale = short / min(height, width)
    return _multiple_of_32(height * scale), _multiple_of_32(width * scale)


def _load_video(path: str, spec: ViewSpec, crop: bool) -> ExplainInput:
    count = video_info(path).num_frames
    indices = clip_indices(count, num_frames=spec.num_frames, stride=spec.stride, mode=spec.sampling or "dense")
    frames = read_frames(path, indices)
    clip = frames.permute(0, 3, 1, 2)  # (T, C, H, W)
    frame_size = tuple(clip.shape[-2:])
    if crop:
        transform = EvalTransform(spec.crop_size, short_side=spec.short_side, mean=spec.mean, std=spec.std)
        view = transform(frames)
        resized = tuple(short_side_resize(clip[:1], transform.short_side).shape[-2:])
        size = spec.crop_size  # the centre crop of uniform_crop (its offset rounds up)
        window = (math.ceil((resized[0] - size) / 2), math.ceil((resized[1] - size) / 2), size, size)
    else:
        resized = _whole_frame_size(*frame_size, spec.crop_size)
        scaled = F.resize(clip, list(resized), interpolation=InterpolationMode.BILINEAR, antialias=False)
        view = normalize(scaled.permute(1, 0, 2, 3), spec.mean, spec.std, channel_dim=0)
        window = (0, 0, *resized)
    geometry = ViewGeometry(frame_size, resized, window)  # type: ignore[arg-type]
    return ExplainInput(path, view, frames, geometry, list(indices))


def _load_image(path: str, spec: ViewSpec, crop: bool) -> ExplainInput:
    pixels = read_image(path)
    image = Image.fromarray(pixels.permute(1, 2, 0).numpy())
    frame_size = (image.height, image.width)
    if crop:
        transform = image_transform(spec.crop_size, train=False, crop_pct=spec.crop_pct, mean=spec.mean, std=spec.std)
        view = transform(image)
        resize = next(t for t in transform.transforms if isinstance(t, Resize))
        center = next(t for t in transform.transforms if isinstance(t, CenterCrop))
        width, height = resize(image).size
        size_h, size_w = center.size
        window = (int(round((height - size_h) / 2.0)), int(round((width - size_w) / 2.0)), size_h, size_w)
        resized = (height, width)
    else:
        resized = _whole_frame_size(*frame_size, spec.crop_size)
        scaled = F.pil_to_tensor(image.resize(resized[::-1], Image.BICUBIC))
        view = normalize(scaled, spec.mean, spec.std, channel_dim=0)
        window = (0, 0, *resized)
    return ExplainInput(path, view, pixels.permute(1, 2, 0)[None], ViewGeometry(frame_size, resized, window))


def load_input(path: str | os.PathLike[str], spec: ViewSpec, crop: bool = True) -> ExplainInput:
    """Decode ``path`` (a video or frame folder for a video model, an image for an image model) into its view."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: input not found")
    is_image = Path(path).suffix.lower() in IMAGE_EXTENSIONS
    video = spec.num_frames is not None
    if video and is_image:
        raise ValueError(f"{path}: a video model explains videos or folders of frames, not images")
    if not video and not is_image:
        raise ValueError(f"{path}: an image model explains images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return _load_video(path, spec, crop) if video else _load_image(path, spec, crop)


def stack_views(inputs: Sequence[ExplainInput]) -> torch.Tensor:
    """The views of ``inputs`` as one batch (they must have one shape)."""
    return torch.stack([item.view for item in inputs])
