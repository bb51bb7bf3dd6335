"""Semantic FPN: mmseg 0.x's FPN neck (``necks/fpn.py``) and ``FPNHead`` (``decode_heads/fpn_head.py``).

Read for facts in the mmseg 0.13 copy vendored by Sense-X/UniFormer (``semantic_segmentation/mmseg``); the
UniFormer configs are ``semantic_segmentation/fpn_seg/configs/_base_/models/fpn_uniformer.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from uniformer.models.heads.modules import ALIGN_CORNERS, ConvModule, DecodeHead, resize

__all__ = ["FPN", "FPNHead"]


class FPN(nn.Module):
    """Feature pyramid: 1x1 ``lateral_convs``, a top-down pass adding each level upsampled (nearest) to the one
    below, then 3x3 ``fpn_convs``; one ``out_channels`` map per input. As the UniFormer configs (no norm, no
    activation), the convolutions are plain with bias. ``num_outs`` beyond the inputs adds levels by stride-2
    max-pooling (kernel 1) of the last output, as mmdet's FPN with ``add_extra_convs=False`` (the detection
    configs: ``num_outs=5``, P6 for the RPN); segmentation uses one output per input."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, num_outs: int | None = None) -> None:
        super().__init__()
        self.num_outs = len(in_channels) if num_outs is None else num_outs
        if self.num_outs < len(in_channels):
            raise ValueError(f"FPN num_outs={num_outs} is fewer than its {len(in_channels)} inputs")
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1, norm=False, act=False) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm=False, act=False) for _ in in_channels
        )

    def forward(self, maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(maps) != len(self.lateral_convs):
            raise ValueError(f"FPN expects {len(self.lateral_convs)} maps, got {len(maps)}")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, maps)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)


class FPNHead(DecodeHead):
    """Semantic FPN head: ``scale_heads[i]`` brings level i to the first level's stride with
    max(1, log2(stride_i / stride_0)) 3x3 ConvModules, each followed (levels above the first) by a 2x bilinear
    upsampling; the levels are summed (each resized to the first's size) and classified. Official: strides
    (4, 8, 16, 32), 128 channels, dropout 0.1. Keys: ``scale_heads.i.(2k).conv.weight``, ``.bn.*``."""

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        num_classes: int,
        feature_strides: Sequence[int] = (4, 8, 16, 32),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(channels, num_classes, dropout)
        if len(feature_strides) != len(in_channels) or min(feature_strides) != feature_strides[0]:
            raise ValueError(f"feature_strides {feature_strides} must give each input's stride, smallest first")
        self.scale_heads = nn.ModuleList()
        for width, stride in zip(in_channels, feature_strides):
            steps = max(1, int(math.log2(stride) - math.log2(feature_strides[0])))
            layers: list[nn.Module] = []
            for k in range(steps):
                layers.append(ConvModule(width if k == 0 else channels, channels, 3, padding=1))
                if stride != feature_strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=ALIGN_CORNERS))
            self.scale_heads.append(nn.Sequential(*layers))

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits at the resolution of ``maps[0]`` (stride 4)."""
        out = self.scale_heads[0](maps[0])
        for head, x in zip(self.scale_heads[1:], maps[1:]):
            out = out + resize(head(x), out.shape[2:])
        return self.cls_seg(out)
