"""The four explanation maps of a classification UniFormer, computed on a batch of model inputs.

Every function takes an eval-mode model with timm's ``forward_intermediates`` / ``forward_head`` /
``get_classifier`` API and a normalised batch ``x`` (``(B, C, H, W)`` images or ``(B, C, T, H, W)`` clips), runs
one forward pass and returns the map at the resolution of the stage it reads, ``(B, h, w)`` or ``(B, T', h, w)``
(``T' = T / 2``: the stem halves time), together with the logits of that pass. Nothing is kept on the model: CAM,
attention and features run under ``torch.no_grad``; Grad-CAM takes the gradient with ``torch.autograd.grad``
with respect to the stage output only, so no parameter's ``.grad`` is written; the attention hooks are removed
when the call returns, also when it fails.

Stages are numbered 1-4 as in the paper (strides 4, 8, 16, 32).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = [
    "METHODS",
    "StageOutputs",
    "attention_received",
    "class_activation_map",
    "default_stage",
    "grad_cam",
    "stage_features",
    "target_classes",
]

METHODS: tuple[str, ...] = ("cam", "gradcam", "attention", "features")
GLOBAL_STAGES: tuple[int, ...] = (3, 4)  # the stages of global relation aggregation (self-attention)
MIN_CELLS = 7  # the fewest map cells along the shorter side that still localise an object (see default_stage)


@dataclass(frozen=True)
class StageOutputs:
    """One forward pass: the logits and the four stage outputs (stage 4's before the final BatchNorm)."""

    logits: torch.Tensor
    stages: list[torch.Tensor]


def _check_model(model: nn.Module) -> None:
    if model.training:
        raise ValueError(
            "explanations need a model in eval mode (call model.eval()): a training-mode forward would update "
            "BatchNorm statistics and draw dropout"
        )
    if getattr(model, "dense", False) or getattr(model, "num_classes", 0) == 0:
        raise ValueError("explanations need a classification model (a classifier head); this one has none")


def _autocast(x: torch.Tensor, precision: str) -> AbstractContextManager:
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return torch.autocast(x.device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def forward_stages(model: nn.Module, x: torch.Tensor, precision: str = "fp32") -> StageOutputs:
    """Logits and stage outputs of one pass, as ``model(x)`` computes them (``forward_head`` of the normalised
    final map): the logits equal ``model(x)``'s."""
    _check_model(model)
    with _autocast(x, precision):
        final, stages = model.forward_intermediates(x)
        logits = model.forward_head(final)
    return StageOutputs(logits.float(), stages)


def target_classes(logits: torch.Tensor, target: int | Sequence[int] | None) -> torch.Tensor:
    """Class per sample: the top-1 class where ``target`` is ``None``, else the given class(es)."""
    if target is None:
        return logits.argmax(dim=1)
    classes = torch.as_tensor([target] * len(logits) if isinstance(target, int) else list(target))
    if classes.shape != (len(logits),):
        raise ValueError(f"need one target class per input ({len(logits)}), got {len(classes)}")
    if bool(((classes < 0) | (classes >= logits.shape[1])).any()):
        raise ValueError(f"target class out of range for a {logits.shape[1]}-class model: {classes.tolist()}")
    return classes.to(logits.device)


def default_stage(input_size: Sequence[int]) -> int:
    """The deepest stage whose map has at least ``MIN_CELLS`` (7) cells along the input's shorter side.

    Deeper stages carry more class evidence, shallower ones more resolution; 7 x 7 is what the standard Grad-CAM
    layer (the last stage) has at 224 px, so there the default is stage 4. At the synthetic demo's 64 px the last
    stage is 2 x 2, one cell a quarter of the frame, and stage 3 is 4 x 4: neither can say where a 20-pixel object
    is, and the default is stage 2 (8 x 8). ``input_size`` ends with ``(H, W)`` (a batch shape does).
    """
    short = min(input_size[-2:])
    for stage in (4, 3, 2):
        if short // 2 ** (stage + 1) >= MIN_CELLS:
            return stage
    return 1


def _check_stage(stage: int, allowed: Sequence[int] = (1, 2, 3, 4)) -> None:
    if stage not in allowed:
        raise ValueError(f"stage must be one of {', '.join(map(str, allowed))}, got {stage!r}")


def class_activation_map(
    model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | None = None, precision: str = "fp32"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class activation map, the official ``show_cam.ipynb`` formulation: the output of the last block of stage 4
    (``forward_intermediates``' last map, *before* the final BatchNorm ``model.norm``) weighted by the classifier
    row of the target class, ``cam[t, h, w] = sum_c head.weight[k, c] * f[c, t, h, w]``, no bias, no ReLU.

    The pooled logit is computed from the map *after* the final BatchNorm, so the CAM is not exactly a
    decomposition of the logit; the notebook chose the pre-norm map and we keep its formula (a token-labeling
    model's ``aux_head`` is not used either, as in the notebook). Returns ``(cam, logits, targets)``;
    ``cam`` is ``(B, [T',] h, w)`` at stride 32.

    Where :func:`uniformer.explain.explain` differs from the notebook around this formula: the input is the
    model's own test view (the notebook normalises with ImageNet's mean and std and takes a 224 crop of a
    256 resize, while the video models were trained and tested with mean 0.45, std 0.225 and a short side of 224);
    the map is upsampled bilinearly in space (the notebook's ``scipy.ndimage.zoom`` is a cubic spline) and
    linearly in time (the notebook's ``downsample=False`` path), then scaled to [0, 1] over the whole clip as the
    notebook does.
    """
    with torch.no_grad():
        out = forward_stages(model, x, precision)
        targets = target_classes(out.logits, target)
        weights = model.get_classifier().weight.float()[targets]  # (B, C)
        features = out.stages[3].float()
        cam = torch.einsum("bc...,bc->b...", features, weights)
    return cam, out.logits, targets


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int] | None = None,
    stage: int | None = None,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grad-CAM on the output of stage ``stage`` (default :func:`default_stage`), as mmaction2's ``GradCAM``
    computes it: the gradient of the target class's logit with respect to the stage output, averaged over all
    positions (time too) into one weight per channel, the weighted channel sum, then ReLU. Works for any head
    that ``forward_head`` applies (token labeling included). Returns ``(map, logits, targets)``.
    """
    stage = default_stage(x.shape) if stage is None else stage
    _check_stage(stage)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)  # a graph even where the parameters are frozen
        out = forward_stages(model, x, precision)
        targets = target_classes(out.logits, target)
        activation = out.stages[stage - 1]
        score = out.logits.gather(1, targets[:, None]).sum()
        (gradient,) = torch.autograd.grad(score, activation)
    gradient, activation = gradient.float(), activation.detach().float()
    weights = gradient.flatten(2).mean(dim=2)  # (B, C)
    cam = torch.einsum("bc...,bc->b...", activation, weights).relu()
    return cam, out.logits.detach(), targets


def _global_blocks(model: nn.Module, stage: int) -> list[nn.Module]:
    """The blocks of ``stage`` that attend over whole maps (windowed blocks are left out)."""
    blocks = model.get_submodule(model.feature_info[stage - 1]["module"])
    chosen = [b for b in blocks if hasattr(b, "attn") and getattr(b, "window_size", None) is None]
    if not chosen:
        raise ValueError(f"stage {stage} has no block with global attention (all windowed)")
    return chosen


@contextmanager
def _attention_probabilities(blocks: Sequence[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Collect softmax(q k^T * scale) of each block's spatial attention, (B', heads, N, N), while inside.

    The model's attention runs a fused kernel that never forms the matrix, so a forward hook recomputes it from
    the attention's input with the module's own ``qkv`` projection, head count and scale (the formula of its
    ``"reference"`` formulation). The hooks are removed on leaving.
    """
    found: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        tokens = args[0]
        b, n, c = tokens.shape
        qkv = module.qkv(tokens).reshape(b, n, 3, module.num_heads, c // module.num_heads).permute(2, 0, 3, 1, 4)
        q, k = qkv[0].float(), qkv[1].float()
        found.append((q @ k.transpose(-2, -1) * module.scale).softmax(dim=-1))

    handles = [block.attn.register_forward_hook(hook) for block in blocks]
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def attention_received(
    model: nn.Module,
    x: torch.Tensor,
    stage: int = 4,
    query: tuple[float, float] | None = None,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """How much attention each position of stage ``stage`` (3 or 4) receives.

    For every global block of the stage the attention matrix softmax(q k^T / sqrt(d)) is averaged over heads; the
    attention a key token receives is then the mean over all query tokens (``query=None``) or over the query
    tokens at one location, ``query=(x, y)`` as fractions of the input's width and height (in a video, that
    location in every time slice). The blocks' maps are averaged. In a video model with divided space-time
    attention (``split``) the spatial step attends within each frame, so queries and keys are those of the same
    frame. Returns ``(map, logits)``, the map ``(B, [T',] h, w)`` at the stage's stride, its mean over positions
    ``1 / tokens`` when ``query`` is ``None``.
    """
    _check_stage(stage, GLOBAL_STAGES)
    blocks = _global_blocks(model, stage)
    with torch.no_grad(), _attention_probabilities(blocks) as found:
        out = forward_stages(model, x, precision)
    shape = out.stages[stage - 1].shape  # (B, C, [T',] h, w)
    batch, grid = shape[0], tuple(shape[2:])
    h, w = grid[-2:]
    maps = []
    for attn in found:
        attn = attn.mean(dim=1)  # over heads: (B', N, N)
        # joint attention: B' = B, N = T' * h * w; divided attention attends within frames: B' = B * T', N = h * w
        received = attn.mean(dim=1) if query is None else attn[:, _query_rows(query, h, w, attn.shape[-1])].mean(1)
        maps.append(received.reshape(batch, *grid))
    return torch.stack(maps).mean(dim=0), out.logits


def _query_rows(query: tuple[float, float], h: int, w: int, n: int) -> list[int]:
    """Token rows of the location ``query = (x, y)`` (fractions in [0, 1]) in a token sequence of ``n`` tokens
    laid out as ``(T', h, w)`` (``x.flatten(2)`` order)."""
    x, y = query
    if not (0 <= y <= 1 and 0 <= x <= 1):
        raise ValueError(f"query location must be fractions of the width and height in [0, 1], got {query}")
    row, col = min(int(y * h), h - 1), min(int(x * w), w - 1)
    return [t * h * w + row * w + col for t in range(n // (h * w))]


def stage_features(
    model: nn.Module, x: torch.Tensor, precision: str = "fp32"
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The channel mean of each stage's output, as the official ``show_fea.ipynb`` plots (it takes the last block
    of each stage, which is what ``forward_intermediates`` returns; stage 4 before the final BatchNorm).
    Returns ``([(B, [T',] h_s, w_s) for the four stages], logits)``; the notebook shows the negated map on a
    diverging scale centred at its mean, which :mod:`uniformer.explain.render` does."""
    with torch.no_grad():
        out = forward_stages(model, x, precision)
    return [s.float().mean(dim=1) for s in out.stages], out.logits


def upsample(raw: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """A ``(B, [T',] h, w)`` map resized to ``size`` = ``(H, W)`` or ``(T, H, W)``: bilinear (trilinear for
    clips, linear in time as the notebook's ``downsample=False`` path), ``align_corners=False``."""
    mode = "trilinear" if raw.ndim == 4 else "bilinear"
    return nn.functional.interpolate(raw[:, None].float(), size=tuple(size), mode=mode, align_corners=False)[:, 0]


def min_max(maps: torch.Tensor) -> torch.Tensor:
    """Each sample's map scaled to [0, 1] over all its positions (all frames together, as both the notebook and
    mmaction2 do, so that frames stay comparable); a constant map becomes zeros."""
    flat = maps.flatten(1)
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-12)).view_as(maps)
