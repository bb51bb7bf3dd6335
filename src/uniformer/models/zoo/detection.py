"""The COCO detectors: the dense backbone (hybrid attention, 14 x 14 windows) in Mask R-CNN or Cascade Mask R-CNN.

Sense-X/UniFormer ``object_detection/README.md``: box / mask AP on val2017, params, GFLOPs at 800 x 1280, Google
Drive links of the released weights. Architectures: ``configs/_base_/models/mask_rcnn_uniformer_fpn.py``,
``cascade_mask_rcnn_uniformer_fpn.py`` and ``exp/*/config.py`` (hybrid=True, window_size=14; drop path 0.2 / 0.1
for small 1x / 3x, 0.3 for base). The light XXS/XS rows are in ``light.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from torchvision.models.detection import MaskRCNN

from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.detection import build_detector, detector_options
from uniformer.models.zoo.image import SIZES
from uniformer.models.zoo.schema import Detector, ModelInfo, ModelKind, Release
from uniformer.models.zoo.sources import DriveFile

__all__ = ["MODELS", "DETECTOR", "coco_release"]


def _build(info: ModelInfo, num_classes: int, overrides: dict[str, Any], file: CheckpointFile | None) -> MaskRCNN:
    """The entry's detector; ``overrides`` hold backbone arguments and the detector's options (``mask``,
    ``min_size``, ``max_size``, ... of :class:`~uniformer.models.detection.DetectorOptions`)."""
    options = detector_options(overrides)
    backbone = {k: v for k, v in overrides.items() if k not in options}
    return build_detector(info.detector, num_classes, {**info.model_args, **backbone}, **options)


def _old_run_model_args(config: Mapping[str, Any]) -> dict[str, Any]:
    """Runs that did not record their detector options held them in the config's ``detector`` section."""
    return detector_options(config.get("detector") or {})


DETECTOR = ModelKind(_build, old_run_model_args=_old_run_model_args)

_COCO_HW = (800, 1280)  # the input of the published GFLOPs
_TITLES = {"mask_rcnn": "Mask R-CNN", "cascade_mask_rcnn": "Cascade Mask R-CNN"}


def coco_release(box_ap: float, mask_ap: float, gflops: float, drive_id: str) -> Release:
    """A COCO detector's release: published box / mask AP, GFLOPs at 800 x 1280, its Google Drive file."""
    return Release(
        _COCO_HW[0],
        gflops,
        (DriveFile(drive_id),),
        metrics={"box_ap": box_ap, "mask_ap": mask_ap},
        crop_pct=1.0,
        input_hw=_COCO_HW,
    )


def _detection(
    size: str,
    detector: Detector,
    schedule: str,
    box_ap: float,
    mask_ap: float,
    params_m: float,
    gflops: float,
    drive_id: str,
) -> ModelInfo:
    return ModelInfo(
        name=f"uniformer_{size}_h14_{detector}_coco_{schedule}",
        task="detection",
        dataset="coco",
        title=f"{SIZES[size][0]} h14 {_TITLES[detector]} {schedule.replace('3x', '3x+MS')} (COCO)",
        model_args=MappingProxyType(dict(SIZES[size][1], attn_mode="hybrid", window_size=14)),
        releases=(coco_release(box_ap, mask_ap, gflops, drive_id),),
        params_m=params_m,
        kind=DETECTOR,
        pretrain=f"uniformer_{size}_in1k.pth",
        detector=detector,
    )


MODELS: tuple[ModelInfo, ...] = tuple(
    _detection(*row)
    for row in (
        # size, detector, schedule, box AP, mask AP, params (M), GFLOPs, Google Drive file id
        ("small", "mask_rcnn", "1x", 45.6, 41.6, 41, 269, "13KhBYkHKQg-CyhAgn1LQM1K0R4bwSpWT"),
        ("small", "mask_rcnn", "3x", 48.2, 43.4, 41, 269, "13O6P-spXbWuXgUjLw8AyRITYTwhdOwuD"),
        ("base", "mask_rcnn", "1x", 47.4, 43.1, 69, 399, "13YrVEiqFraSuX1NzdhPnhw7bFXTvEii1"),
        ("base", "mask_rcnn", "3x", 50.3, 44.8, 69, 399, "12xyS2xqFSYMkHUiVYVGVW7gaLIxuK2q6"),
        ("small", "cascade_mask_rcnn", "3x", 52.1, 45.2, 79, 747, "13IhpRkh2hE8WfDyw-5-NXSUVZjn9DX20"),
        ("base", "cascade_mask_rcnn", "3x", 53.8, 46.4, 107, 878, "13G9wc73CmS1Kb-kVelFSDlK-ezUBadzQ"),
    )
)
