"""Folding eval-mode BatchNorms into the convolutions beside them (exact in real arithmetic).

Each module that can fold its own norms does so in its ``reparameterize`` method with these helpers;
:func:`uniformer.models.optimize.fold_batchnorms` walks a model and calls them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["bn_scale_shift", "fold_into_next_pointwise", "fold_into_previous_conv", "fold_sequential_batchnorms"]


def bn_scale_shift(norm: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as ``x * scale + shift`` per channel."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift


def _conv_bias(conv: nn.Module) -> torch.Tensor:
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device))
    return conv.bias


@torch.no_grad()
def fold_into_next_pointwise(norm: _BatchNorm, conv: nn.Module) -> None:
    """``conv(norm(x))`` -> ``conv'(x)``: exact for a 1x1 convolution, which sees no zero padding."""
    scale, shift = bn_scale_shift(norm)
    weight = conv.weight.flatten(1)
    _conv_bias(conv).add_(weight @ shift)
    conv.weight.mul_(scale.view(1, -1, *([1] * (conv.weight.ndim - 2))))


@torch.no_grad()
def fold_into_previous_conv(conv: nn.Module, norm: _BatchNorm) -> None:
    """``norm(conv(x))`` -> ``conv'(x)``, in place: exact for any convolution, transposed ones included (the norm
    acts per output channel: dim 0 of a convolution's weight, dim 1 of a transposed convolution's)."""
    scale, shift = bn_scale_shift(norm)
    bias = _conv_bias(conv)
    bias.mul_(scale).add_(shift)
    out_dim = 1 if isinstance(conv, nn.modules.conv._ConvTransposeNd) else 0
    conv.weight.mul_(scale.view(*([1] * out_dim), -1, *([1] * (conv.weight.ndim - out_dim - 1))))


def fold_sequential_batchnorms(layers: nn.Sequential) -> None:
    """Fold every eval-mode BatchNorm of ``layers`` that follows a convolution into it and replace the norm by an
    identity, in place (indices, hence state-dict keys of the rest, stay); calling it again changes nothing."""
    for i, layer in enumerate(layers):
        if isinstance(layer, _BatchNorm) and i > 0 and isinstance(layers[i - 1], nn.modules.conv._ConvNd):
            fold_into_previous_conv(layers[i - 1], layer)
            layers[i] = nn.Identity()
