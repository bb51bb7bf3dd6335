"""The COCO top-down pose models: the dense backbone with the SimpleBaseline heatmap head.

Sense-X/UniFormer ``pose_estimation/README.md``: COCO val2017 AP, AP50, AP75, "AR^M", "AR^L" (so the README's
header; the columns sit where mmpose's AP (M) / AP (L) go) and AR with the official detector's person boxes
(``COCO_val2017_detections_AP_H_56_person.json``), FLOPs, Google Drive links of the released weights; the same
weights re-hosted by mmpose 1.x (``projects/uniformer/README.md``, heads renamed ``head.*``, mapped back on reading)
come first, as they download without a Drive client. The README
gives no parameter counts: ``params_m`` is counted from the architecture (backbone + head, 17 heatmaps). The
architectures and the crop sizes (W x H) are those of ``pose_estimation/exp/top_down_<HxW>_global_<size>/config.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.pose import TopDownPoseModel, build_pose_model
from uniformer.models.zoo.image import SIZES
from uniformer.models.zoo.schema import ModelInfo, ModelKind, Release
from uniformer.models.zoo.sources import MMPOSE_UNIFORMER, DriveFile, UrlFile

__all__ = ["MODELS", "POSE_MODEL", "HEAD_CHANNELS"]

HEAD_CHANNELS = "head_channels"  # the override naming the head's deconvolution width (official 256)


def _build(
    info: ModelInfo, num_classes: int, overrides: dict[str, Any], file: CheckpointFile | None
) -> TopDownPoseModel:
    """The entry's backbone changed by ``overrides`` with a head of ``overrides["head_channels"]`` (default 256)
    producing ``num_classes`` heatmaps."""
    backbone = {k: v for k, v in overrides.items() if k != HEAD_CHANNELS}
    return build_pose_model(num_classes, {**info.model_args, **backbone}, channels=overrides.get(HEAD_CHANNELS, 256))


def _old_run_model_args(config: Mapping[str, Any]) -> dict[str, Any]:
    """Runs that did not record their head width held it in the config's ``head.channels``."""
    channels = (config.get("head") or {}).get("channels")
    return {} if channels is None else {HEAD_CHANNELS: channels}


POSE_MODEL = ModelKind(_build, old_run_model_args=_old_run_model_args)

_NOTE_B384 = (
    " The published 14.8 GFLOPs disagree with the architecture at 384 x 288 (measured 22.05G; the 448 x 320"
    " UniFormer-B counts 29.5G, as published); they repeat the UniFormer-S 448 x 320 cell."
)
_METRICS = ("ap", "ap50", "ap75", "apm", "apl", "ar")


def _pose(
    size: str, hw: tuple[int, int], metrics: tuple[float, ...], gflops: float, drive_id: str, mmpose: str
) -> ModelInfo:
    """A COCO top-down entry; ``metrics`` = AP, AP50, AP75, APm, APl, AR as the README's row gives them;
    ``mmpose``: the hash-and-date suffix of mmpose's file name (its first 8 hex digits begin the SHA-256)."""
    height, width = hw
    mmpose_file = f"top_down_{height}x{width}_global_{size}-{mmpose}.pth"
    return ModelInfo(
        name=f"uniformer_{size}_topdown_coco_{height}x{width}",
        task="pose",
        dataset="coco-keypoints",
        title=f"{SIZES[size][0]} top-down pose {height}x{width} (COCO)",
        model_args=MappingProxyType(dict(SIZES[size][1])),
        releases=(
            Release(
                height,
                gflops,
                (UrlFile(MMPOSE_UNIFORMER + mmpose_file, sha256=mmpose[:8]), DriveFile(drive_id)),
                metrics=dict(zip(_METRICS, metrics)),
                crop_pct=1.0,
                input_hw=hw,
            ),
        ),
        params_m={"small": 25.2, "base": 53.5}[size],
        kind=POSE_MODEL,
        pretrain=f"uniformer_{size}_in1k.pth",
        notes=_NOTE_B384 if (size, hw) == ("base", (384, 288)) else "",
    )


# Google Drive file ids of the official files
_S256, _S384, _S448 = (
    "162R0JuTpf3gpLe1IK6oxRoQK7JSj4ylx",
    "163vuFkpcgVOthC05jCwjGzo78Nr0eikW",
    "165nQRsT58SXJegcttksHwDn46Fme5dGX",
)
_B256, _B384, _B448 = (
    "15tzJaRyEzyWp2mQhpjDbBzuGoyCaJJ-2",
    "15qtUaOR_C7-vooheJE75mhA9oJQt3gSx",
    "156iNxetiCk8JJz41aFDmFh9cQbCaMk3D",
)

MODELS: tuple[ModelInfo, ...] = tuple(
    _pose(*row)
    for row in (
        # size, (H, W), (AP, AP50, AP75, APm, APl, AR), GFLOPs, Google Drive file id, mmpose file suffix
        ("small", (256, 192), (74.0, 90.3, 82.2, 66.8, 76.7, 79.5), 4.7, _S256, "d4a7fdac_20230724"),
        ("small", (384, 288), (75.9, 90.6, 83.4, 68.6, 79.0, 81.4), 11.1, _S384, "7a613f78_20230724"),
        ("small", (448, 320), (76.2, 90.6, 83.2, 68.6, 79.4, 81.4), 14.8, _S448, "18b760de_20230724"),
        ("base", (256, 192), (75.0, 90.6, 83.0, 67.8, 77.7, 80.4), 9.2, _B256, "1713bcd4_20230724"),
        ("base", (384, 288), (76.7, 90.8, 84.0, 69.3, 79.7, 81.4), 14.8, _B384, "c650da38_20230724"),
        ("base", (448, 320), (77.4, 91.1, 84.4, 70.2, 80.6, 82.5), 29.6, _B448, "a05c185f_20230724"),
    )
)
