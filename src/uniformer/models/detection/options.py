"""The options of the detectors, in one place: input scale, sampling sizes, head widths and anchors.

The names are the constructor options the detection recipes' ``detector`` section sets and that a training
checkpoint records, so a trained detector is rebuilt from its checkpoint with the architecture it was trained with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["DetectorOptions", "OPTION_NAMES", "detector_options"]


@dataclass(frozen=True)
class DetectorOptions:
    """What may change in the official detectors (Sense-X/UniFormer ``object_detection`` configs).

    ``mask``: the mask branch (``False``: box-only). ``min_size``: the short side the transform resizes to (several:
    one drawn per training image, the last at test time), within ``max_size`` on the long side (official 800 /
    1333). ``rpn_pre_nms_top_n`` / ``rpn_post_nms_top_n``: proposals per level before NMS and kept after it
    (training, testing); ``None`` after NMS is the detector's official value (Mask R-CNN 1000 / 1000, Cascade Mask
    R-CNN 2000 / 1000). ``box_detections_per_img``: detections kept per image. The sampling sizes
    (``rpn_batch_size_per_image``, ``box_batch_size_per_image``: official 256 / 512), head widths
    (``representation_size`` of the box FCs, ``mask_channels`` of the mask convolutions, ``fpn_channels``) and the
    anchor size in strides (``anchor_scale``, official 8: 32 .. 512 pixels) are options for small experiments such
    as the demo. ``stage_loss_weights``: the Cascade Mask R-CNN's per-stage loss weights (``None``: the official
    1 / 0.5 / 0.25); no option of Mask R-CNN.
    """

    mask: bool = True
    min_size: int | tuple[int, ...] = 800
    max_size: int = 1333
    rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000)
    rpn_post_nms_top_n: tuple[int, int] | None = None
    box_detections_per_img: int = 100
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    representation_size: int = 1024
    mask_channels: int = 256
    fpn_channels: int = 256
    anchor_scale: float = 8
    stage_loss_weights: tuple[float, ...] | None = None


OPTION_NAMES = frozenset(f.name for f in fields(DetectorOptions))


def detector_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`DetectorOptions` among ``values`` (e.g. a config's ``detector`` section, which also holds
    settings of the run), lists as tuples: what a training run records with its weights."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in OPTION_NAMES}
