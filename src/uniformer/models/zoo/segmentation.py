"""The ADE20K semantic segmentation models: the dense backbone with UperNet or Semantic FPN.

Sense-X/UniFormer ``semantic_segmentation/README.md``: single-scale mIoU (and multi-scale for UperNet), params,
GFLOPs, Google Drive links of the released weights. The UperNet-S file is also on the Hub, in
``lllyasviel/Annotators`` (``upernet_global_small.pth``, ControlNet's segmentation annotator; SHA-256 from its Git
LFS pointer).
The GFLOPs are those of a 512 x 2048 input (ADE20K test scale (2048, 512)): measured that way, this package's
models give them within 1%. Architectures: ``configs/_base_/models/upernet_uniformer.py``,
``fpn_seg/configs/_base_/models/fpn_uniformer.py`` and the ``exp*/config.py``, ``test_config_*.py`` files
(windows, hybrid, window_size). The w32/h32 rows are the global models' weights tested with 32 x 32 windows
(every stage-3 block / hybrid). The light UniFormer-XXS/XS rows are in ``light.py``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.segmentor import UniFormerSegmentor, build_segmentor, head_widths
from uniformer.models.zoo.image import SIZES
from uniformer.models.zoo.schema import Decoder, ModelInfo, ModelKind, Release
from uniformer.models.zoo.sources import DriveFile, HubFile, Source

__all__ = ["MODELS", "SEGMENTOR"]


def _build(
    info: ModelInfo, num_classes: int, overrides: dict[str, Any], file: CheckpointFile | None
) -> UniFormerSegmentor:
    """The entry's decoder on its dense backbone; the heads as wide as the checkpoint's, when there is one."""
    widths = {} if file is None else head_widths(file.state_dict)
    return build_segmentor(info.decoder, num_classes, {**info.model_args, **overrides}, **widths)


SEGMENTOR = ModelKind(_build)

_ADE20K_CROP = 512  # training crop; the published GFLOPs count a 512 x 2048 input
_TITLES = {"upernet": "UperNet", "fpn": "Semantic FPN"}
_SMALL_H14_FPN_FLOPS_NOTE = (
    " The published 172G disagree with the hybrid architecture of the config (measured 190.9G at 512 x 2048); they"
    " equal the same model with windows in every stage-3 block (172.4G)."
)


def _note(size: str, decoder: str, attention: str, released: bool) -> str:
    if not released:
        note = "Published result; the checkpoint was not released."
        return note + (_SMALL_H14_FPN_FLOPS_NOTE if (size, decoder, attention) == ("small", "fpn", "h14") else "")
    if attention.endswith("32"):
        windows = "hybrid 32 x 32 windows" if attention[0] == "h" else "32 x 32 windows in every stage-3 block"
        return (
            f"The weights of uniformer_{size}_{decoder}_ade20k (trained with global attention), tested with "
            f"{windows} (official test_config_{attention}.py)."
        )
    return ""


def _segmentation(
    size: str,
    decoder: Decoder,
    attention: str,
    miou: float,
    ms_miou: float | None,
    params_m: float,
    gflops: float,
    sources: tuple[Source, ...],
) -> ModelInfo:
    """An ADE20K entry: ``attention`` is ``""`` (global), ``"h14"``/``"h32"`` (hybrid) or ``"w32"`` (windows)."""
    backbone = dict(SIZES[size][1])  # the same S/B architectures as the video zoo
    if attention:
        backbone.update(attn_mode="hybrid" if attention[0] == "h" else "window", window_size=int(attention[1:]))
    tag = f"_{attention}" if attention else ""
    metrics = {"miou": miou} if ms_miou is None else {"miou": miou, "ms_miou": ms_miou}
    return ModelInfo(
        name=f"uniformer_{size}{tag}_{decoder}_ade20k",
        task="segmentation",
        dataset="ade20k",
        title=f"{SIZES[size][0]}{tag.replace('_', ' ')} {_TITLES[decoder]} (ADE20K)",
        model_args=MappingProxyType(backbone),
        releases=(
            Release(
                _ADE20K_CROP,
                gflops,
                sources,
                metrics=metrics,
                crop_pct=1.0,
                input_hw=(_ADE20K_CROP, 4 * _ADE20K_CROP),
            ),
        ),
        params_m=params_m,
        kind=SEGMENTOR,
        pretrain=f"uniformer_{size}_in1k.pth",
        notes=_note(size, decoder, attention, bool(sources)),
        decoder=decoder,
    )


# The released weights (one file serves the global, w32 and h32 rows); none for the h14 rows but one
_UPERNET_SMALL = (
    HubFile(
        "lllyasviel/Annotators",
        "upernet_global_small.pth",
        sha256="bebfa1264c10381e389d8065056baaadbdadee8ddc6e36770d1ec339dc84d970",
    ),
    DriveFile("13hOneJiFqwEneUz1Zpqo1W2uv7BsoXGF"),
)
_UPERNET_BASE = (DriveFile("14bEgmFbTijBoTKTwny_aCJlARs6z31mP"),)
_FPN_SMALL = (DriveFile("14bEsZqMw35tmDgrvYA_dRMsSC0Z4TX2Y"),)
_FPN_BASE = (DriveFile("14dLoIcAUWjyo1d5XXuo1yb2jcslt_t4P"),)

MODELS: tuple[ModelInfo, ...] = tuple(
    _segmentation(*row)
    for row in (
        # size, decoder, attention, mIoU, multi-scale mIoU, params (M), GFLOPs, sources
        ("small", "upernet", "", 47.6, 48.5, 52, 1004, _UPERNET_SMALL),
        ("base", "upernet", "", 50.0, 50.8, 80, 1227, _UPERNET_BASE),
        ("small", "upernet", "h14", 46.9, 48.0, 52, 947, ()),
        ("base", "upernet", "h14", 48.9, 50.0, 80, 1085, ()),
        ("small", "upernet", "w32", 46.6, 48.4, 52, 939, _UPERNET_SMALL),
        ("small", "upernet", "h32", 47.0, 48.5, 52, 955, _UPERNET_SMALL),
        ("base", "upernet", "w32", 49.1, 50.6, 80, 1066, _UPERNET_BASE),
        ("base", "upernet", "h32", 49.5, 50.7, 80, 1106, _UPERNET_BASE),
        ("small", "fpn", "", 46.6, None, 25, 247, _FPN_SMALL),
        ("base", "fpn", "", 48.0, None, 54, 471, _FPN_BASE),
        ("small", "fpn", "h14", 46.3, None, 25, 172, ()),
        ("base", "fpn", "h14", 47.0, None, 54, 328, (DriveFile("14XokJDp1oYDV9jZnniMXyk3AnVfk1S1-"),)),
        ("small", "fpn", "w32", 45.6, None, 25, 183, _FPN_SMALL),
        ("small", "fpn", "h32", 46.2, None, 25, 199, _FPN_SMALL),
        ("base", "fpn", "w32", 47.0, None, 54, 310, _FPN_BASE),
        ("base", "fpn", "h32", 47.7, None, 54, 350, _FPN_BASE),
    )
)
