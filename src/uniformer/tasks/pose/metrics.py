"""From heatmaps to COCO keypoint AP, as mmpose 0.16 tests a top-down model (facts from the copy vendored by
Sense-X/UniFormer: ``core/evaluation/top_down_eval.py``, ``core/post_processing/{post_transforms,nms}.py`` and
``TopDownCocoDataset.evaluate``).

1. :meth:`MSRAHeatmap.decode <uniformer.tasks.pose.codec.MSRAHeatmap.decode>`: the arg-max of each heatmap, a quarter-pixel step toward the higher neighbour
   (``post_process='default'``), mapped back to the image through the crop's center and scale;
2. :func:`rescore`: a person's score is its box score times the mean confidence of its keypoints above 0.2;
3. :func:`oks_nms`: per image, persons overlapping a better one with OKS above 0.9 are dropped;
4. :func:`evaluate_coco_keypoints`: pycocotools' ``COCOeval(..., "keypoints")`` on the results.

:class:`KeypointAccumulator` decodes each batch on its process; :meth:`~KeypointAccumulator.compute` gathers every
process's persons (``all_gather_object``) so each process rescores, suppresses and evaluates the whole set.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from uniformer._fileio import atomic_write_text, read_json
from uniformer.runtime import DistContext
from uniformer.tasks.base import MetricAccumulator, Metrics
from uniformer.tasks.pose.coco import COCO_SIGMAS
from uniformer.tasks.pose.codec import PIXEL_STD, MSRAHeatmap

__all__ = [
    "STAT_NAMES",
    "KeypointAccumulator",
    "PoseMetrics",
    "evaluate_coco_keypoints",
    "oks_iou",
    "oks_nms",
    "rescore",
    "write_report",
]

# COCOeval.stats of the keypoint evaluation, in its order
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def rescore(keypoint_scores: np.ndarray, box_score: float, threshold: float = 0.2) -> float:
    """mmpose's person score: ``box_score`` times the mean of the keypoint scores above ``threshold`` (0 when
    none is)."""
    confident = keypoint_scores[keypoint_scores > threshold]
    return float(box_score * (confident.mean() if len(confident) else 0.0))


def oks_iou(
    one: np.ndarray, others: np.ndarray, area: float, other_areas: np.ndarray, sigmas: np.ndarray = COCO_SIGMAS
) -> np.ndarray:
    """Object keypoint similarity of keypoints ``one`` (K, 2+) with each of ``others`` (N, K, 2+), mmpose's
    ``oks_iou`` (all keypoints count): mean over K of ``exp(-d^2 / (2 s^2 (2 sigma)^2))``, ``s^2`` the mean of
    the two areas."""
    variances = (2 * sigmas) ** 2
    d2 = ((others[..., :2] - one[None, :, :2]) ** 2).sum(-1)
    e = d2 / variances / ((area + other_areas[:, None]) / 2 + np.spacing(1)) / 2
    return np.exp(-e).mean(axis=1)


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float = 0.9,
    sigmas: np.ndarray = COCO_SIGMAS,
) -> list[int]:
    """Indices kept by greedy OKS suppression (mmpose ``oks_nms``): best score first; a person whose OKS with a
    kept one is above ``threshold`` is dropped. ``keypoints`` (N, K, 2+), ``scores`` and ``areas`` (N,)."""
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        best, rest = order[0], np.asarray(order[1:], dtype=np.int64)
        keep.append(int(best))
        if not len(rest):
            break
        overlap = oks_iou(keypoints[best], keypoints[rest], areas[best], areas[rest], sigmas)
        order = list(rest[overlap <= threshold])
    return keep


def _evaluate(coco_gt: Any, results: list[dict[str, Any]], sigmas: np.ndarray) -> dict[str, float]:
    if not results:
        return dict.fromkeys(STAT_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and the table
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas)
        evaluator.params.useSegm = None
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats, strict=True)}


def _load_gt(ann_file: str | os.PathLike[str]) -> Any:
    if not os.path.isfile(ann_file):
        raise FileNotFoundError(f"keypoint annotations {ann_file} do not exist")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(os.fspath(ann_file))


def evaluate_coco_keypoints(
    ann_file: str | os.PathLike[str],
    results_file: str | os.PathLike[str] | Sequence[dict[str, Any]],
    sigmas: np.ndarray = COCO_SIGMAS,
) -> dict[str, float]:
    """COCO keypoint metrics (fractions) of a results file (``[{"image_id", "category_id", "keypoints": [x, y,
    score] * K, "score"}]``, or that list) against ``ann_file``: ``AP``, ``AP50``, ``AP75``, ``APm``, ``APl``,
    ``AR``, ``AR50``, ``AR75``, ``ARm``, ``ARl`` as ``COCOeval(..., "keypoints")`` computes them (no rescoring,
    no NMS here). An empty results list scores 0."""
    if isinstance(results_file, (str, os.PathLike)):
        results = read_json(results_file, "keypoint results")
    else:
        results = list(results_file)
    return _evaluate(_load_gt(ann_file), results, sigmas)


@dataclass
class PoseMetrics:
    """COCO keypoint metrics in % over the test persons, the results that were scored, and unreadable images."""

    stats: dict[str, float]
    num_persons: int
    num_scored: int
    failed: dict[str, str]
    results: list[dict[str, Any]] = field(default_factory=list)


class KeypointAccumulator(MetricAccumulator):
    """Decodes each batch's heatmaps into persons; :meth:`compute` gathers them, rescores, runs OKS-NMS per image
    and evaluates against ``ann_file``."""

    def __init__(
        self,
        num_items: int,
        ann_file: str | os.PathLike[str],
        codec: MSRAHeatmap,
        *,
        vis_thr: float = 0.2,
        oks_thr: float = 0.9,
        sigmas: np.ndarray = COCO_SIGMAS,
    ) -> None:
        self.num_items, self.ann_file, self.codec = num_items, os.fspath(ann_file), codec
        self.vis_thr, self.oks_thr, self.sigmas = vis_thr, oks_thr, np.asarray(sigmas)
        self.persons: list[dict[str, Any]] = []
        self.failed: dict[str, str] = {}

    def indices(self, rank: int, world_size: int) -> list[int]:
        return list(range(rank, self.num_items, world_size))

    def update(self, output: torch.Tensor, batch: dict[str, Any]) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(f"the model must return heatmaps (B, K, H, W) in eval mode; got {type(output).__name__}")
        points, scores = self.codec.decode(output, batch["center"], batch["scale"])
        for i, ok in enumerate(batch["valid"].tolist()):
            if not ok:
                self.failed[batch["path"][i]] = batch["error"][i]
                continue
            self.persons.append(
                {
                    "index": int(batch["index"][i]),
                    "image_id": int(batch["image_id"][i]),
                    "keypoints": torch.cat([points[i], scores[i, :, None]], dim=1).numpy(),
                    "box_score": float(batch["score"][i]),
                    "center": batch["center"][i].tolist(),
                    "scale": batch["scale"][i].tolist(),
                }
            )

    def compute(self, comm: DistContext) -> Metrics:
        persons = sorted((p for part in comm.all_gather_object(self.persons) for p in part), key=lambda p: p["index"])
        failed: dict[str, str] = {}
        for part in comm.all_gather_object(self.failed):
            failed.update(part)
        results = self.results(persons)
        stats = {k: 100 * v for k, v in _evaluate(_load_gt(self.ann_file), results, self.sigmas).items()}
        detail = PoseMetrics(stats, self.num_items, len(persons), dict(sorted(failed.items())), results)
        return Metrics(
            primary=stats["AP"],
            values={**{k.lower(): v for k, v in stats.items()}, "failed": len(failed)},
            detail=detail,
        )

    def results(self, persons: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """COCO results of decoded persons: rescored, then OKS-NMS within each image (mmpose ``evaluate``)."""
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for person in persons:
            by_image[person["image_id"]].append(person)
        results = []
        for image_id, group in by_image.items():
            keypoints = np.stack([p["keypoints"] for p in group])
            scores = np.array([rescore(p["keypoints"][:, 2], p["box_score"], self.vis_thr) for p in group])
            areas = np.array([np.prod(np.asarray(p["scale"]) * PIXEL_STD) for p in group])
            for i in oks_nms(keypoints, scores, areas, self.oks_thr, self.sigmas):
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": 1,
                        "keypoints": [float(v) for v in keypoints[i].reshape(-1)],
                        "score": float(scores[i]),
                        "center": group[i]["center"],
                        "scale": group[i]["scale"],
                    }
                )
        return results


def write_report(out_dir: Path, result: PoseMetrics) -> str:
    """``result_keypoints.json`` (the COCO results that were scored) and ``metrics.json``; the summary line."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "result_keypoints.json", json.dumps(result.results) + "\n")
    summary = {
        **result.stats,
        "num_persons": result.num_persons,
        "num_scored": result.num_scored,
        "failed": result.failed,
    }
    atomic_write_text(out_dir / "metrics.json", json.dumps(summary, indent=2) + "\n")
    s = result.stats
    line = (
        f"AP {s['AP']:.1f}, AP50 {s['AP50']:.1f}, AP75 {s['AP75']:.1f}, APm {s['APm']:.1f}, APl {s['APl']:.1f}, "
        f"AR {s['AR']:.1f} (%) over {result.num_scored} persons"
    )
    if result.failed:
        line += f"; {len(result.failed)} unreadable image(s) not scored, listed in metrics.json"
    return line
