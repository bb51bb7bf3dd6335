"""The device a process computes on, the autocast of a forward pass, and model inputs moved to the device."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from uniformer.models.optimize import warn_if_cpu_bf16_is_slow

__all__ = ["autocast_context", "select_device", "to_device"]


def select_device(preference: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: this process's GPU when CUDA is available, else the CPU; ``"cuda"`` insists on a GPU."""
    if preference == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if preference == "cuda":
        raise ValueError("trainer.device=cuda but no CUDA device is available (use trainer.device=cpu or auto)")
    return torch.device("cpu")


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


def to_device(value: Any, device: torch.device) -> Any:
    """A model input on ``device``: a tensor, or the tensors inside (nested) lists, tuples and dicts (the list of
    images a detector takes)."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value
