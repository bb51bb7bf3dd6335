"""Instance segmentation: the dense UniFormer backbone and an FPN inside torchvision's Mask R-CNN.

The official detectors (Sense-X/UniFormer ``object_detection/``, mmdet 2.11) are configured by
``configs/_base_/models/mask_rcnn_uniformer_fpn.py`` and ``exp/mask_rcnn_*_hybrid_*/config.py``. Here the same
network runs on :mod:`torchvision.models.detection`: :class:`UniFormerMaskRCNN` *is* a
:class:`~torchvision.models.detection.MaskRCNN` (its API: ``model.eval()(images)`` with a list of (3, H, W) float
images in [0, 1] returns a list of ``{"boxes", "labels", "scores", "masks"}``; in training
``model(images, targets)`` returns the loss dict), assembled from torchvision's transform, RPN, RoI heads and
predictors, with these pieces made to compute what mmdet computes where the released weights depend on it:

* :class:`MMDetAnchorGenerator`: mmdet's base anchors (size 8 x stride, ratios 0.5/1/2, centred on the cell
  corner) without torchvision's rounding, and each level's stride taken as 4 .. 64 instead of
  image size // map size (which is 61, not 64, on P6 of an 800-pixel image).
* :class:`AlignedMultiScaleRoIAlign`: ``roi_align(aligned=True)`` with adaptive sampling (``sampling_ratio=0``),
  levels mapped as mmdet's ``SingleRoIExtractor`` (floor(log2(sqrt(wh) / 56)) = torchvision's k0=4, s0=224).
* :class:`L1RegionProposalNetwork` and :class:`UniFormerRoIHeads`: L1 box losses as the config (torchvision uses
  smooth L1 with beta 1/9); class-specific box regression with target stds (0.1, 0.1, 0.2, 0.2).
* sampling, NMS and thresholds of the config: RPN 256 anchors (1/2 positive) at IoU 0.7/0.3, 2000 (train) /
  1000 (test) boxes per level before NMS 0.7 and 1000 after; RoI 512 proposals (1/4 positive) at IoU 0.5,
  ground truth added; test score 0.05, class-wise NMS 0.5, 100 detections.

Remaining differences from mmdet 2.11 (none changes a key or a shape; all change numbers slightly):

* RPN low-quality matches: torchvision gives each ground-truth box its best anchors whatever their IoU; mmdet
  only when that IoU is at least 0.3 (``min_pos_iou``). Training-only.
* Mask targets: torchvision crops the ground-truth masks with ``roi_align(aligned=False)`` and keeps soft values;
  mmdet uses ``aligned=True`` and binarises at 0.5. Training-only.
* Resizing: torchvision resizes the float tensor (bilinear, no antialias) to ``scale * size`` with a recomputed
  scale factor; mmdet resizes the uint8 image with OpenCV to the rounded size. The 0.5-pixel differences move
  features slightly; the published AP is expected within a few tenths, not bit-exact.
* Masks at test time: torchvision pastes the 28 x 28 probabilities into the image by bilinear resizing of a
  1-pixel padded box (``paste_masks_in_image``); mmdet by ``grid_sample`` of the box (``_do_paste_mask``), then
  thresholds at 0.5. Here ``masks`` are the probabilities (threshold them, torchvision's API); evaluation
  thresholds at 0.5 as ``mask_thr_binary``.
* Proposals: torchvision drops proposals smaller than 1e-3 pixels and keeps the top ``post_nms_top_n`` per image
  after per-level NMS; mmdet 2.11 drops zero-size ones and keeps ``max_per_img`` after the same NMS.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import LevelMapper

from uniformer.models.heads import FPN
from uniformer.models.uniformer import UniFormer

__all__ = [
    "AlignedMultiScaleRoIAlign",
    "Float32RPNHead",
    "L1RegionProposalNetwork",
    "MMDetAnchorGenerator",
    "UniFormerFPN",
    "UniFormerMaskRCNN",
    "UniFormerRoIHeads",
    "build_mask_rcnn",
]

FPN_STRIDES = (4, 8, 16, 32, 64)  # P2 .. P6
ROI_STRIDES = FPN_STRIDES[:4]  # the RoI extractors read P2 .. P5
# ImageNet mean/std (mmdet img_norm_cfg in 0-255 units, here for images in [0, 1])
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # 1 / target_stds (0.1, 0.1, 0.2, 0.2): torchvision's BoxCoder weights


class UniFormerFPN(nn.Module):
    """The dense backbone (``body``) and mmdet's FPN (``fpn``, 5 outputs, P6 by max-pooling) as torchvision's
    detectors want a backbone: ``out_channels`` and an OrderedDict of maps named ``"0"`` .. ``"3"``, ``"pool"``
    (strides 4 .. 64), the names :class:`~torchvision.models.detection.backbone_utils.BackboneWithFPN` gives."""

    def __init__(self, body: UniFormer, out_channels: int = 256) -> None:
        super().__init__()
        if not getattr(body, "dense", False):
            raise ValueError("a detector needs a dense backbone (UniFormer(dense=True))")
        self.body = body
        self.fpn = FPN(body.embed_dim, out_channels, num_outs=len(FPN_STRIDES))
        self.out_channels = out_channels

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.fpn(self.body(images))
        return OrderedDict(zip(("0", "1", "2", "3", "pool"), maps))


class MMDetAnchorGenerator(AnchorGenerator):
    """mmdet 2.x ``AnchorGenerator`` (``scales=[8]``, ``ratios=[0.5, 1, 2]``, strides 4 .. 64, center offset 0) in
    torchvision's anchor layout (per location, ratio-major; locations row-major), which is also mmdet's.

    Base anchor of ratio r = h / w at size s: (-w/2, -h/2, w/2, h/2) with w = s / sqrt(r), h = s * sqrt(r),
    unrounded (torchvision rounds them); the shift of level l is ``strides[l]`` per cell, as mmdet.
    """

    def __init__(
        self,
        strides: Sequence[int] = FPN_STRIDES,
        octave_scale: float = 8,
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
    ) -> None:
        self.strides = tuple(strides)
        super().__init__(tuple((octave_scale * s,) for s in strides), (tuple(ratios),) * len(strides))

    def generate_anchors(
        self,
        scales: list[int],
        aspect_ratios: list[float],
        dtype: torch.dtype = torch.float32,
        device: torch.device = torch.device("cpu"),
    ) -> torch.Tensor:
        sizes = torch.as_tensor(scales, dtype=dtype, device=device)
        h_ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device).sqrt()
        ws = (sizes[None, :] / h_ratios[:, None]).reshape(-1)
        hs = (sizes[None, :] * h_ratios[:, None]).reshape(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feature_maps) != len(self.strides):
            raise ValueError(f"{len(self.strides)} anchor levels for {len(feature_maps)} feature maps")
        device, dtype = feature_maps[0].device, torch.float32  # float32 whatever the maps: pixel coordinates
        strides = [[torch.tensor(s, dtype=torch.int64, device=device)] * 2 for s in self.strides]
        self.set_cell_anchors(dtype, device)
        anchors = torch.cat(self.grid_anchors([m.shape[-2:] for m in feature_maps], strides))
        return [anchors for _ in image_list.image_sizes]


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """mmdet's ``SingleRoIExtractor`` with mmcv ``RoIAlign(aligned=True)``: each box is pooled from level
    floor(log2(sqrt(w h) / 56)) (clamped to the levels; torchvision's mapper with k0=4, s0=224 is the same
    rule), sampling adaptive when ``sampling_ratio=0`` (ceil of the bin size, both libraries)."""

    def __init__(
        self,
        featmap_names: list[str],
        output_size: int,
        sampling_ratio: int = 0,
        strides: Sequence[int] = ROI_STRIDES,
    ) -> None:
        super().__init__(featmap_names, output_size, sampling_ratio)
        if len(strides) != len(featmap_names):
            raise ValueError(f"one stride per feature map: {strides} for {featmap_names}")
        levels = [int(math.log2(s)) for s in strides]
        self.scales = [1.0 / s for s in strides]
        self.map_levels = LevelMapper(levels[0], levels[-1], canonical_scale=224, canonical_level=4)

    def forward(
        self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        maps = [x[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])
        levels = self.map_levels(boxes)
        result = maps[0].new_zeros((len(rois), maps[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(maps, self.scales)):
            index = torch.where(levels == level)[0]
            # in float32: bf16 boxes would be off by pixels (the output goes back to the maps' dtype)
            pooled = roi_align(
                feature.float(), rois[index].float(), self.output_size, scale, self.sampling_ratio, aligned=True
            )
            result[index] = pooled.to(result.dtype)
        return result


class Float32RPNHead(RPNHead):
    """torchvision's ``RPNHead`` (keys ``conv.0.0``, ``cls_logits``, ``bbox_pred``) whose outputs are float32, so
    that under bf16/fp16 autocast anchors are decoded and losses computed in float32 (mmdet's ``force_fp32``):
    torchvision's box coder computes in the dtype of the deltas, and bf16 keeps 8 bits of a box coordinate."""

    def forward(self, x: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = super().forward(x)
        return [t.float() for t in logits], [t.float() for t in deltas]


class L1RegionProposalNetwork(RegionProposalNetwork):
    """torchvision's RPN with the config's losses: binary cross-entropy on the sampled anchors and L1 (weight 1)
    on the positive ones' deltas, both averaged over the sampled anchors of the batch (mmdet's avg_factor)."""

    def compute_loss(
        self,
        objectness: torch.Tensor,
        pred_bbox_deltas: torch.Tensor,
        labels: list[torch.Tensor],
        regression_targets: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pos, neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos))[0]
        sampled = torch.cat([pos, torch.where(torch.cat(neg))[0]])
        targets = torch.cat(regression_targets)
        box_loss = F.l1_loss(pred_bbox_deltas[pos], targets[pos], reduction="sum") / max(sampled.numel(), 1)
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], torch.cat(labels)[sampled])
        return objectness_loss, box_loss


def l1_box_loss(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: list[torch.Tensor],
    regression_targets: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """mmdet's ``BBoxHead.loss``: cross-entropy over all sampled RoIs; L1 on the positives' deltas of their class,
    summed and divided by the number of sampled RoIs (torchvision's ``fastrcnn_loss`` with L1 for smooth L1)."""
    labels_all = torch.cat(labels)
    targets = torch.cat(regression_targets)
    classification = F.cross_entropy(class_logits, labels_all)
    pos = torch.where(labels_all > 0)[0]
    deltas = box_regression.reshape(len(labels_all), -1, 4)[pos, labels_all[pos]]
    box = F.l1_loss(deltas, targets[pos], reduction="sum") / max(labels_all.numel(), 1)
    return classification, box


class UniFormerRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` (its sampling, box coding, post-processing, mask loss and inference), with the
    L1 box loss of :func:`l1_box_loss` and the heads' outputs taken in float32 (decoding and losses stay exact
    under autocast, as :class:`Float32RPNHead`). Without ``mask_roi_pool`` it is a box-only (Faster R-CNN) head."""

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        losses: dict[str, torch.Tensor] = {}
        result: list[dict[str, torch.Tensor]] = []
        if self.training:
            if targets is None:
                raise ValueError("training needs targets")
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        class_logits, box_regression = self.box_predictor(
            self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        )
        class_logits, box_regression = class_logits.float(), box_regression.float()  # decoded in float32
        if self.training:
            losses["loss_classifier"], losses["loss_box_reg"] = l1_box_loss(
                class_logits, box_regression, labels, regression_targets
            )
        else:
            boxes, scores, classes = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
            result = [{"boxes": b, "labels": c, "scores": s} for b, s, c in zip(boxes, scores, classes)]
        if not self.has_mask():
            return result, losses
        if self.training:
            positive = [torch.where(lab > 0)[0] for lab in labels]
            mask_boxes = [p[i] for p, i in zip(proposals, positive)]
            pos_matched = [m[i] for m, i in zip(matched_idxs, positive)]
        else:
            mask_boxes = [r["boxes"] for r in result]
        mask_logits = self.mask_predictor(
            self.mask_head(self.mask_roi_pool(features, mask_boxes, image_shapes))
        ).float()
        if self.training:
            gt_masks = [t["masks"] for t in targets]
            gt_labels = [t["labels"] for t in targets]
            losses["loss_mask"] = maskrcnn_loss(mask_logits, mask_boxes, gt_masks, gt_labels, pos_matched)
        else:
            for probs, r in zip(maskrcnn_inference(mask_logits, [r["labels"] for r in result]), result):
                r["masks"] = probs
        return result, losses


def _init_box_branch(box_head: TwoMLPHead, predictor: FastRCNNPredictor) -> None:
    """mmdet's initialisation of ``Shared2FCBBoxHead``: Xavier-uniform FCs, classifier N(0, 0.01), regressor
    N(0, 0.001), zero biases."""
    for layer in (box_head.fc6, box_head.fc7):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    for layer, std in ((predictor.cls_score, 0.01), (predictor.bbox_pred, 0.001)):
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)


class UniFormerMaskRCNN(MaskRCNN):
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
        *,
        mask: bool = True,
        min_size: int | tuple[int, ...] = 800,
        max_size: int = 1333,
        rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000),
        rpn_post_nms_top_n: tuple[int, int] = (1000, 1000),
        box_detections_per_img: int = 100,
        rpn_batch_size_per_image: int = 256,
        box_batch_size_per_image: int = 512,
        representation_size: int = 1024,
        mask_channels: int = 256,
        anchor_scale: float = 8,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"a detector needs at least one object class, got num_classes={num_classes}")
        width = backbone.out_channels
        anchors = MMDetAnchorGenerator(octave_scale=anchor_scale)
        rpn = L1RegionProposalNetwork(
            anchors,
            Float32RPNHead(width, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7,
            bg_iou_thresh=0.3,
            batch_size_per_image=rpn_batch_size_per_image,
            positive_fraction=0.5,
            pre_nms_top_n=dict(training=rpn_pre_nms_top_n[0], testing=rpn_pre_nms_top_n[1]),
            post_nms_top_n=dict(training=rpn_post_nms_top_n[0], testing=rpn_post_nms_top_n[1]),
            nms_thresh=0.7,
        )
        box_head = TwoMLPHead(width * 7 * 7, representation_size)
        box_predictor = FastRCNNPredictor(representation_size, num_classes + 1)
        _init_box_branch(box_head, box_predictor)
        names = ["0", "1", "2", "3"]
        roi_heads = UniFormerRoIHeads(
            AlignedMultiScaleRoIAlign(names, 7),
            box_head,
            box_predictor,
            fg_iou_thresh=0.5,
            bg_iou_thresh=0.5,
            batch_size_per_image=box_batch_size_per_image,
            positive_fraction=0.25,
            bbox_reg_weights=BOX_WEIGHTS,
            score_thresh=0.05,
            nms_thresh=0.5,
            detections_per_img=box_detections_per_img,
            mask_roi_pool=AlignedMultiScaleRoIAlign(names, 14) if mask else None,
            mask_head=MaskRCNNHeads(width, (mask_channels,) * 4, 1) if mask else None,
            mask_predictor=MaskRCNNPredictor(mask_channels, mask_channels, num_classes + 1) if mask else None,
        )
        transform = GeneralizedRCNNTransform(min_size, max_size, list(IMAGE_MEAN), list(IMAGE_STD), size_divisible=32)
        # MaskRCNN's own constructor would build torchvision's RPN and heads: assemble ours instead
        GeneralizedRCNN.__init__(self, backbone, rpn, roi_heads, transform)
        self.num_classes = num_classes

    def forward_dummy(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The computation mmdet's ``get_flops`` counts (``TwoStageDetector.forward_dummy``): backbone, FPN and
        RPN head on a batch, the box branch on 1000 RoIs and the mask branch on 100 (pooled features as zeros,
        so shapes only and any device, ``meta`` included); for :func:`uniformer.models.count_gmacs`."""
        features = list(self.backbone(images).values())
        objectness, deltas = self.rpn.head(features)
        heads = self.roi_heads
        pooled = features[0].new_zeros((1000, self.backbone.out_channels, *heads.box_roi_pool.output_size))
        outputs = (*objectness, *deltas, *heads.box_predictor(heads.box_head(pooled)))
        if heads.has_mask():
            pooled = features[0].new_zeros((100, self.backbone.out_channels, *heads.mask_roi_pool.output_size))
            outputs += (heads.mask_predictor(heads.mask_head(pooled)),)
        return outputs


def build_mask_rcnn(
    num_classes: int, backbone: Mapping[str, Any], *, mask: bool = True, fpn_channels: int = 256, **options: Any
) -> UniFormerMaskRCNN:
    """The official Mask R-CNN on a dense UniFormer built from ``backbone`` (:class:`UniFormer` arguments;
    ``dense=True`` is implied) and an FPN of ``fpn_channels``; ``options`` go to :class:`UniFormerMaskRCNN`
    (``min_size``, ``max_size``, ...)."""
    body = UniFormer(**{**backbone, "dense": True})
    return UniFormerMaskRCNN(UniFormerFPN(body, fpn_channels), num_classes, mask=mask, **options)
