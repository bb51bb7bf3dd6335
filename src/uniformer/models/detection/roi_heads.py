"""The RoI heads of Mask R-CNN: torchvision's, with the official L1 box loss and float32 outputs."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference, maskrcnn_loss

__all__ = ["BOX_WEIGHTS", "l1_box_loss", "UniFormerRoIHeads", "init_box_branch"]


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
