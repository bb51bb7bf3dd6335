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
    "detector_transform",
    "forward_dummy",
    "mask_rcnn_roi_heads",
    "roi_poolers",
]


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
    """A :class:`~torchvision.models.detection.MaskRCNN` made of given parts.

    ``MaskRCNN``'s own constructor builds torchvision's RPN and RoI heads from numbers; the detectors here have
    their own (losses, cascade). So the parts are arguments: ``rpn``, ``roi_heads`` and ``transform`` are used as
    given, and each one left ``None`` is built from ``options`` (the official configuration by default), in a fixed
    order so that a seed gives the same weights: the RPN (``rpn_network`` sets its loss, ``rpn_post_nms_top_n`` is
    the detector's official count kept after NMS unless ``options`` set one), the RoI heads
    (``build_roi_heads``), the transform. :class:`~torchvision.models.detection.generalized_rcnn.GeneralizedRCNN`'s
    constructor then assembles them. ``num_classes`` counts the object classes (80 for COCO).
    """

    rpn_network: type[RegionProposalNetwork]
    rpn_post_nms_top_n: tuple[int, int]

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
        if num_classes < 1:
            raise ValueError(f"a detector needs at least one object class, got num_classes={num_classes}")
        width = backbone.out_channels
        if rpn is None:
            kept = self.rpn_post_nms_top_n if options.rpn_post_nms_top_n is None else options.rpn_post_nms_top_n
            rpn = official_rpn(self.rpn_network, width, options, kept)
        if roi_heads is None:
            roi_heads = self.build_roi_heads(width, num_classes, options)
        GeneralizedRCNN.__init__(self, backbone, rpn, roi_heads, transform or detector_transform(options))
        self.num_classes = num_classes

    def forward(
        self,
        images: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
        score_thresh: float | None = None,
        paste_masks: bool = True,
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """torchvision's: the loss dict in training, the detections of each image (at its size) in eval mode;
        ``score_thresh`` replaces the RoI heads' own test threshold for this call only (eval mode).
        ``paste_masks=False`` leaves each detection's mask as the ``(1, 28, 28)`` probabilities over its box (for
        :func:`~uniformer.models.detection.masks.paste_mask`, once the detections to keep are chosen): pasting
        them all makes a float tensor of the image's size per detection."""
        if self.training:
            return super().forward(images, targets)
        sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch, _ = self.transform(images)
        features = self.backbone(batch.tensors)
        proposals, _ = self.rpn(batch, features)
        detections, _ = self.roi_heads(features, proposals, batch.image_sizes, score_thresh=score_thresh)
        masks = [] if paste_masks else [found.pop("masks", None) for found in detections]
        detections = self.transform.postprocess(detections, batch.image_sizes, sizes)
        for found, probabilities in zip(detections, masks):
            if probabilities is not None:
                found["masks"] = probabilities
        return detections

    @staticmethod
    def build_roi_heads(width: int, num_classes: int, options: DetectorOptions) -> RoIHeads:
        """The detector's RoI heads on ``width``-channel maps."""
        raise NotImplementedError


def mask_rcnn_roi_heads(width: int, num_classes: int, options: DetectorOptions) -> UniFormerRoIHeads:
    """The official Mask R-CNN RoI heads on ``width``-channel maps: two FCs of ``options.representation_size``,
    4 mask convolutions of ``options.mask_channels`` (with ``options.mask``), 512 RoIs sampled 1/4 positive at
    IoU 0.5, test score 0.05, class-wise NMS 0.5."""
    if options.stage_loss_weights is not None:
        raise TypeError("stage_loss_weights is an option of the Cascade Mask R-CNN, not of Mask R-CNN")
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
    configuration (see the package docstring). ``num_classes`` counts the object classes (80 for COCO); the
    predictors have one more row, the background, first (torchvision's layout; labels are 1 .. num_classes).
    ``options.mask=False`` gives the box-only detector (no mask branch, no ``masks`` in the outputs); the other
    :class:`DetectorOptions` set the input scale, sampling sizes, head widths and anchors. The RPN's loss is the
    config's L1 (:class:`L1RegionProposalNetwork`), 1000 proposals kept after NMS."""

    rpn_network = L1RegionProposalNetwork
    rpn_post_nms_top_n = (1000, 1000)
    build_roi_heads = staticmethod(mask_rcnn_roi_heads)

    def forward_dummy(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The computation mmdet's ``get_flops`` counts (see :func:`forward_dummy`), for
        :func:`uniformer.models.count_gmacs`."""
        heads = self.roi_heads
        masks = [(heads.mask_head, heads.mask_predictor)] if heads.has_mask() else None
        return forward_dummy(self, images, [(heads.box_head, heads.box_predictor)], masks)
