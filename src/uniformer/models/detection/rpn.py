"""The region proposal network of the detectors: torchvision's RPN with mmdet's anchors, float32 outputs and the
official configuration's L1 loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from uniformer.models.detection.anchors import MMDetAnchorGenerator
from uniformer.models.detection.options import DetectorOptions

__all__ = ["Float32RPNHead", "L1RegionProposalNetwork", "official_rpn"]


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


def official_rpn(
    network: type[RegionProposalNetwork], width: int, options: DetectorOptions, post_nms_top_n: tuple[int, int]
) -> RegionProposalNetwork:
    """The official RPN (mmdet anchors, 256 anchors sampled 1/2 positive at IoU 0.7/0.3, NMS 0.7) on
    ``width``-channel maps: ``options`` give the top-n before NMS, the sample size and the anchor size in strides;
    ``post_nms_top_n`` (training, testing) is the detector's; ``network`` sets the loss."""
    anchors = MMDetAnchorGenerator(octave_scale=options.anchor_scale)
    pre_nms_top_n = options.rpn_pre_nms_top_n
    return network(
        anchors,
        Float32RPNHead(width, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=options.rpn_batch_size_per_image,
        positive_fraction=0.5,
        pre_nms_top_n=dict(training=pre_nms_top_n[0], testing=pre_nms_top_n[1]),
        post_nms_top_n=dict(training=post_nms_top_n[0], testing=post_nms_top_n[1]),
        nms_thresh=0.7,
    )
