"""The FCN head, used as UperNet's auxiliary head on stage 3 (mmseg 0.x ``decode_heads/fcn_head.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from uniformer.models.heads.modules import ConvModule, DecodeHead

__all__ = ["FCNHead"]


class FCNHead(DecodeHead):
    """``num_convs`` 3x3 ConvModules on map ``in_index``, then the classifier (mmseg ``FCNHead`` with
    ``concat_input=False``, as the UniFormer UperNet configs use: ``num_convs=1``, 256 channels, ``in_index=2``).
    Keys: ``convs.0.conv.weight``, ``convs.0.bn.*``, ``conv_seg.*``."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        in_index: int = 2,
        num_convs: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(channels, num_classes, dropout)
        if num_convs < 1:
            raise ValueError(f"FCNHead needs at least one convolution, got num_convs={num_convs}")
        self.in_index = in_index
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(*(ConvModule(widths[i], channels, 3, padding=1) for i in range(num_convs)))

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits at the resolution of ``maps[in_index]``."""
        return self.cls_seg(self.convs(maps[self.in_index]))
