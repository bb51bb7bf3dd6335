"""The segmentation task's config sections (``data``, ``loss``, ``head``) and their resolution.

The data pipeline follows mmseg 0.x's ADE20K settings that the UniFormer configs inherit
(Sense-X/UniFormer ``semantic_segmentation/configs/_base_/datasets/ade20k.py``): ``img_scale=(2048, 512)``,
``ratio_range=(0.5, 2.0)``, ``crop_size=(512, 512)``, ``cat_max_ratio=0.75``, flip 0.5, photometric distortion,
pad with 0 (image) and 255 (mask), and ``reduce_zero_label=True``. ``null`` mean/std come from the zoo entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING, DictConfig

from uniformer.models.segmentor import InferenceConfig
from uniformer.models.zoo.catalog import model_info

__all__ = ["FORMATS", "DataConfig", "EvalConfig", "HeadConfig", "LossConfig", "inference_config", "resolve"]

FORMATS = ("folder", "ade20k")


@dataclass
class DataConfig:
    """Where the images and masks are and how they are augmented (see the module docstring)."""

    format: str = "folder"  # "folder": root/{images,masks}/<split>/ + classes.txt; "ade20k": the ADEChallenge layout
    root: str = MISSING
    classes_file: Optional[str] = None  # relative to root; folder default "classes.txt"; ade20k: the zoo's names
    train_split: str = "train"  # ade20k: "training"
    val_split: str = "val"  # ade20k: "validation"; also what `uniformer eval` tests on
    reduce_zero_label: Optional[bool] = None  # label 0 -> ignore, others -1 (default: true for ade20k)
    scale: List[int] = field(default_factory=lambda: [2048, 512])  # (long, short) bound of the resize
    ratio_range: List[float] = field(default_factory=lambda: [0.5, 2.0])  # training: random multiple of scale
    crop_size: int = 512
    cat_max_ratio: float = 0.75  # a crop is redrawn (10 tries) while one class covers more of it than this
    flip: bool = True
    color_jitter: float = 0.125  # brightness/contrast/saturation jitter; hue gets a fifth of it (0: off)
    ignore_index: int = 255
    mean: Optional[List[float]] = None  # 0-1 units; default: the zoo entry's
    std: Optional[List[float]] = None
    num_workers: int = 4
    max_retries: int = 10  # training: replacement pairs tried for a broken one before giving up


@dataclass
class LossConfig:
    """Cross entropy on the decode head's logits plus ``aux_weight`` times that of the auxiliary head
    (official UperNet: 1.0 and 0.4, ``configs/_base_/models/upernet_uniformer.py``)."""

    aux_weight: float = 0.4
    class_weight: Optional[List[float]] = None  # per-class weights of the pixel losses (mmseg ``class_weight``)


@dataclass
class HeadConfig:
    """Decode-head widths (``null``: the official 512 UperNet / 128 Semantic FPN; 256 auxiliary and neck)."""

    channels: Optional[int] = None
    aux_channels: int = 256
    neck_channels: int = 256
    dropout: float = 0.1


@dataclass
class EvalConfig:
    """The segmentation fields of ``eval`` (next to the engine's checkpoint, batch_size...): how the model sees
    a test image (:class:`~uniformer.models.segmentor.InferenceConfig`), in validation, ``uniformer eval`` and
    predictions from these weights. The UniFormer configs test "whole" (``upernet_uniformer.py``
    ``test_cfg=dict(mode='whole')``); mmseg's ADE20K 512 x 512 sliding-window setting is crop 512, stride 341;
    its multi-scale test ratios are 0.5, 0.75, 1.0, 1.25, 1.5, 1.75 with flip."""

    mode: str = "whole"  # whole | slide
    crop_size: int = 512  # slide: window size (pixels of the resized test image)
    stride: int = 341  # slide: window step
    scales: List[float] = field(default_factory=lambda: [1.0])  # test-time ratios of the resized image
    flip: bool = False  # also the horizontally flipped views


def inference_config(cfg: DictConfig) -> InferenceConfig:
    """The model's test setting from the ``eval`` section; a bad value is an error naming the key."""
    e = cfg.eval
    try:
        return InferenceConfig(e.mode, e.crop_size, e.stride, tuple(e.scales), e.flip)
    except ValueError as exc:
        raise ValueError(f"config: eval.mode/crop_size/stride/scales: {exc}") from None


def resolve(cfg: DictConfig) -> None:
    """Fill the ``null`` data settings from the zoo entry of ``model.name`` and check them, in place."""
    info = model_info(cfg.model.name)
    data = cfg.data
    if data.format not in FORMATS:
        raise ValueError(f"config: data.format must be one of {', '.join(FORMATS)}; got {data.format!r}")
    if data.reduce_zero_label is None:
        data.reduce_zero_label = data.format == "ade20k"
    data.mean = list(data.mean if data.mean is not None else info.mean)
    data.std = list(data.std if data.std is not None else info.std)
    if len(data.scale) != 2 or min(data.scale) <= 0:
        raise ValueError(f"config: data.scale must be two positive sizes (long, short); got {list(data.scale)}")
    low, high = data.ratio_range
    if not 0 < low <= high:
        raise ValueError(f"config: data.ratio_range must be 0 < low <= high; got {list(data.ratio_range)}")
    if data.crop_size <= 0 or data.crop_size % 32:
        raise ValueError(f"config: data.crop_size must be a positive multiple of 32; got {data.crop_size}")
    if not 0 < data.cat_max_ratio <= 1:
        raise ValueError(f"config: data.cat_max_ratio must be in (0, 1]; got {data.cat_max_ratio}")
    if not 0 <= data.ignore_index <= 255:
        raise ValueError(f"config: data.ignore_index must be 0-255 (masks are 8-bit); got {data.ignore_index}")
    if data.num_workers < 0:
        raise ValueError(f"config: data.num_workers must be >= 0; got {data.num_workers}")
    inference_config(cfg)
    if cfg.loss.aux_weight < 0:
        raise ValueError(f"config: loss.aux_weight must be >= 0; got {cfg.loss.aux_weight}")
