"""Top-down human pose estimation: the dense UniFormer with the SimpleBaseline head, trained and tested as mmpose.

The task owns the ``data`` section and the pose fields of ``eval`` (:mod:`.config`), reads COCO keypoint files
and detector boxes (:mod:`.coco`), crops persons with the official augmentation and heatmap targets
(:mod:`.transforms`, :mod:`.data`), trains with mmpose's ``JointsMSELoss`` (target-weighted), tests with flip
test, heatmap decoding, rescoring, OKS-NMS and ``COCOeval`` (:mod:`.metrics`), and predicts skeletons
(:mod:`.predict`), heatmaps encoded and decoded by one codec (:mod:`.codec`). Public helpers for running a model
yourself: :class:`MSRAHeatmap`,
:func:`evaluate_coco_keypoints`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig

from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.pose import COCO_FLIP_PAIRS, build_pose_model
from uniformer.models.zoo.catalog import model_info
from uniformer.models.zoo.pose import HEAD_CHANNELS
from uniformer.tasks.base import LabelMap, Metrics, Objective, Task, refuse_other_names
from uniformer.tasks.pose.coco import COCO_SIGMAS, read_detections, read_keypoint_file
from uniformer.tasks.pose.codec import MSRAHeatmap
from uniformer.tasks.pose.config import DataConfig, HeadConfig, PoseEvalConfig, resolve
from uniformer.tasks.pose.data import PoseDataset, collate_persons
from uniformer.tasks.pose.metrics import KeypointAccumulator, evaluate_coco_keypoints, write_report
from uniformer.tasks.pose.predict import PosePredictTask
from uniformer.tasks.pose.transforms import EvalTransform, TrainTransform

__all__ = ["TASK", "MSRAHeatmap", "PoseTask", "evaluate_coco_keypoints", "keypoint_mse_loss"]


def keypoint_mse_loss(heatmaps: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """mmpose 0.16 ``JointsMSELoss(use_target_weight=True)``: per keypoint the mean squared error of heatmap and
    target, both times the keypoint's weight, averaged over keypoints; that is ``mean((w (h - t))^2)``. (The
    0.5 factor of older SimpleBaseline code is not in mmpose 0.16.)"""
    return ((heatmaps.float() - target) * weight[:, :, None, None]).pow(2).mean()


class _Heatmaps(Objective):
    def prepare(self, batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, Any]:
        targets = batch["target"].to(device, non_blocking=True), batch["target_weight"].to(device, non_blocking=True)
        return batch["image"].to(device, non_blocking=True), targets

    def loss(self, output: Any, targets: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(f"the model must return heatmaps (B, K, H, W) when training; got {type(output).__name__}")
        target, weight = targets
        if output.shape != target.shape:
            raise ValueError(f"heatmaps {tuple(output.shape)} do not match the targets {tuple(target.shape)}")
        return keypoint_mse_loss(output, target, weight)


def _codec(cfg: DictConfig) -> MSRAHeatmap:
    """The heatmap codec of the config's crops (``data.input_size`` is (H, W)) and ``data.sigma``."""
    height, width = cfg.data.input_size
    return MSRAHeatmap((width, height), sigma=cfg.data.sigma, flip_pairs=COCO_FLIP_PAIRS)


def _paths(cfg: DictConfig, split: str) -> tuple[str, str]:
    data = cfg.data
    ann, images = (data.train_ann, data.train_images) if split == "train" else (data.val_ann, data.val_images)
    return os.path.join(data.root, ann), os.path.join(data.root, images)


class PoseTask(PosePredictTask, Task):
    name = "pose"
    sections = {"data": DataConfig, "head": HeadConfig, "eval": PoseEvalConfig}
    primary_metric = "ap"
    metric_label = "AP (%)"
    outputs_noun = "keypoints"

    def resolve(self, cfg: DictConfig) -> None:
        """Fill the data defaults and ``model.num_classes`` (the keypoint count; 17 for COCO)."""
        resolve(cfg)
        if cfg.model.num_classes is None:
            cfg.model.num_classes = model_info(cfg.model.name).num_classes

    def build_dataset(self, cfg: DictConfig, split: str) -> torch.utils.data.Dataset:
        """``"train"``: augmented crops of the annotated persons; ``"val"``/``"test"``: test crops of the
        ground-truth boxes, or of ``data.val_boxes`` (a detector's) when set."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        data, train = cfg.data, split == "train"
        ann_file, image_dir = _paths(cfg, split)
        annotations = read_keypoint_file(ann_file, image_dir)
        if len(annotations.keypoint_names) != cfg.model.num_classes:
            raise ValueError(
                f"{ann_file}: {len(annotations.keypoint_names)} keypoints, the model has {cfg.model.num_classes}"
            )
        height, width = data.input_size
        if train:
            transform: Any = TrainTransform(
                (width, height),
                data.mean,
                data.std,
                codec=_codec(cfg),
                flip=data.flip,
                half_body_prob=data.half_body_prob,
                half_body_min_keypoints=data.half_body_min_keypoints,
                scale_factor=data.scale_factor,
                rotation_factor=data.rotation_factor,
                rotation_prob=data.rotation_prob,
                center_shift_prob=data.center_shift_prob,
            )
            instances = annotations.instances
        else:
            transform = EvalTransform((width, height), data.mean, data.std)
            instances = annotations.instances
            if data.val_boxes is not None:
                boxes = os.path.join(data.root, data.val_boxes)
                instances = read_detections(boxes, annotations, image_dir, data.det_bbox_thr)
        return PoseDataset(
            instances,
            annotations.keypoint_names,
            transform,
            train=train,
            ann_file=ann_file,
            max_retries=data.max_retries,
            seed=cfg.seed,
        )

    def has_validation(self, cfg: DictConfig) -> bool:
        return os.path.isfile(_paths(cfg, "val")[0])

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_persons(items)

    def model_inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["image"]

    def num_outputs(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> int:
        return cfg.model.num_classes

    def build_model(self, cfg: DictConfig, num_outputs: int) -> nn.Module:
        """The zoo pose model ``model.name`` with ``num_outputs`` heatmaps, its backbone changed by
        ``model.overrides`` and ``model.drop_path_rate``, its head's width by ``head.channels``."""
        info = model_info(cfg.model.name)
        overrides = {**info.model_args, **cfg.model.overrides, "drop_path_rate": cfg.model.drop_path_rate}
        if num_outputs != len(COCO_SIGMAS):
            raise ValueError(f"config: the pose task trains COCO's 17 keypoints (flip pairs); got {num_outputs}")
        try:
            model = build_pose_model(num_outputs, overrides, channels=cfg.head.channels)
        except TypeError as exc:
            raise ValueError(f"config: model.overrides: {exc}") from None
        return model

    def test_options(self, cfg: DictConfig) -> dict[str, object]:
        """``flip_test`` as ``eval.flip_test`` (validation and ``uniformer eval``)."""
        return {"flip_test": bool(cfg.eval.flip_test)}

    def objective(self, cfg: DictConfig, num_outputs: int, micro_batch: int) -> Objective:
        return _Heatmaps()

    def metric(
        self, cfg: DictConfig, dataset: torch.utils.data.Dataset, label_map: LabelMap = None
    ) -> KeypointAccumulator:
        eval_cfg = cfg.eval
        return KeypointAccumulator(
            len(dataset), dataset.ann_file, _codec(cfg), vis_thr=eval_cfg.vis_thr, oks_thr=eval_cfg.oks_thr
        )

    def weights_metadata(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> dict[str, Any]:
        return {"classes": list(train_set.keypoint_names), "model_args": {HEAD_CHANNELS: cfg.head.channels}}

    def check_eval_data(
        self, cfg: DictConfig, checkpoint: CheckpointFile, dataset: torch.utils.data.Dataset
    ) -> LabelMap:
        """Refuse a test set whose keypoint names are not those stored with the weights."""
        refuse_other_names(checkpoint, dataset.keypoint_names, "keypoints")
        return None

    def write_report(self, out_dir: Path, metrics: Metrics, cfg: DictConfig) -> str:
        return write_report(out_dir, metrics.detail)


TASK = PoseTask()
