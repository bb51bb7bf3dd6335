"""Evaluation, task-agnostic: run a model over a dataset and hand every output to the task's metric.

:func:`run_evaluation` is validation during training and ``uniformer eval``: the runtime's loop
(:func:`uniformer.runtime.feed`), in which each process takes the items its accumulator assigns it
(:meth:`uniformer.tasks.MetricAccumulator.indices`) and the accumulator sums what it needs; then
:meth:`~uniformer.tasks.MetricAccumulator.compute` combines the processes' sums, so every process returns the
complete result. :func:`evaluate` is ``uniformer eval``: one checkpoint (read once) against the test
set, refused when the test set's classes are not the weights', and the task's report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig

from uniformer.engine.build import released_weights
from uniformer.engine.config import resolve_config, task_of
from uniformer.models.checkpoint import load_state, read_checkpoint
from uniformer.runtime import DistContext, autocast_context, feed, setup_distributed
from uniformer.tasks import MetricAccumulator, Metrics

__all__ = ["EvalReport", "evaluate", "run_evaluation"]

logger = logging.getLogger("uniformer.engine")


@dataclass
class EvalReport:
    metrics: Metrics
    output_dir: Path | None
    summary: str


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
        options=task.test_options(cfg),
    )
    seconds = time.perf_counter() - start
    out_dir = Path(cfg.eval.output_dir or Path(cfg.output_dir) / "eval")
    summary = task.write_report(out_dir, metrics, cfg) if ctx.is_main else ""
    summary += f"; {len(dataset) / seconds:.1f} views/s; report in {out_dir}"
    return EvalReport(metrics=metrics, output_dir=out_dir if ctx.is_main else None, summary=summary)
