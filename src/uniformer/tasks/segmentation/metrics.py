"""Segmentation metrics as mmseg 0.x computes them (``mmseg/core/evaluation/metrics.py``), and the report files.

Per class, over the whole set: the intersection (pixels predicted and labelled ``c``), the union, the predicted
and the labelled areas, ignored pixels excluded. IoU = intersection / union, Acc = intersection / label area;
mIoU and mAcc are the NaN-mean over classes (a class absent from both prediction and truth has IoU 0/0 = NaN and
does not count), aAcc = total intersection / total labelled pixels. The four sums are all-reduced across
processes, so every process gets the metrics of the whole set.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from uniformer._fileio import atomic_write_text
from uniformer.runtime import DistContext
from uniformer.tasks.base import MetricAccumulator, Metrics

__all__ = [
    "Areas",
    "IoUAccumulator",
    "SegmentationMetrics",
    "compute_metrics",
    "intersect_and_union",
    "label_maps",
    "write_report",
]


@dataclass
class Areas:
    """Per-class pixel counts summed over a set: (classes,) int64 each."""

    intersect: torch.Tensor
    union: torch.Tensor
    pred: torch.Tensor
    label: torch.Tensor


def intersect_and_union(pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int) -> Areas:
    """The per-class counts of one prediction (H, W) against its labels (H, W), ``ignore_index`` pixels left out."""
    keep = label != ignore_index
    pred, label = pred[keep], label[keep]
    both = pred[pred == label]
    count = lambda x: torch.bincount(x, minlength=num_classes)[:num_classes]  # noqa: E731
    inter, area_pred, area_label = count(both), count(pred), count(label)
    return Areas(inter, area_pred + area_label - inter, area_pred, area_label)


def label_maps(output: torch.Tensor, batch: dict[str, Any]) -> list[torch.Tensor]:
    """Each item's predicted label map at its mask's size: its logits cropped to its own (unpadded) image and
    resized bilinearly (align_corners=False) to the mask, as mmseg resizes to the original shape, then arg-max."""
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        raise ValueError(f"the model must return logits (B, classes, H, W) in eval mode; got {type(output).__name__}")
    maps = []
    for logits, (rh, rw), (h, w) in zip(output.float(), batch["resized"].tolist(), batch["size"].tolist(), strict=True):
        logits = logits[None, :, :rh, :rw]
        if (rh, rw) != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        maps.append(logits[0].argmax(0).cpu())
    return maps


@dataclass
class SegmentationMetrics:
    """mIoU, aAcc and mAcc in % over the scored images; per-class IoU and Acc in % (NaN: class absent)."""

    miou: float
    aacc: float
    macc: float
    num_images: int
    num_scored: int
    failed: dict[str, str]  # path -> reason of each pair that could not be scored
    per_class: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_metrics(
    areas: Areas, class_names: list[str], num_images: int, failed: dict[str, str]
) -> SegmentationMetrics:
    """The metrics of summed :class:`Areas` (see the module docstring)."""
    inter, union, label = areas.intersect.double(), areas.union.double(), areas.label.double()
    iou = inter / union  # 0 / 0 = NaN for a class neither predicted nor present
    acc = inter / label
    aacc = float(inter.sum() / label.sum()) if label.sum() > 0 else float("nan")
    per_class = [
        {
            "index": i,
            "class": name,
            "iou": 100 * float(iou[i]),
            "acc": 100 * float(acc[i]),
            "intersection": int(areas.intersect[i]),
            "union": int(areas.union[i]),
            "pred_area": int(areas.pred[i]),
            "label_area": int(areas.label[i]),
        }
        for i, name in enumerate(class_names)
    ]
    return SegmentationMetrics(
        miou=100 * float(iou.nanmean()),
        aacc=100 * aacc,
        macc=100 * float(acc.nanmean()),
        num_images=num_images,
        num_scored=num_images - len(failed),
        failed=failed,
        per_class=per_class,
    )


class IoUAccumulator(MetricAccumulator):
    """Sums :class:`Areas` over the images this process scores; invalid pairs are counted as failed."""

    def __init__(self, num_items: int, class_names: list[str], ignore_index: int = 255) -> None:
        self.num_items, self.class_names, self.ignore_index = num_items, list(class_names), ignore_index
        self.sums = torch.zeros(4, len(class_names), dtype=torch.long)
        self.failed: dict[str, str] = {}

    def indices(self, rank: int, world_size: int) -> list[int]:
        return list(range(rank, self.num_items, world_size))

    def update(self, output: torch.Tensor, batch: dict[str, Any]) -> None:
        num_classes = len(self.class_names)
        if output.shape[1] != num_classes:
            raise ValueError(f"the model has {output.shape[1]} classes but the metric counts {num_classes}")
        for pred, mask, (h, w), ok, path, error in zip(
            label_maps(output, batch),
            batch["mask"],
            batch["size"].tolist(),
            batch["valid"].tolist(),
            batch["path"],
            batch["error"],
            strict=True,
        ):
            if not ok:
                self.failed[path] = error
                continue
            areas = intersect_and_union(pred, mask[:h, :w].cpu(), num_classes, self.ignore_index)
            self.sums += torch.stack([areas.intersect, areas.union, areas.pred, areas.label])

    def compute(self, comm: DistContext) -> Metrics:
        sums = comm.all_reduce_sum(self.sums.clone())
        failed: dict[str, str] = {}
        for part in comm.all_gather_object(self.failed):
            failed.update(part)
        result = compute_metrics(Areas(*sums), self.class_names, self.num_items, dict(sorted(failed.items())))
        values = {"miou": result.miou, "aacc": result.aacc, "macc": result.macc, "failed": len(failed)}
        return Metrics(primary=result.miou, values=values, detail=result)


def write_report(out_dir: Path, result: SegmentationMetrics) -> str:
    """``per_class.csv`` (IoU, Acc and the counts of each class) and ``metrics.json``; returns the summary line."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(result.per_class[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.per_class)
    atomic_write_text(out_dir / "per_class.csv", buffer.getvalue())
    summary = {k: v for k, v in result.to_dict().items() if k != "per_class"}
    atomic_write_text(out_dir / "metrics.json", json.dumps(summary, indent=2) + "\n")
    line = f"mIoU {result.miou:.2f}%, aAcc {result.aacc:.2f}%, mAcc {result.macc:.2f}% over {result.num_scored} images"
    if result.failed:
        line += f"; {len(result.failed)} unusable pair(s) not scored, listed in metrics.json"
    return line
