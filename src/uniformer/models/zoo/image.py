"""The ImageNet-1K classifiers (official ``image_classification`` and ``token_labeling`` model zoos), their
builder, and their timm registration.

Published numbers and the Google Drive ids of the released files come from Sense-X/UniFormer
``image_classification/README.md`` and ``image_classification/token_labeling/README.md``; the Hub files and their
SHA-256 from the Hub repositories ``Sense-X/uniformer_image`` and ``Andy1621/uniformer`` (their Git LFS pointers);
mmaction2's re-hosted copies from its ``mmaction/models/backbones/uniformer.py``. Every model here is also a timm model once ``uniformer`` is imported
(``timm.create_model("uniformer_small")``): the ``@register_model`` functions at the end, with default cfgs
generated from the entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from uniformer.models.checkpoint import CheckpointFile, checkpoint_filter_fn
from uniformer.models.uniformer import UniFormer
from uniformer.models.zoo.schema import ModelInfo, ModelKind, Release
from uniformer.models.zoo.sources import MMACTION2_UNIFORMER, DriveFile, HubFile, Source, UrlFile

__all__ = ["MODELS", "SIZES", "CLASSIFIER", "build_classifier", "timm_default_cfgs", "create_timm_model"]

IMAGE_HUB_REPO = "Sense-X/uniformer_image"

# architectures (official builders' arguments)
SMALL: Mapping[str, Any] = MappingProxyType(dict(depth=(3, 4, 8, 3), embed_dim=(64, 128, 320, 512), head_dim=64))
SMALL_PLUS: Mapping[str, Any] = MappingProxyType(
    dict(depth=(3, 5, 9, 3), embed_dim=(64, 128, 320, 512), head_dim=32, conv_stem=True)
)
BASE: Mapping[str, Any] = MappingProxyType(dict(depth=(5, 8, 20, 7), embed_dim=(64, 128, 320, 512), head_dim=64))
LARGE: Mapping[str, Any] = MappingProxyType(dict(depth=(5, 10, 24, 7), embed_dim=(128, 192, 448, 640), head_dim=64))
# the sizes the video, segmentation, pose and detection zoos reuse: title and architecture
SIZES: Mapping[str, tuple[str, Mapping[str, Any]]] = MappingProxyType(
    {"small": ("UniFormer-S", SMALL), "base": ("UniFormer-B", BASE)}
)


def build_classifier(
    info: ModelInfo, num_classes: int, overrides: dict[str, Any], file: CheckpointFile | None
) -> UniFormer:
    """A :class:`UniFormer` classifier of the entry's architecture, changed by ``overrides``."""
    return UniFormer(**{**info.model_args, **overrides}, num_classes=num_classes)


CLASSIFIER = ModelKind(build_classifier, head="auto")


def _image(
    name: str, title: str, args: Mapping[str, Any], params_m: float, *releases: Release, notes: str = ""
) -> ModelInfo:
    return ModelInfo(
        name=name,
        task="image",
        dataset="imagenet-1k",
        title=title,
        model_args=MappingProxyType(dict(args)),
        releases=tuple(releases),
        params_m=params_m,
        kind=CLASSIFIER,
        notes=notes,
    )


def _top1(img_size: int, top1: float, gflops: float, *sources: Source, crop_pct: float = 0.875) -> Release:
    return Release(img_size, gflops, sources, metrics={"top1": top1}, crop_pct=crop_pct)


_TL_NOTE = "Token labeling: eval output is head(mean of tokens) + 0.5 * max over tokens of aux_head(tokens)."
_LARGE_FLOPS_NOTE = (
    " The published 12.6G / 39.2G disagree with the architecture itself (stage 3 alone is 12.1 GMACs at"
    " 224 px); measured multiply-adds are 19.7G / 62.8G."
)


def _tl(size: int, top1: float, gflops: float, drive_id: str) -> Release:
    # 384 px fine-tunes are evaluated on the full image (crop_pct 1.0), as in token labeling (LV-ViT).
    return _top1(size, top1, gflops, DriveFile(drive_id), crop_pct=0.875 if size == 224 else 1.0)


# Token-labeling releases (official image_classification/token_labeling README): name stem, title,
# architecture, published params (M), then (top-1, GFLOPs, Google Drive id) at 224 px and, where released, at 384 px.
_TOKEN_LABELING = (
    (
        "uniformer_small",
        "UniFormer-S (token labeling)",
        {**SMALL, "head_dim": 32},
        22,
        (83.4, 3.6, "16wjfeyqQFZ2x9W91EXf0Py1bfv4Fydfr"),
        (84.6, 11.9, "16p4CXzuXC5J4_SJK67dsvnc8gTKmtKN1"),
    ),
    (
        "uniformer_small_dim64",
        "UniFormer-S (token labeling, head_dim 64)",
        SMALL,
        22,
        (83.4, 3.6, "17NC5qqAWCT2gI_jY_cJnFTOqRQTSwsoz"),
        None,
    ),
    (
        "uniformer_small_plus",
        "UniFormer-S+ (token labeling)",
        SMALL_PLUS,
        24,
        (83.9, 4.2, "16rgtEVEeX3jVTQaiLsojBQP5sRaj_2aZ"),
        (84.9, 13.7, "16wJT87vTc43Dt1q2sXrxZRUuEdrNdFdk"),
    ),
    (
        "uniformer_small_plus_dim64",
        "UniFormer-S+ (token labeling, head_dim 64)",
        {**SMALL_PLUS, "head_dim": 64},
        24,
        (83.6, 4.2, "17OfoDWt2_nA0BYN0OuLPpG8mHJDTluQQ"),
        None,
    ),
    (
        "uniformer_base",
        "UniFormer-B (token labeling)",
        {**BASE, "head_dim": 32},
        50,
        (85.1, 8.3, "16nsTjawiYZuoCHBRarr58zA7vCFcmQmL"),
        (86.0, 27.2, "16kZlIarIwf9ldkCdHVKTQfFmDgfkucQ7"),
    ),
    (
        "uniformer_base_dim64",
        "UniFormer-B (token labeling, head_dim 64)",
        BASE,
        50,
        (84.8, 8.3, "17MneG9CnZG6zBvXYUr4WUXoTYc4rjJj5"),
        None,
    ),
    (
        "uniformer_large_ls",
        "UniFormer-L + layer scale (token labeling)",
        {**LARGE, "layer_scale": "all"},
        100,
        (85.6, 12.6, "173e2qaJhOwbuC_DbNQSH47Oo_04mSfDj"),
        (86.3, 39.2, "174rcA6rNzYVG9Ya9ik-NwTGoxW1M79ez"),
    ),
)


def _token_labeling() -> tuple[ModelInfo, ...]:
    entries = []
    for stem, title, args, params_m, at224, at384 in _TOKEN_LABELING:
        releases = [_tl(size, *published) for size, published in ((224, at224), (384, at384)) if published]
        notes = _TL_NOTE + (_LARGE_FLOPS_NOTE if stem == "uniformer_large_ls" else "")
        entries.append(_image(f"{stem}_tl", title, {**args, "token_labeling": True}, params_m, *releases, notes=notes))
    return tuple(entries)


MODELS: tuple[ModelInfo, ...] = (
    _image(
        "uniformer_small",
        "UniFormer-S",
        SMALL,
        22,
        _top1(
            224,
            82.9,
            3.6,
            HubFile(IMAGE_HUB_REPO, "uniformer_small_in1k.pth"),
            HubFile(
                "Andy1621/uniformer",
                "uniformer_small_in1k.pth",
                sha256="fd192c31f8bd77670de8f171111bd51f56fd87e6aea45043ab2edc181e1fa775",
                size=86314461,
            ),
            UrlFile(MMACTION2_UNIFORMER + "uniformer_small_in1k_20221219-fe0a7ae0.pth", sha256="fe0a7ae0"),
            DriveFile("1-uepH3Q3BhTmWU6HK-sGAGQC_MpfIiPD"),
        ),
    ),
    _image(
        "uniformer_small_plus",
        "UniFormer-S+",
        SMALL_PLUS,
        24,
        _top1(
            224,
            83.4,
            4.2,
            HubFile(
                IMAGE_HUB_REPO,
                "uniformer_small_plus_in1k.pth",
                sha256="53bc55180eb750f00b12933c75fefb5f9ee652bea606cd26104b738f0c4c472e",
            ),
            DriveFile("10IN5ULcjz0Ld_lDokkTGOSmRFXLzUkEs"),
        ),
        notes="The released file is a bare state dict (no 'model' key).",
    ),
    _image(
        "uniformer_small_plus_dim64",
        "UniFormer-S+ (head_dim 64)",
        {**SMALL_PLUS, "head_dim": 64},
        24,
        _top1(224, 83.4, 4.2, DriveFile("178ipRvMBKeAP_Fzy6fEr2HQkIQWdgEY6")),
    ),
    _image(
        "uniformer_base",
        "UniFormer-B",
        BASE,
        50,
        _top1(
            224,
            83.9,
            8.3,
            HubFile(
                IMAGE_HUB_REPO,
                "uniformer_base_in1k.pth",
                sha256="82c01015818cb897b00a29352043053df53ce4c02c2d012226b3a8a12ccb60eb",
                size=199378501,
            ),
            UrlFile(MMACTION2_UNIFORMER + "uniformer_base_in1k_20221219-82c01015.pth", sha256="82c01015"),
            DriveFile("1-wT39QazTGELxgrQIu6J12D3qcla3hui"),
        ),
        notes="Paper top-1 83.9; the official model-zoo table lists 83.8 for the released file.",
    ),
    _image(
        "uniformer_base_ls",
        "UniFormer-B + layer scale",
        {**BASE, "layer_scale": "global"},
        50,
        _top1(224, 83.9, 8.3, DriveFile("10FnwzMVgGL8bPO3EMZ7oG4vDvqnPoBK5")),
    ),
    *_token_labeling(),
)


# ---------------------------------------------------------------------------------------------------------
# timm registration: default cfgs generated from the entries above, one entry point per model


def _timm_tag(info: ModelInfo, release: Release) -> str:
    tag = "tl_in1k" if info.model_args.get("token_labeling") else "in1k"
    return tag if release.img_size == 224 else f"{tag}_{release.img_size}"


def _timm_cfg(info: ModelInfo, release: Release) -> dict[str, Any]:
    """timm's pretrained cfg of a release: its Hub file, when it has one (timm downloads from the Hub or a URL, not
    from Google Drive)."""
    size = release.img_size
    light = info.model_args.get("light", False)
    # timm drops these for a new class count; token-labeling and light models have two classifiers
    classifier: str | tuple[str, str] = "head"
    if info.model_args.get("token_labeling"):
        classifier = ("head", "aux_head")
    elif light:
        classifier = ("head", "head_cls")
    hub = next((source for source in release.sources if isinstance(source, HubFile)), None)
    return dict(
        hf_hub_id=hub.repo if hub else None,
        hf_hub_filename=hub.filename if hub else None,
        num_classes=info.num_classes,
        input_size=(3, size, size),
        pool_size=(size // 32, size // 32),
        crop_pct=release.crop_pct,
        interpolation="bicubic",
        mean=info.mean,
        std=info.std,
        first_conv="patch_embed1.proj.0" if info.model_args.get("conv_stem") or light else "patch_embed1.proj",
        classifier=classifier,
        license="mit",
        paper_ids="arXiv:2201.09450",
        origin_url="https://github.com/Sense-X/UniFormer",
    )


def timm_default_cfgs(models: tuple[ModelInfo, ...]) -> dict[str, Any]:
    """timm default cfgs of image entries, one per release (``name.in1k``, ``name.in1k_<size>`` ...)."""
    return generate_default_cfgs(
        {f"{info.name}.{_timm_tag(info, rel)}": _timm_cfg(info, rel) for info in models for rel in info.releases}
    )


default_cfgs = timm_default_cfgs(MODELS)

_ARCHITECTURES = {info.name: info.model_args for info in MODELS}


def create_timm_model(name: str, pretrained: bool, model_args: Mapping[str, Any], **kwargs: Any) -> UniFormer:
    """timm's builder for an image entry of architecture ``model_args`` (``kwargs`` override it)."""
    return build_model_with_cfg(
        UniFormer,
        name,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"),
        **{**model_args, **kwargs},
    )


def _create(name: str, pretrained: bool, **kwargs: Any) -> UniFormer:
    return create_timm_model(name, pretrained, _ARCHITECTURES[name], **kwargs)


@register_model
def uniformer_small(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-S, ImageNet-1K."""
    return _create("uniformer_small", pretrained, **kwargs)


@register_model
def uniformer_small_plus(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-S+ (convolutional stem), ImageNet-1K."""
    return _create("uniformer_small_plus", pretrained, **kwargs)


@register_model
def uniformer_small_plus_dim64(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-S+ with head_dim 64, ImageNet-1K."""
    return _create("uniformer_small_plus_dim64", pretrained, **kwargs)


@register_model
def uniformer_base(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-B, ImageNet-1K."""
    return _create("uniformer_base", pretrained, **kwargs)


@register_model
def uniformer_base_ls(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-B with layer scale, ImageNet-1K."""
    return _create("uniformer_base_ls", pretrained, **kwargs)


@register_model
def uniformer_small_tl(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-S (head_dim 32) trained with token labeling, 224 and 384 px."""
    return _create("uniformer_small_tl", pretrained, **kwargs)


@register_model
def uniformer_small_dim64_tl(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-S trained with token labeling."""
    return _create("uniformer_small_dim64_tl", pretrained, **kwargs)


@register_model
def uniformer_small_plus_tl(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-S+ trained with token labeling, 224 and 384 px."""
    return _create("uniformer_small_plus_tl", pretrained, **kwargs)


@register_model
def uniformer_small_plus_dim64_tl(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-S+ with head_dim 64 trained with token labeling."""
    return _create("uniformer_small_plus_dim64_tl", pretrained, **kwargs)


@register_model
def uniformer_base_tl(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-B (head_dim 32) trained with token labeling, 224 and 384 px."""
    return _create("uniformer_base_tl", pretrained, **kwargs)


@register_model
def uniformer_base_dim64_tl(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-B trained with token labeling."""
    return _create("uniformer_base_dim64_tl", pretrained, **kwargs)


@register_model
def uniformer_large_ls_tl(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-L with layer scale trained with token labeling, 224 and 384 px."""
    return _create("uniformer_large_ls_tl", pretrained, **kwargs)
