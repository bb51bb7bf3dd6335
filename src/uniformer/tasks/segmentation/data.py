"""Image/mask pairs, the official training augmentation (torchvision transforms v2) and the collate function.

Two layouts: ``folder`` (``root/images/<split>/<stem>.jpg|png`` with ``root/masks/<split>/<stem>.png``, single
channel class indices, 255 = ignore, class names in ``root/classes.txt``) and ``ade20k`` (ADEChallengeData2016:
``images/{training,validation}/*.jpg``, ``annotations/{training,validation}/*.png``, label 0 = "other", reduced
to ignore and the rest shifted down by one as mmseg's ``reduce_zero_label``).

A pair that cannot be used (mask missing or unreadable, image and mask sizes differ, a mask with several
channels, labels outside ``[0, classes)`` other than the ignore index) is reported by file: in training it is
replaced by another pair drawn from ``(seed, index, attempt)`` and listed in the item's ``skipped`` (as the
video datasets do); in evaluation the item is marked ``valid=False`` with the reason, and the metric counts it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from uniformer.data.decode import IMAGE_EXTENSIONS

__all__ = [
    "EvalTransform",
    "Pair",
    "PairError",
    "SegmentationDataset",
    "TrainTransform",
    "ade20k_pairs",
    "collate_pairs",
    "folder_pairs",
    "rescale_size",
]

logger = logging.getLogger("uniformer.data")


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


def rescale_size(height: int, width: int, scale: Sequence[float]) -> tuple[int, int]:
    """The largest size of the same aspect ratio within ``scale = (long, short)``: mmseg's ``Resize`` with
    ``keep_ratio=True`` (the long side at most ``long``, the short side at most ``short``)."""
    long, short = max(scale), min(scale)
    factor = min(long / max(height, width), short / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


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


class SegmentationDataset(torch.utils.data.Dataset):
    """Image/mask pairs as items ``{"image", "mask", "size", "path", "index", "valid", "error", "skipped"}``.

    ``train=True`` replaces a broken pair (see the module docstring); otherwise it yields a placeholder with
    ``valid=False``. ``require_masks=False`` (prediction) reads images alone, masks all ``ignore_index``.
    """

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
        self.pairs, self.classes, self.transform = list(pairs), list(classes), transform
        self.train, self.ignore_index, self.reduce_zero_label = train, ignore_index, reduce_zero_label
        self.require_masks, self.max_retries, self.seed = require_masks, max_retries, seed

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"SegmentationDataset({len(self)} pairs, {self.num_classes} classes, train={self.train})"

    def load(self, pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image (3, H, W) uint8, mask (H, W) uint8)`` with labels reduced; :class:`PairError` if unusable."""
        try:
            with Image.open(pair.image) as f:
                image = np.asarray(f.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise PairError(f"unreadable image ({exc})") from None
        if pair.mask is None:
            if self.require_masks:
                raise PairError("no mask")
            return torch.from_numpy(image.copy()).permute(2, 0, 1), torch.full(image.shape[:2], self.ignore_index)
        try:
            with Image.open(pair.mask) as f:
                mask = np.asarray(f)
        except (OSError, ValueError) as exc:
            raise PairError(f"unreadable mask ({exc})") from None
        if mask.ndim != 2:
            raise PairError(f"mask has {mask.shape[-1]} channels; masks are single-channel class indices")
        if mask.shape != image.shape[:2]:
            raise PairError(
                f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}"
            )
        mask = mask.astype(np.int64)
        if self.reduce_zero_label:
            mask = np.where((mask == 0) | (mask == self.ignore_index), self.ignore_index, mask - 1)
        bad = (mask >= self.num_classes) & (mask != self.ignore_index)
        if bad.any():
            raise PairError(
                f"labels out of range: {sorted(np.unique(mask[bad]).tolist())[:5]} with {self.num_classes} classes "
                f"(0-{self.num_classes - 1}, {self.ignore_index} = ignore)"
            )
        return torch.from_numpy(image.copy()).permute(2, 0, 1), torch.from_numpy(mask.astype(np.uint8))

    def _item(self, index: int, image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int], **extra: Any) -> dict:
        item = {"image": image, "mask": mask, "size": size, "path": self.pairs[index].image, "index": index}
        return {"valid": True, "error": "", "skipped": [], **item, **extra}

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[tuple[str, str]] = []
        current = index
        for attempt in range(self.max_retries + 1 if self.train else 1):
            pair = self.pairs[current]
            try:
                image, mask = self.load(pair)
            except PairError as exc:
                reason = str(exc)
                if not self.train:
                    blank = torch.zeros(3, 32, 32)
                    return self._item(
                        index, blank, torch.full((32, 32), self.ignore_index), (32, 32), valid=False, error=reason
                    )
                logger.warning("skipping image/mask pair %s (%s)", pair.image, reason)
                skipped.append((pair.image, reason))
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index * 101 + attempt)
                current = int(torch.randint(len(self.pairs), (), generator=generator))
                continue
            image, mask = self.transform(image, mask)
            return self._item(index, image, mask, tuple(mask.shape[-2:]), skipped=skipped)
        listed = "; ".join(f"{p}: {r}" for p, r in skipped)
        raise RuntimeError(
            f"{len(skipped)} image/mask pairs in a row could not be used (is the dataset right?): {listed}"
        )


def _pad_stack(tensors: Sequence[torch.Tensor], value: float) -> torch.Tensor:
    """Stack tensors of different trailing (H, W) sizes, padded at the bottom and right with ``value``."""
    height = max(t.shape[-2] for t in tensors)
    width = max(t.shape[-1] for t in tensors)
    return torch.stack([F.pad(t, (0, width - t.shape[-1], 0, height - t.shape[-2]), value=value) for t in tensors])


def collate_pairs(items: Sequence[dict[str, Any]], ignore_index: int = 255) -> dict[str, Any]:
    """``image`` (B, 3, H, W) padded with 0 and ``mask`` (B, H, W) int64 padded with ``ignore_index`` to the
    largest in the batch; ``resized`` (B, 2) each image's own size in ``image`` and ``size`` (B, 2) its mask's
    (they differ in evaluation, where predictions are resized back to the mask); ``path``/``error`` lists,
    ``index`` int64, ``valid`` bool, ``skipped`` the concatenated replacements."""
    if not items:
        raise ValueError("collate_pairs got an empty batch")
    return {
        "image": _pad_stack([b["image"] for b in items], 0.0),
        "mask": _pad_stack([b["mask"].long() for b in items], ignore_index),
        "resized": torch.tensor([b["image"].shape[-2:] for b in items], dtype=torch.long),
        "size": torch.tensor([b["size"] for b in items], dtype=torch.long),
        "path": [b["path"] for b in items],
        "index": torch.tensor([b["index"] for b in items], dtype=torch.long),
        "valid": torch.tensor([b["valid"] for b in items], dtype=torch.bool),
        "error": [b["error"] for b in items],
        "skipped": [entry for b in items for entry in b["skipped"]],
    }
