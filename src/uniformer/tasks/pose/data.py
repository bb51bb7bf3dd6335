"""Person crops as dataset items, and the collate function.

Each item is one person (an :class:`~uniformer.tasks.pose.coco.Instance`): its image read with
:func:`~uniformer.data.images.read_image`, cropped by the training or test transform (:mod:`.transforms`). An image
that cannot be read is handled as in every dataset (:class:`~uniformer.data.items.RetryingDataset`): replaced in
training, an invalid item in evaluation, which the metric lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch

from uniformer.data.images import DecodeError, read_image
from uniformer.data.items import RetryingDataset, collate_items, long_tensor
from uniformer.tasks.pose.coco import Instance
from uniformer.tasks.pose.transforms import EvalTransform, TrainTransform

__all__ = ["PoseDataset", "collate_persons"]


class PoseDataset(RetryingDataset):
    """Persons as items ``{"image", "center", "scale", "score", "image_id"}`` plus ``"target"`` and
    ``"target_weight"`` in training, in the :class:`~uniformer.data.items.Item` envelope."""

    noun = "person image"
    unreadable = (DecodeError,)

    def __init__(
        self,
        instances: Sequence[Instance],
        keypoint_names: Sequence[str],
        transform: TrainTransform | EvalTransform,
        *,
        train: bool,
        ann_file: str | None = None,
        max_retries: int = 10,
        seed: int = 0,
    ) -> None:
        if not instances:
            raise ValueError("no persons to crop (the annotation or box file lists none that can be used)")
        super().__init__(train=train, max_retries=max_retries, seed=seed)
        self.instances, self.keypoint_names, self.transform = list(instances), list(keypoint_names), transform
        self.ann_file = ann_file
        if train and any(inst.keypoints is None for inst in self.instances):
            raise ValueError("training persons need keypoints (ground-truth annotations)")

    def __len__(self) -> int:
        return len(self.instances)

    def __repr__(self) -> str:
        return f"PoseDataset({len(self)} persons, {len(self.keypoint_names)} keypoints, train={self.train})"

    @property
    def num_sources(self) -> int:
        return len(self.instances)

    def source_path(self, index: int) -> str:
        return self.instances[index].image

    def load(self, index: int, view: int) -> torch.Tensor:
        return read_image(self.instances[index].image)

    def reason(self, exc: Exception) -> str:
        return f"unreadable image ({exc})"

    def build(self, index: int, view: int, loaded: torch.Tensor) -> dict[str, Any]:
        inst = self.instances[index]
        if self.train:
            crop = self.transform(loaded, inst.box, inst.keypoints)  # type: ignore[call-arg]
        else:
            crop = self.transform(loaded, inst.box)  # type: ignore[call-arg]
        item = {
            "image": crop.image,
            "center": torch.as_tensor(crop.center, dtype=torch.float64),
            "scale": torch.as_tensor(crop.scale, dtype=torch.float64),
            "score": inst.score,
            "image_id": inst.image_id,
        }
        if crop.target is not None:
            item.update(target=crop.target, target_weight=crop.target_weight)
        return item

    def blank(self, index: int, view: int) -> dict[str, Any]:
        width, height = self.transform.size
        return {
            "image": torch.zeros(3, height, width),
            "center": torch.zeros(2, dtype=torch.float64),
            "scale": torch.ones(2, dtype=torch.float64),
            "score": 0.0,
            "image_id": self.instances[index].image_id,
        }


def collate_persons(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stacked crops ``image`` (B, 3, H, W), ``center``/``scale`` (B, 2) float64, ``score`` (B,),
    ``image_id`` int64, in training ``target`` (B, K, H/4, W/4) and ``target_weight`` (B, K), then the envelope
    (:func:`~uniformer.data.items.collate_items`)."""
    fields = {
        "image": torch.stack,
        "center": torch.stack,
        "scale": torch.stack,
        "score": partial(torch.tensor, dtype=torch.float64),
        "image_id": long_tensor,
    }
    if items and all("target" in b for b in items):
        fields.update(target=torch.stack, target_weight=torch.stack)
    return collate_items(items, fields)
