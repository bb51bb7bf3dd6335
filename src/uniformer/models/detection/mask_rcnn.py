"""Mask R-CNN on the dense UniFormer: torchvision's :class:`~torchvision.models.detection.MaskRCNN` assembled from
this package's parts (see :mod:`uniformer.models.detection` for what they compute as mmdet does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from uniformer.models.detection.backbone import UniFormerFPN
from uniformer.models.detection.options import DetectorOptions
from uniformer.models.detection.poolers import AlignedMultiScaleRoIAlign
from uniformer.models.detection.roi_heads import BOX_WEIGHTS, UniFormerRoIHeads, init_box_branch
from uniformer.models.detection.rpn import L1RegionProposalNetwork, official_rpn
from uniformer.models.zoo.datasets import DATASETS

__all__ = [
    "AssembledRCNN",
    "UniFormerMaskRCNN",
    "RPN_POST_NMS_TOP_N",
    "detector_transform",
    "forward_dummy",
    "mask_rcnn_roi_heads",
    "roi_poolers",
]

RPN_POST_NMS_TOP_N = (1000, 1000)  # proposals kept after NMS (training, testing): the Mask R-CNN config's


def detector_transform(options: DetectorOptions) -> GeneralizedRCNNTransform:
    """Resizing to ``options.min_size`` / ``max_size`` and the COCO configs' normalisation (images in [0, 1])."""
    coco = DATASETS["coco"]
    return GeneralizedRCNNTransform(
        options.min_size, options.max_size, list(coco.mean), list(coco.std), size_divisible=32
    )


def roi_poolers(mask: bool) -> tuple[AlignedMultiScaleRoIAlign, AlignedMultiScaleRoIAlign | None]:
    """The 7 x 7 box pooler and, with ``mask``, the 14 x 14 mask pooler on P2 .. P5."""
    names = ["0", "1", "2", "3"]
    return AlignedMultiScaleRoIAlign(names, 7), AlignedMultiScaleRoIAlign(names, 14) if mask else None


def forward_dummy(
    model: GeneralizedRCNN, images: torch.Tensor, box_branches: Sequence[tuple[nn.Module, nn.Module]], masks: Any
) -> tuple[torch.Tensor, ...]:
    """What mmdet's ``get_flops`` counts (``forward_dummy``): backbone, FPN and RPN head on a batch, each box
    branch on 1000 RoIs and each mask branch (``masks``: (head, predictor) pairs or ``None``) on 100 (pooled
    features as zeros, so shapes only and any device, ``meta`` included)."""
    features = list(model.backbone(images).values())
    objectness, deltas = model.rpn.head(features)
    heads, width = model.roi_heads, model.backbone.out_channels
    outputs: tuple[torch.Tensor, ...] = (*objectness, *deltas)
    pooled = features[0].new_zeros((1000, width, *heads.box_roi_pool.output_size))
    for head, predictor in box_branches:
        outputs += predictor(head(pooled))
    pooled = features[0].new_zeros((100, width, *heads.mask_roi_pool.output_size)) if masks else None
    for head, predictor in masks or ():
        outputs += (predictor(head(pooled)),)
    return outputs


class AssembledRCNN(MaskRCNN):
    """A :class:`~torchvision.models.detection.MaskRCNN` made of given parts. ``MaskRCNN``'s own constructor builds
    torchvision's RPN and RoI heads from numbers; the detectors here have their own (losses, cascade), so they
    build their parts (each only when the caller gave none, in a fixed order: a seed gives the same weights)
    and :class:`~torchvision.models.detection.generalized_rcnn.GeneralizedRCNN`'s constructor assembles them."""

    def __init__(
        self,
        backbone: UniFormerFPN,
        num_classes: int,
        rpn: RegionProposalNetwork,
        roi_heads: RoIHeads,
        transform: GeneralizedRCNNTransform,
    ) -> None:
        GeneralizedRCNN.__init__(self, backbone, rpn, roi_heads, transform)
        self.num_classes = num_classes


def check_classes(num_classes: int) -> None:
    if num_classes < 1:
        raise ValueError(f"a detector needs at least one object class, got num_classes={num_classes}")


def mask_rcnn_roi_heads(width: int, num_classes: int, options: DetectorOptions) -> UniFormerRoIHeads:
    """The official Mask R-CNN RoI heads on ``width``-channel maps: two FCs of ``options.representation_size``,
    4 mask convolutions of ``options.mask_channels`` (with ``options.mask``), 512 RoIs sampled 1/4 positive at
    IoU 0.5, test score 0.05, class-wise NMS 0.5."""
    box_pool, mask_pool = roi_poolers(options.mask)
    box_head = TwoMLPHead(width * 7 * 7, options.representation_size)
    box_predictor = FastRCNNPredictor(options.representation_size, num_classes + 1)
    init_box_branch(box_head, box_predictor)
    masked, channels = mask_pool is not None, options.mask_channels
    return UniFormerRoIHeads(
        box_pool,
        box_head,
        box_predictor,
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=options.box_batch_size_per_image,
        positive_fraction=0.25,
        bbox_reg_weights=BOX_WEIGHTS,
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_img=options.box_detections_per_img,
        mask_roi_pool=mask_pool,
        mask_head=MaskRCNNHeads(width, (channels,) * 4, 1) if masked else None,
        mask_predictor=MaskRCNNPredictor(channels, channels, num_classes + 1) if masked else None,
    )


class UniFormerMaskRCNN(AssembledRCNN):
    """A :class:`~torchvision.models.detection.MaskRCNN` on :class:`UniFormerFPN` with the official
    configuration (see the module docstring). ``num_classes`` counts the object classes (80 for COCO); the
    predictors have one more row, the background, first (torchvision's layout; labels are 1 .. num_classes).
    ``mask=False`` gives the box-only detector (no mask branch, no ``masks`` in the outputs). ``min_size`` is the
    short side the transform resizes to (several: one drawn per training image, the last at test time), within
    ``max_size`` on the long side (official 800 / 1333). The sampling sizes and head widths (official 256 / 512
    RoIs, 1024-wide box FCs, 256-wide mask convolutions) and the anchor size in strides (official 8: 32 .. 512
    pixels) are options for small experiments such as the demo."""

    def __init__(
        self,
        backbone: UniFormerFPN,
        num_classes: int,
        options: DetectorOptions | None = None,
        *,
        rpn: RegionProposalNetwork | None = None,
        roi_heads: RoIHeads | None = None,
        transform: GeneralizedRCNNTransform | None = None,
    ) -> None:
        options = DetectorOptions() if options is None else options
        check_classes(num_classes)
        if options.stage_loss_weights is not None:
            raise TypeError("stage_loss_weights is an option of the Cascade Mask R-CNN, not of Mask R-CNN")
        width = backbone.out_channels
        if rpn is None:
            post_nms_top_n = RPN_POST_NMS_TOP_N if options.rpn_post_nms_top_n is None else options.rpn_post_nms_top_n
            rpn = official_rpn(L1RegionProposalNetwork, width, options, post_nms_top_n)
        if roi_heads is None:
            roi_heads = mask_rcnn_roi_heads(width, num_classes, options)
        super().__init__(backbone, num_classes, rpn, roi_heads, transform or detector_transform(options))

    def forward_dummy(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The computation mmdet's ``get_flops`` counts (see :func:`_forward_dummy`), for
        :func:`uniformer.models.count_gmacs`."""
        heads = self.roi_heads
        masks = [(heads.mask_head, heads.mask_predictor)] if heads.has_mask() else None
        return forward_dummy(self, images, [(heads.box_head, heads.box_predictor)], masks)
