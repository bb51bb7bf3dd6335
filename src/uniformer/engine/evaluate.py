"""Evaluation, task-agnostic: run a model over a dataset and hand every output to the task's metric.

:func:`run_evaluation` is the loop (validation during training and ``uniformer eval``): each process takes the
items its accumulator assigns it (:meth:`uniformer.tasks.MetricAccumulator.indices`), the accumulator sums what
it needs, and :meth:`~uniformer.tasks.MetricAccumulator.compute` combines the processes' sums, so every process
returns the complete result. :func:`evaluate` is ``uniformer eval``: one checkpoint (read once) against the test
set, refused when the test set's classes are not the weights', and the task's report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig

from uniformer.engine.build import released_weights
from uniformer.engine.config import resolve_config, task_of
from uniformer.engine.distributed import DistContext, autocast_context, setup_distributed
from uniformer.engine.logging import progress_bar
from uniformer.models.checkpoint import load_state, read_checkpoint
from uniformer.tasks import MetricAccumulator, Metrics

__all__ = ["EvalReport", "evaluate", "feed", "run_evaluation"]

logger = logging.getLogger("uniformer.engine")


@dataclass
class EvalReport:
    metrics: Metrics
    output_dir: Path | None
    summary: str


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


@torch.no_grad()
def feed(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    accumulator: MetricAccumulator,
    *,
    collate: Callable[[list[Any]], dict[str, Any]],
    inputs: Callable[[dict[str, Any]], Any],
    batch_size: int = 8,
    ctx: DistContext | None = None,
    precision: str = "fp32",
    num_workers: int = 0,
    progress: bool = False,
) -> None:
    """Run ``model`` (in eval mode; its mode is restored after) over this process's share of ``dataset`` and
    hand each output to ``accumulator``.

    ``model`` is already on ``ctx.device``; ``precision`` is the autocast of the forward pass (``fp32``, ``bf16``
    or ``fp16``); ``collate`` and ``inputs`` (batch -> model input) are the task's.
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
                output = model(to_device(inputs(batch), ctx.device))
            accumulator.update(output, batch)
            bar.update()
    finally:
        bar.close()
        model.train(was_training)


def run_evaluation(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    accumulator: MetricAccumulator,
    *,
    ctx: DistContext | None = None,
    **options: Any,
) -> Metrics:
    """:func:`feed` (same ``options``), then the accumulator's metrics over every process (a collective call)."""
    ctx = ctx or DistContext()
    feed(model, dataset, accumulator, ctx=ctx, **options)
    return accumulator.compute(ctx)


def evaluate(cfg: DictConfig) -> EvalReport:
    """``uniformer eval``: the task's test of ``eval.checkpoint`` (read once) on the test set.

    The weights' class names (stored by ``uniformer train`` and ``convert``) must be the test set's; the report
    goes to ``eval.output_dir`` (default ``<output_dir>/eval``), written by rank 0 only.
    """
    cfg = resolve_config(cfg)
    task = task_of(cfg)
    if cfg.eval.checkpoint is None:
        raise ValueError(
            "eval needs checkpoint=PATH (a training checkpoint such as OUTPUT_DIR/checkpoints/best.pt, or an official "
            ".pth/.safetensors file) or checkpoint=released for the zoo model's published weights"
        )
    ctx = setup_distributed(cfg.trainer.device)
    autocast_context(cfg.trainer.precision, ctx.device)  # refuse fp16 on CPU before any work
    if cfg.eval.checkpoint == "released":
        path = released_weights(cfg.model.name, "checkpoint=released")
    else:
        path = Path(cfg.eval.checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint={path}: no such file")
    checkpoint = read_checkpoint(path)
    outputs = task.eval_outputs(cfg, checkpoint)
    dataset = task.build_dataset(cfg, "test")
    label_map = task.check_eval_data(cfg, checkpoint, dataset)
    model = task.build_model(cfg, outputs)
    state = checkpoint.ema_state_dict() if cfg.eval.ema else checkpoint.state_dict
    load_state(model, state, str(path), head="keep")
    model.to(ctx.device)
    start = time.perf_counter()
    metrics = run_evaluation(
        model,
        dataset,
        task.metric(cfg, dataset, label_map=label_map),
        collate=task.collate,
        inputs=task.model_inputs,
        batch_size=cfg.eval.batch_size,
        ctx=ctx,
        precision=cfg.trainer.precision,
        num_workers=cfg.data.num_workers,
        progress=cfg.trainer.progress,
    )
    seconds = time.perf_counter() - start
    out_dir = Path(cfg.eval.output_dir or Path(cfg.output_dir) / "eval")
    summary = task.write_report(out_dir, metrics, cfg) if ctx.is_main else ""
    summary += f"; {len(dataset) / seconds:.1f} views/s; report in {out_dir}"
    return EvalReport(metrics=metrics, output_dir=out_dir if ctx.is_main else None, summary=summary)
