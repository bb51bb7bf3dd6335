"""Inference fast paths applied to a built UniFormer: :func:`optimize_for_inference`.

Every transformation here is exact in real arithmetic (BatchNorm folding) or a different kernel for the same
formula (fused attention, channels-last layout), so the fp32 result matches the plain model to float rounding;
``tests/models/test_optimize.py`` checks it against the plain model and against the official outputs. What each
step bought on the reference machine is in the ablation rows of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import copy
import functools
import logging
from typing import Any

import torch
import torch.nn as nn
from timm.layers import Mlp

from uniformer.models.layers.mlp import FusedMlp, native_bf16
from uniformer.models.uniformer import ConvMlp, UniFormer, set_formulation

__all__ = [
    "optimize_for_inference",
    "fold_batchnorms",
    "PrepareInput",
    "warn_if_cpu_bf16_is_slow",
]

_logger = logging.getLogger(__name__)


def fold_batchnorms(model: nn.Module) -> nn.Module:
    """Fold eval-mode BatchNorms into the convolutions next to them, in place: those of every module with a
    ``reparameterize`` method (the name timm's ``reparameterize_model`` calls), each of which knows how.

    A local block normalises right before a point-wise convolution, the convolutional stem right after each
    convolution, the dense heads' ``ConvModule`` and the pose head's transposed convolutions right after theirs.
    The classifier's final BatchNorm stays: the pooled features (``forward_features``) are defined after it.
    The result only makes sense in eval mode (the running statistics are baked in).
    """
    for module in list(model.modules()):
        if callable(getattr(module, "reparameterize", None)):
            module.reparameterize()
    return model


def _fuse_mlp_activations(model: nn.Module) -> nn.Module:
    """Replace every GELU MLP of an eval-mode copy by its :class:`FusedMlp` (dropout is the identity there)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            plain = isinstance(getattr(child, "norm", None), (nn.Identity, type(None)))  # timm's Mlp may hold a norm
            if isinstance(child, (ConvMlp, Mlp)) and type(child.act) is nn.GELU and plain:
                setattr(module, name, FusedMlp(child.fc1, child.fc2, child.act.approximate))
    return model


@functools.cache
def warn_if_cpu_bf16_is_slow(what: str) -> bool:
    """Warn (once per ``what``) when this CPU has no native bfloat16 arithmetic, and say so (``True``).

    oneDNN computes bfloat16 convolutions only with AVX-512 (BF16) or AMX; elsewhere (e.g. an AVX2-only CPU)
    PyTorch falls back to its reference kernels, one depthwise channel at a time: UniFormer-S UperNet is several
    times slower in bf16 than in fp32 on such a CPU (``benchmarks/RESULTS.md``, segmentation).
    """
    if native_bf16():
        return False
    _logger.warning(
        "%s: this CPU has no native bfloat16 (oneDNN needs AVX-512 BF16 or AMX; capability %s), so bfloat16 "
        "convolutions run on slow reference kernels, several times slower than float32: use fp32 here",
        what,
        torch.backends.cpu.get_cpu_capability(),
    )
    return True


def optimize_for_inference(model: UniFormer, dtype: torch.dtype = torch.float32, compile: bool = False) -> nn.Module:
    """A faster copy of ``model`` for inference; ``model`` itself is left as it is.

    The copy is in eval mode with BatchNorms folded (:func:`fold_batchnorms`), each MLP's GELU fused into its
    first layer on CPU (:class:`FusedMlp`), the ``"fast"`` formulation
    (:func:`~uniformer.models.uniformer.set_formulation`): fused attention (``F.scaled_dot_product_attention``;
    for bf16 on a CPU without AMX :func:`~uniformer.models.uniformer.chunked_attention`, which is faster there),
    weights in ``dtype`` and in channels-last layout (the layout oneDNN's convolutions prefer, in which the
    attention blocks' map-to-token reshapes are free views), and a forward pre-hook that brings inputs to that
    dtype and layout, so callers pass ordinary (B, C, [T,] H, W) tensors. Outputs come back in ``dtype``. In
    channels-last layout the bfloat16 convolutions, the depthwise 3-D ones included, run through oneDNN
    (``aten::mkldnn_convolution`` in the profile). ``compile=True`` additionally wraps the copy in
    ``torch.compile`` (fuses the elementwise work; the first call compiles).

    fp32 outputs equal the plain model's within 1e-4 of the largest logit; bf16 agrees in top-1 on almost
    all inputs (see ``benchmarks/RESULTS.md`` for the measured agreement and the largest logit error).
    """
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    if dtype == torch.bfloat16 and all(p.device.type == "cpu" for p in model.parameters()):
        warn_if_cpu_bf16_is_slow("optimize_for_inference(dtype=torch.bfloat16)")
    fast = set_formulation(fold_batchnorms(copy.deepcopy(model).eval()), "fast")
    _fuse_mlp_activations(fast)
    video = any(m.video for m in fast.modules() if isinstance(m, UniFormer))  # a segmentor or pose model holds one
    memory_format = torch.channels_last_3d if video else torch.channels_last
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
        if isinstance(x, (list, tuple)):  # a detector's list of (C, H, W) images
            return (type(x)(image.to(dtype=self.dtype) for image in x), *rest)
        return (x.to(dtype=self.dtype, memory_format=self.memory_format), *rest)
