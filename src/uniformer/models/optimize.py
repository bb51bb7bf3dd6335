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

from uniformer.models.uniformer import ConvMlp, UniFormer, set_formulation

__all__ = [
    "optimize_for_inference",
    "fold_batchnorms",
    "FusedMlp",
    "InplaceGELU",
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


class InplaceGELU(nn.GELU):
    """The same GELU, written over its input (``aten::gelu_``): for the MLPs of an inference copy only.

    An MLP's first projection returns a fresh map that nothing else holds, so overwriting it is safe, and it
    spares the largest allocation of the network: the hidden map of a stage-1 block of video UniFormer-S is
    25.7 MB per 16x224 clip in fp32. glibc's default allocator serves blocks that large with fresh pages on
    every call, so the saving is mostly page faults: compare the "+ BatchNorm folded" and "optimized fp32" rows
    of the first table of ``benchmarks/RESULTS.md``. Autograd needs GELU's input for the gradient, hence
    inference only.

    The function is elementwise, so it runs on a view of ``x`` whose dimensions follow its memory order (for a
    channels-last map, ``x.movedim(1, -1)``, a plain row-major tensor): PyTorch's CPU GELU is about twice as
    fast there as on channels-last strides, and in bf16 it then equals fp32 GELU rounded to bf16, which the
    channels-last kernel misses on some elements (``benchmarks/RESULTS.md``, kernel measurements).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_memory_order = x.permute(sorted(range(x.ndim), key=lambda dim: -x.stride(dim)))
        torch.ops.aten.gelu_(in_memory_order if in_memory_order.is_contiguous() else x, approximate=self.approximate)
        return x


def _native_bf16() -> bool:
    """Whether oneDNN computes bfloat16 on this CPU (AVX-512 BF16 or AMX); elsewhere its bf16 primitives fail."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return check is not None and bool(check())


def _onednn_fusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN's fused kernels can run on ``x`` here: a CPU tensor in fp32, or in bf16 on a CPU with native
    bf16 (oneDNN has no bf16 inner product elsewhere), the dtype of ``weight``, in eager mode without autocast (a
    compiler or exporter gets the plain ops, which it fuses or writes out itself; under autocast the plain ops
    choose their own dtypes)."""
    return (
        x.device.type == "cpu"
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _native_bf16()))
        and x.dtype == weight.dtype
        and torch.backends.mkldnn.is_available()
        and not torch.is_autocast_enabled("cpu")
        and not (torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling())
    )


# Rows of hidden activations per block of FusedMlp, in bytes. A block this size is served from the heap and
# reused, not mapped afresh (page faults) as a whole stage-1 hidden map is (100 MB for pose UniFormer-S at batch
# 32 in fp32); blocks of 4 to 16 MB were equally fast there (``benchmarks/RESULTS.md``, kernel measurements).
_HIDDEN_BLOCK_BYTES = 8 * 2**20


def _is_pointwise(layer: nn.Module) -> bool:
    if isinstance(layer, nn.Linear):
        return True
    return (
        isinstance(layer, (nn.Conv2d, nn.Conv3d))
        and layer.groups == 1
        and all(k == 1 for k in layer.kernel_size)
        and all(s == 1 for s in layer.stride)
        and all(p == 0 for p in layer.padding)  # a string padding ("same") compares unequal: refused
    )


class FusedMlp(nn.Module):
    """fc1 -> GELU -> fc2 of an inference copy, computed on CPU as matrix products in blocks of rows with the GELU
    inside fc1's kernel.

    Built from a local block's :class:`~uniformer.models.uniformer.ConvMlp` (1x1 convolutions) or a global
    block's timm ``Mlp`` (linear layers), keeping their ``fc1`` / ``fc2`` modules, hence the state-dict keys. A
    channels-last map is a (positions, channels) matrix in memory, so both kinds run as the same two products over
    blocks of rows: fc1 through oneDNN with GELU as a post-op (``torch.ops.mkldnn._linear_pointwise``, the kernel
    ``torch.compile``'s CPU backend fuses such layers into; the exact erf GELU on the fp32 accumulator), fc2 with
    ``torch.addmm`` into the block's rows of the output. The hidden activations, four times the block's width and
    the largest tensors of the high-resolution stages, are then written once per block of
    ``_HIDDEN_BLOCK_BYTES``, never re-read by a separate GELU pass nor allocated whole. ``benchmarks/RESULTS.md``
    has what it saves. Elsewhere (CUDA, a compiler or exporter tracing the copy, a map that is not channels-last)
    the layers and an in-place GELU run as plain ops.
    """

    def __init__(self, fc1: nn.Module, fc2: nn.Module, approximate: str = "none") -> None:
        super().__init__()
        for name, layer in (("fc1", fc1), ("fc2", fc2)):
            if not _is_pointwise(layer):
                raise TypeError(f"FusedMlp needs a Linear or point-wise Conv2d/Conv3d {name}, got {layer}")
        self.fc1, self.act, self.fc2 = fc1, InplaceGELU(approximate=approximate), fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x if isinstance(self.fc1, nn.Linear) else x.movedim(1, -1)
        if not (_onednn_fusable(x, self.fc1.weight) and rows.is_contiguous()):
            return self.fc2(self.act(self.fc1(x)))
        w1, w2 = self.fc1.weight.flatten(1), self.fc2.weight.flatten(1)
        out = x.new_empty((*rows.shape[:-1], w2.shape[0]))
        flat_in, flat_out = rows.reshape(-1, w1.shape[1]), out.view(-1, w2.shape[0])
        step = max(1, _HIDDEN_BLOCK_BYTES // (w1.shape[0] * x.element_size()))
        for start in range(0, flat_in.shape[0], step):
            block = slice(start, start + step)
            hidden = torch.ops.mkldnn._linear_pointwise(
                flat_in[block], w1, self.fc1.bias, "gelu", [], self.act.approximate
            )
            torch.addmm(self.fc2.bias, hidden, w2.t(), out=flat_out[block])
        return out if isinstance(self.fc1, nn.Linear) else out.movedim(-1, 1)


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
    if _native_bf16():
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
