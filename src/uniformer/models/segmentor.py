"""Semantic segmentation: the dense UniFormer backbone with an UperNet or Semantic FPN head.

:class:`UniFormerSegmentor` is mmseg 0.x's ``EncoderDecoder`` in "whole" inference mode (the UniFormer
segmentation configs, Sense-X/UniFormer ``semantic_segmentation/configs/_base_/models/upernet_uniformer.py`` and
``semantic_segmentation/fpn_seg/configs/_base_/models/fpn_uniformer.py``). Its attributes ``backbone``,
``neck``, ``decode_head`` and ``auxiliary_head`` and everything under them carry the official names, so a
released checkpoint (``state_dict`` with ``backbone.*``, ``decode_head.*`` and ``auxiliary_head.*`` or
``neck.*``) loads strictly as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn as nn

from uniformer.models.heads import FPN, FCNHead, FPNHead, UPerHead, resize
from uniformer.models.uniformer import UniFormer

__all__ = ["Decoder", "UniFormerSegmentor", "build_segmentor"]

Decoder = Literal["upernet", "fpn"]


class UniFormerSegmentor(nn.Module):
    """Backbone -> optional neck -> decode head (+ optional auxiliary head), logits at the input size.

    ``model.eval()(images)`` returns logits (B, num_classes, H, W) for images (B, 3, H, W): the decode head's
    stride-4 logits resized bilinearly (align_corners=False) to the input size, as mmseg's ``encode_decode``.
    In training mode the model returns ``{"out": logits, "aux": auxiliary logits}`` (``"aux"`` only with an
    auxiliary head), both resized to the input size as mmseg's losses resize them to the label size: the
    official loss is cross-entropy on each (ignore index 255), weighted 1.0 and 0.4 (UperNet configs).
    ``model.decode_head(model.features(images))`` gives the stride-4 logits themselves.
    """

    def __init__(
        self,
        backbone: UniFormer,
        decode_head: nn.Module,
        auxiliary_head: nn.Module | None = None,
        neck: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not getattr(backbone, "dense", False):
            raise ValueError("a segmentor needs a dense backbone (UniFormer(dense=True))")
        # registration order as mmseg's EncoderDecoder: backbone, neck, decode_head, auxiliary_head
        self.backbone = backbone
        self.neck = neck
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.num_classes = decode_head.num_classes

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The maps the heads read: the backbone's four, through the neck if there is one."""
        maps = self.backbone(images)
        return maps if self.neck is None else self.neck(maps)

    def forward(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        maps = self.features(images)
        size = images.shape[-2:]
        logits = resize(self.decode_head(maps), size)
        if not self.training:
            return logits
        outputs = {"out": logits}
        if self.auxiliary_head is not None:
            outputs["aux"] = resize(self.auxiliary_head(maps), size)
        return outputs


def build_segmentor(
    decoder: Decoder,
    num_classes: int,
    backbone: Mapping[str, Any],
    channels: int | None = None,
    aux_channels: int = 256,
    neck_channels: int = 256,
    dropout: float = 0.1,
) -> UniFormerSegmentor:
    """A segmentor with the official head configuration.

    Args:
        decoder: ``"upernet"`` (UPerHead on the four maps + FCN auxiliary head on stage 3) or ``"fpn"`` (FPN neck
            + Semantic FPN head).
        num_classes: classes of both heads.
        backbone: :class:`UniFormer` arguments (``dense=True`` is implied).
        channels: decode-head width (official: 512 UperNet, 128 Semantic FPN).
        aux_channels: FCN auxiliary-head width (official 256).
        neck_channels: FPN neck width (official 256).
        dropout: ``Dropout2d`` before each classifier (official 0.1).
    """
    net = UniFormer(**{**backbone, "dense": True})
    widths = net.embed_dim
    if decoder == "upernet":
        return UniFormerSegmentor(
            net,
            UPerHead(widths, channels or 512, num_classes, dropout=dropout),
            auxiliary_head=FCNHead(widths[2], aux_channels, num_classes, in_index=2, dropout=dropout),
        )
    if decoder == "fpn":
        head = FPNHead([neck_channels] * 4, channels or 128, num_classes, dropout=dropout)
        return UniFormerSegmentor(net, head, neck=FPN(widths, neck_channels))
    raise ValueError(f"decoder must be 'upernet' or 'fpn', got {decoder!r}")
