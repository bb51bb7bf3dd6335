"""Semantic segmentation: the dense UniFormer backbone with an UperNet or Semantic FPN head.

:class:`UniFormerSegmentor` is mmseg 0.x's ``EncoderDecoder`` in "whole" inference mode (the UniFormer
segmentation configs, Sense-X/UniFormer ``semantic_segmentation/configs/_base_/models/upernet_uniformer.py`` and
``semantic_segmentation/fpn_seg/configs/_base_/models/fpn_uniformer.py``). Its attributes ``backbone``,
``neck``, ``decode_head`` and ``auxiliary_head`` and everything under them carry the official names, so a
released checkpoint (``state_dict`` with ``backbone.*``, ``decode_head.*`` and ``auxiliary_head.*`` or
``neck.*``) loads strictly as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
import torch.nn as nn

from uniformer.models.heads import FPN, FCNHead, FPNHead, UPerHead, resize
from uniformer.models.uniformer import UniFormer

__all__ = [
    "MIN_INPUT_SIZE",
    "Decoder",
    "InferenceConfig",
    "UniFormerSegmentor",
    "build_segmentor",
    "head_widths",
    "slide_inference",
]

Decoder = Literal["upernet", "fpn"]

MIN_INPUT_SIZE = 32
"""The smallest height and width a segmentor takes: below it the backbone's stride-32 map is empty."""


@dataclass(frozen=True)
class InferenceConfig:
    """How an eval-mode segmentor turns images into logits: mmseg's ``test_cfg`` plus its test-time augmentation.

    ``mode``: ``"whole"`` (the image at once, the UniFormer configs' choice) or ``"slide"`` (``crop_size``
    windows every ``stride`` pixels, mmseg's ``slide_inference``). ``scales`` and ``flip``: mmseg's
    ``MultiScaleFlipAug`` (``img_ratios``, ``flip=True``) run on the model's input, each view's logits resized
    back to the input, soft-maxed and averaged (mmseg ``aug_test``).
    """

    mode: Literal["whole", "slide"] = "whole"
    crop_size: int = 512
    stride: int = 341
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise ValueError(f"test mode must be 'whole' or 'slide', got {self.mode!r}")
        if self.crop_size <= 0 or not 0 < self.stride <= self.crop_size:
            raise ValueError(f"slide needs 0 < stride <= crop_size; got crop {self.crop_size}, stride {self.stride}")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"test scales must be positive ratios; got {list(self.scales)}")

    @property
    def augmented(self) -> bool:
        return tuple(self.scales) != (1.0,) or self.flip


def slide_inference(
    logits_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, crop_size: int, stride: int
) -> torch.Tensor:
    """Logits of ``images`` (B, 3, H, W) from overlapping ``crop_size`` windows, as mmseg's ``slide_inference``.

    Windows start every ``stride`` pixels; the last one of a row or column is moved back to end at the image's
    edge, and a window larger than the image is the image itself. Each pixel gets the mean of the logits of
    the windows that cover it. ``logits_of`` maps a crop (B, 3, h, w) to logits (B, C, h, w).
    """
    height, width = images.shape[-2:]
    rows = max(height - crop_size + stride - 1, 0) // stride + 1
    cols = max(width - crop_size + stride - 1, 0) // stride + 1
    total: torch.Tensor | None = None
    count = images.new_zeros((1, 1, height, width))
    for row in range(rows):
        for col in range(cols):
            bottom, right = min(row * stride + crop_size, height), min(col * stride + crop_size, width)
            top, left = max(bottom - crop_size, 0), max(right - crop_size, 0)
            logits = logits_of(images[:, :, top:bottom, left:right])
            if total is None:
                total = logits.new_zeros((*logits.shape[:2], height, width))
            total[:, :, top:bottom, left:right] += logits
            count[:, :, top:bottom, left:right] += 1
    return total / count


WHOLE = InferenceConfig()  # whole-image inference, no test-time augmentation (mmseg's default test_cfg)


class UniFormerSegmentor(nn.Module):
    """Backbone -> optional neck -> decode head (+ optional auxiliary head), logits at the input size.

    ``model.eval()(images)`` returns logits (B, num_classes, H, W) for images (B, 3, H, W): the decode head's
    stride-4 logits resized bilinearly (align_corners=False) to the input size, as mmseg's ``encode_decode``
    ("whole" mode); ``model(images, test_cfg=...)`` (an :class:`InferenceConfig`, an argument of the call so that
    callers sharing one model never see each other's) selects sliding windows or multi-scale + flip.
    In training mode the model returns ``{"out": logits, "aux": auxiliary logits}`` (``"aux"`` only with an
    auxiliary head), both resized to the input size as mmseg's losses resize them to the label size: the
    official loss is cross-entropy on each (ignore index 255), weighted 1.0 and 0.4 (UperNet configs).
    ``model.decode_head(model.features(images))`` gives the stride-4 logits themselves.
    """

    def __init__(
        self,
        backbone: UniFormer,
        decode_head: nn.Module,
        auxiliary_head: nn.Module | None = None,
        neck: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not getattr(backbone, "dense", False):
            raise ValueError("a segmentor needs a dense backbone (UniFormer(dense=True))")
        # registration order as mmseg's EncoderDecoder: backbone, neck, decode_head, auxiliary_head
        self.backbone = backbone
        self.neck = neck
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.num_classes = decode_head.num_classes

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The maps the heads read: the backbone's four, through the neck if there is one."""
        maps = self.backbone(images)
        return maps if self.neck is None else self.neck(maps)

    def whole_inference(self, images: torch.Tensor) -> torch.Tensor:
        """The decode head's logits resized to the input size (mmseg ``encode_decode``)."""
        return resize(self.decode_head(self.features(images)), images.shape[-2:])

    def inference(self, images: torch.Tensor, cfg: InferenceConfig = WHOLE) -> torch.Tensor:
        """Logits by ``cfg`` (whole or slide); with multi-scale or flip views, the log of the views' mean
        probabilities (so the arg-max is mmseg's ``aug_test`` and the output stays a logit map)."""
        single: Callable[[torch.Tensor], torch.Tensor] = self.whole_inference
        if cfg.mode == "slide":
            single = partial(slide_inference, self.whole_inference, crop_size=cfg.crop_size, stride=cfg.stride)
        if not cfg.augmented:
            return single(images)
        size = images.shape[-2:]
        total = 0.0
        for ratio in cfg.scales:
            scaled = images if ratio == 1 else resize(images, [round(ratio * n) for n in size])
            for flip in (False, True) if cfg.flip else (False,):
                logits = single(scaled.flip(-1)) if flip else single(scaled)
                logits = resize(logits.flip(-1) if flip else logits, size)
                total = total + logits.float().softmax(1)
        return (total / (len(cfg.scales) * (2 if cfg.flip else 1))).log()

    def forward(
        self, images: torch.Tensor, test_cfg: InferenceConfig = WHOLE
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        if not self.training:
            return self.inference(images, test_cfg)
        maps = self.features(images)
        size = images.shape[-2:]
        outputs = {"out": resize(self.decode_head(maps), size)}
        if self.auxiliary_head is not None:
            outputs["aux"] = resize(self.auxiliary_head(maps), size)
        return outputs


def build_segmentor(
    decoder: Decoder,
    num_classes: int,
    backbone: Mapping[str, Any],
    channels: int | None = None,
    aux_channels: int = 256,
    neck_channels: int = 256,
    dropout: float = 0.1,
) -> UniFormerSegmentor:
    """A segmentor with the official head configuration.

    Args:
        decoder: ``"upernet"`` (UPerHead on the four maps + FCN auxiliary head on stage 3) or ``"fpn"`` (FPN neck
            + Semantic FPN head).
        num_classes: classes of both heads.
        backbone: :class:`UniFormer` arguments (``dense=True`` is implied).
        channels: decode-head width (official: 512 UperNet, 128 Semantic FPN).
        aux_channels: FCN auxiliary-head width (official 256).
        neck_channels: FPN neck width (official 256).
        dropout: ``Dropout2d`` before each classifier (official 0.1).
    """
    net = UniFormer(**{**backbone, "dense": True})
    widths = net.embed_dim
    if decoder == "upernet":
        return UniFormerSegmentor(
            net,
            UPerHead(widths, channels or 512, num_classes, dropout=dropout),
            auxiliary_head=FCNHead(widths[2], aux_channels, num_classes, in_index=2, dropout=dropout),
        )
    if decoder == "fpn":
        head = FPNHead([neck_channels] * 4, channels or 128, num_classes, dropout=dropout)
        return UniFormerSegmentor(net, head, neck=FPN(widths, neck_channels))
    raise ValueError(f"decoder must be 'upernet' or 'fpn', got {decoder!r}")


# build_segmentor's width arguments and the weight (and its dimension) that holds each
_WIDTH_KEYS = {
    "channels": ("decode_head.conv_seg.weight", 1),  # (classes, channels, 1, 1)
    "aux_channels": ("auxiliary_head.conv_seg.weight", 1),
    "neck_channels": ("neck.lateral_convs.0.conv.weight", 0),  # (neck channels, stage-1 width, 1, 1)
}


def head_widths(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The head widths (:func:`build_segmentor`'s ``channels``, ``aux_channels``, ``neck_channels``) a segmentor
    state dict was trained with, read from weight shapes; those it lacks are left out (the official widths
    apply). So the weights of a reduced run, whose widths are not the zoo's, build the model they fit."""
    return {name: int(state_dict[key].shape[dim]) for name, (key, dim) in _WIDTH_KEYS.items() if key in state_dict}
