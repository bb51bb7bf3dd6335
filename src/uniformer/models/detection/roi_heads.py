"""The RoI heads of Mask R-CNN: torchvision's, with the official L1 box loss and float32 outputs."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference, maskrcnn_loss
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

__all__ = ["BOX_WEIGHTS", "UniFormerRoIHeads", "init_box_branch", "l1_box_loss", "postprocess_detections"]


BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # 1 / target_stds (0.1, 0.1, 0.2, 0.2): torchvision's BoxCoder weights


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


def postprocess_detections(
    heads: RoIHeads,
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    proposals: list[torch.Tensor],
    image_shapes: list[tuple[int, int]],
    score_thresh: float | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """torchvision's ``RoIHeads.postprocess_detections`` (decode, clip, one candidate per object class, scores
    strictly above the threshold, tiny boxes dropped, per-class NMS, the ``detections_per_img`` best), with the
    score threshold an argument of the call (``None``: the heads' own ``score_thresh``), so that a caller's
    threshold never changes the shared model."""
    threshold = heads.score_thresh if score_thresh is None else score_thresh
    num_classes = class_logits.shape[-1]
    per_image = [len(p) for p in proposals]
    all_boxes, all_scores, all_labels = [], [], []
    for boxes, scores, shape in zip(
        heads.box_coder.decode(box_regression, proposals).split(per_image, 0),
        F.softmax(class_logits, -1).split(per_image, 0),
        image_shapes,
    ):
        boxes = clip_boxes_to_image(boxes, shape)
        labels = torch.arange(num_classes, device=class_logits.device).view(1, -1).expand_as(scores)
        boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
        keep = torch.where(scores > threshold)[0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, heads.nms_thresh)[: heads.detections_per_img]
        all_boxes.append(boxes[keep])
        all_scores.append(scores[keep])
        all_labels.append(labels[keep])
    return all_boxes, all_scores, all_labels


class UniFormerRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` (its sampling, box coding, post-processing, mask loss and inference), with the
    L1 box loss of :func:`l1_box_loss` and the heads' outputs taken in float32 (decoding and losses stay exact
    under autocast, as :class:`~uniformer.models.detection.rpn.Float32RPNHead`). Without ``mask_roi_pool`` it is a
    box-only (Faster R-CNN) head."""

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
        score_thresh: float | None = None,
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
            boxes, scores, classes = postprocess_detections(
                self, class_logits, box_regression, proposals, image_shapes, score_thresh
            )
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


def init_box_branch(box_head: nn.Module, predictor: FastRCNNPredictor) -> None:
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
