"""Training checkpoints: atomic writes, the last N kept plus ``best.pt``, and finding where to resume.

A training checkpoint is one ``torch.save`` dict (``format: "uniformer-train"``) holding the model weights under
``"model"`` (so :func:`uniformer.load_checkpoint` and ``model.checkpoint=`` read it like any official file),
the EMA weights, optimizer and grad-scaler states, the trainer's counters and the resolved config. The learning
rate schedule is not stored: it is a function of the config and the step, so a run resumed with a longer
``trainer.max_epochs`` follows the schedule of its new length (the resume warns about every changed key).
Files are ``OUTPUT_DIR/checkpoints/checkpoint-<step>.pt``; each is written to a temporary file and renamed, so
a run killed at any instant leaves the previous checkpoint intact. ``best.pt`` is a hard link to the best
epoch's file (a copy where links are not supported), so it survives pruning without being written twice.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from uniformer._fileio import atomic_write
from uniformer.models.checkpoint import CheckpointError, load_checkpoint

__all__ = ["TRAIN_FORMAT", "CheckpointManager", "is_training_checkpoint", "load_weights", "read_training_checkpoint"]

TRAIN_FORMAT = "uniformer-train"
_PATTERN = re.compile(r"^checkpoint-(\d+)\.pt$")
logger = logging.getLogger("uniformer.engine")


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file surfaces as several exception types
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None


def is_training_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is one of our training checkpoints (as opposed to bare or official weights)."""
    return isinstance(obj, dict) and obj.get("format") == TRAIN_FORMAT


def read_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a training checkpoint for resuming; a weights-only file is refused with what to do instead."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = _torch_load(path)
    if not is_training_checkpoint(state):
        raise CheckpointError(
            f"{path}: not a training checkpoint of this engine (no optimizer state), so a run cannot resume "
            "from it; to start a new run from its weights use model.checkpoint=PATH instead of trainer.resume"
        )
    return state


class CheckpointManager:
    """Writes and finds the checkpoints of one run (only rank 0 should call the writing methods)."""

    def __init__(self, directory: str | os.PathLike[str], keep_last: int = 2) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of the step checkpoints present, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [
            (int(m.group(1)), self.directory / name)
            for name in os.listdir(self.directory)
            if (m := _PATTERN.match(name))
        ]
        return sorted(found)

    def save(self, state: dict[str, Any], step: int, *, best: bool = False) -> Path:
        """Write ``checkpoint-<step>.pt`` atomically, point ``best.pt`` at it if ``best``, prune old ones."""
        path = self.directory / f"checkpoint-{step:08d}.pt"
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        if best:
            atomic_write(self.best_path, lambda tmp: _link_or_copy(path, Path(tmp)))
        for _, old in self.checkpoints()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def resume_candidates(self, resume: str | None) -> list[Path]:
        """Files to try for ``trainer.resume``, best first: ``"auto"`` gives the step checkpoints newest first
        (empty for a fresh run), a path gives itself."""
        if resume is None:
            return []
        if resume == "auto":
            return [path for _, path in reversed(self.checkpoints())]
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(
                f"trainer.resume={resume}: no such checkpoint file (use trainer.resume=auto to pick the latest)"
            )
        return [path]


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def load_weights(model: nn.Module, path: str | os.PathLike[str], *, ema: bool = False) -> nn.Module:
    """Load evaluation weights: a training checkpoint's ``model`` (or ``model_ema`` with ``ema=True``), or any
    file :func:`uniformer.load_checkpoint` reads (official ``.pth``, ``.safetensors``), strictly."""
    if not ema:
        return load_checkpoint(model, path)
    state = _torch_load(Path(path))
    if not is_training_checkpoint(state) or state.get("model_ema") is None:
        raise ValueError(
            f"eval.ema=true needs a training checkpoint saved with trainer.ema_decay set; {path} has no EMA weights"
        )
    model.load_state_dict(state["model_ema"])
    return model
