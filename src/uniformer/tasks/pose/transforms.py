"""Top-down crops and their training targets, as mmpose 0.16 makes them (facts from the copy vendored by
Sense-X/UniFormer: ``datasets/pipelines/top_down_transform.py``, ``core/post_processing/post_transforms.py`` and
``datasets/datasets/top_down/topdown_coco_dataset.py``).

A person box becomes a ``center`` and a ``scale`` (box size / 200, widened or heightened to the crop's aspect
ratio, times 1.25 padding); the crop is the similarity transform that maps ``center`` to the crop centre and
``scale * 200`` pixels of width to the crop width, rotated by ``rotation`` degrees (mmpose
``get_affine_transform``, written here in closed form). The image is resampled with that one matrix by
``torch.nn.functional.grid_sample`` (bilinear, pixel centres at integer coordinates, zeros outside: the
semantics of mmpose's ``cv2.warpAffine(..., INTER_LINEAR)``), so image and keypoints go through the same
transform without OpenCV, which is not a dependency; torchvision's ``affine`` keeps the input size and turns
about the image centre, so it cannot crop a rotated box into a smaller output in one step.

Training (``TopDownCocoDataset`` + the UniFormer train pipeline): the box centre moves by up to 20% of the box
(probability 0.3), the crop is flipped (p 0.5, left/right keypoints swapped), half-body (p 0.3, persons with more
than 8 labelled keypoints: the upper or the lower body's box, times 1.5), random scale (normal, sd 0.5, clipped to
[0.5, 1.5]) and rotation (normal, sd 40 degrees, clipped to +-80, with probability 0.6); then the Gaussian
heatmaps of the MSRA encoding with one weight per keypoint (1 when labelled and its Gaussian overlaps the map).
One difference: mmpose moves the centres once, when it loads the annotations; here the move is drawn per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from uniformer.tasks.pose.coco import UPPER_BODY_IDS
from uniformer.tasks.pose.codec import PIXEL_STD, MSRAHeatmap

__all__ = [
    "Crop",
    "EvalTransform",
    "TrainTransform",
    "affine_matrix",
    "apply_affine",
    "box_to_center_scale",
    "half_body_box",
    "warp_image",
]


def box_to_center_scale(
    box: Sequence[float], aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """``(center (2,), scale (2,))`` of a box ``(x, y, w, h)``: mmpose ``_xywh2cs`` with ``aspect_ratio`` = crop
    width / height (the shorter side of the box is extended to it), ``scale`` in units of 200 pixels."""
    x, y, w, h = (float(v) for v in box[:4])
    center = np.array([x + w * 0.5, y + h * 0.5])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w, h]) / PIXEL_STD * padding


def affine_matrix(center: Sequence[float], scale: Sequence[float], rotation: float, size: Sequence[int]) -> np.ndarray:
    """The (2, 3) matrix from image to crop coordinates (``size`` = crop (W, H)): mmpose ``get_affine_transform``
    (no shift), i.e. ``crop = k R(-rotation) (p - center) + size / 2`` with ``k = W / (scale_w * 200)``."""
    k = size[0] / (scale[0] * PIXEL_STD)
    theta = math.radians(rotation)
    cos, sin = k * math.cos(theta), k * math.sin(theta)
    linear = np.array([[cos, sin], [-sin, cos]])
    offset = np.array([size[0] * 0.5, size[1] * 0.5]) - linear @ np.asarray(center, dtype=np.float64)
    return np.concatenate([linear, offset[:, None]], axis=1)


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points (N, 2) through a (2, 3) affine matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def _to_normalized(width: int, height: int) -> np.ndarray:
    """Pixel coordinates (centres at integers) to grid_sample's [-1, 1] with ``align_corners=True``."""
    return np.array([[2 / max(width - 1, 1), 0, -1], [0, 2 / max(height - 1, 1), -1], [0, 0, 1]])


def warp_image(image: torch.Tensor, matrix: np.ndarray, size: Sequence[int]) -> torch.Tensor:
    """The crop (3, H, W) float in [0, 1] of ``image`` (3, H_img, W_img) uint8 or float: each crop pixel (u, v)
    samples the image bilinearly at ``matrix^-1 (u, v)``, zero outside (``cv2.warpAffine`` INTER_LINEAR)."""
    width, height = int(size[0]), int(size[1])
    img_h, img_w = image.shape[-2:]
    crop_to_image = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))
    theta = _to_normalized(img_w, img_h) @ crop_to_image @ np.linalg.inv(_to_normalized(width, height))
    grid = F.affine_grid(torch.from_numpy(theta[:2]).float()[None], [1, 3, height, width], align_corners=True)
    pixels = image.float()[None] / (255.0 if image.dtype == torch.uint8 else 1.0)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def half_body_box(
    keypoints: np.ndarray, visible: np.ndarray, aspect_ratio: float, upper: frozenset[int] = UPPER_BODY_IDS
) -> tuple[np.ndarray, np.ndarray] | None:
    """mmpose ``half_body_transform``: the labelled keypoints of the upper body (when a standard normal draw is
    below 0.5, as mmpose's ``np.random.randn() < 0.5``, and it has more than 2) or else of the lower body; the
    box around them with the aspect-ratio fix, times 1.5. ``None`` with fewer than 2 keypoints."""
    ids = np.flatnonzero(visible > 0)
    up = [i for i in ids if i in upper]
    low = [i for i in ids if i not in upper]
    chosen = up if np.random.randn() < 0.5 and len(up) > 2 else (low if len(low) > 2 else up)
    if len(chosen) < 2:
        return None
    points = keypoints[chosen, :2]
    center = points.mean(axis=0)
    w, h = points.max(axis=0) - points.min(axis=0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w, h]) / PIXEL_STD * 1.5


@dataclass
class Crop:
    """A transformed person: the normalised crop, its targets (training), and where it came from."""

    image: torch.Tensor  # (3, H, W)
    center: np.ndarray
    scale: np.ndarray
    target: torch.Tensor | None = None  # (K, H/4, W/4)
    target_weight: torch.Tensor | None = None  # (K,)


class _Normalize:
    def __init__(self, size: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> None:
        self.size = (int(size[0]), int(size[1]))  # crop (W, H)
        self.aspect_ratio = self.size[0] / self.size[1]
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def crop(self, image: torch.Tensor, center: np.ndarray, scale: np.ndarray, rotation: float) -> torch.Tensor:
        matrix = affine_matrix(center, scale, rotation, self.size)
        return (warp_image(image, matrix, self.size) - self.mean) / self.std


class EvalTransform(_Normalize):
    """The test crop of a box: its center/scale, no rotation, normalised (mmpose val pipeline)."""

    def __call__(self, image: torch.Tensor, box: Sequence[float]) -> Crop:
        center, scale = box_to_center_scale(box, self.aspect_ratio)
        return Crop(self.crop(image, center, scale, 0.0), center, scale)


class TrainTransform(_Normalize):
    """The official training augmentation (module docstring) and targets of one person (``codec``'s encoding
    and flip pairs; its input size must be ``size``)."""

    def __init__(
        self,
        size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        codec: MSRAHeatmap,
        flip: bool = True,
        half_body_prob: float = 0.3,
        half_body_min_keypoints: int = 8,
        scale_factor: float = 0.5,
        rotation_factor: float = 40.0,
        rotation_prob: float = 0.6,
        center_shift_prob: float = 0.3,
    ) -> None:
        super().__init__(size, mean, std)
        self.codec, self.flip = codec, flip
        self.half_body_prob, self.half_body_min_keypoints = half_body_prob, half_body_min_keypoints
        self.scale_factor, self.rotation_factor, self.rotation_prob = scale_factor, rotation_factor, rotation_prob
        self.center_shift_prob = center_shift_prob

    def __call__(self, image: torch.Tensor, box: Sequence[float], keypoints: np.ndarray) -> Crop:
        """``image`` (3, H, W) uint8, ``box`` (x, y, w, h), ``keypoints`` (K, 3) x, y, labelled 0/1."""
        center, scale = box_to_center_scale(box, self.aspect_ratio)
        if np.random.rand() < self.center_shift_prob:
            center = center + 0.4 * (np.random.rand(2) - 0.5) * np.asarray(box[2:4], dtype=np.float64)
        points, visible = keypoints[:, :2].astype(np.float64), keypoints[:, 2].copy()
        if self.flip and np.random.rand() <= 0.5:  # mmpose TopDownRandomFlip
            image = image.flip(-1)
            width = image.shape[-1]
            order = list(range(len(points)))
            for left, right in self.codec.flip_pairs:
                order[left], order[right] = right, left
            points, visible = points[order], visible[order]
            points[:, 0] = width - 1 - points[:, 0]
            points *= visible[:, None]
            center = np.array([width - 1 - center[0], center[1]])
        if visible.sum() > self.half_body_min_keypoints and np.random.rand() < self.half_body_prob:
            half = half_body_box(points, visible, self.aspect_ratio)
            if half is not None:
                center, scale = half
        sf, rf = self.scale_factor, self.rotation_factor
        scale = scale * np.clip(np.random.randn() * sf + 1, 1 - sf, 1 + sf)
        rotation = (
            float(np.clip(np.random.randn() * rf, -2 * rf, 2 * rf)) if np.random.rand() <= self.rotation_prob else 0.0
        )
        crop = self.crop(image, center, scale, rotation)
        in_crop = apply_affine(points, affine_matrix(center, scale, rotation, self.size))
        target, weight = self.codec.encode(in_crop, visible)
        return Crop(crop, center, scale, target, weight)
