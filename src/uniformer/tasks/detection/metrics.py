"""COCO box and mask AP exactly as pycocotools computes them, correct under DDP, and the results files.

Each process turns its detections into COCO results (``bbox`` as x, y, w, h; ``segmentation`` as RLE of the mask
probabilities thresholded at 0.5, mmdet's ``mask_thr_binary``; ``category_id`` through the set's label map);
:meth:`CocoAccumulator.compute` gathers them on every process (``all_gather_object``) and runs ``COCOeval``
(``bbox``, and ``segm`` for a detector with masks). The numbers are pycocotools' ``stats[0:6]``: AP (IoU
0.5:0.95), AP50, AP75, AP small/medium/large, as fractions (-1: no ground-truth object of that size, which the
summary line shows as "-"). :class:`~uniformer.tasks.Metrics`' primary number is the box AP in %.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from uniformer._fileio import atomic_write_text
from uniformer.runtime import DistContext
from uniformer.tasks.base import MetricAccumulator, Metrics

__all__ = [
    "STAT_NAMES",
    "CocoAccumulator",
    "DetectionMetrics",
    "coco_results",
    "encode_mask",
    "run_cocoeval",
    "write_report",
]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
MASK_THRESHOLD = 0.5


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """A binary (H, W) mask as COCO's JSON RLE: ``{"size": [H, W], "counts": str}`` (pycocotools' encoding)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_results(
    output: dict[str, torch.Tensor], image_id: int, category_ids: Sequence[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``bbox`` and ``segm`` result entries of one image's detections (labels 1 .. C -> category ids)."""
    boxes = output["boxes"].detach().float().cpu()
    scores = output["scores"].detach().float().cpu().tolist()
    categories = [category_ids[int(label) - 1] for label in output["labels"].tolist()]
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    base = [{"image_id": image_id, "category_id": c, "score": s} for c, s in zip(categories, scores)]
    bbox = [{**entry, "bbox": [round(v, 2) for v in box]} for entry, box in zip(base, xywh)]
    segm = []
    if "masks" in output:
        binary = (output["masks"][:, 0] > MASK_THRESHOLD).cpu().numpy().astype(np.uint8)
        segm = [{**entry, "segmentation": encode_mask(mask)} for entry, mask in zip(base, binary)]
    return bbox, segm


def run_cocoeval(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str) -> dict[str, float]:
    """pycocotools' evaluation of ``results`` (its printed table captured); no detections at all give 0 AP
    (pycocotools cannot load an empty result list)."""
    if not results:
        return dict.fromkeys(STAT_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes adds fields to the entries it gets
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats[: len(STAT_NAMES)])}


@dataclass
class DetectionMetrics:
    """``bbox_AP`` ... ``segm_APl`` (fractions, pycocotools' numbers), the images scored and those that failed."""

    values: dict[str, float]
    num_images: int
    failed: dict[str, str] = field(default_factory=dict)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "results"}


class CocoAccumulator(MetricAccumulator):
    """Collects COCO results of the images this process scores; :meth:`compute` evaluates the whole set.

    ``coco_gt`` is the set's annotation index, ``image_ids[i]`` the COCO id of dataset item ``i`` and
    ``category_ids[l - 1]`` the category of label ``l``; ``masks`` adds the ``segm`` evaluation.
    """

    def __init__(self, coco_gt: COCO, image_ids: Sequence[int], category_ids: Sequence[int], masks: bool) -> None:
        self.coco_gt, self.image_ids, self.category_ids = coco_gt, list(image_ids), list(category_ids)
        self.iou_types = ("bbox", "segm") if masks else ("bbox",)
        self.results: dict[str, list[dict[str, Any]]] = {t: [] for t in self.iou_types}
        self.failed: dict[str, str] = {}

    def indices(self, rank: int, world_size: int) -> list[int]:
        return list(range(rank, len(self.image_ids), world_size))

    def update(self, output: Any, batch: dict[str, Any]) -> None:
        if not isinstance(output, list) or not all(isinstance(o, dict) and "boxes" in o for o in output):
            raise ValueError(
                f"the model must return a list of detections ({{'boxes', 'labels', 'scores'[, 'masks']}} per image) "
                f"in eval mode; got {type(output).__name__}"
            )
        for detections, image_id, ok, path, error in zip(
            output, batch["image_id"], batch["valid"].tolist(), batch["path"], batch["error"], strict=True
        ):
            if not ok:
                self.failed[path] = error
                continue
            if "segm" in self.iou_types and "masks" not in detections:
                raise ValueError("the set is evaluated with masks but the model returns none (a box-only detector?)")
            bbox, segm = coco_results(detections, image_id, self.category_ids)
            self.results["bbox"] += bbox
            if "segm" in self.iou_types:
                self.results["segm"] += segm

    def compute(self, comm: DistContext) -> Metrics:
        results: dict[str, list[dict[str, Any]]] = {t: [] for t in self.iou_types}
        failed: dict[str, str] = {}
        for part_results, part_failed in comm.all_gather_object((self.results, self.failed)):
            for iou_type in self.iou_types:
                results[iou_type] += part_results[iou_type]
            failed.update(part_failed)
        values: dict[str, float] = {}
        for iou_type in self.iou_types:
            stats = run_cocoeval(self.coco_gt, results[iou_type], iou_type)
            values.update({f"{iou_type}_{name}": value for name, value in stats.items()})
        metrics = DetectionMetrics(values, len(self.image_ids) - len(failed), dict(sorted(failed.items())), results)
        primary = 100 * values["bbox_AP"]  # in %, as every task's primary number (the values stay pycocotools')
        return Metrics(primary=primary, values={**values, "failed": len(failed)}, detail=metrics)


def _percent(value: float) -> str:
    """A pycocotools number in % with one decimal; "-" for its -1 (no ground-truth object to score)."""
    return "-" if value < 0 else f"{100 * value:.1f}"


def write_report(out_dir: Path, result: DetectionMetrics) -> str:
    """``bbox_results.json`` (and ``segm_results.json``: COCO results, masks as RLE) and ``metrics.json``;
    returns the summary line (AP in %)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for iou_type, entries in result.results.items():
        atomic_write_text(out_dir / f"{iou_type}_results.json", json.dumps(entries) + "\n")
    atomic_write_text(out_dir / "metrics.json", json.dumps(result.to_dict(), indent=2) + "\n")
    parts = []
    for iou_type, title in (("bbox", "box"), ("segm", "mask")):
        if f"{iou_type}_AP" in result.values:
            v = {name: _percent(result.values[f"{iou_type}_{name}"]) for name in STAT_NAMES}
            parts.append(
                f"{title} AP {v['AP']} AP50 {v['AP50']} AP75 {v['AP75']} (s/m/l {v['APs']}/{v['APm']}/{v['APl']})"
            )
    line = "; ".join(parts) + f" over {result.num_images} images"
    if result.failed:
        line += f"; {len(result.failed)} unreadable image(s) not scored, listed in metrics.json"
    return line
