"""Image and video classification: the first task on the engine's seam.

The task owns the ``data``, ``loss`` and ``mixup`` config sections and the classification fields of ``eval``,
builds its datasets (:mod:`.data`), trains with Mixup/CutMix and (label-smoothed) cross entropy, scores the
official multi-view test (:mod:`.metrics`), stores class names and views with the weights, and shows a
prediction as names and probabilities (:mod:`.predict`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

from uniformer.data import VideoMixup, collate_videos
from uniformer.models.checkpoint import CheckpointError, CheckpointFile
from uniformer.models.factory import create_model
from uniformer.models.zoo.catalog import model_info
from uniformer.tasks.base import LabelMap, Metrics, Objective, Task
from uniformer.tasks.classification.config import (
    DataConfig,
    LossConfig,
    MixupConfig,
    class_names,
    clip_spec,
    resolve_data,
)
from uniformer.tasks.classification.data import build_dataset, has_validation
from uniformer.tasks.classification.metrics import AGGREGATES, TimeShuffled, ViewScores, write_report
from uniformer.tasks.classification.predict import ClassificationPredictTask

__all__ = ["TASK", "ClassificationTask", "ClassificationEvalConfig"]

logger = logging.getLogger("uniformer.tasks")


@dataclass
class ClassificationEvalConfig:
    """The classification fields of the ``eval`` section (next to the engine's checkpoint, ema, batch_size...)."""

    aggregate: str = "sum"  # "sum" of logits over views (official) or "softmax_mean"
    shuffle_frames: bool = False  # control experiment: every view's frames in a random (seeded) time order
    match_classes: str = "strict"  # "strict": the test set's classes must be the weights'; "by_name": map them


class _Classify(Objective):
    """Mixup/CutMix (soft targets) or plain labels, then (label-smoothed or soft-target) cross entropy.

    ``two_heads`` (the light models): the loss is 0.5 x that of the average-pool head + 0.5 x that of the
    score-token head, both against the same targets (official ``engine_light.py`` / ``train_net_cls.py``).
    """

    def __init__(self, mixup: Callable[..., Any] | None, criterion: nn.Module, two_heads: bool = False) -> None:
        self.mixup, self.criterion, self.two_heads = mixup, criterion, two_heads
        self.item_multiple = 1 if mixup is None else 2  # Mixup/CutMix pair the items of a micro-batch

    def prepare(self, batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = TASK.model_inputs(batch).to(device, non_blocking=True)
        targets = batch["label"].to(device, non_blocking=True)
        if self.mixup is not None:
            inputs, targets = self.mixup(inputs, targets)
        return inputs, targets

    def forward(self, model: nn.Module, inputs: torch.Tensor) -> Any:
        return model(inputs, train_outputs=True) if self.two_heads else model(inputs)

    def loss(self, output: Any, targets: torch.Tensor) -> torch.Tensor:
        if self.two_heads:
            if not isinstance(output, tuple) or len(output) != 2:
                raise ValueError(f"a light model must return its two heads' logits; got {type(output).__name__}")
            return 0.5 * self._cross_entropy(output[0], targets) + 0.5 * self._cross_entropy(output[1], targets)
        return self._cross_entropy(output, targets)

    def _cross_entropy(self, output: Any, targets: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != 2:
            raise ValueError(f"the model must return logits (B, classes) in training mode; got {type(output).__name__}")
        return self.criterion(output.float(), targets)


class ClassificationTask(ClassificationPredictTask, Task):
    name = "classification"
    sections = {"data": DataConfig, "loss": LossConfig, "mixup": MixupConfig, "eval": ClassificationEvalConfig}
    primary_metric = "top1"
    metric_label = "top-1 (%)"

    def resolve(self, cfg: DictConfig) -> None:
        resolve_data(cfg)
        if cfg.eval.aggregate not in AGGREGATES:
            raise ValueError(
                f"config: eval.aggregate must be one of {', '.join(AGGREGATES)}; got {cfg.eval.aggregate!r}"
            )
        if cfg.eval.match_classes not in ("strict", "by_name"):
            raise ValueError(f"config: eval.match_classes must be strict or by_name; got {cfg.eval.match_classes!r}")

    def build_dataset(self, cfg: DictConfig, split: str) -> torch.utils.data.Dataset:
        dataset = build_dataset(cfg, split)
        if split == "test" and cfg.eval.shuffle_frames:
            if model_info(cfg.model.name).task != "video":
                raise ValueError("config: eval.shuffle_frames needs a video model (images have no time order)")
            dataset = TimeShuffled(dataset, cfg.seed)
        return dataset

    def has_validation(self, cfg: DictConfig) -> bool:
        return has_validation(cfg)

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_videos(items)

    def model_inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["video"]

    def num_outputs(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> int:
        """``model.num_classes``, else the training data's class count, else the zoo entry's. A configured count
        below the data's is an error (labels would fall outside the head); above it, a warning."""
        found = getattr(train_set, "num_classes", 0) or 0
        asked = cfg.model.num_classes
        if asked is not None and found and asked != found:
            if asked < found:
                raise ValueError(
                    f"config: model.num_classes={asked} but the training data has {found} classes (labels up to "
                    f"{found - 1}); drop model.num_classes to use the data's count"
                )
            logger.warning(
                "model.num_classes=%d but the training data has %d classes: %d outputs will never be a target",
                asked,
                found,
                asked - found,
            )
        return asked or found or model_info(cfg.model.name).num_classes

    def build_model(self, cfg: DictConfig, num_outputs: int) -> nn.Module:
        """The zoo architecture ``model.name`` with ``num_outputs`` classes, drop path and ``model.overrides``."""
        overrides = dict(cfg.model.overrides)
        for key in ("num_classes", "drop_path_rate", "pretrained", "checkpoint_path"):
            if key in overrides:
                setting = key.removesuffix("_path")
                raise ValueError(
                    f"config: model.overrides.{key} is not a constructor override; set model.{setting} instead"
                )
        try:
            return create_model(
                cfg.model.name, num_classes=num_outputs, drop_path_rate=cfg.model.drop_path_rate, **overrides
            )
        except TypeError as exc:
            raise ValueError(f"config: model.overrides: {exc}") from None

    def objective(self, cfg: DictConfig, num_outputs: int, micro_batch: int) -> Objective:
        mix = cfg.mixup
        mixup: Callable[..., Any] | None = None
        if mix.prob > 0 and (mix.mixup_alpha > 0 or mix.cutmix_alpha > 0):
            if micro_batch % 2:
                raise ValueError(
                    f"config: Mixup/CutMix pairs clips within a micro-batch, which must be even; got {micro_batch} "
                    "(trainer.batch_size over processes x trainer.accum_steps); or set mixup.prob=0"
                )
            kwargs = dict(
                mixup_alpha=mix.mixup_alpha,
                cutmix_alpha=mix.cutmix_alpha,
                prob=mix.prob,
                switch_prob=mix.switch_prob,
                label_smoothing=cfg.loss.label_smoothing,
            )
            video = model_info(cfg.model.name).task == "video"
            mixup = VideoMixup(num_outputs, **kwargs) if video else Mixup(num_classes=num_outputs, **kwargs)
        if mixup is not None:
            criterion: nn.Module = SoftTargetCrossEntropy()  # smoothing is inside the soft targets
        elif cfg.loss.label_smoothing > 0:
            criterion = LabelSmoothingCrossEntropy(smoothing=cfg.loss.label_smoothing)
        else:
            criterion = nn.CrossEntropyLoss()
        architecture = {**model_info(cfg.model.name).model_args, **cfg.model.overrides}
        return _Classify(mixup, criterion, two_heads=bool(architecture.get("light")))

    def metric(self, cfg: DictConfig, dataset: torch.utils.data.Dataset, label_map: LabelMap = None) -> ViewScores:
        names = getattr(dataset, "classes", None)
        return ViewScores(dataset, aggregate=cfg.eval.aggregate, class_names=names, label_map=label_map)

    def weights_metadata(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> dict[str, Any]:
        names = getattr(train_set, "classes", None)
        return {"classes": list(names) if names else None, "clip": clip_spec(cfg.model.name, cfg.data).to_dict()}

    def eval_outputs(self, cfg: DictConfig, checkpoint: CheckpointFile) -> int:
        if checkpoint.num_classes is None and cfg.model.num_classes is None:
            raise CheckpointError(
                f"{checkpoint.path}: no classifier (head.weight) in the checkpoint; set model.num_classes"
            )
        return cfg.model.num_classes or checkpoint.num_classes

    def check_eval_data(
        self, cfg: DictConfig, checkpoint: CheckpointFile, dataset: torch.utils.data.Dataset
    ) -> LabelMap:
        """Refuse a test set whose classes are not the weights': another count, or other names (in another
        order too). With ``eval.match_classes=by_name`` the test labels are mapped onto the weights' classes by
        name instead; returns that mapping (or ``None``)."""
        classes = checkpoint.num_classes
        names = checkpoint.class_names or class_names(classes, model=cfg.model.name)
        data_names = getattr(dataset, "classes", None)
        data_count = getattr(dataset, "num_classes", 0) or 0
        source = f"checkpoint={checkpoint.path}"
        if cfg.eval.match_classes == "by_name":
            if data_names is None:
                raise ValueError("eval.match_classes=by_name needs a test set with class names (a labels file)")
            unknown = [n for n in data_names if n not in names]
            if unknown:
                raise ValueError(f"{source}: test classes not among the weights' classes: {', '.join(unknown[:10])}")
            return [names.index(n) for n in data_names]
        if data_count and data_count != classes and not (data_names is None and data_count < classes):
            raise ValueError(
                f"{source} has {classes} classes but the test set has {data_count}"
                + (f" ({', '.join(data_names[:8])}{', ...' if len(data_names) > 8 else ''})" if data_names else "")
                + "; evaluate on data of the same classes, or map them with eval.match_classes=by_name"
            )
        if data_names is not None and checkpoint.class_names is not None and list(data_names) != names:
            differ = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(data_names, names, strict=False)) if a != b]
            raise ValueError(
                f"{source}: the test set's class names differ from the weights' ({'; '.join(differ[:5])}); "
                "evaluate on data of the same classes, or map them with eval.match_classes=by_name"
            )
        return None

    def write_report(self, out_dir: Path, metrics: Metrics, cfg: DictConfig) -> str:
        result = metrics.detail
        write_report(out_dir, result.scores, result.metrics, result.class_names)
        m = result.metrics
        views = f"{cfg.data.test_clips}x{cfg.data.test_crops}" if model_info(cfg.model.name).task == "video" else "1"
        top5 = f", top-5 {m.top5:.2f}%" if m.top5 is not None else ""
        failed = ""
        if m.num_failed:
            failed = (
                f"; {m.num_failed} unreadable video(s) listed in predictions.csv "
                f"(top-1 counting them as errors: {m.top1_counting_failed:.2f}%)"
            )
        return (
            f"top-1 {m.top1:.2f}%{top5}, mean class accuracy {m.mean_class_accuracy:.2f}% over {m.num_scored} "
            f"videos ({views} views, {result.scores.aggregate}"
            f"{', frames shuffled in time' if cfg.eval.shuffle_frames else ''}){failed}"
        )


TASK = ClassificationTask()
