"""Inference fast paths applied to a built UniFormer: :func:`optimize_for_inference`.

Every transformation here is exact in real arithmetic (BatchNorm folding) or a different kernel for the same
formula (fused attention, channels-last layout), so the fp32 result matches the plain model to float rounding;
``tests/models/test_optimize.py`` checks it against the plain model and against the official outputs. What each
step bought on the reference machine is in the ablation rows of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
from timm.layers import Mlp

from uniformer.models.uniformer import ConvEmbed, ConvMlp, LocalBlock, UniFormer, use_reference_formulation

__all__ = ["optimize_for_inference", "fold_batchnorms", "InplaceGELU", "PrepareInput"]

_BatchNorm = nn.modules.batchnorm._BatchNorm


def _bn_scale_shift(norm: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
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
def _fold_into_next_pointwise(norm: _BatchNorm, conv: nn.Module) -> None:
    """``conv(norm(x))`` -> ``conv'(x)``: exact for a 1x1 convolution, which sees no zero padding."""
    scale, shift = _bn_scale_shift(norm)
    weight = conv.weight.flatten(1)
    _conv_bias(conv).add_(weight @ shift)
    conv.weight.mul_(scale.view(1, -1, *([1] * (conv.weight.ndim - 2))))


@torch.no_grad()
def _fold_into_previous_conv(conv: nn.Module, norm: _BatchNorm) -> None:
    """``norm(conv(x))`` -> ``conv'(x)``: exact for any convolution (the norm acts per output channel)."""
    scale, shift = _bn_scale_shift(norm)
    bias = _conv_bias(conv)
    bias.mul_(scale).add_(shift)
    conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.ndim - 1))))


def fold_batchnorms(model: nn.Module) -> nn.Module:
    """Fold the eval-mode BatchNorms of local blocks and convolutional stems into their convolutions, in place.

    A local block normalises right before a point-wise convolution (``conv1`` and ``mlp.fc1``), and the
    convolutional stem normalises right after each convolution, so those norms disappear into the weights.
    The final BatchNorm stays: the pooled features (``forward_features``) are defined after it.
    The result only makes sense in eval mode (the running statistics are baked in).
    """
    for module in model.modules():
        if isinstance(module, LocalBlock):
            _fold_into_next_pointwise(module.norm1, module.conv1)
            _fold_into_next_pointwise(module.norm2, module.mlp.fc1)
            module.norm1, module.norm2 = nn.Identity(), nn.Identity()
        elif isinstance(module, ConvEmbed):
            layers = list(module.proj)
            for i, layer in enumerate(layers):
                if isinstance(layer, _BatchNorm):
                    _fold_into_previous_conv(layers[i - 1], layer)
                    module.proj[i] = nn.Identity()
    return model


class InplaceGELU(nn.GELU):
    """The same GELU, written over its input (``aten::gelu_``): for the MLPs of an inference copy only.

    An MLP's first projection returns a fresh map that nothing else holds, so overwriting it is safe, and it
    spares the largest allocation of the network: the hidden map of a stage-1 block of video UniFormer-S is
    25.7 MB per 16x224 clip in fp32. glibc's default allocator serves blocks that large with fresh pages on
    every call, so the saving is mostly page faults: compare the "+ BatchNorm folded" and "optimized fp32" rows
    of the first table of ``benchmarks/RESULTS.md``. Autograd needs GELU's input for the gradient, hence
    inference only.

    The function is elementwise, so it runs on a view of ``x`` whose dimensions follow its memory order (for a
    channels-last map, ``x.movedim(1, -1)``, a plain row-major tensor): PyTorch 2.14.1's CPU GELU was twice as
    fast there as on channels-last strides (ad-hoc measurement: (1, 256, 8, 56, 56) 0.62 vs 1.20 ms fp32, 0.61
    vs 1.48 ms bf16), and in bf16 it then equals fp32 GELU rounded to bf16, which the channels-last kernel
    missed on 343 of those 6.4 M elements.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_memory_order = x.permute(sorted(range(x.ndim), key=lambda dim: -x.stride(dim)))
        torch.ops.aten.gelu_(in_memory_order if in_memory_order.is_contiguous() else x, approximate=self.approximate)
        return x


def _inplace_mlp_activations(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, (ConvMlp, Mlp)) and type(module.act) is nn.GELU:
            module.act = InplaceGELU(approximate=module.act.approximate)
    return model


def optimize_for_inference(model: UniFormer, dtype: torch.dtype = torch.float32, compile: bool = False) -> nn.Module:
    """A faster copy of ``model`` for inference; ``model`` itself is left as it is.

    The copy is in eval mode with BatchNorms folded (:func:`fold_batchnorms`), MLP activations computed in
    place (:class:`InplaceGELU`), fused attention
    (``F.scaled_dot_product_attention``; for bf16 on CPU :func:`~uniformer.models.uniformer.chunked_attention`,
    which is faster there), weights in ``dtype`` and in channels-last layout (the layout oneDNN's convolutions
    prefer, in which the attention blocks' map-to-token reshapes are free views), and a forward pre-hook that
    brings inputs to that dtype and layout, so callers pass ordinary (B, C, [T,] H, W) tensors. Outputs come
    back in ``dtype``. In channels-last layout the bfloat16 convolutions, the depthwise 3-D ones included, run
    through oneDNN (``aten::mkldnn_convolution`` in the profile). ``compile=True`` additionally wraps the copy
    in ``torch.compile`` (fuses the elementwise work; the first call compiles).

    fp32 outputs equal the plain model's within 1e-4 of the largest logit; bf16 agrees in top-1 on almost
    all inputs (see ``benchmarks/RESULTS.md`` for the measured agreement and the largest logit error).
    """
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    fast = use_reference_formulation(fold_batchnorms(copy.deepcopy(model).eval()), enable=False)
    _inplace_mlp_activations(fast)
    memory_format = torch.channels_last_3d if fast.video else torch.channels_last
    fast = fast.to(dtype=dtype, memory_format=memory_format)
    fast.register_forward_pre_hook(PrepareInput(dtype, memory_format))
    for param in fast.parameters():
        param.requires_grad_(False)
    return torch.compile(fast) if compile else fast


class PrepareInput:
    """Forward pre-hook: cast the input to the model's dtype and memory format (picklable, unlike a lambda)."""

    def __init__(self, dtype: torch.dtype, memory_format: torch.memory_format) -> None:
        self.dtype, self.memory_format = dtype, memory_format

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x, *rest = args
        return (x.to(dtype=self.dtype, memory_format=self.memory_format), *rest)
