"""Object detection and instance segmentation: UniFormer Mask R-CNN on torchvision, COCO-format data and AP.

The task owns the ``data`` and ``detector`` config sections (:mod:`.config`), reads COCO-format sets
(:mod:`.data`: masks or boxes only, crowd/degenerate/empty handling counted), trains with the detector's own
loss dict (summed: RPN objectness + box, RoI classification + box, mask), and scores COCO box and mask AP with
pycocotools (:mod:`.metrics`). :func:`evaluate_coco` runs that evaluation on any torchvision-style detector.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.detection import build_detector, detector_options
from uniformer.models.zoo.catalog import model_info
from uniformer.runtime import DistContext, feed
from uniformer.tasks.base import LabelMap, Metrics, Objective, Task, refuse_other_names
from uniformer.tasks.detection.config import DataConfig, DetectorConfig, resolve
from uniformer.tasks.detection.data import CocoDetection, collate_detection, train_transform
from uniformer.tasks.detection.metrics import CocoAccumulator, write_report
from uniformer.tasks.detection.predict import DetectionPredictTask

__all__ = ["TASK", "DetectionTask", "evaluate_coco"]

logger = logging.getLogger("uniformer.tasks")


class _Detect(Objective):
    """The detector's losses (torchvision's dict, each already weighted as the config), summed."""

    def prepare(self, batch: dict[str, Any], device: torch.device) -> tuple[Any, None]:
        images = [image.to(device, non_blocking=True) for image in batch["images"]]
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in batch["targets"]]
        return (images, targets), None

    def forward(self, model: nn.Module, inputs: Any) -> Any:
        return model(*inputs)

    def loss(self, output: Any, targets: Any) -> torch.Tensor:
        if not isinstance(output, dict) or not output:
            raise ValueError(f"the detector must return its loss dict when training; got {type(output).__name__}")
        return sum(output.values())


def _has_masks(model: nn.Module) -> bool | None:
    """Whether a torchvision R-CNN has a mask branch (``None`` for other models: not known)."""
    roi_heads = getattr(model, "roi_heads", None)
    return None if roi_heads is None else bool(roi_heads.has_mask())


def accumulator_for(
    dataset: CocoDetection, model_masks: bool, category_ids: Sequence[int] | None = None
) -> CocoAccumulator:
    """The COCO evaluation of ``dataset`` (``segm`` too when the set and the model have masks)."""
    ids = [e.image_id for e in dataset.entries]
    return CocoAccumulator(dataset.coco, ids, category_ids or dataset.category_ids, dataset.has_masks and model_masks)


def evaluate_coco(
    model: nn.Module,
    ann_file: str | os.PathLike[str],
    image_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 1,
    category_ids: Sequence[int] | None = None,
    masks: bool | None = None,
    num_workers: int = 0,
) -> dict[str, float]:
    """COCO box (and mask) AP of a torchvision-style detector on a COCO-format set, as pycocotools computes it.

    ``model.eval()(list of (3, H, W) images in [0, 1])`` must return ``{"boxes", "labels", "scores"[, "masks"]}``
    per image at the image's size. Label ``l`` is category ``category_ids[l - 1]`` (default: the file's category
    ids in increasing order, this package's labels; torchvision's own COCO models need ``range(1, 91)``).
    ``masks``: evaluate ``segm`` too (default: when the set has masks and the model has a mask branch; a model
    other than a torchvision R-CNN is assumed to return masks when the set has them).
    Returns ``bbox_AP`` .. ``bbox_APl`` (and ``segm_*`` when masks are evaluated) as fractions, plus
    ``failed`` (images that could not be read); with ``output_dir`` writes the COCO results JSON files and
    ``metrics.json`` there.
    """
    dataset = CocoDetection(ann_file, image_dir, train=False)
    model_masks = _has_masks(model)
    accumulator = accumulator_for(dataset, (model_masks is not False) if masks is None else masks, category_ids)
    ctx = DistContext(device=next(model.parameters()).device)
    feed(
        model,
        dataset,
        accumulator,
        collate=collate_detection,
        inputs=TASK.model_inputs,
        batch_size=batch_size,
        ctx=ctx,
        num_workers=num_workers,
    )
    metrics = accumulator.compute(ctx)
    if output_dir is not None:
        logger.info("%s", write_report(Path(output_dir), metrics.detail))
    return dict(metrics.values)


class DetectionTask(DetectionPredictTask, Task):
    name = "detection"
    sections = {"data": DataConfig, "detector": DetectorConfig}
    primary_metric = "bbox_AP"
    metric_label = "box AP (%)"

    def resolve(self, cfg: DictConfig) -> None:
        resolve(cfg)

    def build_dataset(self, cfg: DictConfig, split: str) -> CocoDetection:
        """``"train"`` (flipped, cropped as ``data.crop_prob`` says, images without annotations skipped) or
        ``"val"``/``"test"`` (every image)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        data, train = cfg.data, split == "train"
        ann, images = (data.train_ann, data.train_images) if train else (data.val_ann, data.val_images)
        crop = None
        if train and data.crop_prob > 0:
            crop = train_transform(data.crop_prob, data.crop_scales, data.crop_size, cfg.detector.max_size)
        dataset = CocoDetection(
            os.path.join(data.root, ann),
            os.path.join(data.root, images),
            train=train,
            flip=data.flip,
            crop=crop,
            max_retries=data.max_retries,
            seed=cfg.seed,
        )
        logger.info("%s set: %s", split, dataset.report.summary())
        return dataset

    def has_validation(self, cfg: DictConfig) -> bool:
        return os.path.isfile(os.path.join(cfg.data.root, cfg.data.val_ann))

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_detection(items)

    def model_inputs(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        return batch["images"]

    def num_outputs(self, cfg: DictConfig, train_set: CocoDetection) -> int:
        """The object classes of the training annotations (``model.num_classes`` must agree when set). A null
        ``detector.mask`` is settled here from the annotations (and so recorded in the run's config)."""
        if cfg.detector.mask is None:
            cfg.detector.mask = train_set.has_masks
        elif cfg.detector.mask and not train_set.has_masks:
            raise ValueError(f"config: detector.mask=true but {train_set.ann_file} has no segmentation annotations")
        count = train_set.num_classes
        if cfg.model.num_classes is not None and cfg.model.num_classes != count:
            raise ValueError(f"config: model.num_classes={cfg.model.num_classes} but the data has {count} categories")
        return count

    def build_model(self, cfg: DictConfig, num_outputs: int) -> nn.Module:
        """The zoo detector ``model.name`` with ``num_outputs`` object classes, its backbone changed by
        ``model.overrides`` and ``model.drop_path_rate``; the mask branch unless ``detector.mask`` is false."""
        info = model_info(cfg.model.name)
        if info.task != "detection":
            raise ValueError(f"config: model.name={info.name} is a {info.task} model, not a detector")
        det = cfg.detector
        mask = det.mask is not False
        backbone = {**info.model_args, **cfg.model.overrides, "drop_path_rate": cfg.model.drop_path_rate}
        try:
            options = {**det, "mask": mask, "min_size": tuple(det.min_size)}
            options["rpn_pre_nms_top_n"] = tuple(det.rpn_pre_nms_top_n)
            options["rpn_post_nms_top_n"] = tuple(det.rpn_post_nms_top_n)
            return build_detector(info.detector, num_outputs, backbone, **options)
        except TypeError as exc:
            raise ValueError(f"config: model.overrides: {exc}") from None

    def objective(self, cfg: DictConfig, num_outputs: int, micro_batch: int) -> Objective:
        return _Detect()

    def batch_groups(self, cfg: DictConfig, train_set: CocoDetection) -> list[int] | None:
        """mmdet's aspect-ratio flag (1: wider than tall) when ``data.group_by_aspect``."""
        return train_set.aspect_groups() if cfg.data.group_by_aspect else None

    def metric(self, cfg: DictConfig, dataset: CocoDetection, label_map: LabelMap = None) -> CocoAccumulator:
        return accumulator_for(dataset, model_masks=cfg.detector.mask is not False)

    def weights_metadata(self, cfg: DictConfig, train_set: CocoDetection) -> dict[str, Any]:
        return {
            "classes": list(train_set.classes),
            "model_args": detector_options(OmegaConf.to_container(cfg.detector)),
        }

    def check_eval_data(self, cfg: DictConfig, checkpoint: CheckpointFile, dataset: CocoDetection) -> LabelMap:
        """Refuse a test set whose category names are not those stored with the weights; a null
        ``detector.mask`` becomes whether the weights have a mask branch."""
        if cfg.detector.mask is None:
            cfg.detector.mask = any(k.startswith("roi_heads.mask_") for k in checkpoint.state_dict)
        refuse_other_names(checkpoint, dataset.classes, "classes")
        return None

    def write_report(self, out_dir: Path, metrics: Metrics, cfg: DictConfig) -> str:
        return write_report(out_dir, metrics.detail)


TASK = DetectionTask()
