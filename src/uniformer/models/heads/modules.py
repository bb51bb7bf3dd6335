"""The building blocks of the mmseg 0.x heads, under the parameter names of their released weights.

Facts from mmseg 0.13 (vendored by Sense-X/UniFormer under ``semantic_segmentation/mmseg/models``:
``decode_heads/decode_head.py``) and mmcv 1.x ``ConvModule``; read for reference only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from uniformer.models.layers.batchnorm import fold_into_previous_conv

__all__ = ["ALIGN_CORNERS", "ConvModule", "DecodeHead", "resize", "upsampled_conv3x3"]

# Every UniFormer segmentation config sets align_corners=False (heads, resizes and the final upsampling).
ALIGN_CORNERS = False


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of an (N, C, H, W) map to ``size`` (mmseg ``resize`` with align_corners=False)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=ALIGN_CORNERS)


def _shifted_interpolation(out_size: int, in_size: int, like: torch.Tensor) -> torch.Tensor:
    """``(3, out_size, in_size)``: row ``Y`` of matrix ``k`` holds the bilinear weights (align_corners=False, as
    PyTorch's ``upsample_bilinear2d`` computes them: source ``(Y + 0.5) * in / out - 0.5`` clamped at 0) of output
    position ``Y + k - 1``, and zeros where that position lies outside (a 3x3 convolution's zero padding)."""
    position = torch.arange(-1, out_size + 1, dtype=torch.float64)
    source = ((position + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    low = source.floor().clamp(max=in_size - 1)
    frac = source - low
    high = (low + 1).clamp(max=in_size - 1)
    weights = torch.zeros(out_size + 2, in_size, dtype=torch.float64)
    rows = torch.arange(out_size + 2)
    weights.index_put_((rows, low.long()), 1 - frac, accumulate=True)
    weights.index_put_((rows, high.long()), frac, accumulate=True)
    weights[0] = weights[-1] = 0  # positions -1 and out_size: the padding
    taps = torch.stack([weights[k : k + out_size] for k in range(3)])
    return taps.to(dtype=like.dtype, device=like.device)


def upsampled_conv3x3(x: torch.Tensor, weight: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``F.conv2d(resize(x, size), weight, padding=1)`` for a 3x3 ``weight``, computed at ``x``'s resolution.

    Exact in real arithmetic: the convolution is a sum over its 9 taps of a channel mixing ``weight[:, :, i, j]``
    applied to the upsampled map shifted by ``(i - 1, j - 1)`` (zeros shifted in); channel mixing commutes with
    bilinear upsampling, which is separable (one interpolation matrix per axis), so each tap's mixing runs on
    the small map and the shifts go into the interpolation matrices. For UperNet's fusion at 512 x 512 (maps
    of 64, 32 and 16 pixels upsampled to 128) this is about 19 instead of 116 GMACs.
    """
    batch, channels, h, w = x.shape
    height, width = size
    out_channels = weight.shape[0]
    # (B*h*w, C) @ (C, 3 * 3 * O): every tap's channel mixing at the small size.
    mixing = weight.permute(1, 2, 3, 0).reshape(channels, 9 * out_channels)
    taps = (x.permute(0, 2, 3, 1).reshape(-1, channels) @ mixing).view(batch, h, w, 3, 3, out_channels)
    # columns: Z[b, y, r, X, o] = sum over (c, x) of cols[c][X, x] * taps[b, y, x, r, c, o]
    cols = _shifted_interpolation(width, w, x).permute(1, 0, 2).reshape(width, 3 * w)
    stacked = taps.permute(0, 1, 3, 4, 2, 5).reshape(batch * h * 3, 3 * w, out_channels)
    columns = (cols @ stacked).view(batch, h * 3, width * out_channels)
    # rows: out[b, Y, (X, o)] = sum over (y, r) of rows[r][Y, y] * Z[b, y, r, X, o]
    rows = _shifted_interpolation(height, h, x).permute(1, 2, 0).reshape(height, h * 3)
    out = (rows @ columns).view(batch, height, width, out_channels)
    return out.permute(0, 3, 1, 2)


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
