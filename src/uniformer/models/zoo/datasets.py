"""The datasets the zoo was trained on: class count, input normalisation and title, in one table.

Every caller that normalises an input for a zoo model (the video transforms, the detector, the training
configs) reads its mean and std here, through the entry's dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ["DatasetInfo", "DATASETS", "VIDEO_MEAN", "VIDEO_STD"]

# The official video recipes' normalisation (SlowFast ``DATA.MEAN``/``DATA.STD``), on [0, 1] pixels.
VIDEO_MEAN: tuple[float, float, float] = (0.45, 0.45, 0.45)
VIDEO_STD: tuple[float, float, float] = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset the zoo was trained on: class count, label list and input normalisation."""

    name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    title: str


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "imagenet-1k": DatasetInfo("imagenet-1k", 1000, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "ImageNet-1K"),
        "kinetics-400": DatasetInfo("kinetics-400", 400, VIDEO_MEAN, VIDEO_STD, "Kinetics-400"),
        "kinetics-600": DatasetInfo("kinetics-600", 600, VIDEO_MEAN, VIDEO_STD, "Kinetics-600"),
        "something-something-v1": DatasetInfo(
            "something-something-v1", 174, VIDEO_MEAN, VIDEO_STD, "Something-Something V1"
        ),
        "something-something-v2": DatasetInfo(
            "something-something-v2", 174, VIDEO_MEAN, VIDEO_STD, "Something-Something V2"
        ),
        "ucf101": DatasetInfo("ucf101", 101, VIDEO_MEAN, VIDEO_STD, "UCF101"),
        "hmdb51": DatasetInfo("hmdb51", 51, VIDEO_MEAN, VIDEO_STD, "HMDB51"),
        "synthetic-motion": DatasetInfo("synthetic-motion", 8, VIDEO_MEAN, VIDEO_STD, "Synthetic motion"),
        # mmseg img_norm_cfg of the ADE20K configs: ImageNet's mean/std in 0-255 units
        "ade20k": DatasetInfo("ade20k", 150, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "ADE20K"),
        # COCO person keypoints: the "classes" are the 17 keypoints (heatmap channels); mmpose NormalizeTensor
        "coco-keypoints": DatasetInfo(
            "coco-keypoints", 17, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "COCO keypoints"
        ),
        # mmdet img_norm_cfg of the COCO configs: the same ImageNet mean/std; 80 object classes
        "coco": DatasetInfo("coco", 80, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "COCO"),
    }
)
