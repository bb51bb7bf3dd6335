"""Image/mask pairs, the official training augmentation (torchvision transforms v2) and the collate function.

Two layouts: ``folder`` (``root/images/<split>/<stem>.jpg|png`` with ``root/masks/<split>/<stem>.png``, single
channel class indices, 255 = ignore, class names in ``root/classes.txt``) and ``ade20k`` (ADEChallengeData2016:
``images/{training,validation}/*.jpg``, ``annotations/{training,validation}/*.png``, label 0 = "other", reduced
to ignore and the rest shifted down by one as mmseg's ``reduce_zero_label``).

A pair that cannot be used (mask missing or unreadable, image and mask sizes differ, a mask with several
channels, labels outside ``[0, classes)`` other than the ignore index) is reported by file: in training it is
replaced by another pair drawn from ``(seed, index, attempt)`` and listed in the item's ``skipped``; in
evaluation the item is marked ``valid=False`` with the reason, and the metric counts it (the policy of every
dataset: :class:`~uniformer.data.items.RetryingDataset`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from uniformer.data.images import IMAGE_EXTENSIONS, DecodeError, read_image, read_label_map
from uniformer.data.items import RetryingDataset, collate_items, long_tensor
from uniformer.data.transforms import rescale_size

__all__ = [
    "EvalTransform",
    "Pair",
    "PairError",
    "SegmentationDataset",
    "TrainTransform",
    "ade20k_pairs",
    "collate_pairs",
    "folder_pairs",
]


@dataclass(frozen=True)
class Pair:
    """An image and its mask (``None``: no mask was found, or none is needed for prediction)."""

    image: str
    mask: str | None


class PairError(ValueError):
    """A pair that cannot be used; the message says why."""


def _pairs(image_dir: Path, mask_dir: Path) -> list[Pair]:
    if not image_dir.is_dir():
        raise FileNotFoundError(f"no image folder {image_dir}")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise FileNotFoundError(f"no images in {image_dir}")
    masks = {p.stem: p for p in mask_dir.glob("*.png")} if mask_dir.is_dir() else {}
    return [Pair(str(p), str(masks[p.stem]) if p.stem in masks else None) for p in images]


def folder_pairs(root: str | os.PathLike[str], split: str) -> list[Pair]:
    """``root/images/<split>/*`` with the same-stem ``root/masks/<split>/*.png`` (``mask=None`` where missing)."""
    return _pairs(Path(root) / "images" / split, Path(root) / "masks" / split)


def ade20k_pairs(root: str | os.PathLike[str], split: str) -> list[Pair]:
    """ADEChallengeData2016: ``images/<split>/*.jpg`` with ``annotations/<split>/*.png``."""
    return _pairs(Path(root) / "images" / split, Path(root) / "annotations" / split)


class TrainTransform:
    """mmseg's ADE20K training pipeline on an image and its mask together.

    Resize keeping the ratio to ``scale`` times a ratio drawn from ``ratio_range``; a random ``crop_size`` crop,
    redrawn up to 10 times while one class covers ``cat_max_ratio`` or more of its labelled pixels (mmseg
    ``RandomCrop``); horizontal flip (p 0.5); colour jitter of the image, a stand-in for mmseg's
    ``PhotoMetricDistortion`` (brightness, contrast, saturation, hue; not its exact ranges nor its random order);
    padding to the crop with 0 (image) and ``ignore_index`` (mask); normalisation.
    """

    def __init__(
        self,
        *,
        scale: Sequence[int],
        ratio_range: Sequence[float],
        crop_size: int,
        cat_max_ratio: float,
        flip: bool,
        color_jitter: float,
        ignore_index: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.scale, self.ratio_range, self.crop_size = list(scale), tuple(ratio_range), crop_size
        self.cat_max_ratio, self.ignore_index = cat_max_ratio, ignore_index
        self.flip = v2.RandomHorizontalFlip(0.5) if flip else None
        self.jitter = (
            v2.ColorJitter(color_jitter, color_jitter, color_jitter, color_jitter / 5) if color_jitter > 0 else None
        )
        self.normalize = v2.Normalize(list(mean), list(std))

    def _crop_box(self, mask: torch.Tensor) -> tuple[int, int, int, int]:
        height, width = mask.shape[-2:]
        ch, cw = min(self.crop_size, height), min(self.crop_size, width)
        for _ in range(10 if self.cat_max_ratio < 1 else 1):
            top = int(torch.randint(height - ch + 1, ()))
            left = int(torch.randint(width - cw + 1, ()))
            labels = mask[top : top + ch, left : left + cw]
            _, counts = labels[labels != self.ignore_index].unique(return_counts=True)
            if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
        return top, left, ch, cw

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` (3, H, W) uint8 and ``mask`` (H, W) uint8 -> normalised float image and int64 mask."""
        low, high = self.ratio_range
        ratio = low + (high - low) * float(torch.rand(()))
        size = rescale_size(*image.shape[-2:], [s * ratio for s in self.scale])
        img = TF.resize(tv_tensors.Image(image), list(size), antialias=True)
        seg = TF.resize(tv_tensors.Mask(mask[None]), list(size))  # a Mask is resized with nearest neighbours
        top, left, ch, cw = self._crop_box(seg[0])
        img, seg = TF.crop(img, top, left, ch, cw), TF.crop(seg, top, left, ch, cw)
        if self.flip is not None:
            img, seg = self.flip(img, seg)
        if self.jitter is not None:
            img, seg = self.jitter(img, seg)  # images only: masks pass through
        pad = [0, 0, self.crop_size - cw, self.crop_size - ch]  # left, top, right, bottom
        img = TF.pad(img, pad, fill=0)
        seg = TF.pad(seg, pad, fill=self.ignore_index)
        return self.normalize(TF.to_dtype(img, torch.float32, scale=True)), seg[0].long()


class EvalTransform:
    """The test pipeline: the image resized keeping its ratio to ``scale`` and normalised; the mask untouched
    (predictions are resized back to it, as mmseg scores them at the original size)."""

    def __init__(self, *, scale: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> None:
        self.scale = list(scale)
        self.normalize = v2.Normalize(list(mean), list(std))

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = TF.resize(tv_tensors.Image(image), list(rescale_size(*image.shape[-2:], self.scale)), antialias=True)
        return self.normalize(TF.to_dtype(img, torch.float32, scale=True)), mask.long()


class SegmentationDataset(RetryingDataset):
    """Image/mask pairs as items ``{"image", "mask", "size"}`` in the :class:`~uniformer.data.items.Item`
    envelope (``path`` is the image's).

    ``train=True`` replaces a broken pair (see the module docstring); otherwise it yields a placeholder with
    ``valid=False``. ``require_masks=False`` (prediction) reads images alone: an item's mask is empty (0 x 0,
    nothing to score; a photo's worth of labels would cost more memory than the image) and ``size`` is the image's.
    """

    noun = "image/mask pair"
    unreadable = (PairError,)

    def __init__(
        self,
        pairs: Sequence[Pair],
        classes: Sequence[str],
        transform: Any,
        *,
        train: bool,
        ignore_index: int = 255,
        reduce_zero_label: bool = False,
        require_masks: bool = True,
        max_retries: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__(train=train, max_retries=max_retries, seed=seed)
        self.pairs, self.classes, self.transform = list(pairs), list(classes), transform
        self.ignore_index, self.reduce_zero_label, self.require_masks = ignore_index, reduce_zero_label, require_masks

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"SegmentationDataset({len(self)} pairs, {self.num_classes} classes, train={self.train})"

    def load(self, index: int, view: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image (3, H, W) uint8, mask (H, W) uint8)`` of pair ``index`` with labels reduced; :class:`PairError`
        if unusable."""
        pair = self.pairs[index]
        try:
            image = read_image(pair.image)
        except DecodeError as exc:
            raise PairError(f"unreadable image ({exc})") from None
        height, width = image.shape[-2:]
        if pair.mask is None:
            if self.require_masks:
                raise PairError("no mask")
            return image, torch.full((1, 1), self.ignore_index).expand(height, width)  # no memory per pixel
        try:
            mask = read_label_map(pair.mask)
        except DecodeError as exc:
            raise PairError(f"unreadable mask ({exc})") from None
        if mask.ndim != 2:
            raise PairError(f"mask has {mask.shape[-1]} channels; masks are single-channel class indices")
        if mask.shape != (height, width):
            raise PairError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}")
        mask = mask.astype(np.int64)
        if self.reduce_zero_label:
            mask = np.where((mask == 0) | (mask == self.ignore_index), self.ignore_index, mask - 1)
        bad = (mask >= self.num_classes) & (mask != self.ignore_index)
        if bad.any():
            raise PairError(
                f"labels out of range: {sorted(np.unique(mask[bad]).tolist())[:5]} with {self.num_classes} classes "
                f"(0-{self.num_classes - 1}, {self.ignore_index} = ignore)"
            )
        return image, torch.from_numpy(mask.astype(np.uint8))

    @property
    def num_sources(self) -> int:
        return len(self.pairs)

    def source_path(self, index: int) -> str:
        return self.pairs[index].image

    def build(self, index: int, view: int, loaded: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
        image, mask = self.transform(*loaded)
        size = tuple(mask.shape[-2:])
        return {"image": image, "mask": mask if self.require_masks else mask[:0, :0], "size": size}

    def blank(self, index: int, view: int) -> dict[str, Any]:
        return {"image": torch.zeros(3, 32, 32), "mask": torch.full((32, 32), self.ignore_index), "size": (32, 32)}


def _pad_stack(tensors: Sequence[torch.Tensor], value: float) -> torch.Tensor:
    """Stack tensors of different trailing (H, W) sizes, padded at the bottom and right with ``value``."""
    height = max(t.shape[-2] for t in tensors)
    width = max(t.shape[-1] for t in tensors)
    return torch.stack([F.pad(t, (0, width - t.shape[-1], 0, height - t.shape[-2]), value=value) for t in tensors])


def collate_pairs(items: Sequence[dict[str, Any]], ignore_index: int = 255) -> dict[str, Any]:
    """``image`` (B, 3, H, W) padded with 0 and ``mask`` (B, H, W) int64 padded with ``ignore_index`` to the
    largest in the batch; ``resized`` (B, 2) each image's own size in ``image`` and ``size`` (B, 2) its mask's
    (they differ in evaluation, where predictions are resized back to the mask); then the envelope
    (:func:`~uniformer.data.items.collate_items`)."""
    batch = collate_items(
        items,
        {
            "image": lambda images: _pad_stack(images, 0.0),
            "mask": lambda masks: _pad_stack([m.long() for m in masks], ignore_index),
            "size": long_tensor,
        },
    )
    return {**batch, "resized": torch.tensor([b["image"].shape[-2:] for b in items], dtype=torch.long)}
