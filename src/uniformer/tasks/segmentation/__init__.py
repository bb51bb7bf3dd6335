"""Semantic segmentation: the dense UniFormer with an UperNet or Semantic FPN head, trained and scored as mmseg.

The task owns the ``data``, ``loss`` and ``head`` config sections (:mod:`.config`), reads image/mask pairs in a
plain folder layout or ADE20K's (:mod:`.data`), trains with cross entropy on the decode head plus
``loss.aux_weight`` times that of the auxiliary head, scores mIoU / aAcc / mAcc over the whole set
(:mod:`.metrics`) and predicts label maps with class shares and colour overlays (:mod:`.predict`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import DictConfig

from uniformer.data import read_classes
from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.segmentor import build_segmentor
from uniformer.models.zoo.catalog import model_info
from uniformer.tasks.base import LabelMap, Metrics, Objective, Task, refuse_other_names
from uniformer.tasks.segmentation.config import (
    DataConfig,
    EvalConfig,
    HeadConfig,
    LossConfig,
    inference_config,
    resolve,
)
from uniformer.tasks.segmentation.data import (
    EvalTransform,
    SegmentationDataset,
    TrainTransform,
    ade20k_pairs,
    collate_pairs,
    folder_pairs,
)
from uniformer.tasks.segmentation.metrics import IoUAccumulator, write_report
from uniformer.tasks.segmentation.predict import SegmentationPredictTask

__all__ = ["TASK", "SegmentationTask", "segmentation_loss"]

logger = logging.getLogger("uniformer.tasks")


def segmentation_loss(
    logits: torch.Tensor, mask: torch.Tensor, ignore_index: int, class_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Pixel cross entropy as mmseg 0.x's ``CrossEntropyLoss`` (``avg_non_ignore=False``): the mean over all
    pixels, ignored ones counting zero (so an all-ignore crop gives 0, not NaN); with ``class_weight`` each
    pixel's loss is multiplied by its true class's weight before that mean, as mmseg's."""
    weight = None if class_weight is None else class_weight.to(logits.device)
    return F.cross_entropy(logits.float(), mask, weight=weight, ignore_index=ignore_index, reduction="none").mean()


class _Segment(Objective):
    """Cross entropy on ``"out"`` plus ``aux_weight`` times that on ``"aux"`` when the model has that head."""

    def __init__(self, aux_weight: float, ignore_index: int, class_weight: Sequence[float] | None = None) -> None:
        self.aux_weight, self.ignore_index = aux_weight, ignore_index
        self.class_weight = None if class_weight is None else torch.tensor(list(class_weight), dtype=torch.float32)

    def prepare(self, batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["image"].to(device, non_blocking=True), batch["mask"].to(device, non_blocking=True)

    def loss(self, output: Any, targets: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, dict) or "out" not in output:
            raise ValueError(
                f"the model must return {{'out': logits, 'aux': ...}} when training; got {type(output).__name__}"
            )
        loss = segmentation_loss(output["out"], targets, self.ignore_index, self.class_weight)
        if "aux" in output and self.aux_weight > 0:
            aux = segmentation_loss(output["aux"], targets, self.ignore_index, self.class_weight)
            loss = loss + self.aux_weight * aux
        return loss


def _class_names(cfg: DictConfig) -> list[str]:
    """The dataset's class names: ``data.classes_file``, else ``root/classes.txt``, else (ADE20K) the zoo's."""
    data = cfg.data
    if data.classes_file is None and data.format == "ade20k":
        return model_info(cfg.model.name).labels
    path = os.path.join(data.root, data.classes_file or "classes.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config: no class names file {path} (set data.classes_file, relative to data.root)")
    return read_classes(path)


class SegmentationTask(SegmentationPredictTask, Task):
    name = "segmentation"
    sections = {"data": DataConfig, "loss": LossConfig, "head": HeadConfig, "eval": EvalConfig}
    primary_metric = "miou"
    metric_label = "mIoU (%)"

    def resolve(self, cfg: DictConfig) -> None:
        """Fill the data defaults and ``model.num_classes`` (the class names' count, which ``eval`` builds the
        model with) and check ``loss.class_weight`` against it."""
        resolve(cfg)
        count = len(_class_names(cfg))
        if cfg.model.num_classes is not None and cfg.model.num_classes != count:
            raise ValueError(f"config: model.num_classes={cfg.model.num_classes} but the data has {count} classes")
        cfg.model.num_classes = count
        weights = cfg.loss.class_weight
        if weights is not None and (len(weights) != count or min(weights) < 0):
            raise ValueError(
                f"config: loss.class_weight needs {count} weights >= 0 (one per class); got {list(weights)}"
            )

    def build_dataset(self, cfg: DictConfig, split: str) -> torch.utils.data.Dataset:
        """``"train"`` (augmented crops of ``data.train_split``) or ``"val"``/``"test"`` (``data.val_split``)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        data, train = cfg.data, split == "train"
        pairs_of = ade20k_pairs if data.format == "ade20k" else folder_pairs
        pairs = pairs_of(data.root, data.train_split if train else data.val_split)
        if train:
            transform: Any = TrainTransform(
                scale=data.scale,
                ratio_range=data.ratio_range,
                crop_size=data.crop_size,
                cat_max_ratio=data.cat_max_ratio,
                flip=data.flip,
                color_jitter=data.color_jitter,
                ignore_index=data.ignore_index,
                mean=data.mean,
                std=data.std,
            )
        else:
            transform = EvalTransform(scale=data.scale, mean=data.mean, std=data.std)
        return SegmentationDataset(
            pairs,
            _class_names(cfg),
            transform,
            train=train,
            ignore_index=data.ignore_index,
            reduce_zero_label=data.reduce_zero_label,
            max_retries=data.max_retries,
            seed=cfg.seed,
        )

    def has_validation(self, cfg: DictConfig) -> bool:
        """Both layouts keep the images of a split under ``root/images/<split>``."""
        return os.path.isdir(os.path.join(cfg.data.root, "images", cfg.data.val_split))

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_pairs(items)

    def model_inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["image"]

    def num_outputs(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> int:
        return cfg.model.num_classes

    def build_model(self, cfg: DictConfig, num_outputs: int) -> nn.Module:
        """The zoo segmentor ``model.name`` with ``num_outputs`` classes, its backbone changed by ``model.overrides``
        and ``model.drop_path_rate``, its heads' widths by the ``head`` section, its test mode by ``eval``."""
        info = model_info(cfg.model.name)
        overrides = {**info.model_args, **cfg.model.overrides, "drop_path_rate": cfg.model.drop_path_rate}
        head = cfg.head
        try:
            model = build_segmentor(
                info.decoder,
                num_outputs,
                overrides,
                channels=head.channels,
                aux_channels=head.aux_channels,
                neck_channels=head.neck_channels,
                dropout=head.dropout,
            )
        except TypeError as exc:
            raise ValueError(f"config: model.overrides: {exc}") from None
        return model

    def test_options(self, cfg: DictConfig) -> dict[str, object]:
        """The test mode of ``eval`` (whole or slide, scales, flip) as the model's ``test_cfg``."""
        return {"test_cfg": inference_config(cfg)}

    def objective(self, cfg: DictConfig, num_outputs: int, micro_batch: int) -> Objective:
        return _Segment(cfg.loss.aux_weight, cfg.data.ignore_index, cfg.loss.class_weight)

    def metric(self, cfg: DictConfig, dataset: torch.utils.data.Dataset, label_map: LabelMap = None) -> IoUAccumulator:
        return IoUAccumulator(len(dataset), dataset.classes, cfg.data.ignore_index)

    def weights_metadata(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> dict[str, Any]:
        return {"classes": list(train_set.classes)}

    def check_eval_data(
        self, cfg: DictConfig, checkpoint: CheckpointFile, dataset: torch.utils.data.Dataset
    ) -> LabelMap:
        """Refuse a test set whose class names are not those stored with the weights."""
        refuse_other_names(checkpoint, dataset.classes, "classes")
        return None

    def write_report(self, out_dir: Path, metrics: Metrics, cfg: DictConfig) -> str:
        return write_report(out_dir, metrics.detail)


TASK = SegmentationTask()
