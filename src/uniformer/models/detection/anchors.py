"""mmdet's anchors in torchvision's anchor layout."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from uniformer.models.detection.backbone import FPN_STRIDES

__all__ = ["MMDetAnchorGenerator"]


class MMDetAnchorGenerator(AnchorGenerator):
    """mmdet 2.x ``AnchorGenerator`` (``scales=[8]``, ``ratios=[0.5, 1, 2]``, strides 4 .. 64, center offset 0) in
    torchvision's anchor layout (per location, ratio-major; locations row-major), which is also mmdet's.

    Base anchor of ratio r = h / w at size s: (-w/2, -h/2, w/2, h/2) with w = s / sqrt(r), h = s * sqrt(r),
    unrounded (torchvision rounds them); the shift of level l is ``strides[l]`` per cell, as mmdet.
    """

    def __init__(
        self,
        strides: Sequence[int] = FPN_STRIDES,
        octave_scale: float = 8,
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
    ) -> None:
        self.strides = tuple(strides)
        super().__init__(tuple((octave_scale * s,) for s in strides), (tuple(ratios),) * len(strides))

    def generate_anchors(
        self,
        scales: list[int],
        aspect_ratios: list[float],
        dtype: torch.dtype = torch.float32,
        device: torch.device = torch.device("cpu"),
    ) -> torch.Tensor:
        sizes = torch.as_tensor(scales, dtype=dtype, device=device)
        h_ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device).sqrt()
        ws = (sizes[None, :] / h_ratios[:, None]).reshape(-1)
        hs = (sizes[None, :] * h_ratios[:, None]).reshape(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feature_maps) != len(self.strides):
            raise ValueError(f"{len(self.strides)} anchor levels for {len(feature_maps)} feature maps")
        device, dtype = feature_maps[0].device, torch.float32  # float32 whatever the maps: pixel coordinates
        strides = [[torch.tensor(s, dtype=torch.int64, device=device)] * 2 for s in self.strides]
        self.set_cell_anchors(dtype, device)
        anchors = torch.cat(self.grid_anchors([m.shape[-2:] for m in feature_maps], strides))
        return [anchors for _ in image_list.image_sizes]
