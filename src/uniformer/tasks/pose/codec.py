"""The pose task's heatmap codec, one object as mmpose 1.x's ``MSRAHeatmap`` (``codecs/msra_heatmap.py``): what a
crop's keypoints become as a training target, how heatmaps become keypoints in the image again, and the constants
both sides share (the crop and heatmap sizes, the Gaussian's sigma, the left/right keypoint pairs a flip swaps,
mmpose's scale unit). The data pipeline encodes with it, the metric and the prediction decode with it.

The flip test itself is the model's (:class:`~uniformer.models.pose.TopDownPoseModel`, ``flip_test=True``, with
its own ``flip_pairs`` and :func:`~uniformer.models.pose.flip_back`): models do not import tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from uniformer.models.pose import COCO_FLIP_PAIRS

__all__ = ["PIXEL_STD", "MSRAHeatmap"]

PIXEL_STD = 200.0  # mmpose's scale unit: scale = size in pixels / 200


@dataclass(frozen=True)
class MSRAHeatmap:
    """Crops of ``input_size`` (W, H) and their heatmaps of ``heatmap_size`` (W, H; default a quarter of the crop,
    the model's stride), Gaussians of ``sigma`` heatmap pixels, ``flip_pairs`` the (left, right) keypoints."""

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int] | None = None
    sigma: float = 2.0
    flip_pairs: Sequence[tuple[int, int]] = COCO_FLIP_PAIRS

    def __post_init__(self) -> None:
        width, height = (int(v) for v in self.input_size)
        object.__setattr__(self, "input_size", (width, height))
        size = self.heatmap_size or (width // 4, height // 4)
        object.__setattr__(self, "heatmap_size", (int(size[0]), int(size[1])))
        object.__setattr__(self, "flip_pairs", tuple((int(a), int(b)) for a, b in self.flip_pairs))

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """mmpose's MSRA target: per keypoint (crop pixels (K, 2), ``visible`` (K,) 0/1) a Gaussian of ``sigma``
        centred on the nearest heatmap pixel ``int(x / stride + 0.5)``, cut at 3 sigma; the weight is the
        visibility, 0 when the cut Gaussian lies wholly outside the map. Returns ``(target (K, h, w), weight (K,))``."""
        width, height = self.heatmap_size
        stride = np.asarray(self.input_size, dtype=np.float64) / [width, height]
        sigma = self.sigma
        radius = sigma * 3
        target = np.zeros((len(keypoints), height, width), dtype=np.float32)
        weight = np.asarray(visible, dtype=np.float32).copy()
        xs, ys = np.arange(width), np.arange(height)
        for k, (x, y) in enumerate(keypoints[:, :2]):
            mu_x, mu_y = int(x / stride[0] + 0.5), int(y / stride[1] + 0.5)  # int() truncates toward 0, as mmpose
            left, top = int(mu_x - radius), int(mu_y - radius)
            right, bottom = int(mu_x + radius + 1), int(mu_y + radius + 1)
            if left >= width or top >= height or right < 0 or bottom < 0:
                weight[k] = 0
            if weight[k] > 0.5:
                gx = np.where((xs >= left) & (xs < right), np.exp(-((xs - mu_x) ** 2) / (2 * sigma**2)), 0)
                gy = np.where((ys >= top) & (ys < bottom), np.exp(-((ys - mu_y) ** 2) / (2 * sigma**2)), 0)
                target[k] = gy[:, None] * gx[None, :]
        return torch.from_numpy(target), torch.from_numpy(weight)

    def decode(
        self, heatmaps: torch.Tensor, centers: torch.Tensor | np.ndarray, scales: torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints in image pixels (B, K, 2) and their scores (B, K) from heatmaps (B, K, H, W) of crops made
        with ``centers`` (B, 2) and ``scales`` (B, 2) (box size / 200, mmpose's convention).

        mmpose ``keypoints_from_heatmaps`` with ``post_process='default'``: the arg-max (x, y) and its value (a map
        whose maximum is not positive gives heatmap position (-1, -1)); where the peak is strictly inside
        ``1 < x < W - 1`` and ``1 < y < H - 1``, a step of 0.25 toward the higher neighbour in x and in y (none on
        a tie); then ``transform_preds``: ``x * scale_w * 200 / W + center_x - scale_w * 200 / 2`` (and the same
        in y), W and H those of the maps given.
        """
        if heatmaps.ndim != 4:
            raise ValueError(f"heatmaps must be (B, K, H, W), got shape {tuple(heatmaps.shape)}")
        maps = heatmaps.detach().float().cpu()
        batch, joints, height, width = maps.shape
        values, index = maps.flatten(2).max(dim=2)
        x, y = (index % width).float(), torch.div(index, width, rounding_mode="floor").float()
        x, y = torch.where(values > 0, x, -1.0), torch.where(values > 0, y, -1.0)
        inside = (x > 1) & (x < width - 1) & (y > 1) & (y < height - 1)
        xi, yi = x.long().clamp(1, width - 2), y.long().clamp(1, height - 2)
        b, k = torch.meshgrid(torch.arange(batch), torch.arange(joints), indexing="ij")
        dx = maps[b, k, yi, xi + 1] - maps[b, k, yi, xi - 1]
        dy = maps[b, k, yi + 1, xi] - maps[b, k, yi - 1, xi]
        x = torch.where(inside, x + 0.25 * torch.sign(dx), x)
        y = torch.where(inside, y + 0.25 * torch.sign(dy), y)
        centers = torch.as_tensor(np.asarray(centers), dtype=torch.float32).reshape(batch, 1, 2)
        size = torch.as_tensor(np.asarray(scales), dtype=torch.float32).reshape(batch, 1, 2) * PIXEL_STD
        points = torch.stack([x, y], dim=-1) * size / torch.tensor([width, height]) + centers - size * 0.5
        return points, values
