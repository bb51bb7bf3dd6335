"""Person crops as dataset items, and the collate function.

Each item is one person (an :class:`~uniformer.tasks.pose.coco.Instance`): its image read with PIL, cropped by
the training or test transform (:mod:`.transforms`). An image that cannot be read is reported by file: in
training the person is replaced by another drawn from ``(seed, index, attempt)`` and listed in the item's
``skipped`` (as the other tasks' datasets do); in evaluation the item is marked ``valid=False`` with the reason,
and the metric lists it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from uniformer.tasks.pose.coco import Instance
from uniformer.tasks.pose.transforms import EvalTransform, TrainTransform

__all__ = ["PoseDataset", "collate_persons", "read_image"]

logger = logging.getLogger("uniformer.data")


def read_image(path: str) -> torch.Tensor:
    """An image file as (3, H, W) uint8 RGB; ``ValueError`` naming the file when it cannot be read."""
    try:
        with Image.open(path) as f:
            return torch.from_numpy(np.asarray(f.convert("RGB")).copy()).permute(2, 0, 1)
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable image {path} ({exc})") from None


class PoseDataset(torch.utils.data.Dataset):
    """Persons as items ``{"image", "center", "scale", "score", "image_id", "index", "path", "valid", "error",
    "skipped"}`` plus ``"target"`` and ``"target_weight"`` in training."""

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
        self.instances, self.keypoint_names, self.transform = list(instances), list(keypoint_names), transform
        self.train, self.ann_file, self.max_retries, self.seed = train, ann_file, max_retries, seed
        if train and any(inst.keypoints is None for inst in self.instances):
            raise ValueError("training persons need keypoints (ground-truth annotations)")

    def __len__(self) -> int:
        return len(self.instances)

    def __repr__(self) -> str:
        return f"PoseDataset({len(self)} persons, {len(self.keypoint_names)} keypoints, train={self.train})"

    def _item(self, index: int, inst: Instance, skipped: list[tuple[str, str]]) -> dict[str, Any]:
        image = read_image(inst.image)
        if self.train:
            crop = self.transform(image, inst.box, inst.keypoints)  # type: ignore[call-arg]
        else:
            crop = self.transform(image, inst.box)  # type: ignore[call-arg]
        item = {
            "image": crop.image,
            "center": torch.as_tensor(crop.center, dtype=torch.float64),
            "scale": torch.as_tensor(crop.scale, dtype=torch.float64),
            "score": inst.score,
            "image_id": inst.image_id,
            "index": index,
            "path": inst.image,
            "valid": True,
            "error": "",
            "skipped": skipped,
        }
        if crop.target is not None:
            item.update(target=crop.target, target_weight=crop.target_weight)
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[tuple[str, str]] = []
        current = index
        for attempt in range(self.max_retries + 1 if self.train else 1):
            inst = self.instances[current]
            try:
                return self._item(index, inst, skipped)
            except ValueError as exc:
                if not self.train:
                    width, height = self.transform.size
                    return {
                        **dict(image=torch.zeros(3, height, width), center=torch.zeros(2, dtype=torch.float64)),
                        **dict(scale=torch.ones(2, dtype=torch.float64), score=0.0, image_id=inst.image_id),
                        **dict(index=index, path=inst.image, valid=False, error=str(exc), skipped=[]),
                    }
                logger.warning("skipping person in %s (%s)", inst.image, exc)
                skipped.append((inst.image, str(exc)))
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index * 101 + attempt)
                current = int(torch.randint(len(self.instances), (), generator=generator))
        listed = "; ".join(f"{p}: {r}" for p, r in skipped)
        raise RuntimeError(f"{len(skipped)} images in a row could not be read (is the dataset right?): {listed}")


def collate_persons(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stacked crops ``image`` (B, 3, H, W), ``center``/``scale`` (B, 2) float64, ``score`` (B,),
    ``image_id``/``index`` int64, ``valid`` bool, ``path``/``error`` lists, the concatenated ``skipped``; in
    training ``target`` (B, K, H/4, W/4) and ``target_weight`` (B, K)."""
    if not items:
        raise ValueError("collate_persons got an empty batch")
    batch: dict[str, Any] = {
        "image": torch.stack([b["image"] for b in items]),
        "center": torch.stack([b["center"] for b in items]),
        "scale": torch.stack([b["scale"] for b in items]),
        "score": torch.tensor([b["score"] for b in items], dtype=torch.float64),
        "image_id": torch.tensor([b["image_id"] for b in items], dtype=torch.long),
        "index": torch.tensor([b["index"] for b in items], dtype=torch.long),
        "valid": torch.tensor([b["valid"] for b in items], dtype=torch.bool),
        "path": [b["path"] for b in items],
        "error": [b["error"] for b in items],
        "skipped": [entry for b in items for entry in b["skipped"]],
    }
    if all("target" in b for b in items):
        batch["target"] = torch.stack([b["target"] for b in items])
        batch["target_weight"] = torch.stack([b["target_weight"] for b in items])
    return batch
