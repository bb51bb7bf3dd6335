"""The model zoo: every released UniFormer as data, and the functions that build models from it.

This module is the single source of truth for a model: architecture arguments, dataset and class names,
input size, frames and sampling stride, test views, published accuracy and cost, and the file name of the
released checkpoint on the Hugging Face Hub. The README tables, ``uniformer models``/``uniformer info``, the
training configs and the demo all read it.

Published numbers come from the official model-zoo tables (Sense-X/UniFormer
``image_classification/README.md``, ``video_classification/README.md``, ``semantic_segmentation/README.md`` and
``pose_estimation/README.md``);
released file names from the official Hub repositories ``Sense-X/uniformer_image`` and ``Sense-X/uniformer_video``.
Video GFLOPs are given per view: the tables' total over all test views divided by clips x crops.

The image models are also registered with timm (``timm.create_model("uniformer_small")`` once ``uniformer``
is imported), with default cfgs generated from the same entries.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from uniformer.data.transforms import VIDEO_MEAN, VIDEO_STD
from uniformer.labels import load_labels, load_palette
from uniformer.models.checkpoint import (
    CheckpointFile,
    checkpoint_filter_fn,
    download_checkpoint,
    is_image_state,
    load_state,
    read_checkpoint,
    read_pretrained,
)
from uniformer.models.detector import build_detector
from uniformer.models.pose import build_pose_model
from uniformer.models.segmentor import Decoder, build_segmentor, head_widths
from uniformer.models.uniformer import UniFormer

__all__ = ["ModelInfo", "Release", "DatasetInfo", "DATASETS", "list_models", "model_info", "create_model"]

_logger = logging.getLogger(__name__)

Detector = Literal["mask_rcnn", "cascade_mask_rcnn"]

IMAGE_HUB_REPO = "Sense-X/uniformer_image"
VIDEO_HUB_REPO = "Sense-X/uniformer_video"


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset the zoo was trained on: class count, label list and input normalisation."""

    name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    title: str


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "imagenet-1k": DatasetInfo("imagenet-1k", 1000, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "ImageNet-1K"),
        "kinetics-400": DatasetInfo("kinetics-400", 400, VIDEO_MEAN, VIDEO_STD, "Kinetics-400"),
        "kinetics-600": DatasetInfo("kinetics-600", 600, VIDEO_MEAN, VIDEO_STD, "Kinetics-600"),
        "something-something-v1": DatasetInfo(
            "something-something-v1", 174, VIDEO_MEAN, VIDEO_STD, "Something-Something V1"
        ),
        "something-something-v2": DatasetInfo(
            "something-something-v2", 174, VIDEO_MEAN, VIDEO_STD, "Something-Something V2"
        ),
        "synthetic-motion": DatasetInfo("synthetic-motion", 8, VIDEO_MEAN, VIDEO_STD, "Synthetic motion"),
        # mmseg img_norm_cfg of the ADE20K configs: ImageNet's mean/std in 0-255 units
        "ade20k": DatasetInfo("ade20k", 150, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "ADE20K"),
        # COCO person keypoints: the "classes" are the 17 keypoints (heatmap channels); mmpose NormalizeTensor
        "coco-keypoints": DatasetInfo(
            "coco-keypoints", 17, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "COCO keypoints"
        ),
        # mmdet img_norm_cfg of the COCO configs: the same ImageNet mean/std; 80 object classes
        "coco": DatasetInfo("coco", 80, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, "COCO"),
    }
)


@dataclass(frozen=True)
class Release:
    """One released (or published) set of weights of a model at one input size.

    Segmentation releases give mIoU (single-scale, and multi-scale where published) instead of top-1, pose
    releases ``coco_metrics`` (COCO val AP, AP50, AP75, APm, APl, AR), detection releases box and mask AP (COCO
    val2017, %); all three a ``checkpoint_url`` when the weights are released off the Hub, and ``input_hw``, the
    (H, W) input their published GFLOPs count (otherwise ``img_size`` square).
    """

    img_size: int
    top1: float | None
    gflops: float
    checkpoint_file: str | None
    crop_pct: float = 0.875
    miou: float | None = None
    ms_miou: float | None = None
    checkpoint_url: str | None = None
    input_hw: tuple[int, int] | None = None
    coco_metrics: Mapping[str, float] = field(default_factory=dict)  # pose: published COCO val AP, AP50, ...
    box_ap: float | None = None
    mask_ap: float | None = None


Task = Literal["image", "video", "segmentation", "pose", "detection"]


@dataclass(frozen=True)
class ModelInfo:
    """Everything known about a zoo model. ``releases[0]`` is the default (224 px) one."""

    name: str
    task: Task
    dataset: str
    title: str
    model_args: Mapping[str, Any]
    releases: tuple[Release, ...]
    params_m: float
    hub_repo: str
    num_frames: int | None = None
    frame_stride: int | None = None
    sampling: Literal["dense", "segment"] | None = None
    test_clips: int = 1
    test_crops: int = 1
    pretrain: str | None = None
    notes: str = ""
    decoder: Decoder | None = None  # segmentation: the head on the dense backbone
    detector: Detector | None = None  # detection: the detector around the dense backbone

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset].num_classes

    @property
    def mean(self) -> tuple[float, float, float]:
        return DATASETS[self.dataset].mean

    @property
    def std(self) -> tuple[float, float, float]:
        return DATASETS[self.dataset].std

    @property
    def labels(self) -> list[str]:
        return load_labels(self.dataset)

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """The dataset's standard class colours (segmentation datasets)."""
        return load_palette(self.dataset)

    @property
    def test_views(self) -> int:
        return self.test_clips * self.test_crops

    @property
    def frames_label(self) -> str:
        """``16x4`` (frames x stride, dense sampling), ``16`` (segments) or ``-`` for images."""
        if self.num_frames is None:
            return "-"
        return f"{self.num_frames}x{self.frame_stride}" if self.frame_stride else str(self.num_frames)

    def release(self, img_size: int | None = None) -> Release:
        """The release at ``img_size`` (default: the first)."""
        if img_size is None:
            return self.releases[0]
        for rel in self.releases:
            if rel.img_size == img_size:
                return rel
        sizes = ", ".join(str(r.img_size) for r in self.releases)
        raise ValueError(f"{self.name} has no release at img_size={img_size}; released sizes: {sizes}")

    def input_shape(self, img_size: int | None = None, batch_size: int = 1) -> tuple[int, ...]:
        """Shape of one view: (B, 3, H, W) for images, (B, 3, T, H, W) for videos; segmentation: the input the
        published GFLOPs count."""
        release = self.release(img_size)
        size = release.img_size
        if self.task == "video":
            return (batch_size, 3, self.num_frames or 0, size, size)
        return (batch_size, 3, *(release.input_hw or (size, size)))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (for JSON output and config defaults)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(model_args=dict(self.model_args), releases=[asdict(r) for r in self.releases])
        data.update(num_classes=self.num_classes, mean=self.mean, std=self.std, test_views=self.test_views)
        return data


# ---------------------------------------------------------------------------------------------------------
# architectures (official builders' arguments)

_SMALL = dict(depth=(3, 4, 8, 3), embed_dim=(64, 128, 320, 512), head_dim=64)
_SMALL_PLUS = dict(depth=(3, 5, 9, 3), embed_dim=(64, 128, 320, 512), head_dim=32, conv_stem=True)
_BASE = dict(depth=(5, 8, 20, 7), embed_dim=(64, 128, 320, 512), head_dim=64)
_LARGE = dict(depth=(5, 10, 24, 7), embed_dim=(128, 192, 448, 640), head_dim=64)

_REGISTRY: dict[str, ModelInfo] = {}


def _add(info: ModelInfo) -> None:
    if info.name in _REGISTRY:
        raise RuntimeError(f"duplicate zoo entry {info.name}")
    _REGISTRY[info.name] = info


def _image(name: str, title: str, args: dict, params_m: float, *releases: Release, notes: str = "") -> None:
    _add(
        ModelInfo(
            name=name,
            task="image",
            dataset="imagenet-1k",
            title=title,
            model_args=MappingProxyType(dict(args)),
            releases=tuple(releases),
            params_m=params_m,
            hub_repo=IMAGE_HUB_REPO,
            notes=notes,
        )
    )


_image("uniformer_small", "UniFormer-S", _SMALL, 22, Release(224, 82.9, 3.6, "uniformer_small_in1k.pth"))
_image(
    "uniformer_small_plus",
    "UniFormer-S+",
    _SMALL_PLUS,
    24,
    Release(224, 83.4, 4.2, "uniformer_small_plus_in1k.pth"),
    notes="The released file is a bare state dict (no 'model' key).",
)
_image(
    "uniformer_small_plus_dim64",
    "UniFormer-S+ (head_dim 64)",
    {**_SMALL_PLUS, "head_dim": 64},
    24,
    Release(224, 83.4, 4.2, "uniformer_small_plus_dim64_in1k.pth"),
)
_image(
    "uniformer_base",
    "UniFormer-B",
    _BASE,
    50,
    Release(224, 83.9, 8.3, "uniformer_base_in1k.pth"),
    notes="Paper top-1 83.9; the official model-zoo table lists 83.8 for the released file.",
)
_image(
    "uniformer_base_ls",
    "UniFormer-B + layer scale",
    {**_BASE, "layer_scale": "global"},
    50,
    Release(224, 83.9, 8.3, "uniformer_base_ls_in1k.pth"),
)

_TL_NOTE = "Token labeling: eval output is head(mean of tokens) + 0.5 * max over tokens of aux_head(tokens)."
_LARGE_FLOPS_NOTE = (
    " The published 12.6G / 39.2G disagree with the architecture itself (stage 3 alone is 12.1 GMACs at"
    " 224 px); measured multiply-adds are 19.7G / 62.8G."
)


def _tl(size: int, top1: float, gflops: float, stem: str) -> Release:
    # 384 px fine-tunes are evaluated on the full image (crop_pct 1.0), as in token labeling (LV-ViT).
    return Release(size, top1, gflops, f"{stem}_tl_{size}.pth", crop_pct=0.875 if size == 224 else 1.0)


# Token-labeling releases (official image_classification/token_labeling README): name stem, title,
# architecture, published params (M), then (top-1, GFLOPs) at 224 px and, where released, at 384 px.
_TOKEN_LABELING = (
    ("uniformer_small", "UniFormer-S (token labeling)", {**_SMALL, "head_dim": 32}, 22, (83.4, 3.6), (84.6, 11.9)),
    ("uniformer_small_dim64", "UniFormer-S (token labeling, head_dim 64)", _SMALL, 22, (83.4, 3.6), None),
    ("uniformer_small_plus", "UniFormer-S+ (token labeling)", _SMALL_PLUS, 24, (83.9, 4.2), (84.9, 13.7)),
    (
        "uniformer_small_plus_dim64",
        "UniFormer-S+ (token labeling, head_dim 64)",
        {**_SMALL_PLUS, "head_dim": 64},
        24,
        (83.6, 4.2),
        None,
    ),
    ("uniformer_base", "UniFormer-B (token labeling)", {**_BASE, "head_dim": 32}, 50, (85.1, 8.3), (86.0, 27.2)),
    ("uniformer_base_dim64", "UniFormer-B (token labeling, head_dim 64)", _BASE, 50, (84.8, 8.3), None),
    (
        "uniformer_large_ls",
        "UniFormer-L + layer scale (token labeling)",
        {**_LARGE, "layer_scale": "all"},
        100,
        (85.6, 12.6),
        (86.3, 39.2),
    ),
)


def _register_token_labeling() -> None:
    for stem, title, args, params_m, at224, at384 in _TOKEN_LABELING:
        releases = [_tl(size, *published, stem) for size, published in ((224, at224), (384, at384)) if published]
        notes = _TL_NOTE + (_LARGE_FLOPS_NOTE if stem == "uniformer_large_ls" else "")
        _image(f"{stem}_tl", title, {**args, "token_labeling": True}, params_m, *releases, notes=notes)


_register_token_labeling()

_VIDEO_SIZES = {"small": ("UniFormer-S", _SMALL), "base": ("UniFormer-B", _BASE)}
# Published parameter counts of the video models (millions), per size and dataset head.
_VIDEO_PARAMS = {"small": 21.4, "base": 49.8}


def _video(name: str, size: str, dataset: str, title: str, release: Release, **clip: Any) -> None:
    """A video entry: the size's architecture in 3-D, its published parameters, the video Hub repository."""
    _add(
        ModelInfo(
            name=name,
            task="video",
            dataset=dataset,
            title=f"{_VIDEO_SIZES[size][0]} {title}",
            model_args=MappingProxyType({**_VIDEO_SIZES[size][1], "video": True}),
            releases=(release,),
            params_m=_VIDEO_PARAMS[size],
            hub_repo=VIDEO_HUB_REPO,
            **clip,
        )
    )


def _kinetics(
    size: str, classes: int, frames: int, stride: int, top1: float, gflops_total: float, released: bool = True
) -> None:
    name = f"uniformer_{size}_k{classes}_{frames}x{stride}"
    _video(
        name,
        size,
        f"kinetics-{classes}",
        f"{frames}x{stride} (Kinetics-{classes})",
        Release(224, top1, round(gflops_total / 4, 2), f"{name}.pth" if released else None),
        num_frames=frames,
        frame_stride=stride,
        sampling="dense",
        test_clips=4,
        test_crops=1,
        pretrain=f"uniformer_{size}_in1k.pth (inflated)",
        notes="" if released else "Published result; the checkpoint was not released.",
    )


for _size, _classes, _frames, _stride, _top1, _gflops in (
    ("small", 400, 8, 8, 78.4, 70),
    ("small", 400, 16, 4, 80.8, 167),
    ("small", 400, 16, 8, 80.8, 167),
    ("base", 400, 8, 8, 79.8, 161),
    ("base", 400, 16, 4, 82.0, 387),
    ("base", 400, 16, 8, 81.7, 387),
    ("base", 400, 32, 4, 82.9, 1036),
    ("small", 600, 16, 4, 82.8, 167),
    ("small", 600, 16, 8, 82.7, 167),
    ("base", 600, 16, 4, 84.0, 387),
    ("base", 600, 16, 8, 83.4, 387),
    ("base", 600, 32, 4, 84.5, 1036),
):
    _kinetics(_size, _classes, _frames, _stride, _top1, _gflops)
_kinetics("small", 400, 32, 4, 82.0, 438, released=False)


def _something(size: str, version: int, pretrain: int, frames: int, top1: float, gflops_total: float) -> None:
    _video(
        f"uniformer_{size}_sthv{version}_prek{pretrain}_{frames}",
        size,
        f"something-something-v{version}",
        f"{frames} frames (Something-Something V{version}, K{pretrain} pretrain)",
        Release(224, top1, round(gflops_total / 3, 2), f"uniformer_{size}_sthv{version}_{frames}_prek{pretrain}.pth"),
        num_frames=frames,
        frame_stride=None,
        sampling="segment",
        test_clips=1,
        test_crops=3,
        pretrain=f"uniformer_{size}_k{pretrain}_{frames}x4",
    )


for _size, _version, _pretrain, _frames, _top1, _gflops in (
    ("small", 1, 400, 16, 57.2, 125),
    ("small", 1, 600, 16, 57.6, 125),
    ("small", 1, 400, 32, 58.8, 329),
    ("small", 1, 600, 32, 59.9, 329),
    ("base", 1, 400, 16, 59.1, 290),
    ("base", 1, 600, 16, 58.8, 290),
    ("base", 1, 400, 32, 60.9, 777),
    ("base", 1, 600, 32, 61.0, 777),
    ("small", 2, 400, 16, 67.7, 125),
    ("small", 2, 600, 16, 69.4, 125),
    ("small", 2, 400, 32, 69.0, 329),
    ("small", 2, 600, 32, 70.4, 329),
    ("base", 2, 400, 16, 70.4, 290),
    ("base", 2, 600, 16, 70.2, 290),
    ("base", 2, 400, 32, 71.1, 777),
    ("base", 2, 600, 32, 71.2, 777),
):
    _something(_size, _version, _pretrain, _frames, _top1, _gflops)


# A reduced-width video UniFormer, built by the same code, that trains in minutes on two CPU cores: the model
# of `make demo` and of anyone trying the engine on a laptop. Not an official model: its cost is measured here
# (`uniformer info uniformer_tiny_motion`), and its accuracy is whatever the demo run reports.
_add(
    ModelInfo(
        name="uniformer_tiny_motion",
        task="video",
        dataset="synthetic-motion",
        title="UniFormer-T (reduced width, synthetic motion demo)",
        model_args=MappingProxyType(dict(depth=(1, 1, 2, 1), embed_dim=(32, 64, 128, 256), head_dim=32, video=True)),
        releases=(Release(64, None, 0.08, None),),
        params_m=1.45,
        hub_repo="",
        num_frames=8,
        frame_stride=4,
        sampling="dense",
        test_clips=2,
        test_crops=1,
        notes="Demo model (not released): trained from scratch by `make demo` on `uniformer data synth` videos.",
    )
)


# ---------------------------------------------------------------------------------------------------------
# segmentation (ADE20K): the dense backbone with UperNet or Semantic FPN
#
# Sense-X/UniFormer semantic_segmentation/README.md: single-scale mIoU (and multi-scale for UperNet), params,
# GFLOPs, Google Drive links of the released weights (not on the Hub: download them, pass checkpoint_path=).
# The GFLOPs are those of a 512 x 2048 input (ADE20K test scale (2048, 512)): measured that way, this package's
# models give them within 1%. Architectures: configs/_base_/models/upernet_uniformer.py,
# fpn_seg/configs/_base_/models/fpn_uniformer.py and the exp*/config.py, test_config_*.py files (windows, hybrid,
# window_size). The w32/h32 rows are the global models' weights tested with 32 x 32 windows (every stage-3 block /
# hybrid). Not here: the lightweight UniFormer-XXS/XS rows (a different backbone, uniformer_light.py).

_ADE20K_CROP = 512  # training crop; the published GFLOPs count a 512 x 2048 input
_DRIVE = "https://drive.google.com/file/d/{}/view"
_SEGMENTATION_TITLES = {"upernet": "UperNet", "fpn": "Semantic FPN"}


def _segmentation(
    size: str,
    decoder: Decoder,
    attention: str,
    miou: float,
    ms_miou: float | None,
    params_m: float,
    gflops: float,
    drive_id: str | None,
) -> None:
    """An ADE20K entry: ``attention`` is ``""`` (global), ``"h14"``/``"h32"`` (hybrid) or ``"w32"`` (windows)."""
    backbone = dict(_VIDEO_SIZES[size][1])  # the same S/B architectures as the video zoo
    if attention:
        backbone.update(attn_mode="hybrid" if attention[0] == "h" else "window", window_size=int(attention[1:]))
    tag = f"_{attention}" if attention else ""
    _add(
        ModelInfo(
            name=f"uniformer_{size}{tag}_{decoder}_ade20k",
            task="segmentation",
            dataset="ade20k",
            title=f"{_VIDEO_SIZES[size][0]}{tag.replace('_', ' ')} {_SEGMENTATION_TITLES[decoder]} (ADE20K)",
            model_args=MappingProxyType(backbone),
            releases=(
                Release(
                    _ADE20K_CROP,
                    None,
                    gflops,
                    None,
                    crop_pct=1.0,
                    miou=miou,
                    ms_miou=ms_miou,
                    checkpoint_url=_DRIVE.format(drive_id) if drive_id else None,
                    input_hw=(_ADE20K_CROP, 4 * _ADE20K_CROP),
                ),
            ),
            params_m=params_m,
            hub_repo="",
            pretrain=f"uniformer_{size}_in1k.pth",
            notes=_segmentation_note(size, decoder, attention, drive_id),
            decoder=decoder,
        )
    )


_SMALL_H14_FPN_FLOPS_NOTE = (
    " The published 172G disagree with the hybrid architecture of the config (measured 190.9G at 512 x 2048); they"
    " equal the same model with windows in every stage-3 block (172.4G)."
)


def _segmentation_note(size: str, decoder: str, attention: str, drive_id: str | None) -> str:
    if drive_id is None:
        note = "Published result; the checkpoint was not released."
        return note + (_SMALL_H14_FPN_FLOPS_NOTE if (size, decoder, attention) == ("small", "fpn", "h14") else "")
    if attention.endswith("32"):
        windows = "hybrid 32 x 32 windows" if attention[0] == "h" else "32 x 32 windows in every stage-3 block"
        return (
            f"The weights of uniformer_{size}_{decoder}_ade20k (trained with global attention), tested with "
            f"{windows} (official test_config_{attention}.py)."
        )
    return ""


# Google Drive file ids of the released weights (one file serves the global, w32 and h32 rows)
_UPERNET_SMALL, _UPERNET_BASE = "13hOneJiFqwEneUz1Zpqo1W2uv7BsoXGF", "14bEgmFbTijBoTKTwny_aCJlARs6z31mP"
_FPN_SMALL, _FPN_BASE = "14bEsZqMw35tmDgrvYA_dRMsSC0Z4TX2Y", "14dLoIcAUWjyo1d5XXuo1yb2jcslt_t4P"
for _row in (
    # size, decoder, attention, mIoU, multi-scale mIoU, params (M), GFLOPs, Google Drive file id
    ("small", "upernet", "", 47.6, 48.5, 52, 1004, _UPERNET_SMALL),
    ("base", "upernet", "", 50.0, 50.8, 80, 1227, _UPERNET_BASE),
    ("small", "upernet", "h14", 46.9, 48.0, 52, 947, None),
    ("base", "upernet", "h14", 48.9, 50.0, 80, 1085, None),
    ("small", "upernet", "w32", 46.6, 48.4, 52, 939, _UPERNET_SMALL),
    ("small", "upernet", "h32", 47.0, 48.5, 52, 955, _UPERNET_SMALL),
    ("base", "upernet", "w32", 49.1, 50.6, 80, 1066, _UPERNET_BASE),
    ("base", "upernet", "h32", 49.5, 50.7, 80, 1106, _UPERNET_BASE),
    ("small", "fpn", "", 46.6, None, 25, 247, _FPN_SMALL),
    ("base", "fpn", "", 48.0, None, 54, 471, _FPN_BASE),
    ("small", "fpn", "h14", 46.3, None, 25, 172, None),
    ("base", "fpn", "h14", 47.0, None, 54, 328, "14XokJDp1oYDV9jZnniMXyk3AnVfk1S1-"),
    ("small", "fpn", "w32", 45.6, None, 25, 183, _FPN_SMALL),
    ("small", "fpn", "h32", 46.2, None, 25, 199, _FPN_SMALL),
    ("base", "fpn", "w32", 47.0, None, 54, 310, _FPN_BASE),
    ("base", "fpn", "h32", 47.7, None, 54, 350, _FPN_BASE),
):
    _segmentation(*_row)


# ---------------------------------------------------------------------------------------------------------
# pose (COCO keypoints): the dense backbone with the SimpleBaseline heatmap head, top-down
#
# Sense-X/UniFormer pose_estimation/README.md: COCO val2017 AP, AP50, AP75, "AR^M", "AR^L" (so the README's header;
# the columns sit where mmpose's AP (M) / AP (L) go) and AR with the official detector's person boxes
# (COCO_val2017_detections_AP_H_56_person.json), FLOPs, Google Drive links of the released weights. The README
# gives no parameter counts: params_m is counted from the architecture (backbone + head, 17 heatmaps). The
# architectures and the crop sizes (W x H) are those of pose_estimation/exp/top_down_<HxW>_global_<size>/config.py.

_POSE_NOTE_B384 = (
    " The published 14.8 GFLOPs disagree with the architecture at 384 x 288 (measured 22.05G; the 448 x 320"
    " UniFormer-B counts 29.5G, as published); they repeat the UniFormer-S 448 x 320 cell."
)


def _pose(size: str, hw: tuple[int, int], metrics: tuple[float, ...], gflops: float, drive_id: str) -> None:
    """A COCO top-down entry; ``metrics`` = AP, AP50, AP75, APm, APl, AR as the README's row gives them."""
    height, width = hw
    _add(
        ModelInfo(
            name=f"uniformer_{size}_topdown_coco_{height}x{width}",
            task="pose",
            dataset="coco-keypoints",
            title=f"{_VIDEO_SIZES[size][0]} top-down pose {height}x{width} (COCO)",
            model_args=MappingProxyType(dict(_VIDEO_SIZES[size][1])),
            releases=(
                Release(
                    height,
                    None,
                    gflops,
                    None,
                    crop_pct=1.0,
                    checkpoint_url=_DRIVE.format(drive_id),
                    input_hw=hw,
                    coco_metrics=dict(zip(("AP", "AP50", "AP75", "APm", "APl", "AR"), metrics)),
                ),
            ),
            params_m={"small": 25.2, "base": 53.5}[size],
            hub_repo="",
            pretrain=f"uniformer_{size}_in1k.pth",
            notes=_POSE_NOTE_B384 if (size, hw) == ("base", (384, 288)) else "",
        )
    )


for _row in (
    # size, (H, W), (AP, AP50, AP75, APm, APl, AR), GFLOPs, Google Drive file id
    ("small", (256, 192), (74.0, 90.3, 82.2, 66.8, 76.7, 79.5), 4.7, "162R0JuTpf3gpLe1IK6oxRoQK7JSj4ylx"),
    ("small", (384, 288), (75.9, 90.6, 83.4, 68.6, 79.0, 81.4), 11.1, "163vuFkpcgVOthC05jCwjGzo78Nr0eikW"),
    ("small", (448, 320), (76.2, 90.6, 83.2, 68.6, 79.4, 81.4), 14.8, "165nQRsT58SXJegcttksHwDn46Fme5dGX"),
    ("base", (256, 192), (75.0, 90.6, 83.0, 67.8, 77.7, 80.4), 9.2, "15tzJaRyEzyWp2mQhpjDbBzuGoyCaJJ-2"),
    ("base", (384, 288), (76.7, 90.8, 84.0, 69.3, 79.7, 81.4), 14.8, "15qtUaOR_C7-vooheJE75mhA9oJQt3gSx"),
    ("base", (448, 320), (77.4, 91.1, 84.4, 70.2, 80.6, 82.5), 29.6, "156iNxetiCk8JJz41aFDmFh9cQbCaMk3D"),
):
    _pose(*_row)


# detection (COCO): the dense backbone (hybrid, 14 x 14 windows) with Mask R-CNN or Cascade Mask R-CNN
#
# Sense-X/UniFormer object_detection/README.md: box / mask AP on val2017, params, GFLOPs at 800 x 1280, Google
# Drive links of the released weights. Architectures: configs/_base_/models/mask_rcnn_uniformer_fpn.py,
# cascade_mask_rcnn_uniformer_fpn.py and exp/*/config.py (hybrid=True, window_size=14; drop path 0.2 / 0.1 for
# small 1x / 3x, 0.3 for base). Not here: the lightweight XXS/XS rows (uniformer_light.py).

_COCO_HW = (800, 1280)  # the input of the published GFLOPs
_DETECTOR_TITLES = {"mask_rcnn": "Mask R-CNN", "cascade_mask_rcnn": "Cascade Mask R-CNN"}
# constructor options of the detector (the other overrides are the backbone's)
_DETECTOR_OPTIONS = (
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


def _detection(
    size: str,
    detector: Detector,
    schedule: str,
    box_ap: float,
    mask_ap: float,
    params_m: float,
    gflops: float,
    drive_id: str,
) -> None:
    backbone = dict(_VIDEO_SIZES[size][1], attn_mode="hybrid", window_size=14)
    _add(
        ModelInfo(
            name=f"uniformer_{size}_h14_{detector}_coco_{schedule}",
            task="detection",
            dataset="coco",
            title=f"{_VIDEO_SIZES[size][0]} h14 {_DETECTOR_TITLES[detector]} {schedule.replace('3x', '3x+MS')} (COCO)",
            model_args=MappingProxyType(backbone),
            releases=(
                Release(
                    _COCO_HW[0],
                    None,
                    gflops,
                    None,
                    crop_pct=1.0,
                    checkpoint_url=_DRIVE.format(drive_id),
                    input_hw=_COCO_HW,
                    box_ap=box_ap,
                    mask_ap=mask_ap,
                ),
            ),
            params_m=params_m,
            hub_repo="",
            pretrain=f"uniformer_{size}_in1k.pth",
            detector=detector,
        )
    )


for _row in (
    # size, detector, schedule, box AP, mask AP, params (M), GFLOPs, Google Drive file id
    ("small", "mask_rcnn", "1x", 45.6, 41.6, 41, 269, "13KhBYkHKQg-CyhAgn1LQM1K0R4bwSpWT"),
    ("small", "mask_rcnn", "3x", 48.2, 43.4, 41, 269, "13O6P-spXbWuXgUjLw8AyRITYTwhdOwuD"),
    ("base", "mask_rcnn", "1x", 47.4, 43.1, 69, 399, "13YrVEiqFraSuX1NzdhPnhw7bFXTvEii1"),
    ("base", "mask_rcnn", "3x", 50.3, 44.8, 69, 399, "12xyS2xqFSYMkHUiVYVGVW7gaLIxuK2q6"),
    ("small", "cascade_mask_rcnn", "3x", 52.1, 45.2, 79, 747, "13IhpRkh2hE8WfDyw-5-NXSUVZjn9DX20"),
    ("base", "cascade_mask_rcnn", "3x", 53.8, 46.4, 107, 878, "13G9wc73CmS1Kb-kVelFSDlK-ezUBadzQ"),
):
    _detection(*_row)


# ---------------------------------------------------------------------------------------------------------
# public API


def list_models(pattern: str | None = None, task: Task | None = None) -> list[str]:
    """Names of zoo models, optionally filtered by a shell-style ``pattern`` and/or ``task``."""
    names = [n for n, info in _REGISTRY.items() if task is None or info.task == task]
    return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def model_info(name: str) -> ModelInfo:
    """The zoo entry of ``name``; ``ValueError`` with close matches if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `uniformer models` lists them"
        raise ValueError(f"unknown model {name!r}{hint}") from None


def create_model(
    name: str,
    pretrained: bool | str = False,
    checkpoint_path: str | Path | CheckpointFile | None = None,
    num_classes: int | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a zoo model, optionally with weights (read once, loaded by :func:`load_state`'s rule).

    Args:
        name: a zoo name (``uniformer.list_models()``).
        pretrained: ``True``: fetch the released checkpoint from the Hugging Face Hub (standard Hub cache);
            ``"local-dir:DIR"`` or ``"hf-hub:ORG/REPO"``: weights saved by :func:`uniformer.save_pretrained` (timm's
            Hub layout, read by :func:`~uniformer.models.checkpoint.read_pretrained`), with their class count,
            architecture overrides, class names and clip settings.
        checkpoint_path: load this file instead (official ``.pth`` layouts, ``.safetensors``, a ``uniformer train``
            checkpoint, or an already read :class:`CheckpointFile`). A training checkpoint brings the
            ``model.overrides`` of its run (explicit ``overrides`` win).
        num_classes: classifier size. Default: the checkpoint's class count (a fine-tuned head is kept), or the
            zoo entry's without a checkpoint and for inflated image weights. When it differs from the
            checkpoint's, the classifier is replaced and the log says from what to what.
            (segmentation: the heads' class count; a checkpoint must then fit it).
        overrides: constructor arguments of :class:`UniFormer` (e.g. ``drop_path_rate``; for segmentation models
            those of the dense backbone, e.g. ``attn_mode``, ``window_size``), plus ``img_size`` to pick a
            release (224 or 384 for the token-labeling models).

    Returns a :class:`UniFormer`, for segmentation entries a
    :class:`~uniformer.models.segmentor.UniFormerSegmentor`, for pose entries a
    :class:`~uniformer.models.pose.TopDownPoseModel` (``num_classes``: its keypoint count). Its ``zoo_cfg``
    records what :func:`uniformer.save_pretrained` needs to write it back: the zoo name, the constructor overrides
    and the class names and clip settings that came with the weights (``None`` when they did not).
    """
    info = model_info(name)
    release = info.release(overrides.pop("img_size", None))
    if isinstance(pretrained, str):
        if checkpoint_path is not None:
            raise ValueError(f"{name}: pass either pretrained={pretrained!r} or checkpoint_path, not both")
        checkpoint_path = read_pretrained(pretrained)
        if checkpoint_path.model_name != name:
            raise ValueError(f"{pretrained} holds weights of {checkpoint_path.model_name}, not of {name}")
    elif checkpoint_path is None and pretrained:
        if release.checkpoint_file is None and release.checkpoint_url:
            raise ValueError(
                f"{name}: the released checkpoint is not on the Hugging Face Hub; download it from "
                f"{release.checkpoint_url} and pass checkpoint_path="
            )
        if release.checkpoint_file is None:
            raise ValueError(f"{name}: no checkpoint was released for this model; pass checkpoint_path=")
        checkpoint_path = download_checkpoint(info.hub_repo, release.checkpoint_file)
    file = None
    if checkpoint_path is not None:
        file = checkpoint_path if isinstance(checkpoint_path, CheckpointFile) else read_checkpoint(checkpoint_path)
        overrides = {**_trained_detector_options(info, file), **file.model_overrides, **overrides}
    classes = num_classes
    if classes is None:
        inflating = file is not None and info.task == "video" and is_image_state(file.state_dict)
        classes = info.num_classes if file is None or inflating or file.num_classes is None else file.num_classes
    if info.task == "segmentation":
        widths = {} if file is None else head_widths(file.state_dict)
        model: nn.Module = build_segmentor(info.decoder, classes, {**info.model_args, **overrides}, **widths)
    elif info.task == "pose":  # a training checkpoint brings its run's head width (head.channels)
        channels = ((file.config if file is not None else None) or {}).get("head", {}).get("channels", 256)
        model = build_pose_model(classes, {**info.model_args, **overrides}, channels=channels)
    elif info.task == "detection":
        model = _build_detector(info, classes, overrides)
    else:
        model = UniFormer(**{**info.model_args, **overrides}, num_classes=classes)
    if file is not None:
        keep = info.task in ("segmentation", "pose", "detection")
        load_state(model, file.state_dict, str(file.path), head="keep" if keep else "auto")
    model.zoo_cfg = dict(
        name=name,
        overrides=dict(overrides),
        classes=None if file is None else file.class_names,
        clip=None if file is None else file.clip,
    )
    return model


def _trained_detector_options(info: ModelInfo, file: CheckpointFile) -> dict[str, Any]:
    """A detection training checkpoint's detector options (its config's ``detector`` section, whose names are the
    detector's), so that its weights get the architecture they were trained with."""
    if info.task != "detection" or not file.is_training:
        return {}
    section = (file.config or {}).get("detector") or {}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in section.items() if k in _DETECTOR_OPTIONS}


def _build_detector(info: ModelInfo, num_classes: int, overrides: dict[str, Any]) -> nn.Module:
    """The detector of a detection entry; ``overrides`` hold backbone arguments and the detector's options
    (``mask``, ``min_size``, ``max_size``, ... of :class:`~uniformer.models.detector.UniFormerMaskRCNN`)."""
    options = {k: v for k, v in overrides.items() if k in _DETECTOR_OPTIONS}
    backbone = {k: v for k, v in overrides.items() if k not in _DETECTOR_OPTIONS}
    return build_detector(info.detector, num_classes, {**info.model_args, **backbone}, **options)


# ---------------------------------------------------------------------------------------------------------
# timm registration of the image models (default cfgs generated from the entries above)


def _timm_tag(info: ModelInfo, release: Release) -> str:
    tag = "tl_in1k" if info.model_args.get("token_labeling") else "in1k"
    return tag if release.img_size == 224 else f"{tag}_{release.img_size}"


def _timm_cfg(info: ModelInfo, release: Release) -> dict[str, Any]:
    size = release.img_size
    return dict(
        hf_hub_id=info.hub_repo,
        hf_hub_filename=release.checkpoint_file,
        num_classes=info.num_classes,
        input_size=(3, size, size),
        pool_size=(size // 32, size // 32),
        crop_pct=release.crop_pct,
        interpolation="bicubic",
        mean=info.mean,
        std=info.std,
        first_conv="patch_embed1.proj.0" if info.model_args.get("conv_stem") else "patch_embed1.proj",
        # timm drops these for a new class count; a token-labeling model has two classifiers
        classifier=("head", "aux_head") if info.model_args.get("token_labeling") else "head",
        license="mit",
        paper_ids="arXiv:2201.09450",
        origin_url="https://github.com/Sense-X/UniFormer",
    )


default_cfgs = generate_default_cfgs(
    {
        f"{info.name}.{_timm_tag(info, rel)}": _timm_cfg(info, rel)
        for info in _REGISTRY.values()
        if info.task == "image"
        for rel in info.releases
    }
)


def _create_timm_model(name: str, pretrained: bool = False, **kwargs: Any) -> UniFormer:
    kwargs = {**model_info(name).model_args, **kwargs}
    return build_model_with_cfg(
        UniFormer,
        name,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"),
        **kwargs,
    )


def _timm_entrypoint(name: str) -> Any:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return _create_timm_model(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"{model_info(name).title} (timm entry point generated from the uniformer zoo)."
    return entrypoint


for _name in list_models(task="image"):
    globals()[_name] = register_model(_timm_entrypoint(_name))


def _metric_cell(release: Release) -> str:
    """Published top-1, or for segmentation releases the single-scale mIoU, for pose the COCO AP, for detection the
    box / mask AP, marked as such."""
    if release.box_ap is not None:
        return f"{release.box_ap:.1f} box / {release.mask_ap:.1f} mask AP"
    if release.miou is not None:
        return f"{release.miou:.1f} mIoU"
    if release.coco_metrics:
        return f"{release.coco_metrics['AP']:.1f} AP"
    return "-" if release.top1 is None else f"{release.top1:.1f}"


def zoo_table(names: list[str] | None = None, markdown: bool = True) -> str:
    """The model-zoo table (one row per release) as Markdown or aligned plain text.

    Columns: name, dataset, frames x stride (or segments), test views (clips x crops), crop size (a pose model's
    H x W),
    published top-1 (segmentation: mIoU), published parameters, published GFLOPs per view, released checkpoint
    file (or its download address when it is not on the Hub).
    """
    header = ["model", "dataset", "frames", "views", "crop", "top-1", "params (M)", "GFLOPs/view", "checkpoint"]
    rows = []
    for name in names if names is not None else list_models():
        info = model_info(name)
        for rel in info.releases:
            label = name if rel is info.releases[0] else f"{name} (img_size={rel.img_size})"
            rows.append(
                [
                    f"`{label}`" if markdown else label,
                    DATASETS[info.dataset].title,
                    info.frames_label,
                    f"{info.test_clips}x{info.test_crops}",
                    "x".join(map(str, rel.input_hw)) if info.task == "pose" and rel.input_hw else str(rel.img_size),
                    _metric_cell(rel),
                    f"{info.params_m:g}",
                    f"{rel.gflops:g}",
                    rel.checkpoint_file or rel.checkpoint_url or "not released",
                ]
            )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])
