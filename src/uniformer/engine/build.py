"""From a resolved config to the task-agnostic objects a run needs: batch plan, optimizer, schedule, weights.

Everything here is plain construction from config values, kept apart from the training loop so that tests and
``uniformer train --dry-run`` can build exactly what a run would use without running it. What is specific to a
task (model, datasets, loss) comes from the task (:mod:`uniformer.tasks`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler, PolyLRScheduler

from uniformer.engine.config import learning_rate
from uniformer.models.download import fetch_release
from uniformer.models.zoo.catalog import model_info

__all__ = [
    "build_optimizer",
    "build_scheduler",
    "initial_weights",
    "released_weights",
    "steps_for",
]

logger = logging.getLogger("uniformer.engine")


def initial_weights(cfg: DictConfig) -> Path | None:
    """The file a new run starts from: ``model.checkpoint``, else the released weights of ``model.pretrained``
    (fetched from their sources into the standard caches), else none (random initialisation)."""
    if cfg.model.checkpoint is not None:
        return Path(cfg.model.checkpoint)
    if cfg.model.pretrained is None:
        return None
    return released_weights(cfg.model.pretrained, f"model.pretrained={cfg.model.pretrained}")


def released_weights(name: str, key: str) -> Path:
    """The published checkpoint of zoo model ``name`` (fetched and cached); ``key`` names the setting in errors."""
    info = model_info(name)
    release = info.release()
    if not release.released:
        raise ValueError(f"config: {key}: {info.name} has no released checkpoint; pass a weights file instead")
    return fetch_release(info.name, release)


def build_optimizer(cfg: DictConfig, model: nn.Module, global_batch: int) -> torch.optim.Optimizer:
    """timm optimizer with weight decay off for norms, biases and ``model.no_weight_decay()``, optional layer decay."""
    opt = cfg.optimizer
    extra: dict[str, Any] = {"betas": tuple(opt.betas), "eps": opt.eps} if "adam" in opt.name else {}
    return create_optimizer_v2(
        model,
        opt=opt.name,
        lr=learning_rate(cfg, global_batch),
        weight_decay=opt.weight_decay,
        layer_decay=opt.layer_decay,
        **extra,
    )


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int) -> Any:
    """Linear warm-up over ``scheduler.warmup_steps`` (else ``warmup_epochs`` epochs) from ``warmup_lr`` to the
    peak, then, in steps:

    * ``cosine``: cosine to ``min_lr`` over the rest of the run (PySlowFast's ``COSINE_AFTER_WARMUP``; timm
      ``CosineLRScheduler`` with ``warmup_prefix``);
    * ``poly``: ``min_lr + (peak - min_lr) * (1 - step / total_steps) ** power``, counted from step 0 over the
      whole run as mmcv's ``PolyLrUpdaterHook`` (mmseg ``policy='poly'``; timm ``PolyLRScheduler``). mmcv's
      linear warm-up ramps to the poly value of its last warm-up step, timm's to the peak: the two differ by a
      factor ``1 - warmup / total`` (0.99 for the UperNet recipes) at the end of the warm-up only;
    * ``step``: the peak times ``decay_rate`` after each epoch of ``milestones`` (mmcv's ``StepLrUpdaterHook``,
      ``policy='step'``, ``step=[8, 11]`` in mmdet's 1x; timm ``MultiStepLRScheduler``), at the optimizer step
      where that epoch ends. mmcv's linear warm-up from ``warmup_ratio * lr`` is the same line as timm's.
    """
    s = cfg.scheduler
    warmup = s.warmup_steps if s.warmup_steps is not None else round(s.warmup_epochs * steps_per_epoch)
    warmup = min(warmup, total_steps)
    common = {"lr_min": s.min_lr, "warmup_t": warmup, "warmup_lr_init": s.warmup_lr, "t_in_epochs": False}
    if s.name == "poly":
        return PolyLRScheduler(optimizer, t_initial=max(total_steps, 1), power=s.power, **common)
    if s.name == "cosine":
        return CosineLRScheduler(optimizer, t_initial=max(total_steps - warmup, 1), warmup_prefix=True, **common)
    if s.name == "step":
        # timm decays at schedule index t when t + 1 reaches a milestone; the engine passes the 0-based index of
        # the step about to run, and the first step of epoch e is index e * steps_per_epoch (not shifted by the
        # warm-up, as mmcv counts epochs from the start of the run).
        milestones = [epoch * steps_per_epoch + 1 for epoch in s.milestones]
        del common["lr_min"]
        return MultiStepLRScheduler(
            optimizer, decay_t=milestones, decay_rate=s.decay_rate, warmup_prefix=False, **common
        )
    raise ValueError(f"config: scheduler.name must be cosine, poly or step; got {s.name!r}")


def steps_for(cfg: DictConfig, steps_per_epoch: int) -> tuple[int, int]:
    """``(total optimizer steps, epochs)`` of a run: ``max_epochs`` epochs, cut at ``max_steps`` if set; a line
    says which of the two limits ends the run when both are set."""
    t = cfg.trainer
    by_epochs = t.max_epochs * steps_per_epoch
    total = by_epochs if t.max_steps is None else min(by_epochs, t.max_steps)
    if t.max_steps is not None and t.max_steps != by_epochs:
        if t.max_steps < by_epochs:
            logger.info(
                "trainer.max_steps=%d ends the run before trainer.max_epochs=%d (%d epochs x %d steps = %d steps)",
                t.max_steps,
                t.max_epochs,
                t.max_epochs,
                steps_per_epoch,
                by_epochs,
            )
        else:
            logger.info(
                "trainer.max_epochs=%d (%d steps) ends the run before trainer.max_steps=%d",
                t.max_epochs,
                by_epochs,
                t.max_steps,
            )
    return total, math.ceil(total / steps_per_epoch)
