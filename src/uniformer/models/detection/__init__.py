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

One concept per module: ``backbone`` (UniFormer + FPN), ``anchors``, ``poolers``, ``rpn``, ``roi_heads``,
``mask_rcnn``, ``masks`` (one mask pasted into its image), ``cascade``, ``options`` (the one
:class:`DetectorOptions`), ``builders`` and ``mmdet`` (the official checkpoints' keys in this layout).
"""

from uniformer.models.detection.anchors import MMDetAnchorGenerator
from uniformer.models.detection.backbone import FPN_STRIDES, UniFormerFPN
from uniformer.models.detection.builders import DETECTORS, build_detector, build_mask_rcnn
from uniformer.models.detection.cascade import CascadeRoIHeads, UniFormerCascadeMaskRCNN, giou_box_loss
from uniformer.models.detection.mask_rcnn import AssembledRCNN, UniFormerMaskRCNN
from uniformer.models.detection.masks import paste_mask
from uniformer.models.detection.options import DetectorOptions, detector_options
from uniformer.models.detection.poolers import AlignedMultiScaleRoIAlign
from uniformer.models.detection.roi_heads import UniFormerRoIHeads, l1_box_loss, postprocess_detections
from uniformer.models.detection.rpn import Float32RPNHead, L1RegionProposalNetwork

__all__ = [
    "AlignedMultiScaleRoIAlign",
    "AssembledRCNN",
    "CascadeRoIHeads",
    "DETECTORS",
    "DetectorOptions",
    "FPN_STRIDES",
    "Float32RPNHead",
    "L1RegionProposalNetwork",
    "MMDetAnchorGenerator",
    "UniFormerCascadeMaskRCNN",
    "UniFormerFPN",
    "UniFormerMaskRCNN",
    "UniFormerRoIHeads",
    "build_detector",
    "build_mask_rcnn",
    "detector_options",
    "giou_box_loss",
    "l1_box_loss",
    "paste_mask",
    "postprocess_detections",
]
