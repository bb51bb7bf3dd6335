"""UperNet's decode head (mmseg 0.x ``decode_heads/uper_head.py``, its pyramid pooling from ``psp_head.py``).

Read for facts in the mmseg 0.13 copy vendored by Sense-X/UniFormer (``semantic_segmentation/mmseg``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from uniformer.models.heads.modules import ConvModule, DecodeHead, resize, upsampled_conv3x3
from uniformer.models.uniformer import Formulation, check_formulation

__all__ = ["PPM", "UPerHead"]


class PPM(nn.ModuleList):
    """Pyramid pooling (PSPNet): per scale s, average-pool to s x s, 1x1 ConvModule, bilinear upsampling back.

    Module ``i`` is ``Sequential(AdaptiveAvgPool2d, ConvModule)``, hence keys ``psp_modules.i.1.conv.weight``.
    """

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int) -> None:
        super().__init__(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvModule(in_channels, channels, 1)) for scale in pool_scales
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [resize(branch(x), x.shape[2:]) for branch in self]


class UPerHead(DecodeHead):
    """Unified perceptual parsing: pyramid pooling on the last map, an FPN over all of them, fused at stride 4.

    The last map goes through ``psp_modules`` and ``bottleneck`` (3x3); the others through ``lateral_convs``
    (1x1); a top-down pass adds each upsampled level to the one below; ``fpn_convs`` (3x3) smooth all but the top
    level; every level is upsampled to the first's size, concatenated and fused by ``fpn_bottleneck`` (3x3)
    before ``conv_seg``. All convolutions are ConvModules (BatchNorm, ReLU). Official: pool scales (1, 2, 3, 6),
    512 channels, dropout 0.1.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        num_classes: int,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(channels, num_classes, dropout)
        *lower, top = in_channels
        self.psp_modules = PPM(pool_scales, top, channels)
        self.bottleneck = ConvModule(top + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(width, channels, 1) for width in lower)
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1) for _ in lower)
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, padding=1)
        self.formulation: Formulation = "fast"

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits at the resolution of ``maps[0]`` (stride 4)."""
        top = maps[-1]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, maps)]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        return self.cls_seg(self._fuse(outs))

    def set_formulation(self, formulation: Formulation) -> None:
        """``"reference"``: upsample every level, concatenate, convolve (mmseg); ``"fast"``: the same 3x3
        ``fpn_bottleneck`` as a sum over levels, each coarse level convolved before it is upsampled
        (:func:`upsampled_conv3x3`, exact in real arithmetic, about 6x fewer multiply-adds at 512 x 512)."""
        self.formulation = check_formulation(formulation)

    def _fuse(self, outs: list[torch.Tensor]) -> torch.Tensor:
        size = outs[0].shape[2:]
        if self.formulation == "reference":
            return self.fpn_bottleneck(torch.cat([outs[0], *(resize(x, size) for x in outs[1:])], dim=1))
        conv = self.fpn_bottleneck.conv
        weights = conv.weight.split([x.shape[1] for x in outs], dim=1)
        fused = F.conv2d(outs[0], weights[0], conv.bias, padding=1)
        for x, weight in zip(outs[1:], weights[1:]):
            fused = fused + (
                upsampled_conv3x3(x, weight, size) if x.shape[2:] != size else F.conv2d(x, weight, padding=1)
            )
        return self.fpn_bottleneck.activate(self.fpn_bottleneck.bn(fused))
