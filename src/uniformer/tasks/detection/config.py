"""The detection task's config sections (``data``, ``detector``) and their resolution.

Defaults follow mmdet 2.x's ``coco_instance.py`` that the UniFormer configs inherit (Sense-X/UniFormer
``object_detection/configs/_base_/datasets/coco_instance.py``): ``img_scale=(1333, 800)`` keep-ratio, flip 0.5,
pad to a multiple of 32; the 3x+MS recipes draw the short side from 480 .. 800 (step 32) per image and, with
probability 0.5, resize to 400/500/600 and crop 384 .. 600 before that (``data.crop_prob``; the official
``exp/mask_rcnn_3x_ms_hybrid_*/config.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING, DictConfig

__all__ = ["DataConfig", "DetectorConfig", "resolve"]


@dataclass
class DataConfig:
    """COCO-format annotation files and image folders (paths relative to ``root``)."""

    root: str = MISSING
    train_ann: str = "annotations/instances_train2017.json"
    train_images: str = "train2017"
    val_ann: str = "annotations/instances_val2017.json"  # also what `uniformer eval` tests on
    val_images: str = "val2017"
    flip: float = 0.5
    # the DETR-style crop policy of the 3x+MS recipes (tasks.detection.data.train_transform); 0: off
    crop_prob: float = 0.0
    crop_scales: List[int] = field(default_factory=lambda: [400, 500, 600])  # short side before the crop
    crop_size: List[int] = field(default_factory=lambda: [384, 600])  # crop height and width drawn in [min, max]
    group_by_aspect: bool = True  # training batches of images all wider than tall, or all not (mmdet GroupSampler)
    num_workers: int = 4
    max_retries: int = 10  # training: replacement images tried for an unreadable one before giving up


@dataclass
class DetectorConfig:
    """The detector's input scale and heads (torchvision's ``GeneralizedRCNNTransform`` resizes inside it). The
    names are those of :class:`~uniformer.models.detection.DetectorOptions`: a training checkpoint records them
    (``model_args``), so that ``create_model`` rebuilds a trained detector with them."""

    # short side; several: one drawn per image in training, the last one at evaluation (torchvision's rule)
    min_size: List[int] = field(default_factory=lambda: [800])
    max_size: int = 1333  # long-side bound
    mask: Optional[bool] = None  # the mask branch; null: when the training annotations have masks
    # sampling and widths (official values; smaller ones serve small experiments such as the demo)
    rpn_batch_size_per_image: int = 256  # anchors sampled per image for the RPN loss
    box_batch_size_per_image: int = 512  # RoIs sampled per image for the box and mask losses
    rpn_pre_nms_top_n: List[int] = field(default_factory=lambda: [2000, 1000])  # per level before NMS (train, test)
    rpn_post_nms_top_n: List[int] = field(default_factory=lambda: [1000, 1000])  # proposals kept (train, test)
    fpn_channels: int = 256
    representation_size: int = 1024  # box head FCs
    mask_channels: int = 256
    anchor_scale: float = 8.0  # anchor side in strides (mmdet octave_base_scale): 32 .. 512 pixels on P2 .. P6


def resolve(cfg: DictConfig) -> None:
    """Check the task's settings, in place."""
    data, det = cfg.data, cfg.detector
    if not 0 <= data.flip <= 1:
        raise ValueError(f"config: data.flip must be a probability in [0, 1]; got {data.flip}")
    if not 0 <= data.crop_prob <= 1:
        raise ValueError(f"config: data.crop_prob must be a probability in [0, 1]; got {data.crop_prob}")
    if data.crop_prob > 0 and (not data.crop_scales or min(data.crop_scales) <= 0):
        raise ValueError(f"config: data.crop_scales must be positive short sides; got {list(data.crop_scales)}")
    if data.crop_prob > 0 and not (len(data.crop_size) == 2 and 0 < data.crop_size[0] <= data.crop_size[1]):
        raise ValueError(f"config: data.crop_size must be [min, max] with 0 < min <= max; got {list(data.crop_size)}")
    if data.num_workers < 0:
        raise ValueError(f"config: data.num_workers must be >= 0; got {data.num_workers}")
    if not det.min_size or min(det.min_size) <= 0 or det.max_size < max(det.min_size):
        raise ValueError(
            "config: detector.min_size must be positive sizes no larger than detector.max_size; got "
            f"{list(det.min_size)} and {det.max_size}"
        )
    for name in ("rpn_pre_nms_top_n", "rpn_post_nms_top_n"):
        counts = list(det[name])
        if len(counts) != 2 or min(counts) <= 0:
            raise ValueError(f"config: detector.{name} must be two positive counts (training, testing); got {counts}")
    if det.anchor_scale <= 0:
        raise ValueError(f"config: detector.anchor_scale must be positive; got {det.anchor_scale}")
