"""UniFormer: one network definition for images (2-D) and videos (3-D).

UniFormer (Li et al., "UniFormer: Unified Transformer for Efficient Spatiotemporal Representation Learning",
ICLR 2022, and "UniFormer: Unifying Convolution and Self-attention for Visual Recognition") stacks four
stages. Stages 1-2 aggregate *local* relations with a depthwise convolution between two point-wise ones
(BatchNorm); stages 3-4 aggregate *global* relations with multi-head self-attention (LayerNorm). Every block
starts with a depthwise-convolution position encoding, and patch embeddings downsample by 4, 2, 2, 2.

Facts (shapes, defaults, formulas) follow the official Sense-X/UniFormer code, read for reference only:

- ``image_classification/models/uniformer.py``: ImageNet models, overlapping conv stem, layer scale in the
  attention blocks (``uniformer_base_ls``);
- ``image_classification/token_labeling/tlt/models/uniformer.py``: token labeling (``aux_head``) and layer
  scale in both block types (``uniformer_large_ls``);
- ``video_classification/slowfast/models/uniformer.py``: 3-D models (the stem also halves time), divided
  space-time attention (``UNIFORMER.SPLIT``).

Parameter names equal the official ones, so released checkpoints load without any renaming. Unlike the
official code, the dimensionality is a constructor argument (``video=True`` picks Conv3d/BatchNorm3d), every
input size divisible by 32 works, and layer scale is an argument rather than module-global state.

This file holds the whole network (blocks, attention, embeddings and the model) although it is longer than the
package's other modules: it is the one definition every zoo model is built from, read side by side with the
official files above, and its classes share private helpers that no other module needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import cache, partial
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models._features import feature_take_indices
from timm.models.swin_transformer import window_partition, window_reverse
from torch.utils.checkpoint import checkpoint

from uniformer.models.layers.batchnorm import fold_into_next_pointwise, fold_sequential_batchnorms

__all__ = [
    "UniFormer",
    "PatchEmbed",
    "ConvEmbed",
    "LocalBlock",
    "GlobalBlock",
    "HourglassBlock",
    "Attention",
    "AttentionMode",
    "chunked_attention",
    "Formulation",
    "set_formulation",
]

# LayerNorm epsilon inside the blocks (official ``partial(nn.LayerNorm, eps=1e-6)``); the patch embeddings
# use PyTorch's default 1e-5, as the official ``PatchEmbed`` does.
_BLOCK_NORM_EPS = 1e-6
LayerScale = Literal["none", "global", "all"]
AttentionMode = Literal["global", "window", "hybrid"]
# How the modules with two ways of computing the same result run: "reference" the way the official code does
# (the baseline of the golden tests and benchmarks), "fast" this package's default. See :func:`set_formulation`.
Formulation = Literal["reference", "fast"]
_BatchNorm = nn.modules.batchnorm._BatchNorm


def _conv_cls(video: bool) -> type[nn.Module]:
    return nn.Conv3d if video else nn.Conv2d


def _norm_cls(video: bool) -> type[nn.Module]:
    return nn.BatchNorm3d if video else nn.BatchNorm2d


def _size(spatial: int, temporal: int, video: bool) -> tuple[int, ...]:
    """A kernel/stride/padding tuple: ``(s, s)`` for images, ``(t, s, s)`` for videos."""
    return (temporal, spatial, spatial) if video else (spatial, spatial)


def _depthwise(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply the depthwise convolution ``conv`` to ``x`` through :func:`_depthwise_conv`."""
    return _depthwise_conv(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


# torch.fx.wrap: symbolic tracing (timm's FX feature extraction) keeps this call as one graph node, run on real
# tensors, since the branch depends on dtype and device, which a traced proxy does not have.
@torch.fx.wrap
def _depthwise_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> torch.Tensor:
    """Apply a depthwise 2-D or 3-D convolution, working around a PyTorch CPU bug in 3-D bf16 training.

    On CPU, the bf16 weight gradient of a depthwise ``Conv3d`` whose input is channels-last (as the maps here
    are after a LayerNorm or the token layout) reads uninitialised memory for some shapes (NaN weight gradients,
    under autocast and with bf16 weights alike; fp32 is not affected). Making the input contiguous avoids it too
    but falls to a reference kernel far slower; fp32 on the same layout is as fast as bf16 there. So when
    gradients are computed on CPU in bf16, these convolutions run in fp32 and return the dtype bf16 would have
    given; inference and fp32 training are untouched. ``tests/models/test_uniformer.py`` shows the fix; the
    measurements are in ``benchmarks/RESULTS.md`` (kernel measurements).
    """
    if x.ndim == 4:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    autocast = torch.is_autocast_enabled("cpu")
    if not (
        x.device.type == "cpu"
        and torch.is_grad_enabled()
        and (x.requires_grad or weight.requires_grad)
        and (x.dtype == torch.bfloat16 or autocast)
    ):
        return F.conv3d(x, weight, bias, stride, padding, dilation, groups)
    out_dtype = torch.get_autocast_dtype("cpu") if autocast else x.dtype
    bias = None if bias is None else bias.float()
    with torch.autocast("cpu", enabled=False):
        out = F.conv3d(x.float(), weight.float(), bias, stride, padding, dilation, groups)
    return out.to(out_dtype)


def _patchwise(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply ``conv``, a convolution whose kernel equals its stride without padding (1x1 ones included), to ``x``
    through :func:`_patchwise_conv`."""
    return _patchwise_conv(x, conv.weight, conv.bias)


# torch.fx.wrap: the branch depends on the memory layout, which a traced proxy does not have (see _depthwise_conv).
@torch.fx.wrap
def _patchwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A convolution over non-overlapping patches (kernel = stride, no padding): the point-wise convolutions of the
    local blocks and the patch embeddings after the first. On a channels-last map it runs as one matrix product
    over the (patches, patch values) rows of the map; on any other map as the convolution. The same formula.

    PyTorch sends these convolutions of a single image or clip to its native im2col + GEMM kernels, which need a
    contiguous map, so each channels-last map was copied to contiguous memory and back around them, copies that
    cost more than the convolutions themselves (``benchmarks/RESULTS.md``). A contiguous map (the ``"reference"``
    formulation) keeps the convolution. As the convolution does, the map is cropped to whole patches.
    """
    kernel = weight.shape[2:]
    rows = x.movedim(1, -1)
    if not rows.is_contiguous():
        conv = F.conv3d if x.ndim == 5 else F.conv2d
        return conv(x, weight, bias, stride=kernel)
    if any(k > 1 for k in kernel):
        batch, *sizes, channels = rows.shape
        grid = [size // k for size, k in zip(sizes, kernel)]
        rows = rows[(slice(None), *(slice(0, g * k) for g, k in zip(grid, kernel)))]
        split = rows.reshape(batch, *(d for g, k in zip(grid, kernel) for d in (g, k)), channels)
        dims = len(kernel)
        order = (0, *range(1, 2 * dims, 2), *range(2, 2 * dims + 1, 2), 2 * dims + 1)
        rows = split.permute(order).reshape(batch, *grid, -1)
    # (out, in, *kernel) -> (out, *kernel, in): the order of a patch's values in the rows
    matrix = weight.movedim(1, -1).reshape(weight.shape[0], -1)
    return F.linear(rows, matrix, bias).movedim(-1, 1)


# torch.fx.wrap: the branch depends on the memory layout, which a traced proxy does not have (see _depthwise_conv).
@torch.fx.wrap
def _gelu_in_memory_order(x: torch.Tensor, approximate: str) -> torch.Tensor:
    """GELU of a map, computed on its row-major (positions, channels) view when it is channels-last: PyTorch's CPU
    kernel takes about 1.7x as long on the channels-last strides (``benchmarks/RESULTS.md``, kernel measurements)."""
    rows = x.movedim(1, -1)
    if rows.is_contiguous():
        return F.gelu(rows, approximate=approximate).movedim(-1, 1)
    return F.gelu(x, approximate=approximate)


def _channels_last_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a LayerNorm over the channel dimension of an (N, C, *spatial) map."""
    return norm(x.movedim(1, -1)).movedim(-1, 1)


def check_formulation(formulation: str) -> Formulation:
    if formulation not in ("reference", "fast"):
        raise ValueError(f"formulation must be 'reference' or 'fast', got {formulation!r}")
    return formulation  # type: ignore[return-value]


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding + LayerNorm over channels (the stems of UniFormer-S/B/L).

    For videos the first embedding also downsamples time: kernel (3, p, p), stride (2, p, p), temporal
    padding 1 (official ``conv_3xnxn``); later ones keep time with kernel (1, p, p) (official ``conv_1xnxn``).

    The normalised map is returned channels-last in memory (a free view of the LayerNorm output), which gives
    the depthwise convolutions of the next local blocks their fast kernels (several times faster forward +
    backward on CPU than contiguous maps; ``benchmarks/RESULTS.md``). The official ``PatchEmbed`` copies it to a contiguous map
    (``.permute(...).contiguous()``); the ``"reference"`` formulation does the same (:meth:`set_formulation`).
    An embedding whose kernel equals its stride (all but the video stem) convolves a channels-last map as one
    matrix product over its patches (:func:`_patchwise_conv`).
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: int,
        video: bool = False,
        temporal_kernel: int = 1,
        temporal_stride: int = 1,
    ) -> None:
        super().__init__()
        self.formulation: Formulation = "fast"
        self.norm = nn.LayerNorm(embed_dim)
        self.proj = _conv_cls(video)(
            in_chans,
            embed_dim,
            kernel_size=_size(patch_size, temporal_kernel, video),
            stride=_size(patch_size, temporal_stride, video),
            padding=_size(0, temporal_kernel // 2, video),
        )

    def set_formulation(self, formulation: Formulation) -> None:
        """``"reference"``: return a contiguous map, as the official code; ``"fast"``: the channels-last view."""
        self.formulation = check_formulation(formulation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.proj.kernel_size == self.proj.stride and not any(self.proj.padding)
        x = _channels_last_norm(self.norm, _patchwise(self.proj, x) if patches else self.proj(x))
        return x.contiguous() if self.formulation == "reference" else x


class ConvEmbed(nn.Module):
    """Overlapping convolutional patch embedding (the ``conv_stem`` of the S+ / S+dim64 models).

    The stem (stride 4) is two 3x3 stride-2 convolutions with BatchNorm and a GELU between them; later
    stages (stride 2) use one 3x3 stride-2 convolution + BatchNorm. Submodule indices match the official
    ``proj.0 / proj.1 / proj.3 / proj.4`` keys. For videos (not an official configuration) the first
    convolution of the stem also halves time with a temporal kernel of 3. ``light`` gives the stem of the light
    video models (the official light video stem): both convolutions 3x3x3, the second one halving time.
    """

    def __init__(
        self, in_chans: int, embed_dim: int, video: bool = False, stem: bool = False, light: bool = False
    ) -> None:
        super().__init__()
        conv, norm = _conv_cls(video), _norm_cls(video)

        def down(cin: int, cout: int, time_kernel: int, time_stride: int) -> nn.Module:
            return conv(
                cin,
                cout,
                kernel_size=_size(3, time_kernel, video),
                stride=_size(2, time_stride, video),
                padding=_size(1, time_kernel // 2, video),
            )

        if stem:
            hidden = embed_dim // 2
            first, second = ((3, 1), (3, 2)) if light else ((3, 2), (1, 1))
            layers = [down(in_chans, hidden, *first), norm(hidden), nn.GELU(), down(hidden, embed_dim, *second)]
        else:
            layers = [down(in_chans, embed_dim, 1, 1)]
        self.proj = nn.Sequential(*layers, norm(embed_dim))

    def reparameterize(self) -> None:
        """Fold each eval-mode BatchNorm into the convolution before it, in place (timm's ``reparameterize``).

        Exact: the norm acts per output channel of that convolution. The running statistics are baked in, so
        the result is for inference only; calling it again changes nothing.
        """
        fold_sequential_batchnorms(self.proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ConvMlp(nn.Module):
    """Point-wise convolution MLP of the local blocks (official ``CMlp``: fc1 -> GELU -> fc2)."""

    def __init__(self, dim: int, hidden_dim: int, video: bool = False, drop: float = 0.0) -> None:
        super().__init__()
        conv = _conv_cls(video)
        self.fc1 = conv(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.fc2 = conv(hidden_dim, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = _gelu_in_memory_order(_patchwise(self.fc1, x), self.act.approximate)
        return self.drop(_patchwise(self.fc2, self.drop(hidden)))


def _layer_scale(gamma: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return x if gamma is None else gamma * x


class LocalBlock(nn.Module):
    """Local relation aggregation (official ``CBlock``), used in stages 1-2.

    ``x + pos(x)``; then ``x + conv2(dwconv5(conv1(BN(x))))``; then ``x + mlp(BN(x))``. The "attention" is
    a 5x5 (5x5x5 for videos) depthwise convolution, so each token relates to its neighbourhood only.
    """

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        video: bool = False,
        drop: float = 0.0,
        drop_path: float = 0.0,
        ls_init_value: float | None = None,
    ) -> None:
        super().__init__()
        conv, norm = _conv_cls(video), _norm_cls(video)
        self.pos_embed = conv(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = norm(dim)
        self.conv1 = conv(dim, dim, 1)
        self.conv2 = conv(dim, dim, 1)
        self.attn = conv(dim, dim, 5, padding=2, groups=dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), video=video, drop=drop)
        # Official token-labeling layout: gamma of shape (1, C, 1, 1) broadcast over the feature map.
        gamma_shape = (1, dim) + (1,) * (3 if video else 2)
        self._init_layer_scale(gamma_shape, ls_init_value)

    def _init_layer_scale(self, shape: tuple[int, ...], init_value: float | None) -> None:
        for name in ("gamma_1", "gamma_2"):
            param = None if init_value is None else nn.Parameter(torch.full(shape, float(init_value)))
            self.register_parameter(name, param)

    def reparameterize(self) -> None:
        """Fold the eval-mode BatchNorms into the point-wise convolutions right after them, in place.

        ``norm1`` goes into ``conv1`` and ``norm2`` into ``mlp.fc1`` (timm's ``reparameterize``); exact because a
        1x1 convolution sees no zero padding. The running statistics are baked in, so the result is for
        inference only; calling it again changes nothing.
        """
        for norm, conv in (("norm1", self.conv1), ("norm2", self.mlp.fc1)):
            if isinstance(getattr(self, norm), _BatchNorm):
                fold_into_next_pointwise(getattr(self, norm), conv)
                setattr(self, norm, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + _depthwise(self.pos_embed, x)
        x = x + self.drop_path(
            _layer_scale(
                self.gamma_1, _patchwise(self.conv2, _depthwise(self.attn, _patchwise(self.conv1, self.norm1(x))))
            )
        )
        x = x + self.drop_path(_layer_scale(self.gamma_2, self.mlp(self.norm2(x))))
        return x


# Query rows per block of :func:`chunked_attention`: a block's scores (heads x 196 x N) stay small enough to be
# reused from cache and heap between blocks. The fastest of 98, 196 and 392 rows for UniFormer-S 16x224 stage 3
# in bf16 (``benchmarks/RESULTS.md``, kernel measurements).
_ATTENTION_CHUNK = 196


def chunked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, chunk: int = _ATTENTION_CHUNK
) -> torch.Tensor:
    """softmax(q k^T * scale) v in blocks of ``chunk`` query rows.

    On a CPU with AVX-512 BF16 but no AMX this is faster in bfloat16 than
    ``F.scaled_dot_product_attention``, whose bf16 kernel is no faster than its fp32 one there, while bf16
    matrix products run at several times the fp32 rate (:func:`_chunked_is_faster` owns the choice). ``q`` is
    scaled before the product (N x d multiplies instead of N x N) and the softmax runs on the bf16 scores directly:
    PyTorch's CPU kernel accumulates in fp32 and rounds once, so the result equals an fp32 softmax rounded to
    bf16 (same max error against fp32 attention in our measurement) without two N x N dtype copies. Its speed
    against an explicit fp32 softmax and the fused kernel is in ``benchmarks/RESULTS.md`` (kernel measurements).
    """
    keys = k.transpose(-2, -1)
    q = q * scale
    blocks = []
    for start in range(0, q.shape[-2], chunk):
        blocks.append((q[..., start : start + chunk, :] @ keys).softmax(dim=-1) @ v)
    return torch.cat(blocks, dim=-2)


@cache
def _chunked_is_faster() -> bool:
    """Whether :func:`chunked_attention` beats the fused kernel for bf16 inference on this CPU: only without AMX.

    PyTorch's fused CPU kernel computes bf16 attention with AMX tiles where the CPU has them, and is then the
    faster one; without AMX the chunked product is (``benchmarks/RESULTS.md``, kernel measurements, on a CPU of
    each kind).
    """
    return not torch.cpu._is_amx_tile_supported()


# torch.fx.wrap: the kernel depends on dtype and device, which a traced proxy does not have (see _depthwise_conv).
@torch.fx.wrap
def _fused_attention(qkv: torch.Tensor, scale: float, dropout_p: float, inference: bool) -> torch.Tensor:
    """softmax(q k^T * scale) v of a stacked (3, B, heads, N, d) ``qkv`` with a fused kernel.

    :func:`chunked_attention` for bf16 inference on a CPU without AMX, where it is faster;
    ``F.scaled_dot_product_attention`` otherwise.
    """
    if inference and qkv.dtype == torch.bfloat16 and qkv.device.type == "cpu" and _chunked_is_faster():
        # One copy to (3, B, heads, N, d) here spares a copy of q, k^T and v in every block of queries.
        q, k, v = qkv.contiguous().unbind(0)
        return chunked_attention(q, k, v, scale)
    q, k, v = qkv.unbind(0)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)


class Attention(nn.Module):
    """Multi-head self-attention over tokens (B, N, C), parameters ``qkv`` and ``proj`` as official.

    The ``"fast"`` formulation (default) computes softmax(q k^T * scale) v with
    ``F.scaled_dot_product_attention`` (with :func:`chunked_attention` for bf16 inference on a CPU without AMX,
    where that is faster); ``"reference"`` spells the official formula out (q @ k^T, scale, softmax, @ v). Both agree to
    float rounding; the explicit form exists as the reference the fused one is tested against.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.formulation: Formulation = "fast"
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def set_formulation(self, formulation: Formulation) -> None:
        """``"reference"``: the explicit official formula; ``"fast"``: the fused (or chunked) kernel."""
        self.formulation = check_formulation(formulation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.formulation == "fast":
            x = _fused_attention(qkv, self.scale, self.attn_drop.p if self.training else 0.0, not self.training)
        else:
            q, k, v = qkv.unbind(0)
            attn = self.attn_drop((q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1))
            x = attn @ v
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))

    def forward_scored(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention output and the score of every other token: how much the first token (the light models'
        score token) attends to it, averaged over heads, (B, N - 1), taken before attention dropout.

        ``"fast"`` computes the output with the fused kernel and the first query's row apart (one row of
        scores, N products per head); ``"reference"`` takes row 0 of the explicit attention matrix, as the
        official light models do.
        """
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.formulation == "fast":
            row = (q[:, :, :1] @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)[:, :, 0]
            x = _fused_attention(qkv, self.scale, self.attn_drop.p if self.training else 0.0, not self.training)
        else:
            attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
            row = attn[:, :, 0]
            x = self.attn_drop(attn) @ v
        scores = row[:, :, 1:].mean(dim=1)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c))), scores


class GlobalBlock(nn.Module):
    """Global relation aggregation (official ``SABlock``; ``SplitSABlock`` with ``split=True``), stages 3-4.

    ``x + pos(x)``, then a pre-norm transformer block over all tokens of the map. With ``split`` (videos
    only) attention is divided: first over time at each location (``t_attn``), then over space within each
    frame (``attn``). As in the official code, the spatial step adds its output to the *block input*, so
    the temporal branch reaches the output only through the spatial attention's input.

    With ``window_size`` (images only) attention runs within non-overlapping windows, as the official dense
    backbone's ``SABlock_Windows`` (``semantic_segmentation/mmseg/models/backbones/uniformer.py``): the
    normalised map is zero-padded bottom/right to multiples of the window, padded tokens are not masked, there
    is no shift, and the result is cropped back before the residual sum. Parameters are the same.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        video: bool = False,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        ls_init_value: float | None = None,
        split: bool = False,
        window_size: int | None = None,
    ) -> None:
        super().__init__()
        if split and not video:
            raise ValueError("split (divided space-time) attention needs a video model (video=True)")
        if window_size is not None and (video or window_size < 1):
            raise ValueError(f"window attention needs an image model and a positive window, got {window_size}")
        norm = partial(nn.LayerNorm, eps=_BLOCK_NORM_EPS)
        attention = partial(
            Attention, dim, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop
        )
        self.split = split
        self.window_size = window_size
        self.pos_embed = _conv_cls(video)(dim, dim, 3, padding=1, groups=dim)
        if split:
            self.t_norm = norm(dim)
            self.t_attn = attention()
        self.norm1 = norm(dim)
        self.attn = attention()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)
        for name in ("gamma_1", "gamma_2"):
            param = None if ls_init_value is None else nn.Parameter(torch.full((dim,), float(ls_init_value)))
            self.register_parameter(name, param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + _depthwise(self.pos_embed, x)
        shape = x.shape
        if self.split:
            tokens = self._divided_attention(x)
        else:
            tokens = x.flatten(2).transpose(1, 2)
            normed = self.norm1(tokens)
            mixed = self.attn(normed) if self.window_size is None else self._window_attention(normed, *shape[-2:])
            tokens = tokens + self.drop_path(_layer_scale(self.gamma_1, mixed))
        tokens = tokens + self.drop_path(_layer_scale(self.gamma_2, self.mlp(self.norm2(tokens))))
        return tokens.transpose(1, 2).reshape(shape)

    def _window_attention(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Attention within ``window_size`` windows of the (B, h*w, C) normalised tokens of an h x w map."""
        b, _, c = tokens.shape
        size = (self.window_size, self.window_size)
        grid = F.pad(tokens.view(b, h, w, c), (0, 0, 0, -w % size[1], 0, -h % size[0]))
        hp, wp = grid.shape[1:3]
        windows = window_partition(grid, size).view(-1, size[0] * size[1], c)
        grid = window_reverse(self.attn(windows).view(-1, *size, c), size, hp, wp)
        return grid[:, :h, :w].reshape(b, h * w, c)

    def _divided_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        # (B, C, T, HW) -> one sequence over time per location: (B*HW, T, C)
        seq = x.flatten(3).permute(0, 3, 2, 1).reshape(b * h * w, t, c)
        seq = seq + self.drop_path(self.t_attn(self.t_norm(seq)))
        # -> one sequence over space per frame: (B*T, HW, C)
        seq = seq.reshape(b, h * w, t, c).transpose(1, 2).reshape(b * t, h * w, c)
        residual = x.flatten(3).permute(0, 2, 3, 1).reshape(b * t, h * w, c)
        tokens = residual + self.drop_path(_layer_scale(self.gamma_1, self.attn(self.norm1(seq))))
        return tokens.reshape(b, t * h * w, c)


class HourglassBlock(GlobalBlock):
    """The token-evolution block of the light models' stages 3-4 (official ``EvoSABlock``, from Evo-ViT).

    The block carries a score token ``cls`` (B, 1, C) at the front of its sequence and a running score per map
    token (B, N, raster order), passed in and returned (the official code keeps them in module globals). Each
    attention moves the scores towards the score token's head-averaged attention row: ``(1 - trade_off) * old +
    trade_off * row``; the first block of stage 3 (``scores=None``) starts them from its row.

    ``keep_ratio`` 1: attention and MLP over [score token, all tokens]. ``keep_ratio`` p < 1: only the
    ``int(N * p)`` best-scored tokens and one representative (the score-weighted mean of the others) take part;
    every other token then receives the representative's update (attention and MLP, with their layer scales),
    and only the taking-part tokens' scores move, unless the representative stands for a single token, whose
    score then moves with the representative's. Gathers and scatters are per sample, so every sample of a batch
    keeps its own tokens. The parameters are those of :class:`GlobalBlock`.
    """

    def __init__(self, dim: int, num_heads: int, keep_ratio: float = 1.0, trade_off: float = 0.5, **kwargs) -> None:
        super().__init__(dim, num_heads, **kwargs)
        if not 0.0 < keep_ratio <= 1.0 or not 0.0 <= trade_off <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1] and trade_off in [0, 1], got {keep_ratio}, {trade_off}")
        self.keep_ratio = keep_ratio
        self.trade_off = trade_off

    def _moved(self, scores: torch.Tensor | None, row: torch.Tensor) -> torch.Tensor:
        return row if scores is None else (1 - self.trade_off) * scores + self.trade_off * row

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, cls: torch.Tensor, scores: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, C, [T,] H, W), ``cls`` (B, 1, C), ``scores`` (B, N) or ``None`` -> the same three, updated."""
        x = x + _depthwise(self.pos_embed, x)
        shape = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        if self.keep_ratio == 1.0:
            seq = torch.cat([cls, tokens], dim=1)
            mixed, row = self.attn.forward_scored(self.norm1(seq))
            scores = self._moved(scores, row)
            seq = seq + self.drop_path(_layer_scale(self.gamma_1, mixed))
            seq = seq + self.drop_path(_layer_scale(self.gamma_2, self.mlp(self.norm2(seq))))
            cls, tokens = seq[:, :1], seq[:, 1:]
        else:
            if scores is None or scores.shape != tokens.shape[:2]:
                got = None if scores is None else tuple(scores.shape)
                raise ValueError(f"a pruning block needs one score per token {tuple(tokens.shape[:2])}, got {got}")
            tokens, cls, scores = self._evolve(tokens, cls, scores)
        return tokens.transpose(1, 2).reshape(shape), cls, scores

    def _evolve(
        self, tokens: torch.Tensor, cls: torch.Tensor, scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, c = tokens.shape
        kept = int(n * self.keep_ratio)
        order = scores.argsort(dim=1, descending=True)
        rows = order.unsqueeze(-1).expand(-1, -1, c)
        ranked, ranked_scores = tokens.gather(1, rows), scores.gather(1, order)
        dropped, weights = ranked[:, kept:], ranked_scores[:, kept:]
        weights = weights / weights.sum(dim=1, keepdim=True)
        representative = (weights.unsqueeze(-1) * dropped).sum(dim=1, keepdim=True)
        seq = torch.cat([cls, ranked[:, :kept], representative], dim=1)
        mixed, row = self.attn.forward_scored(self.norm1(seq))
        if kept + 1 == n:
            ranked_scores = self._moved(ranked_scores, row)
        else:
            moved = self._moved(ranked_scores[:, :kept], row[:, :kept])
            ranked_scores = torch.cat([moved, ranked_scores[:, kept:]], dim=1)
        attended = _layer_scale(self.gamma_1, mixed)
        seq = seq + self.drop_path(attended)
        fed = _layer_scale(self.gamma_2, self.mlp(self.norm2(seq)))
        seq = seq + self.drop_path(fed)
        dropped = dropped + (attended[:, -1:] + fed[:, -1:])
        ranked = torch.cat([seq[:, 1:-1], dropped], dim=1)
        # back to raster order; in the dtype the block computed (under autocast it can differ from its input's)
        tokens = ranked.new_empty(ranked.shape).scatter(1, rows, ranked)
        scores = ranked_scores.new_empty(ranked_scores.shape).scatter(1, order, ranked_scores)
        return tokens, seq[:, :1], scores


def _pooled_scores(scores: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Stage-3 token scores (B, N) on their (H, W) or (T, H, W) ``grid`` averaged over 2x2 cells, as stage 4's
    patch embedding pools the map (an odd last row or column dropped), then rescaled to the same total."""
    total = scores.sum(dim=1, keepdim=True)
    # frames as channels: a 2x2 pooling of each frame is the official (1, 2, 2) pooling of the (T, H, W) grid
    pooled = F.avg_pool2d(scores.reshape(scores.shape[0], -1, *grid[-2:]), 2, 2).flatten(1)
    return pooled * (total / pooled.sum(dim=1, keepdim=True))


def set_formulation(model: nn.Module, formulation: Formulation) -> nn.Module:
    """Run every module of ``model`` that has two formulations in ``formulation``, in place; returns ``model``.

    ``"reference"`` computes what the official code computes, the way it computes it: attention spelled out
    (q @ k^T, scale, softmax, @ v) and the patch embeddings' maps copied to contiguous memory (official
    ``PatchEmbed``: ``.permute(...).contiguous()``), so the local blocks' depthwise convolutions run on the
    layout the official model gives them, and UperNet fuses its upsampled levels by concatenation and a 3x3
    convolution. The golden tests prove that it reproduces the official outputs, so it is the baseline that the
    benchmarks compare faster variants against. ``"fast"`` (the default of a new model) uses fused attention,
    keeps the maps channels-last and convolves UperNet's levels before upsampling them
    (:func:`~uniformer.models.heads.modules.upsampled_conv3x3`). Each module decides what the name means for it
    (its ``set_formulation`` method); parameters are untouched.
    """
    formulation = check_formulation(formulation)
    for module in model.modules():
        if callable(getattr(module, "set_formulation", None)):
            module.set_formulation(formulation)
    return model


# torch.fx.wrap: a traced proxy has no shape or dtype to check; the graph keeps the call and checks real inputs.
@torch.fx.wrap
def _check_input(x: torch.Tensor, video: bool, in_chans: int, dense: bool = False, light: bool = False) -> None:
    layout = "(B, C, T, H, W)" if video else "(B, C, H, W)"
    kind = "video" if video else "image"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a {kind} tensor {layout}, got {type(x).__name__}")
    # dense backbones and the light models take any size whose stride-32 map is not empty (official: strided
    # convolutions floor); the light video stem takes any number of frames
    any_size = dense or light
    sizes = "H and W at least 32" if any_size else "H and W multiples of 32"
    expected = f"a {kind} batch {layout} with C={in_chans}, {sizes}"
    if video and not light:
        expected += " and an even T"
    if x.ndim != (5 if video else 4) or x.shape[1] != in_chans:
        raise ValueError(f"expected {expected}; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point (normalised) {kind} tensor, got dtype {x.dtype}")
    h, w = x.shape[-2:]
    bad_size = min(h, w) < 32 if any_size else bool(h % 32 or w % 32 or h == 0 or w == 0)
    if bad_size or (video and (x.shape[2] % 2 and not light or x.shape[2] == 0)):
        raise ValueError(f"expected {expected}; got shape {tuple(x.shape)}")


def _checked_pool(global_pool: str, num_classes: int) -> str:
    if global_pool not in ("", "avg"):
        raise ValueError(
            f"UniFormer pools by averaging or not at all: global_pool must be 'avg' or '', got {global_pool!r}"
        )
    if global_pool == "" and num_classes > 0:
        raise ValueError(
            f"global_pool='' (no pooling) leaves no vector to classify; it needs num_classes=0, got {num_classes}"
        )
    return global_pool


@contextmanager
def _preserve_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Undo the running-statistics update of BatchNorm layers while a checkpointed block is recomputed.

    Activation checkpointing runs a block's forward twice in training mode; without this, BatchNorm's
    running mean/var (and ``num_batches_tracked``) would be updated twice per step.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False) if v is not None} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, buffers in zip(norms, saved):
                for name, value in buffers.items():
                    getattr(norm, name).copy_(value)


def _per_stage(mlp_ratio: float | Sequence[float]) -> tuple[float, float, float, float]:
    """One MLP ratio per stage from one ratio or four."""
    if isinstance(mlp_ratio, (int, float)):
        return (float(mlp_ratio),) * 4
    if len(mlp_ratio) != 4:
        raise ValueError(f"mlp_ratio must be one number or one per stage (4), got {tuple(mlp_ratio)}")
    return tuple(float(r) for r in mlp_ratio)  # type: ignore[return-value]


def _check_light(
    video: bool, conv_stem: bool, layer_scale: str, split: bool, token_labeling: bool, attn_mode: str
) -> None:
    """Refuse the options the light models do not combine with (their stem and blocks are their own)."""
    conflicts = [
        ("conv_stem", conv_stem),
        ("split", split),
        ("token_labeling", token_labeling),
        (f"attn_mode={attn_mode!r}", attn_mode != "global"),
        # the light video models scale both block types; the image file's unreleased layer scale differs
        (f"layer_scale={layer_scale!r}", layer_scale not in ("none", "all") or (layer_scale == "all" and not video)),
    ]
    bad = [name for name, on in conflicts if on]
    if bad:
        raise ValueError(
            f"light=True has its own stem and stage-3/4 blocks; it does not combine with {', '.join(bad)} "
            "(layer_scale='all' is the light video models' layer scale)"
        )


def _light_schedule(
    values: tuple[Sequence[float], Sequence[float]] | None, depth: Sequence[int], name: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-block values of stages 3 and 4; ``None`` gives the official pattern (1 first, 0.5 after)."""
    if values is None:
        return (1.0,) + (0.5,) * (depth[2] - 1), (0.5,) * depth[3]
    if len(values) != 2 or [len(v) for v in values] != [depth[2], depth[3]]:
        raise ValueError(f"{name} needs one value per stage-3 and stage-4 block ({depth[2]}, {depth[3]}), got {values}")
    return tuple(float(v) for v in values[0]), tuple(float(v) for v in values[1])


def _windowed_blocks(stage: int, depth: int, attn_mode: AttentionMode) -> list[bool]:
    """Which blocks of a stage attend within windows: only stage 3 (index 2) ever does; ``hybrid`` keeps block
    i global iff (i + 1) % 4 == 0 (official rule)."""
    if stage != 2 or attn_mode == "global":
        return [False] * depth
    return [attn_mode == "window" or (j + 1) % 4 != 0 for j in range(depth)]


class UniFormer(nn.Module):
    """UniFormer for images (``video=False``, input (B, C, H, W)) or videos (``video=True``, (B, C, T, H, W)).

    With ``dense=True`` it is the official dense-prediction backbone (detection/segmentation/pose,
    ``semantic_segmentation/mmseg/models/backbones/uniformer.py``): no classifier and no final BatchNorm, but a
    LayerNorm (eps 1e-6, over channels) on each stage's output, ``norm1`` .. ``norm4``; ``forward`` returns the
    four normalised maps (strides 4, 8, 16, 32) while the un-normalised map goes on to the next stage. Any input
    of at least 32 x 32 works; each stage's size is floor(H / stride), as the official strided convolutions give.

    Args:
        depth: blocks per stage.
        embed_dim: channels per stage.
        head_dim: channels per attention head (heads = embed_dim // head_dim).
        mlp_ratio: hidden width of the MLPs relative to the stage width: one ratio, or one per stage.
        qkv_bias: bias in the qkv projection.
        qk_scale: override of the attention scale head_dim ** -0.5.
        in_chans: input channels.
        num_classes: classifier outputs; 0 gives a model without head (features only).
        global_pool: ``"avg"`` averages the final map over all positions before the head; ``""`` (timm's "no
            pooling", only with ``num_classes=0``) makes ``forward`` return the map (B, C, [T,] H/32, W/32).
        video: 3-D network (Conv3d, BatchNorm3d; the stem halves time) instead of 2-D.
        conv_stem: overlapping convolutional patch embeddings (S+ models) instead of patch + LayerNorm.
        layer_scale: where learnable per-channel residual scales go: ``"none"``, ``"global"`` (attention
            blocks, ``uniformer_base_ls``) or ``"all"`` (both block types, ``uniformer_large_ls``).
        ls_init_value: initial value of the layer scales (official 1e-6).
        split: divided space-time attention in stages 3-4 (videos only).
        token_labeling: add the token-labeling ``aux_head`` (see :meth:`forward_head` and :meth:`forward_train`).
        drop_rate: dropout after the stem and inside the MLP/projection layers (official semantics).
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth, rising linearly over all blocks to this rate.
        img_size: accepted for timm compatibility; the network works at any size divisible by 32.
        dense: the dense backbone described above (images only; ``num_classes`` is then ignored).
        attn_mode: stage-3 attention: ``"global"``, ``"window"`` (every block attends within
            ``window_size`` windows, official ``windows=True``) or ``"hybrid"`` (block i is global iff
            (i + 1) % 4 == 0, the others windowed; official ``hybrid=True``). Stage 4 is always global.
        window_size: window side for ``"window"``/``"hybrid"`` (official default 14).
        norm_eval: keep the BatchNorm layers in eval mode (running statistics frozen) while the model trains.
        checkpoint_num: activation checkpointing of the first ``checkpoint_num[s]`` blocks of stage s (official
            ``use_checkpoint``/``checkpoint_num``, e.g. (0, 0, 2, 0) in the UperNet base configs).
        light: the light (XXS/XS) models (official ``uniformer_light*.py``): a convolutional stem for stage 1
            (:class:`ConvEmbed`, its 3-D form for videos) and patch embeddings after it, and
            :class:`HourglassBlock` stages 3-4 around a score token (``cls_token``, carried into stage 4 by
            ``cls_upsample``); the token scores of stage 3 are pooled 2x2 for stage 4. A classifier adds a second
            head on the score token (``norm_cls``, ``head_cls``) for training (:meth:`forward_train`); any
            input of at least 32 x 32 (and any number of frames) works.
        keep_ratio: the light models' share of tokens each stage-3 and stage-4 block attends over, per block:
            ``(stage 3, stage 4)``. Default (official): 1 for the first stage-3 block, 0.5 for every other.
            The first stage-3 block must keep all (it starts the scores), the last one must prune (it pools them).
        trade_off: the weight of each block's new attention row in its running token scores, same layout;
            default 1 for the first stage-3 block, 0.5 for every other.
    """

    def __init__(
        self,
        depth: tuple[int, int, int, int] = (3, 4, 8, 3),
        embed_dim: tuple[int, int, int, int] = (64, 128, 320, 512),
        head_dim: int = 64,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        video: bool = False,
        conv_stem: bool = False,
        layer_scale: LayerScale = "none",
        ls_init_value: float = 1e-6,
        split: bool = False,
        token_labeling: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        img_size: int | tuple[int, int] | None = None,
        dense: bool = False,
        attn_mode: AttentionMode = "global",
        window_size: int = 14,
        norm_eval: bool = False,
        checkpoint_num: tuple[int, int, int, int] = (0, 0, 0, 0),
        light: bool = False,
        keep_ratio: tuple[Sequence[float], Sequence[float]] | None = None,
        trade_off: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        if len(depth) != 4 or len(embed_dim) != 4:
            raise ValueError(f"depth and embed_dim need 4 entries (one per stage), got {depth} and {embed_dim}")
        if layer_scale not in ("none", "global", "all"):
            raise ValueError(f"layer_scale must be 'none', 'global' or 'all', got {layer_scale!r}")
        if split and not video:
            raise ValueError("split (divided space-time) attention needs a video model (video=True)")
        if attn_mode not in ("global", "window", "hybrid"):
            raise ValueError(f"attn_mode must be 'global', 'window' or 'hybrid', got {attn_mode!r}")
        if video and (dense or attn_mode != "global"):
            raise ValueError("the dense backbone and window attention are 2-D (image) options; got video=True")
        if dense and token_labeling:
            raise ValueError("a dense backbone has no classifier, so no token-labeling head")
        if len(checkpoint_num) != 4 or not all(0 <= n <= d for n, d in zip(checkpoint_num, depth)):
            raise ValueError(f"checkpoint_num needs 4 counts within the stage depths {depth}, got {checkpoint_num}")
        mlp_ratios = _per_stage(mlp_ratio)
        if light:
            _check_light(video, conv_stem, layer_scale, split, token_labeling, attn_mode)
            keep_ratio = _light_schedule(keep_ratio, depth, "keep_ratio")
            trade_off = _light_schedule(trade_off, depth, "trade_off")
            if keep_ratio[0][0] != 1 or keep_ratio[0][-1] == 1:
                raise ValueError(
                    f"keep_ratio: the first stage-3 block must keep every token (it starts the scores) and the last "
                    f"one must prune (it pools them for stage 4); got stage 3 {tuple(keep_ratio[0])}"
                )
        elif keep_ratio is not None or trade_off is not None:
            raise ValueError("keep_ratio and trade_off are options of the light models (light=True)")
        del img_size  # size-agnostic: nothing depends on the input resolution
        self.video = video
        self.in_chans = in_chans
        self.num_classes = 0 if dense else num_classes
        self.global_pool = _checked_pool(global_pool, self.num_classes)
        self.embed_dim = tuple(embed_dim)
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.token_labeling = token_labeling
        self.grad_checkpointing = False
        self.dense = dense
        self.norm_eval = norm_eval
        self.checkpoint_num = tuple(checkpoint_num)
        self.light = light

        global_ls = ls_init_value if layer_scale in ("global", "all") else None
        local_ls = ls_init_value if layer_scale == "all" else None
        dpr = torch.linspace(0, drop_path_rate, sum(depth), device="cpu").tolist()
        chans = (in_chans, *embed_dim)
        # Attribute order follows the official modules so that state dicts list keys in the same order.
        if light:
            # the score token of stages 3-4; a parameter of the model itself, first in its state dict as official
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim[2]))
        for i in range(4):
            if light and i == 0:
                embed = ConvEmbed(chans[0], chans[1], video=video, stem=True, light=True)
            elif conv_stem:
                embed = ConvEmbed(chans[i], chans[i + 1], video=video, stem=i == 0)
            elif i == 0:
                embed = PatchEmbed(chans[0], chans[1], 4, video, temporal_kernel=3, temporal_stride=2)
            else:
                embed = PatchEmbed(chans[i], chans[i + 1], 2, video)
            setattr(self, f"patch_embed{i + 1}", embed)
        if light:
            self.cls_upsample = nn.Linear(embed_dim[2], embed_dim[3])
        self.pos_drop = nn.Dropout(drop_rate)
        for i in range(4):
            rates = dpr[sum(depth[:i]) : sum(depth[: i + 1])]
            if i < 2:
                blocks = [LocalBlock(embed_dim[i], mlp_ratios[i], video, drop_rate, rate, local_ls) for rate in rates]
            else:
                heads = embed_dim[i] // head_dim
                common = dict(
                    mlp_ratio=mlp_ratios[i],
                    video=video,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    ls_init_value=global_ls,
                )
                if light:
                    schedule = zip(rates, keep_ratio[i - 2], trade_off[i - 2])
                    blocks = [HourglassBlock(embed_dim[i], heads, k, t, drop_path=r, **common) for r, k, t in schedule]
                else:
                    blocks = [
                        GlobalBlock(
                            embed_dim[i],
                            heads,
                            drop_path=rate,
                            split=split,
                            window_size=window_size if window else None,
                            **common,
                        )
                        for rate, window in zip(rates, _windowed_blocks(i, depth[i], attn_mode))
                    ]
            setattr(self, f"blocks{i + 1}", nn.ModuleList(blocks))
            if dense:
                # the official dense backbone registers each output norm right after its stage
                setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dim[i], eps=_BLOCK_NORM_EPS))
        if dense:
            self.norm, self.head = nn.Identity(), nn.Identity()
        else:
            self.norm = _norm_cls(video)(embed_dim[-1])
            if light:
                self.norm_cls = nn.LayerNorm(embed_dim[-1])
            self.head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
            if light:
                self.head_cls = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        if token_labeling:
            self.aux_head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(num_chs=embed_dim[i], reduction=4 * 2**i, module=f"blocks{i + 1}") for i in range(4)]
        self.apply(self._init_weights)
        if split:
            self._init_temporal_attention()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # Official init: truncated normal (std .02) for linear layers, zero biases; convolutions keep
        # PyTorch's default.
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _init_temporal_attention(self) -> None:
        # Official SPLIT init: the temporal branch starts as an identity (zero qkv, hence zero values),
        # with the output projection filled with ones so that gradients can move it away from zero.
        for name, param in self.named_parameters():
            if ".t_attn." in name:
                nn.init.constant_(param, 1.0 if name.endswith("proj.weight") else 0.0)

    # ------------------------------------------------------------------------------------------------
    # structure helpers (timm conventions)

    def stages(self) -> list[tuple[nn.Module, nn.ModuleList]]:
        """The four (patch embedding, blocks) pairs, in order."""
        return [(getattr(self, f"patch_embed{i}"), getattr(self, f"blocks{i}")) for i in range(1, 5)]

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names that the optimizer must not decay: the layer scales.

        Norm weights and biases (1-D) are left out of weight decay by the optimizer factory anyway; the light
        models' score token is not decayed either (official ``no_weight_decay``).
        """
        names = ("gamma_1", "gamma_2", "cls_token")
        return {name for name, _ in self.named_parameters() if name.rsplit(".", 1)[-1] in names}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for layer-wise lr decay (timm ``param_groups_layer_decay``).

        The stem is group 0; then each stage's patch embedding precedes its blocks, one group per block
        (one per stage with ``coarse=True``); the final norm comes last, the heads after it. The light models'
        score token joins stage 3's patch embedding, ``cls_upsample`` stage 4's.
        """
        blocks = r"^blocks(\d+)" if coarse else r"^blocks(\d+)\.(\d+)"
        return dict(
            stem=r"^patch_embed1|^pos_drop",
            blocks=[
                (blocks, None),
                (r"^patch_embed([234])", (-1,)),
                (r"^cls_token", (3, -1)),
                (r"^cls_upsample", (4, -1)),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations.

        Outputs, gradients and BatchNorm running statistics are identical to the plain forward.
        """
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (and the token-labeling or score-token head) by freshly initialised ones.

        ``global_pool`` ``"avg"`` or ``""`` (no pooling, ``num_classes=0`` only) as in the constructor; ``None``
        keeps the current pooling.
        """
        self.global_pool = _checked_pool(self.global_pool if global_pool is None else global_pool, num_classes)
        self.num_classes = num_classes
        heads = ["head"] + ["aux_head"] * self.token_labeling + ["head_cls"] * self.light
        for name in heads:
            layer = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
            self._init_weights(layer)
            reference = next(self.parameters())
            setattr(self, name, layer.to(reference.device, reference.dtype))

    # ------------------------------------------------------------------------------------------------
    # forward

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a float batch this network can take."""
        _check_input(x, self.video, self.in_chans, self.dense, self.light)

    def _run_block(self, index: int, j: int, block: nn.Module, *state: torch.Tensor | None) -> tuple:
        if torch.is_grad_enabled() and (self.grad_checkpointing or j < self.checkpoint_num[index]):
            recompute = partial(_preserve_batchnorm_stats, block)
            out = checkpoint(block, *state, use_reentrant=False, context_fn=lambda r=recompute: (nullcontext(), r()))
        else:
            out = block(*state)
        return out if isinstance(out, tuple) else (out,)

    def _stages(self, x: torch.Tensor, last: int = 3) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Run stages 0 .. ``last``, yielding each one's output map and, for the light models from stage 3 on, the
        score token after it (else ``None``). The token scores live here, one forward at a time: two models,
        or two threads running one model, never share them."""
        cls = scores = None
        for i, (embed, blocks) in enumerate(self.stages()[: last + 1]):
            x = embed(x)
            if i == 0:
                x = self.pos_drop(x)
            if self.light and i == 2:
                # a copy per sample: a view of the parameter would require grad even under no_grad
                cls = self.cls_token.repeat(x.shape[0], 1, 1)
            elif self.light and i == 3:
                cls = self.cls_upsample(cls)
            state = (x, cls, scores) if self.light and i >= 2 else (x,)
            for j, block in enumerate(blocks):
                state = self._run_block(i, j, block, *state)
            x = state[0]
            if self.light and i == 2:
                cls, scores = state[1], _pooled_scores(state[2], x.shape[2:])
            elif self.light and i == 3:
                cls = state[1]
            yield x, cls

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.check_input(x)
        for x, cls in self._stages(x):
            pass
        return self.norm(x), cls

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map after the last BatchNorm: (B, C, [T,] H/32, W/32)."""
        return self._features(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the feature map (``global_pool``) and classify; ``pre_logits`` stops after pooling.

        With token labeling the logits are ``head(mean of tokens) + 0.5 * max over tokens of aux_head(tokens)``,
        the official test-time output, in training mode too (so ``forward`` always returns one tensor, as timm
        expects); the token-labeling loss needs the two parts apart, which :meth:`forward_train` returns.
        """
        tokens = x.flatten(2).transpose(1, 2)
        pooled = tokens.mean(dim=1) if self.global_pool == "avg" else x
        if pre_logits:
            return pooled
        logits = self.head(pooled)
        if not self.token_labeling or self.num_classes == 0:
            return logits
        return logits + 0.5 * self.aux_head(tokens).max(dim=1).values

    def forward_dense(self, x: torch.Tensor, indices: Sequence[int] = (0, 1, 2, 3)) -> tuple[torch.Tensor, ...]:
        """The dense backbone's output: the stage maps after ``norm1`` .. ``norm4``, channels-first,
        (B, embed_dim[s], floor(H / 2**(s+2)), floor(W / 2**(s+2))) for each stage s in ``indices`` (increasing).
        Only those stages' norms run, and no stage after the last one: a pose head that reads the stride-32 map
        (``indices=(3,)``) skips the three other norms and their copies to contiguous maps."""
        if not self.dense:
            raise ValueError("forward_dense needs a dense backbone (UniFormer(dense=True))")
        if not indices or list(indices) != sorted(set(indices)) or not 0 <= indices[0] <= indices[-1] <= 3:
            raise ValueError(f"forward_dense: indices must be increasing stages in 0..3, got {tuple(indices)}")
        self.check_input(x)
        maps = []
        for i, (x, _) in enumerate(self._stages(x, indices[-1])):
            if i in indices:
                maps.append(_channels_last_norm(getattr(self, f"norm{i + 1}"), x).contiguous())
        return tuple(maps)

    def forward(self, x: torch.Tensor, train_outputs: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Logits (B, classes), or a dense backbone's maps. ``train_outputs``: the two outputs of
        :meth:`forward_train` instead, for a training loop that calls the model through a wrapper (DDP, a compiled
        model) which only runs ``forward``."""
        if train_outputs is True:  # an identity test: symbolic tracing (torch.fx) passes a proxy, never True
            return self.forward_train(x)
        if self.dense:
            return self.forward_dense(x)
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two training outputs of a token-labeling or light model.

        Token labeling: ``(head(mean of tokens), aux_head(tokens))``, class logits (B, classes) and per-token
        logits (B, N, classes), N = [T *] H/32 * W/32 in the order of ``x.flatten(2)``: the dense labels of token
        labeling supervise the second, the class label the first (official ``tlt`` training). Light models:
        ``(head(mean of tokens), head_cls(norm_cls(score token)))``, both (B, classes), each supervised by the
        class label (official loss 0.5 + 0.5; ``forward`` returns the first). Raises ``ValueError`` on other
        models and on models without a classifier.
        """
        if not (self.token_labeling or self.light) or self.num_classes == 0:
            raise ValueError(
                "forward_train needs a token-labeling model or a light model, with a classifier "
                "(token_labeling=True or light=True, num_classes > 0)"
            )
        features, cls = self._features(x)
        tokens = features.flatten(2).transpose(1, 2)
        if self.light:
            return self.head(tokens.mean(dim=1)), self.head_cls(self.norm_cls(cls).squeeze(1))
        return self.head(tokens.mean(dim=1)), self.aux_head(tokens)

    def train(self, mode: bool = True) -> UniFormer:
        """Set training mode; with ``norm_eval`` the BatchNorm layers stay in eval mode (frozen statistics)."""
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs for dense tasks (timm API): strides 4, 8, 16, 32, shapes (B, C_i, [T,] H_i, W_i).

        ``indices`` selects stages (an int n takes the last n); ``norm`` applies the final BatchNorm to the
        last stage's map, the only one whose width it fits.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"UniFormer returns channels-first maps only (output_fmt='NCHW'), got {output_fmt!r}")
        self.check_input(x)
        take, max_index = feature_take_indices(4, indices)
        intermediates = []
        last = max_index if stop_early else 3
        for i, (x, _) in enumerate(self._stages(x, last)):
            if i in take:
                intermediates.append(self.norm(x) if norm and i == 3 else x)
        if intermediates_only:
            return intermediates
        return (self.norm(x) if last == 3 else x), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last one in ``indices`` (and the head) for feature extraction."""
        take, max_index = feature_take_indices(4, indices)
        for i in range(max_index + 1, 4):
            setattr(self, f"patch_embed{i + 1}", nn.Identity())
            setattr(self, f"blocks{i + 1}", nn.ModuleList())
        if prune_norm or max_index < 3:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take
