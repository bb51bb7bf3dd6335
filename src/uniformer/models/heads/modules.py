"""The building blocks of the mmseg 0.x heads, under the parameter names of their released weights.

Facts from mmseg 0.13 (vendored by Sense-X/UniFormer under ``semantic_segmentation/mmseg/models``:
``decode_heads/decode_head.py``) and mmcv 1.x ``ConvModule``; read for reference only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from uniformer.models.uniformer import fold_into_previous_conv

__all__ = ["ALIGN_CORNERS", "ConvModule", "DecodeHead", "resize"]

# Every UniFormer segmentation config sets align_corners=False (heads, resizes and the final upsampling).
ALIGN_CORNERS = False


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of an (N, C, H, W) map to ``size`` (mmseg ``resize`` with align_corners=False)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=ALIGN_CORNERS)


class ConvModule(nn.Module):
    """A 2-D convolution, then optionally BatchNorm and ReLU: mmcv's ``ConvModule`` (submodules ``conv``, ``bn``,
    ``activate``), so keys such as ``lateral_convs.0.conv.weight`` and ``...bn.running_mean`` load as released.

    As mmcv's ``bias="auto"``, the convolution has a bias only when no norm follows it. Initialisation as mmcv:
    Kaiming normal (fan_out, ReLU gain) with zero bias; the norm starts as the identity.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        norm: bool = True,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=not norm)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        self.bn = nn.BatchNorm2d(out_channels) if norm else nn.Identity()
        self.activate = nn.ReLU(inplace=True) if act else nn.Identity()

    def reparameterize(self) -> None:
        """Fold an eval-mode BatchNorm into the convolution, in place (for inference copies; see
        :func:`uniformer.models.optimize.fold_batchnorms`); calling it again changes nothing."""
        if isinstance(self.bn, nn.BatchNorm2d):
            fold_into_previous_conv(self.conv, self.bn)
            self.bn = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class DecodeHead(nn.Module):
    """What every mmseg decode head ends with (``BaseDecodeHead.cls_seg``): ``Dropout2d`` and the 1x1 classifier
    ``conv_seg`` (initialised normal, std 0.01). Subclasses compute the ``channels``-wide map it classifies."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits of a ``channels``-wide map."""
        return self.conv_seg(self.dropout(x))
