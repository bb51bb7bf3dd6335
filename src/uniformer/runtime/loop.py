"""The evaluation loop, task-agnostic: a model over this process's share of a dataset, each output handed to an
accumulator.

Validation during training, ``uniformer eval``, ``uniformer predict``, pose's person detector, COCO evaluation
of any torchvision-style detector and the demos all run it; the task supplies the collate function, the batch ->
model input function and the accumulator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
import torch.nn as nn

from uniformer._progress import progress_bar
from uniformer.runtime.device import autocast_context, to_device
from uniformer.runtime.distributed import DistContext

__all__ = ["Accumulator", "Batch", "ModelInput", "ModelOutput", "feed"]

Batch = dict[str, object]
"""A collated batch: the task's fields (tensors) and the item envelope (``index``, ``valid``, ``path``, ...)."""
ModelInput = torch.Tensor | Sequence[torch.Tensor]
"""What a model takes from a batch: one tensor, or a detector's list of images."""
ModelOutput = torch.Tensor | Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]]
"""What a model returns: logits or heatmaps, or a detector's losses (training) or detections per image."""


class Accumulator(Protocol):
    """What the loop needs of an accumulator: the items this process evaluates, and a place for each output."""

    def indices(self, rank: int, world_size: int) -> list[int]: ...

    def update(self, output: ModelOutput, batch: Batch) -> None: ...


@torch.no_grad()
def feed(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    accumulator: Accumulator,
    *,
    collate: Callable[[list[Any]], Batch],
    inputs: Callable[[Batch], ModelInput],
    batch_size: int = 8,
    ctx: DistContext | None = None,
    precision: str = "fp32",
    num_workers: int = 0,
    progress: bool = False,
    options: Mapping[str, object] | None = None,
) -> None:
    """Run ``model`` (in eval mode; its mode is restored after) over this process's share of ``dataset``
    (:meth:`Accumulator.indices`) and hand each output to ``accumulator``.

    ``model`` is already on ``ctx.device`` (default: a world of one on the CPU); ``precision`` is the autocast of
    the forward pass (``fp32``, ``bf16`` or ``fp16``); ``collate`` and ``inputs`` (batch -> model input, moved to
    the device) are the task's, as are ``options``: keyword arguments of every model call (test-time options such
    as pose's ``flip_test``).
    """
    ctx = ctx or DistContext()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, accumulator.indices(ctx.rank, ctx.world_size)),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=ctx.device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    bar = progress_bar(len(loader), desc="eval", enabled=progress and ctx.is_main, unit="batch")
    try:
        for batch in loader:
            with autocast_context(precision, ctx.device):
                output = model(to_device(inputs(batch), ctx.device), **(options or {}))
            accumulator.update(output, batch)
            bar.update()
    finally:
        bar.close()
        model.train(was_training)
