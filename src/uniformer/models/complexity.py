"""Parameter and multiply-add counts, measured the way the published tables count them.

GFLOPs in the UniFormer papers are multiply-accumulates (fvcore convention: one per multiply-add of
convolutions, linear layers and attention matrix products). ``torch.utils.flop_counter`` counts 2 FLOPs per
multiply-add, so we halve it. Models are built and run on the ``meta`` device: shapes only, no memory, no
arithmetic, so even the 32-frame base model is counted instantly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from uniformer.models.factory import create_model
from uniformer.models.uniformer import set_formulation
from uniformer.models.zoo.catalog import model_info

__all__ = ["Complexity", "count_parameters", "count_gmacs", "measure_model"]


@dataclass(frozen=True)
class Complexity:
    params: int
    gmacs: float
    input_shape: tuple[int, ...]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_gmacs(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Multiply-adds (in G) of one eval forward pass on an input of ``input_shape`` (a detector's
    ``forward_dummy``, the fixed-RoI-count pass its published GFLOPs count)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            getattr(model, "forward_dummy", model)(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2e9


def measure_model(name: str, img_size: int | None = None, num_frames: int | None = None) -> Complexity:
    """Parameters and GMACs per view of zoo model ``name`` at its test input (built on the meta device), counted
    in the official (``"reference"``) formulation, which the published GFLOPs count: the fast one does fewer
    multiply-adds for the same result (UperNet's fusion, see ``heads.modules.upsampled_conv3x3``)."""
    info = model_info(name)
    shape = list(info.input_shape(img_size))
    if num_frames is not None:
        if info.task != "video":
            raise ValueError(f"{name} is an image model; num_frames does not apply")
        shape[2] = num_frames
    with torch.device("meta"):
        model = set_formulation(create_model(name, img_size=img_size), "reference")
    return Complexity(count_parameters(model), count_gmacs(model, tuple(shape)), tuple(shape))
