"""The official multi-view test: run a model over every view of every video, aggregate per video, score.

:func:`score_videos` is the reusable core (validation during training, ``uniformer eval``, prediction): it
takes a test-mode dataset whose item ``i`` is view ``i % num_views`` of video ``i // num_views`` (the layout of
:class:`uniformer.data.VideoDataset` in test mode) and returns one score vector per video:

* ``aggregate="sum"`` (default, as the official PySlowFast test with ``ENSEMBLE_METHOD: sum``): the sum of the
  views' logits. Its arg-max equals that of the mean of logits.
* ``aggregate="softmax_mean"``: the mean over views of the softmax probabilities.

A video with any unreadable view (``valid == False``) gets no score (NaN) and is listed in ``failed`` with the
reason; metrics report it separately and also count it as an error (``top1_counting_failed``), so a broken file
can never raise accuracy by disappearing. Under ``torchrun`` each process scores a share of the videos and
the per-video sums are all-reduced, so every process returns the complete result.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from omegaconf import DictConfig

from uniformer._fileio import atomic_write, atomic_write_text
from uniformer.engine.distributed import DistContext, all_reduce_sum, autocast_context
from uniformer.engine.logging import progress_bar

__all__ = [
    "TimeShuffled",
    "EvalMetrics",
    "EvalReport",
    "VideoScores",
    "class_names",
    "compute_metrics",
    "evaluate",
    "score_videos",
    "write_report",
]

logger = logging.getLogger("uniformer.engine")


class TimeShuffled(torch.utils.data.Dataset):
    """A test-mode video dataset whose every view shows its frames in a random order: the control that tells
    whether a model uses time. The permutation of item ``i`` is drawn from ``(seed, i)`` and is never the
    identity, so the result does not depend on workers or processes."""

    def __init__(self, dataset: Any, seed: int = 0) -> None:
        self.dataset, self.seed = dataset, seed
        self.num_videos, self.num_views = dataset.num_videos, dataset.num_views
        self.num_clips, self.classes = getattr(dataset, "num_clips", 1), getattr(dataset, "classes", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        frames = item["video"].shape[1]  # (C, T, H, W)
        if frames > 1:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            order = torch.randperm(frames, generator=generator)
            while torch.equal(order, torch.arange(frames)):
                order = torch.randperm(frames, generator=generator)
            item["video"] = item["video"][:, order]
        return item


@dataclass
class VideoScores:
    """Per-video result of a multi-view test."""

    scores: torch.Tensor  # (V, C) float32 aggregated over views; NaN rows for failed videos
    labels: torch.Tensor  # (V,) int64, -1 when unknown
    paths: list[str]
    failed: dict[int, str]  # video index -> reason one of its views could not be read
    aggregate: str
    num_views: int


@dataclass
class EvalMetrics:
    """Video-level accuracy. ``scored`` videos are labelled and readable; percentages are over them, except
    ``top1_counting_failed`` which also counts every failed labelled video as a wrong answer."""

    num_videos: int
    num_scored: int
    num_failed: int
    num_unlabelled: int
    top1: float
    top5: float | None
    top1_counting_failed: float
    mean_class_accuracy: float
    per_class: list[dict[str, Any]] = field(default_factory=list)
    confusion: torch.Tensor | None = None  # (C, C) int64, rows: true class, columns: predicted class

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("confusion")
        return data


@dataclass
class EvalReport:
    metrics: EvalMetrics
    scores: VideoScores
    output_dir: Path | None
    summary: str


@torch.no_grad()
def score_videos(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    *,
    batch_size: int = 8,
    ctx: DistContext | None = None,
    precision: str = "fp32",
    aggregate: str = "sum",
    num_workers: int = 0,
    progress: bool = False,
) -> VideoScores:
    """Run ``model`` (in eval mode; its mode is restored after) over all views of ``dataset`` and aggregate.

    Args:
        model: maps a batch ``(B, C, [T,] H, W)`` to logits ``(B, classes)``; already on ``ctx.device``.
        dataset: test-mode items (``video``, ``label``, ``index``, ``valid``, ``error``, ``path``) with
            ``num_videos`` and ``num_views`` attributes.
        batch_size: views per forward pass (per process).
        ctx: process group and device (default: one CPU process).
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast for the forward pass.
        aggregate: ``"sum"`` of logits (official) or ``"softmax_mean"``.
        num_workers: DataLoader workers.
        progress: show a progress bar (rank 0).
    """
    from uniformer.data import collate_videos

    if aggregate not in ("sum", "softmax_mean"):
        raise ValueError(f"aggregate must be 'sum' or 'softmax_mean', got {aggregate!r}")
    ctx = ctx or DistContext()
    num_videos, num_views = dataset.num_videos, dataset.num_views  # type: ignore[attr-defined]
    mine = range(ctx.rank, num_videos, ctx.world_size)
    items = [video * num_views + view for video in mine for view in range(num_views)]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, items),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_videos,
        pin_memory=ctx.device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    sums: torch.Tensor | None = None
    valid_views = torch.zeros(num_videos, device=ctx.device)
    labels: dict[int, int] = {}
    paths: dict[int, str] = {}
    failed: dict[int, str] = {}
    bar = progress_bar(len(loader), desc="eval", enabled=progress and ctx.is_main, unit="batch")
    try:
        for batch in loader:
            logits = _forward(model, batch["video"].to(ctx.device, non_blocking=True), precision)
            if aggregate == "softmax_mean":
                logits = logits.softmax(dim=-1)
            if sums is None:
                sums = torch.zeros(num_videos, logits.shape[1], device=ctx.device)
            index = batch["index"].to(ctx.device)
            valid = batch["valid"].to(ctx.device)
            sums.index_add_(0, index, logits * valid.unsqueeze(1))
            valid_views.index_add_(0, index, valid.float())
            for video, label, path, ok, error in zip(
                batch["index"].tolist(),
                batch["label"].tolist(),
                batch["path"],
                batch["valid"].tolist(),
                batch["error"],
                strict=True,
            ):
                labels[video], paths[video] = label, path
                if not ok:
                    failed.setdefault(video, error)
            bar.update()
    finally:
        bar.close()
        model.train(was_training)
    sums = _complete(sums, num_videos, ctx)
    all_reduce_sum(sums, ctx)
    all_reduce_sum(valid_views, ctx)
    labels, paths, failed = _gather_dicts((labels, paths, failed), ctx)
    if len(paths) != num_videos:
        raise RuntimeError(f"evaluation covered {len(paths)} of {num_videos} videos")
    scores = sums.float().cpu()
    if aggregate == "softmax_mean":
        scores /= valid_views.cpu().clamp(min=1).unsqueeze(1)
    for video in failed:
        scores[video] = float("nan")
    return VideoScores(
        scores=scores,
        labels=torch.tensor([labels[v] for v in range(num_videos)], dtype=torch.long),
        paths=[paths[v] for v in range(num_videos)],
        failed=dict(sorted(failed.items())),
        aggregate=aggregate,
        num_views=num_views,
    )


def _forward(model: nn.Module, video: torch.Tensor, precision: str) -> torch.Tensor:
    with autocast_context(precision, video.device):
        out = model(video)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ValueError(f"the model must return logits (B, classes) in eval mode; got {type(out).__name__}")
    return out.float()


def _complete(sums: torch.Tensor | None, num_videos: int, ctx: DistContext) -> torch.Tensor:
    """A process that had no videos still needs a zero tensor of the right width for the all-reduce."""
    width = torch.tensor([0 if sums is None else sums.shape[1]], device=ctx.device)
    if ctx.distributed:
        dist.all_reduce(width, op=dist.ReduceOp.MAX)
    if sums is None:
        if int(width) == 0:
            raise ValueError("the evaluation dataset is empty")
        sums = torch.zeros(num_videos, int(width), device=ctx.device)
    return sums


def _gather_dicts(local: tuple[dict, ...], ctx: DistContext) -> tuple[dict, ...]:
    if not ctx.distributed:
        return local
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, local)
    merged: tuple[dict, ...] = tuple({} for _ in local)
    for part in gathered:
        for target, source in zip(merged, part, strict=True):
            target.update(source)
    return merged


def compute_metrics(scores: VideoScores, class_names: list[str] | None = None) -> EvalMetrics:
    """Top-1/top-5, per-class accuracy and the confusion matrix over the labelled, readable videos."""
    num_videos, num_classes = scores.scores.shape
    labelled = scores.labels >= 0
    failed = torch.zeros(num_videos, dtype=torch.bool)
    if scores.failed:
        failed[list(scores.failed)] = True
    use = labelled & ~failed
    if (scores.labels[use] >= num_classes).any():
        raise ValueError(f"labels go up to {int(scores.labels.max())} but the model has only {num_classes} classes")
    logits, labels = scores.scores[use], scores.labels[use]
    count = int(use.sum())
    top1_hits = logits.argmax(dim=1) == labels if count else torch.zeros(0, dtype=torch.bool)
    top1 = 100.0 * float(top1_hits.float().mean()) if count else 0.0
    top5 = None
    if num_classes >= 5:
        top5 = (
            100.0 * float((logits.topk(5, dim=1).indices == labels.unsqueeze(1)).any(1).float().mean())
            if count
            else 0.0
        )
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    if count:
        confusion.index_put_((labels, logits.argmax(dim=1)), torch.ones(count, dtype=torch.long), accumulate=True)
    names = (
        class_names
        if class_names is not None and len(class_names) == num_classes
        else [str(i) for i in range(num_classes)]
    )
    per_class = []
    for c in range(num_classes):
        total = int(confusion[c].sum())
        per_class.append(
            {
                "class": c,
                "name": names[c],
                "videos": total,
                "correct": int(confusion[c, c]),
                "accuracy": 100.0 * int(confusion[c, c]) / total if total else None,
            }
        )
    present = [p["accuracy"] for p in per_class if p["accuracy"] is not None]
    num_failed_labelled = int((labelled & failed).sum())
    return EvalMetrics(
        num_videos=num_videos,
        num_scored=count,
        num_failed=len(scores.failed),
        num_unlabelled=int((~labelled).sum()),
        top1=top1,
        top5=top5,
        top1_counting_failed=100.0 * int(top1_hits.sum()) / (count + num_failed_labelled)
        if count + num_failed_labelled
        else 0.0,
        mean_class_accuracy=sum(present) / len(present) if present else 0.0,
        per_class=per_class,
        confusion=confusion,
    )


def _csv(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def write_report(
    out_dir: str | os.PathLike[str], scores: VideoScores, metrics: EvalMetrics, class_names: list[str] | None = None
) -> dict[str, Path]:
    """Write ``metrics.json``, ``predictions.csv`` (one row per video, failed ones included with their reason),
    ``per_class.csv``, ``confusion_matrix.csv`` and ``.png`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    num_classes = scores.scores.shape[1]
    names = (
        class_names
        if class_names is not None and len(class_names) == num_classes
        else [str(i) for i in range(num_classes)]
    )
    paths = {
        name: out / name
        for name in ("metrics.json", "predictions.csv", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png")
    }
    summary = {
        **metrics.to_dict(),
        "aggregate": scores.aggregate,
        "views_per_video": scores.num_views,
        "failed_videos": {scores.paths[v]: r for v, r in scores.failed.items()},
    }
    atomic_write_text(paths["metrics.json"], json.dumps(summary, indent=2) + "\n")
    k = min(5, num_classes)
    rows: list[list[Any]] = [
        ["video", "path", "label", "label_name", "prediction", "prediction_name", "score", f"top{k}", "status"]
    ]
    for v in range(len(scores.paths)):
        label = int(scores.labels[v])
        label_name = names[label] if 0 <= label < num_classes else ""
        if v in scores.failed:
            rows.append([v, scores.paths[v], label, label_name, "", "", "", "", f"failed: {scores.failed[v]}"])
            continue
        top = scores.scores[v].topk(k)
        pred = int(top.indices[0])
        rows.append(
            [
                v,
                scores.paths[v],
                label,
                label_name,
                pred,
                names[pred],
                f"{float(top.values[0]):.6g}",
                " ".join(map(str, top.indices.tolist())),
                "ok",
            ]
        )
    atomic_write_text(paths["predictions.csv"], _csv(rows))
    atomic_write_text(
        paths["per_class.csv"],
        _csv(
            [["class", "name", "videos", "correct", "accuracy"]]
            + [
                [
                    p["class"],
                    p["name"],
                    p["videos"],
                    p["correct"],
                    "" if p["accuracy"] is None else f"{p['accuracy']:.4f}",
                ]
                for p in metrics.per_class
            ]
        ),
    )
    confusion = (
        metrics.confusion if metrics.confusion is not None else torch.zeros(num_classes, num_classes, dtype=torch.long)
    )
    atomic_write_text(
        paths["confusion_matrix.csv"],
        _csv([["true\\predicted", *names]] + [[names[i], *row] for i, row in enumerate(confusion.tolist())]),
    )
    _plot_confusion(paths["confusion_matrix.png"], confusion, names)
    return paths


def _plot_confusion(path: Path, confusion: torch.Tensor, names: list[str]) -> None:
    """Row-normalised confusion matrix; class names and counts are drawn when there are few classes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    num_classes = len(names)
    rows = confusion.float() / confusion.sum(dim=1, keepdim=True).clamp(min=1)
    side = min(4 + 0.45 * num_classes, 16)
    figure = Figure(figsize=(side, side), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    figure.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    if num_classes <= 30:
        ax.set_xticks(range(num_classes), names, rotation=90, fontsize=8)
        ax.set_yticks(range(num_classes), names, fontsize=8)
        for i in range(num_classes):
            for j in range(num_classes):
                if confusion[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(confusion[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black",
                    )
    atomic_write(path, lambda tmp: FigureCanvasAgg(figure).print_png(tmp))


def class_names(dataset: Any, model_name: str | None, num_classes: int) -> list[str]:
    """Names for the report: the dataset's, else the zoo entry's labels when the class count matches, else numbers."""
    names = getattr(dataset, "classes", None)
    if names is not None and len(names) == num_classes:
        return list(names)
    if model_name is not None:
        from uniformer.models.registry import model_info

        info = model_info(model_name)
        if info.num_classes == num_classes:
            return info.labels
    return [str(i) for i in range(num_classes)]


def _checkpoint_classes(path: Path) -> int:
    from uniformer.models.checkpoint import head_classes, read_state_dict

    classes = head_classes(read_state_dict(path))
    if classes is None:
        raise ValueError(f"{path}: no classifier (head.weight) in the checkpoint; set model.num_classes")
    return classes


def evaluate(cfg: DictConfig) -> EvalReport:
    """``uniformer eval``: the official multi-view test of ``eval.checkpoint`` on ``data.val_list``.

    Views are the model's zoo test views (``data.test_clips x test_crops``, e.g. 4x1 for Kinetics, 1x3 for
    Something-Something) unless overridden. The report goes to ``eval.output_dir`` (default
    ``<output_dir>/eval``), written by rank 0 only.
    """
    from uniformer.engine.build import build_dataset, build_model, released_weights
    from uniformer.engine.checkpointing import load_weights
    from uniformer.engine.config import resolve_config
    from uniformer.engine.distributed import setup_distributed

    cfg = resolve_config(cfg)
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
    dataset = build_dataset(cfg, "test")
    if cfg.eval.shuffle_frames:
        dataset = TimeShuffled(dataset, cfg.seed)
    num_classes = cfg.model.num_classes or _checkpoint_classes(path)
    model = build_model(cfg, num_classes)
    load_weights(model, path, ema=cfg.eval.ema)
    model.to(ctx.device)
    start = time.perf_counter()
    scores = score_videos(
        model,
        dataset,
        batch_size=cfg.eval.batch_size,
        ctx=ctx,
        precision=cfg.trainer.precision,
        aggregate=cfg.eval.aggregate,
        num_workers=cfg.data.num_workers,
        progress=cfg.trainer.progress,
    )
    seconds = time.perf_counter() - start
    names = class_names(dataset, cfg.model.name, num_classes)
    metrics = compute_metrics(scores, names)
    out_dir = Path(cfg.eval.output_dir or Path(cfg.output_dir) / "eval")
    if ctx.is_main:
        write_report(out_dir, scores, metrics, names)
    views = f"{cfg.data.test_clips}x{cfg.data.test_crops}" if hasattr(dataset, "num_clips") else "1"
    top5 = f", top-5 {metrics.top5:.2f}%" if metrics.top5 is not None else ""
    failed = ""
    if metrics.num_failed:
        failed = (
            f"; {metrics.num_failed} unreadable video(s) listed in predictions.csv "
            f"(top-1 counting them as errors: {metrics.top1_counting_failed:.2f}%)"
        )
    summary = (
        f"top-1 {metrics.top1:.2f}%{top5}, mean class accuracy {metrics.mean_class_accuracy:.2f}% "
        f"over {metrics.num_scored} videos ({views} views, {scores.aggregate}"
        f"{', frames shuffled in time' if cfg.eval.shuffle_frames else ''}){failed}; "
        f"{len(dataset) / seconds:.1f} views/s; report in {out_dir}"
    )
    return EvalReport(metrics=metrics, scores=scores, output_dir=out_dir if ctx.is_main else None, summary=summary)
