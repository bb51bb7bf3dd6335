"""Instance segmentation: the dense UniFormer backbone and an FPN inside torchvision's Mask R-CNN, and the
Cascade Mask R-CNN (:class:`UniFormerCascadeMaskRCNN`, :class:`CascadeRoIHeads`: torchvision has none) on the same
backbone, RPN and poolers; its own settings and differences are in those classes' docstrings.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, box_iou, clip_boxes_to_image, generalized_box_iou_loss, roi_align
from torchvision.ops.poolers import LevelMapper

from uniformer.models.heads import FPN
from uniformer.models.uniformer import UniFormer

__all__ = [
    "AlignedMultiScaleRoIAlign",
    "CascadeRoIHeads",
    "Float32RPNHead",
    "L1RegionProposalNetwork",
    "MMDetAnchorGenerator",
    "UniFormerCascadeMaskRCNN",
    "UniFormerFPN",
    "UniFormerMaskRCNN",
    "UniFormerRoIHeads",
    "DETECTOR_OPTIONS",
    "build_detector",
    "build_mask_rcnn",
    "detector_options",
    "giou_box_loss",
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


# Cascade R-CNN stages (official cascade_mask_rcnn_uniformer_fpn.py train_cfg.rcnn, exp/cascade_*/config.py)
CASCADE_IOUS = (0.5, 0.6, 0.7)  # MaxIoUAssigner pos_iou_thr = neg_iou_thr = min_pos_iou of each stage
CASCADE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))  # target_stds
CASCADE_LOSS_WEIGHTS = (1.0, 0.5, 0.25)  # stage_loss_weights
GIOU_LOSS_WEIGHT = 10.0  # GIoULoss(loss_weight=10.0) on the decoded boxes (reg_decoded_bbox=True)


def giou_box_loss(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    proposals: torch.Tensor,
    labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    box_coder: BoxCoder,
    weight: float = GIOU_LOSS_WEIGHT,
) -> tuple[torch.Tensor, torch.Tensor]:
    """mmdet's ``BBoxHead.loss`` with ``reg_decoded_bbox=True`` and ``GIoULoss``: cross-entropy over the sampled
    RoIs; each positive's deltas of its class decoded on its RoI (``box_coder``, not clipped) and 1 - GIoU with
    its matched ground-truth box (:func:`torchvision.ops.generalized_box_iou_loss`), summed, divided by the
    number of sampled RoIs (mmdet's ``avg_factor``) and multiplied by ``weight``. Inputs are flat over the batch:
    ``proposals`` and ``gt_boxes`` (R, 4), ``labels`` (R,) with 0 the background."""
    classification = F.cross_entropy(class_logits, labels)
    pos = torch.where(labels > 0)[0]
    deltas = box_regression.reshape(len(labels), -1, 4)[pos, labels[pos]]
    boxes = box_coder.decode_single(deltas, proposals[pos])
    loss = generalized_box_iou_loss(boxes, gt_boxes[pos], reduction="sum")
    return classification, weight * loss / max(len(labels), 1)


class CascadeRoIHeads(RoIHeads):
    """mmdet 2.x ``CascadeRoIHead`` from torchvision's pieces: stage ``s`` has its box head and predictor
    (``box_head[s]``, ``box_predictor[s]``), mask head and predictor (``mask_head[s]``, ``mask_predictor[s]``),
    :class:`~torchvision.models.detection._utils.Matcher` at ``stage_ious[s]`` and
    :class:`~torchvision.models.detection._utils.BoxCoder` of ``stage_stds[s]``; the RoI poolers and the
    512-RoI, 1/4-positive sampler are shared (as the official config).

    Training (``forward_train`` of mmdet): each stage adds the ground-truth boxes to its proposals, matches them at
    its IoU (no low-quality matches), samples, and computes cross-entropy, :func:`giou_box_loss` and, on its
    positives, the mask loss, all multiplied by ``stage_loss_weights[s]`` (keys ``s0.loss_classifier``,
    ``s0.loss_box_reg``, ``s0.loss_mask``, ``s1...``). The next stage's proposals are this stage's sampled RoIs
    (not all proposals), regressed by its deltas of their class (for background RoIs, the best-scoring object
    class), clipped to the image and detached, less the ground-truth boxes among them (``refine_bboxes``).

    Test (``simple_test``): every proposal goes through all stages, each stage regressing the boxes for the next
    by its deltas of the highest-scoring object class; the detections are the softmax of the stages' class
    *logits* averaged, with the last stage's boxes, through torchvision's post-processing (score 0.05, class-wise
    NMS 0.5, ``detections_per_img``). The masks of the detections are the sigmoid masks of every stage's mask head
    on the final boxes averaged (mmdet's ``merge_aug_masks``), at the detected class.

    Box regression is class-specific (issue 12 said class-agnostic): the official ``exp/cascade_*/config.py``
    replace the base file's ``Shared2FCBBoxHead`` (``reg_class_agnostic=True``) by three ``ConvFCBBoxHead`` with
    ``reg_class_agnostic=False``, so the released ``fc_reg`` of every stage has 4 x 80 outputs (mmdet
    ``BBoxHead``: ``4 if reg_class_agnostic else 4 * num_classes``).
    """

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_heads: Sequence[nn.Module],
        box_predictors: Sequence[FastRCNNPredictor],
        *,
        stage_ious: Sequence[float] = CASCADE_IOUS,
        stage_stds: Sequence[Sequence[float]] = CASCADE_STDS,
        stage_loss_weights: Sequence[float] = CASCADE_LOSS_WEIGHTS,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        mask_roi_pool: nn.Module | None = None,
        mask_heads: Sequence[nn.Module] | None = None,
        mask_predictors: Sequence[nn.Module] | None = None,
    ) -> None:
        stages = len(box_heads)
        sizes = [len(box_predictors), len(stage_ious), len(stage_stds), len(stage_loss_weights)]
        sizes += [] if mask_heads is None else [len(mask_heads), len(mask_predictors or ())]
        if stages == 0 or any(n != stages for n in sizes):
            raise ValueError(f"one box head, predictor, IoU, std and loss weight (and mask head) per stage: {sizes}")
        weights = [tuple(1.0 / s for s in stds) for stds in stage_stds]
        super().__init__(
            box_roi_pool,
            nn.ModuleList(box_heads),
            nn.ModuleList(box_predictors),
            stage_ious[-1],
            stage_ious[-1],
            batch_size_per_image,
            positive_fraction,
            weights[-1],  # self.box_coder: the last stage's, which postprocess_detections decodes with
            score_thresh,
            nms_thresh,
            detections_per_img,
            mask_roi_pool=mask_roi_pool,
            mask_head=None if mask_heads is None else nn.ModuleList(mask_heads),
            mask_predictor=None if mask_predictors is None else nn.ModuleList(mask_predictors),
        )
        self.proposal_matchers = [Matcher(t, t, allow_low_quality_matches=False) for t in stage_ious]
        self.box_coders = [BoxCoder(w) for w in weights]
        self.stage_loss_weights = tuple(float(w) for w in stage_loss_weights)

    @property
    def num_stages(self) -> int:
        return len(self.box_head)

    def _boxes(
        self, stage: int, features: dict[str, torch.Tensor], boxes: list[torch.Tensor], shapes: list[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.box_roi_pool(features, boxes, shapes)
        class_logits, box_regression = self.box_predictor[stage](self.box_head[stage](pooled))
        return class_logits.float(), box_regression.float()  # decoded in float32 (see UniFormerRoIHeads)

    def _masks(self, stage: int, pooled: torch.Tensor) -> torch.Tensor:
        return self.mask_predictor[stage](self.mask_head[stage](pooled)).float()

    def _regress(
        self,
        stage: int,
        box_regression: torch.Tensor,
        boxes: list[torch.Tensor],
        labels: torch.Tensor,
        shapes: list[tuple[int, int]],
    ) -> list[torch.Tensor]:
        """mmdet's ``regress_by_class``: each box moved by the stage's deltas of class ``labels``, clipped."""
        deltas = box_regression.reshape(len(labels), -1, 4)[torch.arange(len(labels)), labels]
        moved = self.box_coders[stage].decode_single(deltas, torch.cat(boxes)).split([len(b) for b in boxes])
        return [clip_boxes_to_image(b, shape) for b, shape in zip(moved, shapes)]

    def _sample(
        self, stage: int, proposals: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> tuple[list[torch.Tensor], ...]:
        """The stage's training RoIs per image: (boxes, labels, matched ground-truth index, matched ground-truth
        box, is a ground-truth box), the ground truth added to the proposals, matched at the stage's IoU and
        subsampled. In an image without objects every RoI is background (matched to a zero box, never read)."""
        matcher = self.proposal_matchers[stage]
        candidates, labels, matched, matched_boxes = [], [], [], []
        for boxes, target in zip(proposals, targets):
            gt = target["boxes"].to(boxes.dtype)
            boxes = torch.cat([boxes, gt])
            if len(gt):
                index = matcher(box_iou(gt, boxes))  # the IoU thresholds are equal: below is background
                label = torch.where(index >= 0, target["labels"][index.clamp(min=0)].long(), 0)
                index = index.clamp(min=0)
                matched_boxes.append(gt[index])
            else:
                index = label = boxes.new_zeros(len(boxes), dtype=torch.int64)
                matched_boxes.append(torch.zeros_like(boxes))
            candidates.append(boxes)
            labels.append(label)
            matched.append(index)
        out: tuple[list[torch.Tensor], ...] = ([], [], [], [], [])
        per_image = zip(candidates, labels, matched, matched_boxes, proposals, *self.fg_bg_sampler(labels))
        for boxes, label, index, gt, proposal, pos, neg in per_image:
            keep = torch.where(pos | neg)[0]
            for values, kept in zip(out, (boxes[keep], label[keep], index[keep], gt[keep], keep >= len(proposal))):
                values.append(kept)
        return out

    def _train(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        for stage, weight in enumerate(self.stage_loss_weights):
            boxes, labels, matched, gt_boxes, is_gt = self._sample(stage, proposals, targets)
            class_logits, box_regression = self._boxes(stage, features, boxes, shapes)
            flat_labels = torch.cat(labels)
            classification, box = giou_box_loss(
                class_logits, box_regression, torch.cat(boxes), flat_labels, torch.cat(gt_boxes), self.box_coders[stage]
            )
            losses[f"s{stage}.loss_classifier"] = weight * classification
            losses[f"s{stage}.loss_box_reg"] = weight * box
            if self.has_mask():
                positive = [torch.where(lab > 0)[0] for lab in labels]
                mask_boxes = [b[p] for b, p in zip(boxes, positive)]
                mask_logits = self._masks(stage, self.mask_roi_pool(features, mask_boxes, shapes))
                gt_masks = [t["masks"] for t in targets]
                gt_labels = [t["labels"] for t in targets]
                pos_matched = [m[p] for m, p in zip(matched, positive)]
                mask_loss = maskrcnn_loss(mask_logits, mask_boxes, gt_masks, gt_labels, pos_matched)
                losses[f"s{stage}.loss_mask"] = weight * mask_loss
            if stage + 1 < self.num_stages:
                with torch.no_grad():
                    guess = class_logits[:, 1:].argmax(dim=1) + 1  # background RoIs: their best object class
                    refined = self._regress(
                        stage, box_regression, boxes, torch.where(flat_labels > 0, flat_labels, guess), shapes
                    )
                proposals = [b[~g] for b, g in zip(refined, is_gt)]
        return losses

    def _detect(
        self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor], shapes: list[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        summed = None
        for stage in range(self.num_stages):
            class_logits, box_regression = self._boxes(stage, features, proposals, shapes)
            summed = class_logits if summed is None else summed + class_logits
            if stage + 1 < self.num_stages:
                labels = class_logits[:, 1:].argmax(dim=1) + 1
                proposals = self._regress(stage, box_regression, proposals, labels, shapes)
        boxes, scores, labels = self.postprocess_detections(summed / self.num_stages, box_regression, proposals, shapes)
        result = [{"boxes": b, "labels": c, "scores": s} for b, s, c in zip(boxes, scores, labels)]
        if self.has_mask():
            pooled = self.mask_roi_pool(features, boxes, shapes)
            per_stage = [maskrcnn_inference(self._masks(s, pooled), labels) for s in range(self.num_stages)]
            for r, probs in zip(result, zip(*per_stage)):
                r["masks"] = torch.stack(probs).mean(dim=0)
        return result

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if not self.training:
            return self._detect(features, proposals, image_shapes), {}
        self.check_targets(targets)
        return [], self._train(features, proposals, image_shapes, targets)  # type: ignore[arg-type]


def _init_box_branch(box_head: nn.Module, predictor: FastRCNNPredictor) -> None:
    """mmdet's initialisation of ``ConvFCBBoxHead`` (``Shared2FCBBoxHead``, the cascade's 4-conv-1-fc heads):
    Xavier-uniform FCs, classifier N(0, 0.01), regressor N(0, 0.001), zero biases (the convolutions keep
    torchvision's Kaiming-normal fan-out, mmcv ``ConvModule``'s)."""
    for layer in box_head.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    for layer, std in ((predictor.cls_score, 0.01), (predictor.bbox_pred, 0.001)):
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)


def _rpn(
    network: type[RegionProposalNetwork],
    width: int,
    pre_nms_top_n: tuple[int, int],
    post_nms_top_n: tuple[int, int],
    batch_size_per_image: int,
    anchor_scale: float = 8,
) -> RegionProposalNetwork:
    """The official RPN (mmdet anchors, 256 anchors sampled 1/2 positive at IoU 0.7/0.3, NMS 0.7), top-n
    (training, testing) before and after NMS, anchors ``anchor_scale`` strides wide; ``network`` sets the loss."""
    anchors = MMDetAnchorGenerator(octave_scale=anchor_scale)
    return network(
        anchors,
        Float32RPNHead(width, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=batch_size_per_image,
        positive_fraction=0.5,
        pre_nms_top_n=dict(training=pre_nms_top_n[0], testing=pre_nms_top_n[1]),
        post_nms_top_n=dict(training=post_nms_top_n[0], testing=post_nms_top_n[1]),
        nms_thresh=0.7,
    )


def _transform(min_size: int | tuple[int, ...], max_size: int) -> GeneralizedRCNNTransform:
    return GeneralizedRCNNTransform(min_size, max_size, list(IMAGE_MEAN), list(IMAGE_STD), size_divisible=32)


def _check_classes(num_classes: int) -> None:
    if num_classes < 1:
        raise ValueError(f"a detector needs at least one object class, got num_classes={num_classes}")


def _forward_dummy(
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


class _UniFormerRCNN(MaskRCNN):
    """What both official detectors assemble alike, in this order (so a seed gives the same weights): the class
    count checked, the RPN (``rpn_network`` sets its loss) on the FPN's width, the RoI poolers (the mask pooler
    only with ``mask``), the detector's RoI heads from ``roi_heads(width, box_pool, mask_pool)`` (``mask_pool``
    ``None``: box-only), the transform and ``num_classes``. The options are those of :class:`UniFormerMaskRCNN`."""

    def __init__(
        self,
        backbone: UniFormerFPN,
        num_classes: int,
        rpn_network: type[RegionProposalNetwork],
        roi_heads: Callable[[int, nn.Module, nn.Module | None], RoIHeads],
        *,
        mask: bool,
        min_size: int | tuple[int, ...],
        max_size: int,
        rpn_pre_nms_top_n: tuple[int, int],
        rpn_post_nms_top_n: tuple[int, int],
        rpn_batch_size_per_image: int,
        anchor_scale: float,
    ) -> None:
        _check_classes(num_classes)
        width = backbone.out_channels
        rpn = _rpn(rpn_network, width, rpn_pre_nms_top_n, rpn_post_nms_top_n, rpn_batch_size_per_image, anchor_scale)
        names = ["0", "1", "2", "3"]
        heads = roi_heads(
            width, AlignedMultiScaleRoIAlign(names, 7), AlignedMultiScaleRoIAlign(names, 14) if mask else None
        )
        # MaskRCNN's own constructor would build torchvision's RPN and heads: assemble ours instead
        GeneralizedRCNN.__init__(self, backbone, rpn, heads, _transform(min_size, max_size))
        self.num_classes = num_classes


class UniFormerMaskRCNN(_UniFormerRCNN):
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
        def roi_heads(width: int, box_pool: nn.Module, mask_pool: nn.Module | None) -> RoIHeads:
            box_head = TwoMLPHead(width * 7 * 7, representation_size)
            box_predictor = FastRCNNPredictor(representation_size, num_classes + 1)
            _init_box_branch(box_head, box_predictor)
            masked = mask_pool is not None
            return UniFormerRoIHeads(
                box_pool,
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
                mask_roi_pool=mask_pool,
                mask_head=MaskRCNNHeads(width, (mask_channels,) * 4, 1) if masked else None,
                mask_predictor=MaskRCNNPredictor(mask_channels, mask_channels, num_classes + 1) if masked else None,
            )

        super().__init__(
            backbone,
            num_classes,
            L1RegionProposalNetwork,
            roi_heads,
            mask=mask,
            min_size=min_size,
            max_size=max_size,
            rpn_pre_nms_top_n=rpn_pre_nms_top_n,
            rpn_post_nms_top_n=rpn_post_nms_top_n,
            rpn_batch_size_per_image=rpn_batch_size_per_image,
            anchor_scale=anchor_scale,
        )

    def forward_dummy(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The computation mmdet's ``get_flops`` counts (see :func:`_forward_dummy`), for
        :func:`uniformer.models.count_gmacs`."""
        heads = self.roi_heads
        masks = [(heads.mask_head, heads.mask_predictor)] if heads.has_mask() else None
        return _forward_dummy(self, images, [(heads.box_head, heads.box_predictor)], masks)


class UniFormerCascadeMaskRCNN(_UniFormerRCNN):
    """Cascade Mask R-CNN (official ``cascade_mask_rcnn_uniformer_fpn.py`` + ``exp/cascade_mask_rcnn_3x_ms_hybrid_*``)
    as a :class:`~torchvision.models.detection.MaskRCNN` (the same API as :class:`UniFormerMaskRCNN`; the training
    loss dict holds the RPN's two losses and per-stage ``s<i>.loss_*``, already weighted 1 / 0.5 / 0.25).

    The backbone, FPN, anchors, RoI poolers and transform are :class:`UniFormerMaskRCNN`'s. What the cascade
    config changes: the RPN loss is torchvision's own (smooth L1 with beta 1/9, as ``SmoothL1Loss(beta=1/9)``),
    2000 proposals are kept in training (``rpn_proposal.max_per_img=2000``); the RoI head is
    :class:`CascadeRoIHeads` with three stages, each a 4-conv + 1-fc box head with BatchNorm
    (:class:`~torchvision.models.detection.faster_rcnn.FastRCNNConvFCHead`; mmdet ``ConvFCBBoxHead``
    ``num_shared_convs=4, num_shared_fcs=1``, ``norm_cfg=SyncBN``: under DDP set ``trainer.sync_bn``, which
    converts every BatchNorm, the backbone's included, where the official run keeps the backbone's plain) and
    a mask head (``FCNMaskHead``, 4 convs, as Mask R-CNN's).

    Differences from mmdet 2.11 beyond those of :class:`UniFormerMaskRCNN`: the GIoU of torchvision adds its
    eps (1e-7) to the union and enclosing areas where mmdet clamps them at 1e-6 (only degenerate boxes differ);
    mmdet orders a stage's sampled RoIs positives first, here they keep the proposal order (the same set).
    """

    def __init__(
        self,
        backbone: UniFormerFPN,
        num_classes: int,
        *,
        mask: bool = True,
        min_size: int | tuple[int, ...] = 800,
        max_size: int = 1333,
        rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000),
        rpn_post_nms_top_n: tuple[int, int] = (2000, 1000),
        box_detections_per_img: int = 100,
        rpn_batch_size_per_image: int = 256,
        box_batch_size_per_image: int = 512,
        representation_size: int = 1024,
        mask_channels: int = 256,
        stage_loss_weights: Sequence[float] = CASCADE_LOSS_WEIGHTS,
        anchor_scale: float = 8,
    ) -> None:
        def roi_heads(width: int, box_pool: nn.Module, mask_pool: nn.Module | None) -> RoIHeads:
            stages = range(len(stage_loss_weights))
            box_heads = [
                FastRCNNConvFCHead((width, 7, 7), [width] * 4, [representation_size], norm_layer=nn.BatchNorm2d)
                for _ in stages
            ]
            box_predictors = [FastRCNNPredictor(representation_size, num_classes + 1) for _ in stages]
            for head, predictor in zip(box_heads, box_predictors):
                _init_box_branch(head, predictor)
            masked = mask_pool is not None
            return CascadeRoIHeads(
                box_pool,
                box_heads,
                box_predictors,
                stage_loss_weights=stage_loss_weights,
                batch_size_per_image=box_batch_size_per_image,
                detections_per_img=box_detections_per_img,
                mask_roi_pool=mask_pool,
                mask_heads=[MaskRCNNHeads(width, (mask_channels,) * 4, 1) for _ in stages] if masked else None,
                mask_predictors=(
                    [MaskRCNNPredictor(mask_channels, mask_channels, num_classes + 1) for _ in stages]
                    if masked
                    else None
                ),
            )

        super().__init__(
            backbone,
            num_classes,
            RegionProposalNetwork,
            roi_heads,
            mask=mask,
            min_size=min_size,
            max_size=max_size,
            rpn_pre_nms_top_n=rpn_pre_nms_top_n,
            rpn_post_nms_top_n=rpn_post_nms_top_n,
            rpn_batch_size_per_image=rpn_batch_size_per_image,
            anchor_scale=anchor_scale,
        )

    def forward_dummy(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """mmdet's ``CascadeRoIHead.forward_dummy``: every stage's box branch on 1000 RoIs and mask branch on 100
        (see :func:`_forward_dummy`), for :func:`uniformer.models.count_gmacs`."""
        heads = self.roi_heads
        masks = list(zip(heads.mask_head, heads.mask_predictor)) if heads.has_mask() else None
        return _forward_dummy(self, images, list(zip(heads.box_head, heads.box_predictor)), masks)


DETECTORS: dict[str, type[MaskRCNN]] = {"mask_rcnn": UniFormerMaskRCNN, "cascade_mask_rcnn": UniFormerCascadeMaskRCNN}
# the options of build_detector (the detector's constructor options and the FPN width)
DETECTOR_OPTIONS = (
    "mask",
    "min_size",
    "max_size",
    "rpn_pre_nms_top_n",
    "rpn_post_nms_top_n",
    "box_detections_per_img",
    "rpn_batch_size_per_image",
    "box_batch_size_per_image",
    "representation_size",
    "mask_channels",
    "fpn_channels",
    "anchor_scale",
    "stage_loss_weights",  # Cascade Mask R-CNN only
)


def detector_options(section: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`DETECTOR_OPTIONS` of a config section (lists as tuples), as a training run records them."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in section.items() if k in DETECTOR_OPTIONS}


def build_detector(
    detector: str,
    num_classes: int,
    backbone: Mapping[str, Any],
    *,
    mask: bool = True,
    fpn_channels: int = 256,
    **options: Any,
) -> MaskRCNN:
    """The official ``detector`` (a key of :data:`DETECTORS`: ``"mask_rcnn"``, ``"cascade_mask_rcnn"``) on a dense
    UniFormer built from ``backbone`` (:class:`UniFormer` arguments; ``dense=True`` is implied) and an FPN of
    ``fpn_channels``; ``options`` go to the detector's class (``min_size``, ``max_size``, ...)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; known: {', '.join(DETECTORS)}")
    body = UniFormer(**{**backbone, "dense": True})
    return DETECTORS[detector](UniFormerFPN(body, fpn_channels), num_classes, mask=mask, **options)


def build_mask_rcnn(
    num_classes: int, backbone: Mapping[str, Any], *, mask: bool = True, fpn_channels: int = 256, **options: Any
) -> UniFormerMaskRCNN:
    """The official Mask R-CNN (:func:`build_detector` ``("mask_rcnn", ...)``)."""
    return build_detector("mask_rcnn", num_classes, backbone, mask=mask, fpn_channels=fpn_channels, **options)
