"""The MLP of an inference copy: :class:`FusedMlp` (fc1 -> GELU -> fc2 in blocks of rows on CPU) and :class:`InplaceGELU`. :func:`uniformer.models.optimize.optimize_for_inference` puts them in
place of a built model's MLPs; the state-dict keys stay.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

__all__ = ["FusedMlp", "InplaceGELU", "native_bf16"]


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


def native_bf16() -> bool:
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
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and native_bf16()))
        and x.dtype == weight.dtype
        and torch.backends.mkldnn.is_available()
        and not torch.is_autocast_enabled("cpu")
        and not (torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling())
    )


@functools.cache
def _gelu_post_op_pays() -> bool:
    """Whether fc1 runs with the GELU as a oneDNN post-op (CPUs with AVX-512) or as a matrix product followed by an
    in-place GELU on the block (elsewhere). With AVX2 only, oneDNN's erf post-op costs several times a separate GELU
    pass, so fc1 + GELU is slower fused than as ``addmm`` + ``gelu_`` (``benchmarks/RESULTS.md``, kernel
    measurements). AVX-512 CPUs keep the post-op, as fast in fp32 and faster in bf16 (the pose section)."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


# Rows of hidden activations per block of FusedMlp, in bytes. A block this size is served from the heap and
# reused, not mapped afresh (page faults) as a whole stage-1 hidden map is (100 MB for pose UniFormer-S at batch
# 32 in fp32). With AMX, blocks of 4 to 16 MB were equally fast; with AVX2 only, the stage-1 MLP of video
# UniFormer-S 8x224 is faster in 2 MB blocks than in 8 MB ones, and 1 to 8 MB are equal at the later stages
# (``benchmarks/RESULTS.md``, kernel measurements).
_HIDDEN_BLOCK_BYTES = 2 * 2**20


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
    """fc1 -> GELU -> fc2 of an inference copy, computed on CPU as matrix products in blocks of rows.

    Built from a local block's :class:`~uniformer.models.uniformer.ConvMlp` (1x1 convolutions) or a global
    block's timm ``Mlp`` (linear layers), keeping their ``fc1`` / ``fc2`` modules, hence the state-dict keys. A
    channels-last map is a (positions, channels) matrix in memory, so both kinds run as the same two products over
    blocks of rows. fc1 runs through oneDNN with the GELU as a post-op on CPUs with AVX-512
    (``torch.ops.mkldnn._linear_pointwise``, the kernel ``torch.compile``'s CPU backend fuses such layers into; the
    exact erf GELU on the fp32 accumulator), elsewhere as ``torch.addmm`` followed by an in-place GELU on the block,
    which is faster there (:func:`_gelu_post_op_pays`); fc2 runs with ``torch.addmm`` into the block's rows of the
    output. The hidden activations, four times the block's width and the largest tensors of the high-resolution
    stages, are then never allocated whole: each block of ``_HIDDEN_BLOCK_BYTES`` is written and re-read while it is
    still in cache. ``benchmarks/RESULTS.md`` has what it saves. Elsewhere (CUDA, a compiler or exporter tracing the
    copy, a map that is not channels-last) the layers and an in-place GELU run as plain ops.
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
        post_op = _gelu_post_op_pays()
        for start in range(0, flat_in.shape[0], step):
            block = slice(start, start + step)
            if post_op:
                hidden = torch.ops.mkldnn._linear_pointwise(
                    flat_in[block], w1, self.fc1.bias, "gelu", [], self.act.approximate
                )
            else:
                hidden = torch.addmm(self.fc1.bias, flat_in[block], w1.t())
                torch.ops.aten.gelu_(hidden, approximate=self.act.approximate)
            torch.addmm(self.fc2.bias, hidden, w2.t(), out=flat_out[block])
        return out if isinstance(self.fc1, nn.Linear) else out.movedim(-1, 1)
