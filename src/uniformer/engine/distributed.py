"""Process-group setup for runs launched by ``torchrun`` (one node or many), and the few collectives we need.

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` (or a rendezvous
endpoint); a plain ``python -m uniformer.cli train`` is a world of one and never touches ``torch.distributed``.
The backend is NCCL when each process drives a GPU and gloo on CPU. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from uniformer.models.optimize import warn_if_cpu_bf16_is_slow

__all__ = [
    "DistContext",
    "autocast_context",
    "cleanup_distributed",
    "select_device",
    "setup_distributed",
]


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


def select_device(preference: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: this process's GPU when CUDA is available, else the CPU; ``"cuda"`` insists on a GPU."""
    if preference == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if preference == "cuda":
        raise ValueError("trainer.device=cuda but no CUDA device is available (use trainer.device=cpu or auto)")
    return torch.device("cpu")


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


def autocast_context(precision: str, device: torch.device) -> AbstractContextManager[object]:
    """The forward-pass context of ``trainer.precision``: fp32 (none), bf16 autocast (CPU or GPU), fp16 autocast
    (GPU only: CPU float16 autocast is slow and unscaled fp16 gradients underflow)."""
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("trainer.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if precision == "bf16" and device.type == "cpu":
        warn_if_cpu_bf16_is_slow("precision bf16")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
