"""Where a process sits among the processes of a run, the collectives a metric needs, and the process group.

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` (or a rendezvous
endpoint); a plain ``python -m uniformer.cli train`` is a world of one and never touches ``torch.distributed``.
The backend is NCCL when each process drives a GPU and gloo on CPU. Only rank 0 writes files.
:class:`DistContext` is the one collective abstraction: ``DistContext()`` is a world of one on the CPU, whose
collectives return what they are given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from uniformer.runtime.device import select_device

__all__ = ["DistContext", "cleanup_distributed", "setup_distributed"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` among ``world_size`` processes, its device, whether it writes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs and reports."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes, in place (a no-op in a world of one); returns it."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, by rank (``[obj]`` in a world of one)."""
        if not self.distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered


def setup_distributed(device_preference: str = "auto") -> DistContext:
    """Join the process group that ``torchrun`` prepared (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def cleanup_distributed() -> None:
    """Leave the process group (end of run), so that the launcher sees a clean exit."""
    if dist.is_initialized():
        dist.destroy_process_group()
