"""Cascade Mask R-CNN: its RoI heads (torchvision has none: three stages of box and mask heads) and the detector."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import box_iou, clip_boxes_to_image, generalized_box_iou_loss

from uniformer.models.detection.mask_rcnn import (
    AssembledRCNN,
    forward_dummy,
    roi_poolers,
)
from uniformer.models.detection.options import DetectorOptions
from uniformer.models.detection.roi_heads import init_box_branch, postprocess_detections

__all__ = [
    "CASCADE_IOUS",
    "CASCADE_STDS",
    "CASCADE_LOSS_WEIGHTS",
    "GIOU_LOSS_WEIGHT",
    "giou_box_loss",
    "CascadeRoIHeads",
    "cascade_roi_heads",
    "UniFormerCascadeMaskRCNN",
]


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

    Box regression is class-specific (the base config says class-agnostic): the official ``exp/cascade_*/config.py``
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
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        shapes: list[tuple[int, int]],
        score_thresh: float | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        summed = None
        for stage in range(self.num_stages):
            class_logits, box_regression = self._boxes(stage, features, proposals, shapes)
            summed = class_logits if summed is None else summed + class_logits
            if stage + 1 < self.num_stages:
                labels = class_logits[:, 1:].argmax(dim=1) + 1
                proposals = self._regress(stage, box_regression, proposals, labels, shapes)
        mean_logits = summed / self.num_stages
        boxes, scores, labels = postprocess_detections(
            self, mean_logits, box_regression, proposals, shapes, score_thresh
        )
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
        score_thresh: float | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if not self.training:
            return self._detect(features, proposals, image_shapes, score_thresh), {}
        self.check_targets(targets)
        return [], self._train(features, proposals, image_shapes, targets)  # type: ignore[arg-type]


def cascade_roi_heads(width: int, num_classes: int, options: DetectorOptions) -> CascadeRoIHeads:
    """The official cascade RoI heads on ``width``-channel maps: per stage a 4-conv + 1-fc box head with BatchNorm
    (FC of ``options.representation_size``) and, with ``options.mask``, a 4-conv mask head of
    ``options.mask_channels``; ``options.stage_loss_weights`` (default 1 / 0.5 / 0.25) sets the stage count."""
    box_pool, mask_pool = roi_poolers(options.mask)
    weights = CASCADE_LOSS_WEIGHTS if options.stage_loss_weights is None else options.stage_loss_weights
    stages, size, channels = range(len(weights)), options.representation_size, options.mask_channels
    box_heads = [FastRCNNConvFCHead((width, 7, 7), [width] * 4, [size], norm_layer=nn.BatchNorm2d) for _ in stages]
    box_predictors = [FastRCNNPredictor(size, num_classes + 1) for _ in stages]
    for head, predictor in zip(box_heads, box_predictors):
        init_box_branch(head, predictor)
    masked = mask_pool is not None
    return CascadeRoIHeads(
        box_pool,
        box_heads,
        box_predictors,
        stage_loss_weights=weights,
        batch_size_per_image=options.box_batch_size_per_image,
        detections_per_img=options.box_detections_per_img,
        mask_roi_pool=mask_pool,
        mask_heads=[MaskRCNNHeads(width, (channels,) * 4, 1) for _ in stages] if masked else None,
        mask_predictors=([MaskRCNNPredictor(channels, channels, num_classes + 1) for _ in stages] if masked else None),
    )


class UniFormerCascadeMaskRCNN(AssembledRCNN):
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

    rpn_network = RegionProposalNetwork  # torchvision's own loss: smooth L1 with beta 1/9, as the cascade config
    rpn_post_nms_top_n = (2000, 1000)  # the cascade config's rpn_proposal.max_per_img=2000 in training
    build_roi_heads = staticmethod(cascade_roi_heads)

    def forward_dummy(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """mmdet's ``CascadeRoIHead.forward_dummy``: every stage's box branch on 1000 RoIs and mask branch on 100
        (see :func:`~uniformer.models.detection.mask_rcnn.forward_dummy`), for :func:`uniformer.models.count_gmacs`."""
        heads = self.roi_heads
        masks = list(zip(heads.mask_head, heads.mask_predictor)) if heads.has_mask() else None
        return forward_dummy(self, images, list(zip(heads.box_head, heads.box_predictor)), masks)
