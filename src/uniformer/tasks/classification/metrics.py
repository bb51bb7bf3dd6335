"""Classification metrics: the official multi-view test aggregated per video, accuracy, the report files.

:class:`ViewScores` is the task's metric accumulator. The items of a test-mode dataset are views (item ``i`` is
view ``i % num_views`` of video ``i // num_views``, the layout of :class:`uniformer.data.VideoDataset` in test
mode); it keeps all views of a video on one process and returns one score vector per video:

* ``aggregate="sum"`` (default, as the official PySlowFast test with ``ENSEMBLE_METHOD: sum``): the sum of the
  views' logits. Its arg-max equals that of the mean of logits.
* ``aggregate="softmax_mean"``: the mean over views of the softmax probabilities.

A video with any unreadable view (``valid == False``) gets no score (NaN) and is listed in ``failed`` with the
reason; metrics report it separately and also count it as an error (``top1_counting_failed``), so a broken file
can never raise accuracy by disappearing. Under ``torchrun`` the per-video sums are all-reduced (sums, not
per-process averages), so every process returns the complete result.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from uniformer._fileio import atomic_write, atomic_write_text
from uniformer.runtime import DistContext
from uniformer.tasks.base import MetricAccumulator, Metrics

__all__ = [
    "AGGREGATES",
    "ClassificationResult",
    "EvalMetrics",
    "TimeShuffled",
    "VideoScores",
    "ViewScores",
    "compute_metrics",
    "write_report",
]

AGGREGATES = ("sum", "softmax_mean")


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
class ClassificationResult:
    """What :meth:`ViewScores.compute` returns as :attr:`Metrics.detail`."""

    scores: VideoScores
    metrics: EvalMetrics
    class_names: list[str]


class ViewScores(MetricAccumulator):
    """Per-video sums of view logits over a test-mode dataset (see the module docstring).

    ``label_map`` (dataset class index -> model class index) lets a test set whose classes are named like the
    model's but ordered differently be scored (``eval.match_classes=by_name``).
    """

    def __init__(
        self,
        dataset: Any,
        *,
        aggregate: str = "sum",
        class_names: list[str] | None = None,
        label_map: list[int] | None = None,
    ) -> None:
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be 'sum' or 'softmax_mean', got {aggregate!r}")
        self.num_videos, self.num_views = dataset.num_videos, dataset.num_views
        self.aggregate, self.class_names, self.label_map = aggregate, class_names, label_map
        self.sums: torch.Tensor | None = None
        self.valid_views = torch.zeros(self.num_videos)
        self.labels: dict[int, int] = {}
        self.paths: dict[int, str] = {}
        self.failed: dict[int, str] = {}

    def indices(self, rank: int, world_size: int) -> list[int]:
        videos = range(rank, self.num_videos, world_size)
        return [video * self.num_views + view for video in videos for view in range(self.num_views)]

    def update(self, output: torch.Tensor, batch: dict[str, Any]) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 2:
            raise ValueError(f"the model must return logits (B, classes) in eval mode; got {type(output).__name__}")
        logits = output.float().cpu()
        if self.aggregate == "softmax_mean":
            logits = logits.softmax(dim=-1)
        if self.sums is None:
            self.sums = torch.zeros(self.num_videos, logits.shape[1])
        index, valid = batch["index"].cpu(), batch["valid"].cpu()
        self.sums.index_add_(0, index, logits * valid.unsqueeze(1))
        self.valid_views.index_add_(0, index, valid.float())
        for video, label, path, ok, error in zip(
            index.tolist(), batch["label"].tolist(), batch["path"], valid.tolist(), batch["error"], strict=True
        ):
            self.labels[video], self.paths[video] = label, path
            if not ok:
                self.failed.setdefault(video, error)

    def scores(self, comm: DistContext | None = None) -> VideoScores:
        """The per-video scores of every process (a collective call under DDP)."""
        comm = comm or DistContext()
        width = max(comm.all_gather_object(0 if self.sums is None else self.sums.shape[1]))
        if width == 0:
            raise ValueError("the evaluation dataset is empty")
        sums = self.sums if self.sums is not None else torch.zeros(self.num_videos, width)
        sums, valid_views = comm.all_reduce_sum(sums.clone()), comm.all_reduce_sum(self.valid_views.clone())
        labels, paths, failed = {}, {}, {}
        for part in comm.all_gather_object((self.labels, self.paths, self.failed)):
            labels.update(part[0])
            paths.update(part[1])
            failed.update(part[2])
        if len(paths) != self.num_videos:
            raise RuntimeError(f"evaluation covered {len(paths)} of {self.num_videos} videos")
        if self.aggregate == "softmax_mean":
            sums /= valid_views.clamp(min=1).unsqueeze(1)
        for video in failed:
            sums[video] = float("nan")
        label_list = [labels[v] for v in range(self.num_videos)]
        if self.label_map is not None:
            label_list = [self.label_map[label] if label >= 0 else label for label in label_list]
        return VideoScores(
            scores=sums,
            labels=torch.tensor(label_list, dtype=torch.long),
            paths=[paths[v] for v in range(self.num_videos)],
            failed=dict(sorted(failed.items())),
            aggregate=self.aggregate,
            num_views=self.num_views,
        )

    def compute(self, comm: DistContext | None = None) -> Metrics:
        scores = self.scores(comm)
        num_classes = scores.scores.shape[1]
        names = self.class_names if self.class_names and len(self.class_names) == num_classes else None
        names = names or [str(i) for i in range(num_classes)]
        metrics = compute_metrics(scores, names)
        values = {"top1": metrics.top1, "top5": metrics.top5, "videos": metrics.num_scored}
        values["failed"] = metrics.num_failed
        return Metrics(primary=metrics.top1, values=values, detail=ClassificationResult(scores, metrics, names))


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
