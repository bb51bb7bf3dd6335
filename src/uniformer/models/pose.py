"""Top-down human pose estimation: the dense UniFormer backbone with the SimpleBaseline heatmap head.

:class:`TopDownPoseModel` is mmpose 0.x's ``TopDown`` detector as the UniFormer configs build it
(Sense-X/UniFormer ``pose_estimation/exp/top_down_*/config.py``, ``mmpose/models/detectors/top_down.py``): the
backbone's last map (stride 32, after ``norm4``) goes through :class:`~uniformer.models.heads.TopDownSimpleHead`.
Its attributes ``backbone`` and ``keypoint_head`` carry the official names, so a released checkpoint
(``state_dict`` with ``backbone.*`` and ``keypoint_head.*``) loads strictly as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from uniformer.models.heads import TopDownSimpleHead
from uniformer.models.uniformer import UniFormer

__all__ = ["COCO_FLIP_PAIRS", "TopDownPoseModel", "build_pose_model", "flip_back"]

# Left/right keypoint pairs of COCO's 17 keypoints (mmpose TopDownCocoDataset ``flip_pairs``): eyes, ears,
# shoulders, elbows, wrists, hips, knees, ankles.
COCO_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def flip_back(heatmaps: torch.Tensor, flip_pairs: Sequence[tuple[int, int]], shift: bool = True) -> torch.Tensor:
    """Heatmaps of a horizontally flipped input, mapped back to the input: left and right channels swapped and
    the maps mirrored (mmpose ``flip_back``); with ``shift`` each row moves one pixel right, its first pixel kept,
    as mmpose's ``shift_heatmap=True`` (the flipped features are off by one pixel)."""
    order = list(range(heatmaps.shape[1]))
    for left, right in flip_pairs:
        order[left], order[right] = right, left
    back = heatmaps[:, order].flip(-1)
    if shift:
        back = torch.cat([back[..., :1], back[..., :-1]], dim=-1)
    return back


class TopDownPoseModel(nn.Module):
    """Person crops (B, 3, H, W) -> keypoint heatmaps (B, K, H/4, W/4).

    ``forward(crops, flip_test=True)``: in eval mode, average the heatmaps with those of the mirrored crops mapped
    back by :func:`flip_back` (shifted), as mmpose's test with ``flip_test=True, shift_heatmap=True``; the two
    passes run as one batch. ``uniformer eval`` and ``predict`` ask for it, as the official test does; an argument
    of the call, so callers sharing one model never see each other's choice. Training mode always returns the plain
    heatmaps (the loss compares them to the targets).
    """

    def __init__(
        self, backbone: UniFormer, keypoint_head: TopDownSimpleHead, flip_pairs: Sequence[tuple[int, int]]
    ) -> None:
        super().__init__()
        if not getattr(backbone, "dense", False):
            raise ValueError("a pose model needs a dense backbone (UniFormer(dense=True))")
        self.backbone = backbone
        self.keypoint_head = keypoint_head
        self.flip_pairs = tuple((int(a), int(b)) for a, b in flip_pairs)
        self.num_keypoints = keypoint_head.num_keypoints

    def heatmaps(self, crops: torch.Tensor) -> torch.Tensor:
        """One forward pass: the head on the backbone's last map (the only one computed)."""
        (last,) = self.backbone.forward_dense(crops, indices=(3,))
        return self.keypoint_head(last)

    def forward(self, crops: torch.Tensor, flip_test: bool = False) -> torch.Tensor:
        if self.training or not flip_test:
            return self.heatmaps(crops)
        both = self.heatmaps(torch.cat([crops, crops.flip(-1)]))
        plain, flipped = both.chunk(2)
        return (plain + flip_back(flipped, self.flip_pairs)) * 0.5


def build_pose_model(
    num_keypoints: int,
    backbone: Mapping[str, Any],
    flip_pairs: Sequence[tuple[int, int]] = COCO_FLIP_PAIRS,
    channels: int = 256,
) -> TopDownPoseModel:
    """A pose model with the official head: 3 deconvolutions of ``channels`` (official 256) on the backbone's
    last map; ``backbone`` holds :class:`UniFormer` arguments (``dense=True`` is implied)."""
    if any(not 0 <= i < num_keypoints for pair in flip_pairs for i in pair):
        raise ValueError(f"flip_pairs {list(flip_pairs)} name keypoints outside 0..{num_keypoints - 1}")
    net = UniFormer(**{**backbone, "dense": True})
    return TopDownPoseModel(net, TopDownSimpleHead(net.embed_dim[-1], num_keypoints, channels), flip_pairs)
