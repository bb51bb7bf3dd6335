"""The backbone of the detectors: the dense UniFormer and mmdet's FPN, as torchvision's detectors want it."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from uniformer.models.heads import FPN
from uniformer.models.uniformer import UniFormer

__all__ = ["FPN_STRIDES", "UniFormerFPN"]


FPN_STRIDES = (4, 8, 16, 32, 64)  # P2 .. P6


class UniFormerFPN(nn.Module):
    """The dense backbone (``body``) and mmdet's FPN (``fpn``, 5 outputs, P6 by max-pooling) as torchvision's
    detectors want a backbone: ``out_channels`` and an OrderedDict of maps named ``"0"`` .. ``"3"``, ``"pool"``
    (strides 4 .. 64), the names :class:`~torchvision.models.detection.backbone_utils.BackboneWithFPN` gives."""

    def __init__(self, body: UniFormer, out_channels: int = 256) -> None:
        super().__init__()
        if not getattr(body, "dense", False):
            raise ValueError("a detector needs a dense backbone (UniFormer(dense=True))")
        self.body = body
        self.fpn = FPN(body.embed_dim, out_channels, num_outs=len(FPN_STRIDES))
        self.out_channels = out_channels

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.fpn(self.body(images))
        return OrderedDict(zip(("0", "1", "2", "3", "pool"), maps))
