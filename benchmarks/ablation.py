"""What each inference fast path buys on its own: variants timed between the plain and the optimized model.

Passed as ``extra_models`` to :func:`uniformer.benchmarks.models.run_model_benchmark`; the optimized fp32 row
that follows adds the fused MLPs (:class:`~uniformer.models.layers.mlp.FusedMlp`) to the last of these.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from uniformer.models.layers.mlp import FusedMlp
from uniformer.models.optimize import PrepareInput, optimize_for_inference
from uniformer.models.uniformer import Attention, set_formulation

__all__ = ["NOTE", "fast_path_steps"]

NOTE = (
    "plain keeps the official memory layout (patch-embedding maps copied to contiguous memory); "
    "+ channels-last maps drops that copy (this package's default model); "
    "optimized fp32 = all rows above + the MLPs as blocked matrix products with the GELU fused into the first "
    "(`FusedMlp`)"
)


def _unfused_mlps(model: nn.Module) -> nn.Module:
    """An optimized copy with each :class:`FusedMlp` put back to fc1, GELU, fc2 as plain layers (to time what the
    fusion buys)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, FusedMlp):
                setattr(module, name, nn.Sequential(child.fc1, nn.GELU(child.act.approximate), child.fc2))
    return model


def _fused_attention_only(model: nn.Module) -> nn.Module:
    """The reference formulation with only the attention kernel swapped for SDPA (official layout kept)."""
    for module in model.modules():
        if isinstance(module, Attention):
            module.set_formulation("fast")
    return model


def fast_path_steps(plain: nn.Module, shape: tuple[int, ...]) -> dict[str, nn.Module]:
    """The fast paths one at a time, each row adding one to the previous: SDPA, channels-last maps,
    channels-last weights and input, BatchNorm folded."""
    layout = torch.channels_last_3d if len(shape) == 5 else torch.channels_last
    channels_last = set_formulation(copy.deepcopy(plain), "fast")
    weights = copy.deepcopy(channels_last).to(memory_format=layout)
    weights.register_forward_pre_hook(PrepareInput(torch.float32, layout))
    return {
        "+ SDPA": _fused_attention_only(copy.deepcopy(plain)),
        "+ SDPA + channels-last maps": channels_last,
        "+ channels-last weights and input": weights,
        "+ BatchNorm folded": _unfused_mlps(optimize_for_inference(plain)),
    }
