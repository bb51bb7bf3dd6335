"""The official detectors by name, on a dense UniFormer built from its arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uniformer.models.detection.backbone import UniFormerFPN
from uniformer.models.detection.cascade import UniFormerCascadeMaskRCNN
from uniformer.models.detection.mask_rcnn import AssembledRCNN, UniFormerMaskRCNN
from uniformer.models.detection.options import DetectorOptions
from uniformer.models.uniformer import UniFormer

__all__ = ["DETECTORS", "build_detector", "build_mask_rcnn"]

DETECTORS: Mapping[str, type[AssembledRCNN]] = {
    "mask_rcnn": UniFormerMaskRCNN,
    "cascade_mask_rcnn": UniFormerCascadeMaskRCNN,
}


def build_detector(detector: str, num_classes: int, backbone: Mapping[str, Any], **options: Any) -> AssembledRCNN:
    """The official ``detector`` (a key of :data:`DETECTORS`: ``"mask_rcnn"``, ``"cascade_mask_rcnn"``) on a dense
    UniFormer built from ``backbone`` (:class:`UniFormer` arguments; ``dense=True`` is implied) and an FPN;
    ``options`` are :class:`DetectorOptions` fields (``mask``, ``min_size``, ``fpn_channels``, ...)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; known: {', '.join(DETECTORS)}")
    settings = DetectorOptions(**options)
    body = UniFormer(**{**backbone, "dense": True})
    return DETECTORS[detector](UniFormerFPN(body, settings.fpn_channels), num_classes, settings)


def build_mask_rcnn(num_classes: int, backbone: Mapping[str, Any], **options: Any) -> UniFormerMaskRCNN:
    """The official Mask R-CNN (:func:`build_detector` ``("mask_rcnn", ...)``)."""
    return build_detector("mask_rcnn", num_classes, backbone, **options)
