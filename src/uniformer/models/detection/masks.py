"""Pasting one instance's mask into its image: what torchvision's ``paste_masks_in_image`` computes for a stack of
masks, one mask at a time and only inside its box.

``paste_masks_in_image`` makes an ``(N, 1, H, W)`` float tensor at the image's size for all ``N`` detections (an
R-CNN keeps up to 100): for a 12-megapixel photo that is 4.8 GB before anything is thresholded. A prediction keeps
a few of them; :func:`paste_mask` gives one kept mask as booleans at the image's size, the float values existing
only within its box.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

__all__ = ["paste_mask"]


def paste_mask(mask: torch.Tensor, box: torch.Tensor, size: Sequence[int], threshold: float) -> torch.Tensor:
    """The ``(H, W)`` boolean mask of one detection in an image of ``size = (H, W)``: ``mask`` (``(M, M)``
    probabilities over the box, an R-CNN's 28 x 28), ``box`` (x1 y1 x2 y2 in the image's pixels), pixels above
    ``threshold``. Equal to ``paste_masks_in_image(mask[None, None], box[None], size)[0, 0] > threshold``
    (a 1-pixel padded mask resized bilinearly onto the box grown to match)."""
    height, width = int(size[0]), int(size[1])
    padded, scale = expand_masks(mask[None, None].float(), padding=1)
    x0, y0, x1, y1 = expand_boxes(box[None].float(), scale).to(torch.int64)[0].tolist()
    w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
    out = torch.zeros((height, width), dtype=torch.bool)
    left, right, top, bottom = max(x0, 0), min(x1 + 1, width), max(y0, 0), min(y1 + 1, height)
    if left >= right or top >= bottom:  # the box lies outside the image
        return out
    resized = F.interpolate(padded, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    out[top:bottom, left:right] = resized[top - y0 : bottom - y0, left - x0 : right - x0] > threshold
    return out
