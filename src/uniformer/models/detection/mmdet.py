"""The official detectors' checkpoints (mmdet 2.x keys) in this package's torchvision layout.

:func:`uniformer.models.checkpoint.read_checkpoint` maps such a state dict as it reads it, so every path
(``create_model``, ``convert``, ``eval``) sees one layout.
"""

from __future__ import annotations

import re

import torch

__all__ = ["is_mmdet_detector_state", "from_mmdet_detector"]

# mmdet 2.x Mask R-CNN (RPNHead, Shared2FCBBoxHead, FCNMaskHead, FPN) and Cascade Mask R-CNN (a ConvFCBBoxHead
# with 4 conv + 1 fc and an FCNMaskHead per stage, ``roi_head.{bbox,mask}_head.<stage>.``) of Sense-X/UniFormer
# object_detection -> UniFormerMaskRCNN / UniFormerCascadeMaskRCNN (torchvision's
# layouts; a cascade stage s is index s of the ModuleLists): patterns, first match wins. In the cascade box head
# (torchvision FastRCNNConvFCHead) module i < 4 is conv i (``.0`` conv, ``.1`` BatchNorm), 4 the flatten, 5 the fc.
_MMDET_RENAMES = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"backbone\.", "backbone.body."),
        (r"neck\.", "backbone.fpn."),
        (r"rpn_head\.rpn_conv\.", "rpn.head.conv.0.0."),
        (r"rpn_head\.rpn_cls\.", "rpn.head.cls_logits."),
        (r"rpn_head\.rpn_reg\.", "rpn.head.bbox_pred."),
        (r"roi_head\.bbox_head\.shared_fcs\.0\.", "roi_heads.box_head.fc6."),
        (r"roi_head\.bbox_head\.shared_fcs\.1\.", "roi_heads.box_head.fc7."),
        (r"roi_head\.bbox_head\.(\d+)\.shared_convs\.([0-3])\.conv\.", r"roi_heads.box_head.\1.\2.0."),
        (r"roi_head\.bbox_head\.(\d+)\.shared_convs\.([0-3])\.bn\.", r"roi_heads.box_head.\1.\2.1."),
        (r"roi_head\.bbox_head\.(\d+)\.shared_fcs\.0\.", r"roi_heads.box_head.\1.5."),
        (r"roi_head\.bbox_head\.(\d+\.)?fc_cls\.", r"roi_heads.box_predictor.\1cls_score."),
        (r"roi_head\.bbox_head\.(\d+\.)?fc_reg\.", r"roi_heads.box_predictor.\1bbox_pred."),
        (r"roi_head\.mask_head\.(\d+\.)?convs\.(\d+)\.conv\.", r"roi_heads.mask_head.\1\2.0."),
        (r"roi_head\.mask_head\.(\d+\.)?upsample\.", r"roi_heads.mask_predictor.\1conv5_mask."),
        (r"roi_head\.mask_head\.(\d+\.)?conv_logits\.", r"roi_heads.mask_predictor.\1mask_fcn_logits."),
    )
)
_CLASS_ROWS = re.compile(
    r"roi_heads\.(box_predictor\.(?:\d+\.)?(cls_score|bbox_pred)|mask_predictor\.(?:\d+\.)?mask_fcn_logits)\."
)


def is_mmdet_detector_state(state: dict[str, torch.Tensor]) -> bool:
    """``state`` is an mmdet two-stage detector's (keys ``rpn_head.*`` and ``roi_head.*``)."""
    return any(k.startswith("rpn_head.") for k in state) and any(k.startswith("roi_head.") for k in state)


def _mmdet_key(key: str) -> str | None:
    for pattern, replacement in _MMDET_RENAMES:
        if pattern.match(key):
            return pattern.sub(replacement, key, count=1)
    return None


def from_mmdet_detector(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An official mmdet 2.x Mask R-CNN or Cascade Mask R-CNN state dict in the layout of
    :class:`~uniformer.models.detection.UniFormerMaskRCNN` / ``UniFormerCascadeMaskRCNN``: keys renamed
    (``_MMDET_RENAMES``), and the class rows of every (stage's) predictor moved to torchvision's order,
    background first:

    * ``fc_cls`` (C + 1 rows, background last in mmdet) -> ``cls_score`` rows (background, class 1, ..., class C);
    * ``fc_reg`` (4 C rows, no background deltas) -> ``bbox_pred`` (4 (C + 1) rows, the background's 4 zero);
    * ``conv_logits`` (C masks) -> ``mask_fcn_logits`` (C + 1, the background's zero: never read).

    Returns the mapped state and the keys no rule maps (the checkpoint reader's error lists them); missing keys
    surface when the state is loaded.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        new = _mmdet_key(key)
        if new is None:
            unknown.append(key)
            continue
        rows = _CLASS_ROWS.match(new)
        if rows and rows.group(2) == "cls_score":
            value = torch.cat([value[-1:], value[:-1]])
        elif rows:
            width = 4 if rows.group(2) == "bbox_pred" else 1
            value = torch.cat([value.new_zeros((width, *value.shape[1:])), value])
        out[new] = value
    return out, unknown
