"""Ids for the people of a video: each frame's people matched to the previous frame's, as mmpose's demos track.

Greedy matching, best pair first: of all (previous person, current person) pairs whose similarity passes the
threshold, the most similar pair is matched (the current person takes the previous one's id), both leave the
pool, and so on; a person left unmatched gets a new id. Similarity is the IoU of the two boxes (``"iou"``) or the
object keypoint similarity of the two skeletons (``"oks"``, COCO's 17 keypoints only: mmpose's ``oks_iou``), the
two measures of mmpose's ``get_track_id`` (``use_oks``, ``tracking_thr=0.3``). Only the previous processed frame
is remembered: a person missing for one frame comes back with a new id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_convert, box_iou

from uniformer.tasks.pose.coco import COCO_SIGMAS
from uniformer.tasks.pose.metrics import oks_iou

__all__ = ["PoseTracker"]

TRACKING_THRESHOLD = 0.3  # mmpose 0.x demo/top_down_pose_tracking_demo_with_mmdet.py: --tracking-thr 0.3


class PoseTracker:
    """Gives each person of consecutive frames an ``id`` (0, 1, 2, ... in order of first appearance).

    Args:
        metric: ``"iou"`` (boxes) or ``"oks"`` (keypoints).
        threshold: the similarity a pair must exceed to keep an id.
    """

    def __init__(self, metric: str = "iou", threshold: float = TRACKING_THRESHOLD) -> None:
        if metric not in ("iou", "oks"):
            raise ValueError(f"tracking metric must be 'iou' or 'oks', got {metric!r}")
        self.metric, self.threshold = metric, threshold
        self._previous: list[dict[str, Any]] = []
        self._next_id = 0

    def _similarities(self, persons: Sequence[dict[str, Any]]) -> np.ndarray:
        """(previous, current) similarity of every pair."""
        if not self._previous or not persons:
            return np.zeros((len(self._previous), len(persons)))
        if self.metric == "iou":
            boxes = [
                torch.tensor([p["box"][:4] for p in group], dtype=torch.float64) for group in (self._previous, persons)
            ]
            return box_iou(*(box_convert(b, "xywh", "xyxy") for b in boxes)).numpy()
        points = np.asarray([p["keypoints"] for p in persons], dtype=np.float64)
        if points.shape[1] != len(COCO_SIGMAS):
            raise ValueError(f"OKS tracking needs COCO's {len(COCO_SIGMAS)} keypoints, got {points.shape[1]}")
        areas = np.asarray([p["box"][2] * p["box"][3] for p in persons], dtype=np.float64)
        return np.stack([
            oks_iou(np.asarray(old["keypoints"], dtype=np.float64), points, old["box"][2] * old["box"][3], areas)
            for old in self._previous
        ])  # fmt: skip

    def update(self, persons: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The people of the next frame, in their order, each a copy with its ``id``."""
        similarity = self._similarities(persons)
        pairs = sorted(((float(similarity[o, n]), o, n) for o, n in np.ndindex(*similarity.shape)), key=lambda p: -p[0])
        ids: dict[int, int] = {}
        taken: set[int] = set()
        for value, o, n in pairs:
            if value <= self.threshold:
                break
            if o not in taken and n not in ids:
                ids[n] = self._previous[o]["id"]
                taken.add(o)
        tracked = []
        for n, person in enumerate(persons):
            if n not in ids:
                ids[n], self._next_id = self._next_id, self._next_id + 1
            tracked.append({**person, "id": ids[n]})
        self._previous = tracked
        return tracked
