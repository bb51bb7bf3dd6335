"""The RoI feature extractor of the detectors: mmdet's level mapping with aligned RoIAlign."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import LevelMapper

from uniformer.models.detection.backbone import FPN_STRIDES

__all__ = ["ROI_STRIDES", "AlignedMultiScaleRoIAlign"]


ROI_STRIDES = FPN_STRIDES[:4]  # the RoI extractors read P2 .. P5


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """mmdet's ``SingleRoIExtractor`` with mmcv ``RoIAlign(aligned=True)``: each box is pooled from level
    floor(log2(sqrt(w h) / 56)) (clamped to the levels; torchvision's mapper with k0=4, s0=224 is the same
    rule), sampling adaptive when ``sampling_ratio=0`` (ceil of the bin size, both libraries)."""

    def __init__(
        self,
        featmap_names: list[str],
        output_size: int,
        sampling_ratio: int = 0,
        strides: Sequence[int] = ROI_STRIDES,
    ) -> None:
        super().__init__(featmap_names, output_size, sampling_ratio)
        if len(strides) != len(featmap_names):
            raise ValueError(f"one stride per feature map: {strides} for {featmap_names}")
        levels = [int(math.log2(s)) for s in strides]
        self.scales = [1.0 / s for s in strides]
        self.map_levels = LevelMapper(levels[0], levels[-1], canonical_scale=224, canonical_level=4)

    def forward(
        self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        maps = [x[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])
        levels = self.map_levels(boxes)
        result = maps[0].new_zeros((len(rois), maps[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(maps, self.scales)):
            index = torch.where(levels == level)[0]
            # in float32: bf16 boxes would be off by pixels (the output goes back to the maps' dtype)
            pooled = roi_align(
                feature.float(), rois[index].float(), self.output_size, scale, self.sampling_ratio, aligned=True
            )
            result[index] = pooled.to(result.dtype)
        return result
