"""The light models (UniFormer-XXS / XS, TPAMI 2023 "hourglass" token evolution): ImageNet-1K, Kinetics-400,
COCO Mask R-CNN and ADE20K Semantic FPN.

Published numbers come from Sense-X/UniFormer ``image_classification/README.md``, ``video_classification/README.md``,
``object_detection/README.md`` and ``semantic_segmentation/README.md`` (the light rows); the weights are released
on Google Drive only (download them, pass ``checkpoint_path=``). Architectures: ``uniformer_xxs`` / ``uniformer_xs``
of ``image_classification/models/uniformer_light.py`` and the ``exp_light/*`` configs of each task. Where the
tables give no GFLOPs (detection, segmentation) or no parameters (video), the counts are this package's
measurement of the same architecture (``uniformer info``), said so in the entry's notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from timm.models import register_model

from uniformer.models.uniformer import UniFormer
from uniformer.models.zoo.detection import DETECTOR, coco_release
from uniformer.models.zoo.image import CLASSIFIER, create_timm_model, timm_default_cfgs
from uniformer.models.zoo.schema import ModelInfo, Release
from uniformer.models.zoo.segmentation import SEGMENTOR
from uniformer.models.zoo.sources import DriveFile, HubFile, Source
from uniformer.models.zoo.video import VIDEO_CLASSIFIER

__all__ = ["MODELS", "LIGHT_SIZES"]

# architectures (official uniformer_xxs / uniformer_xs): the default keep ratios and trade-offs of light=True are
# the official ones (1 for the first stage-3 block, 0.5 for every other)
XXS: Mapping[str, Any] = MappingProxyType(
    dict(depth=(2, 5, 8, 2), embed_dim=(56, 112, 224, 448), head_dim=28, mlp_ratio=3.0, light=True)
)
XS: Mapping[str, Any] = MappingProxyType(
    dict(depth=(3, 5, 9, 3), embed_dim=(64, 128, 256, 512), head_dim=32, mlp_ratio=3.0, light=True)
)
LIGHT_SIZES: Mapping[str, tuple[str, Mapping[str, Any]]] = MappingProxyType(
    {"xxs": ("UniFormer-XXS", XXS), "xs": ("UniFormer-XS", XS)}
)
# The video recipes of 4 frames and of 8 frames at 128 px use the layer-scale variant (official
# ``Uniformer_light_ls_fp32``, ``UNIFORMER.INIT_VALUE: 0.1``): both block types scale their residual branches.
_VIDEO_LAYER_SCALE: Mapping[str, Any] = MappingProxyType(dict(layer_scale="all", ls_init_value=0.1))

_IMAGE_NOTE = "Trained 600 epochs with weaker augmentation and EMA, without mixed precision (official exp_light)."
_XS_224_FLOPS_NOTE = (
    " The published 2.0G disagree with the architecture itself: the official model counts 1.93G at 224 px,"
    " as this package does."
)
_XXS_8X160_FLOPS_NOTE = (
    " The published 3.3G disagree with the architecture itself: the official model counts 3.22G, as this package does."
)
_MEASURED_NOTE = "{what} are this package's count of the architecture; the official table gives none."

# The light files the authors also put on the Hub (Andy1621/uniformer_light, commit fb0bfcd; digests and sizes from
# its Git LFS pointers): tried before their Google Drive copies.
_LIGHT_HUB = "Andy1621/uniformer_light"
_HUB_FILES: Mapping[str, HubFile] = MappingProxyType(
    {
        "uniformer_xxs_160": HubFile(
            _LIGHT_HUB,
            "uniformer_xxs_160_in1k.pth",
            "f53dffcfdd608ca9c0ccd339ea1b02338bc0e23416e471f699d3a83bf431f2f8",
            40984485,
        ),
        "uniformer_xxs_k400_16f_160": HubFile(
            _LIGHT_HUB,
            "uniformer_xxs16_160_k400.pth",
            "af23d3492192993cc88d72cffc9accb27cd38a4d74acd5f721f62d6314d144a2",
            39459173,
        ),
    }
)


def _sources(name: str, drive_id: str) -> tuple[Source, ...]:
    """The Hub copy of entry ``name``'s file where there is one, then its Google Drive original."""
    return (*((_HUB_FILES[name],) if name in _HUB_FILES else ()), DriveFile(drive_id))


def _image(
    size: str, img_size: int, top1: float, gflops: float, params_m: float, drive_id: str, notes: str = ""
) -> ModelInfo:
    title, args = LIGHT_SIZES[size]
    name = f"uniformer_{size}_{img_size}"
    release = Release(img_size, gflops, _sources(name, drive_id), metrics={"top1": top1})
    return ModelInfo(
        name=name,
        task="image",
        dataset="imagenet-1k",
        title=f"{title} {img_size} px",
        model_args=args,
        releases=(release,),
        params_m=params_m,
        kind=CLASSIFIER,
        notes=_IMAGE_NOTE + notes,
    )


def _kinetics(
    size: str, frames: int, img_size: int, top1: float, gflops: float, params_m: float, drive_id: str, notes: str = ""
) -> ModelInfo:
    title, args = LIGHT_SIZES[size]
    layer_scale = _VIDEO_LAYER_SCALE if frames == 4 or (frames, img_size) == (8, 128) else {}
    name = f"uniformer_{size}_k400_{frames}f_{img_size}"
    return ModelInfo(
        name=name,
        task="video",
        dataset="kinetics-400",
        title=f"{title} {frames} frames, {img_size} px (Kinetics-400)",
        model_args=MappingProxyType({**args, **layer_scale, "video": True}),
        releases=(Release(img_size, gflops, _sources(name, drive_id), metrics={"top1": top1}, crop_pct=1.0),),
        params_m=params_m,
        kind=VIDEO_CLASSIFIER,
        num_frames=frames,
        frame_stride=None,
        sampling="segment",
        test_clips=1,
        test_crops=1,
        pretrain=f"uniformer_{size}_{img_size} (inflated)",
        notes=_MEASURED_NOTE.format(what="Parameters") + notes,
    )


_ADE20K_HW = (512, 2048)


def _mask_rcnn(size: str, box_ap: float, mask_ap: float, params_m: float, gflops: float, drive_id: str) -> ModelInfo:
    title, args = LIGHT_SIZES[size]
    return ModelInfo(
        name=f"uniformer_{size}_mask_rcnn_coco_1x",
        task="detection",
        dataset="coco",
        title=f"{title} Mask R-CNN 1x (COCO)",
        model_args=args,
        releases=(coco_release(box_ap, mask_ap, gflops, drive_id),),
        params_m=params_m,
        kind=DETECTOR,
        pretrain=f"uniformer_{size}_224",
        notes=_MEASURED_NOTE.format(what="GFLOPs"),
        detector="mask_rcnn",
    )


def _fpn(size: str, miou: float, params_m: float, gflops: float, drive_id: str) -> ModelInfo:
    title, args = LIGHT_SIZES[size]
    return ModelInfo(
        name=f"uniformer_{size}_fpn_ade20k",
        task="segmentation",
        dataset="ade20k",
        title=f"{title} Semantic FPN (ADE20K)",
        model_args=args,
        releases=(
            Release(
                _ADE20K_HW[0],
                gflops,
                (DriveFile(drive_id),),
                metrics={"miou": miou},
                crop_pct=1.0,
                input_hw=_ADE20K_HW,
            ),
        ),
        params_m=params_m,
        kind=SEGMENTOR,
        pretrain=f"uniformer_{size}_224",
        notes=_MEASURED_NOTE.format(what="GFLOPs"),
        decoder="fpn",
    )


MODELS: tuple[ModelInfo, ...] = (
    *(
        _image(*row)
        for row in (
            # size, input size, top-1, GFLOPs, params (M), Google Drive file id
            ("xxs", 128, 76.8, 0.43, 10.2, "1Cr7uB5hUck1BHioEROWZjfLpYRwg4Zps"),
            ("xxs", 160, 79.1, 0.67, 10.2, "1CsXCzfVFPyM2mY8BA_1fO3q_VBngnF44"),
            ("xxs", 192, 79.9, 0.96, 10.2, "1CjrCEnZCk2aLrN7nVG8vFvu3FAUL4_Y_"),
            ("xxs", 224, 80.6, 1.3, 10.2, "1Cw9r_3c30N-esFI8RFYa6rQXJrr1rAHY"),
            ("xs", 192, 81.5, 1.4, 16.5, "1Ce2Dk9-k_-sHt5dXp-gfNOEK37Jdcffv"),
            ("xs", 224, 82.0, 2.0, 16.5, "1CwQ91fjuAu3Rhn3zV4vjAmQ8v36AfYPT", _XS_224_FLOPS_NOTE),
        )
    ),
    *(
        _kinetics(*row)
        for row in (
            # size, frames, input size, top-1 (1 clip x 1 crop), GFLOPs, params (M, measured), Google Drive file id
            ("xxs", 4, 128, 63.2, 1.0, 9.84, "1EFBxDS2m4mpk_sYejnPuGSDRH_1ELDhx"),
            ("xxs", 4, 160, 65.8, 1.6, 9.84, "1DtTFT7FZ_kUjxqXAYyWhfXSr_EIHQi8a"),
            ("xxs", 8, 128, 68.3, 2.0, 9.84, "1E9VwV-XJQCmo9nBhxLxa9DdphZiIg38z"),
            ("xxs", 8, 160, 71.4, 3.3, 9.83, "1Dxq82X8mBsfVOzij0HSeb1g4sdez71FM", _XXS_8X160_FLOPS_NOTE),
            ("xxs", 16, 128, 73.3, 4.2, 9.83, "1DngSOmw0rStnYZlaCnz1xII6CU2d2R_j"),
            ("xxs", 16, 160, 75.1, 6.9, 9.83, "1DxqrNHb4h1ZKnEFaqbkKJAXQsyIFeD7b"),
            ("xxs", 32, 160, 77.9, 15.4, 9.83, "1EIVXRYn5UIkLaJGDpTBxTcyog_dKbcZe"),
            ("xs", 32, 192, 78.6, 34.2, 16.10, "1DtdX-keSB-RkH23KqtQH36IMOUmol1kw"),
        )
    ),
    # size, box AP, mask AP, params (M), GFLOPs (measured, 800 x 1280), Google Drive file id
    _mask_rcnn("xxs", 42.8, 39.2, 29.4, 215.2, "1CUyS-hWbpLvOXHZ35n4BZPmiCbMXt0mc"),
    _mask_rcnn("xs", 44.6, 40.9, 35.6, 233.1, "1CRHb-W5Csy_509J4Ux62TOT7dpixdsOi"),
    # size, single-scale mIoU, params (M), GFLOPs (measured, 512 x 2048), Google Drive file id
    _fpn("xxs", 42.3, 13.5, 132.5, "1DPakdzr6G7n8t3_ZAFCx8wFX1r5h_V7-"),
    _fpn("xs", 44.4, 19.7, 150.9, "1Dj3GiQLK7YZPKSgz_Uk8JL1J66XEvw0Y"),
)


# ---------------------------------------------------------------------------------------------------------
# timm registration of the ImageNet models (``timm.create_model("uniformer_xxs_160")``): default cfgs
# generated from the entries; no pretrained source timm can fetch (the files are on Google Drive only)

default_cfgs = timm_default_cfgs(tuple(info for info in MODELS if info.task == "image"))


@register_model
def uniformer_xxs_128(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-XXS (light), ImageNet-1K at 128 px."""
    return create_timm_model("uniformer_xxs_128", pretrained, XXS, **kwargs)


@register_model
def uniformer_xxs_160(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-XXS (light), ImageNet-1K at 160 px."""
    return create_timm_model("uniformer_xxs_160", pretrained, XXS, **kwargs)


@register_model
def uniformer_xxs_192(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-XXS (light), ImageNet-1K at 192 px."""
    return create_timm_model("uniformer_xxs_192", pretrained, XXS, **kwargs)


@register_model
def uniformer_xxs_224(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-XXS (light), ImageNet-1K at 224 px."""
    return create_timm_model("uniformer_xxs_224", pretrained, XXS, **kwargs)


@register_model
def uniformer_xs_192(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-XS (light), ImageNet-1K at 192 px."""
    return create_timm_model("uniformer_xs_192", pretrained, XS, **kwargs)


@register_model
def uniformer_xs_224(pretrained: bool = False, **kwargs: Any) -> UniFormer:
    """UniFormer-XS (light), ImageNet-1K at 224 px."""
    return create_timm_model("uniformer_xs_224", pretrained, XS, **kwargs)
