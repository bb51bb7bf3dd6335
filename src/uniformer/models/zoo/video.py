"""The video classifiers (official ``video_classification`` model zoo: Kinetics-400/600, Something-Something
V1/V2) and the reduced-width demo model.

Published numbers come from Sense-X/UniFormer ``video_classification/README.md``; released file names from the
Hub repository ``Sense-X/uniformer_video``. GFLOPs are given per view: the table's total over all test views
divided by clips x crops.
"""

from __future__ import annotations

from types import MappingProxyType

from uniformer.models.zoo.image import SIZES, build_classifier
from uniformer.models.zoo.schema import ModelInfo, ModelKind, Release

__all__ = ["MODELS", "VIDEO_CLASSIFIER"]

VIDEO_HUB_REPO = "Sense-X/uniformer_video"

# image weights are inflated into a video model: they do not set its class count
VIDEO_CLASSIFIER = ModelKind(build_classifier, head="auto", inflates_image_weights=True)

# Published parameter counts of the video models (millions), per size and dataset head.
_PARAMS = {"small": 21.4, "base": 49.8}


def _video(name: str, size: str, dataset: str, title: str, release: Release, **clip: object) -> ModelInfo:
    """A video entry: the size's architecture in 3-D, its published parameters, the video Hub repository."""
    return ModelInfo(
        name=name,
        task="video",
        dataset=dataset,
        title=f"{SIZES[size][0]} {title}",
        model_args=MappingProxyType({**SIZES[size][1], "video": True}),
        releases=(release,),
        params_m=_PARAMS[size],
        hub_repo=VIDEO_HUB_REPO,
        kind=VIDEO_CLASSIFIER,
        **clip,
    )


def _kinetics(
    size: str, classes: int, frames: int, stride: int, top1: float, gflops_total: float, released: bool = True
) -> ModelInfo:
    name = f"uniformer_{size}_k{classes}_{frames}x{stride}"
    return _video(
        name,
        size,
        f"kinetics-{classes}",
        f"{frames}x{stride} (Kinetics-{classes})",
        Release(224, round(gflops_total / 4, 2), f"{name}.pth" if released else None, metrics={"top1": top1}),
        num_frames=frames,
        frame_stride=stride,
        sampling="dense",
        test_clips=4,
        test_crops=1,
        pretrain=f"uniformer_{size}_in1k.pth (inflated)",
        notes="" if released else "Published result; the checkpoint was not released.",
    )


def _something(size: str, version: int, pretrain: int, frames: int, top1: float, gflops_total: float) -> ModelInfo:
    checkpoint = f"uniformer_{size}_sthv{version}_{frames}_prek{pretrain}.pth"
    return _video(
        f"uniformer_{size}_sthv{version}_prek{pretrain}_{frames}",
        size,
        f"something-something-v{version}",
        f"{frames} frames (Something-Something V{version}, K{pretrain} pretrain)",
        Release(224, round(gflops_total / 3, 2), checkpoint, metrics={"top1": top1}),
        num_frames=frames,
        frame_stride=None,
        sampling="segment",
        test_clips=1,
        test_crops=3,
        pretrain=f"uniformer_{size}_k{pretrain}_{frames}x4",
    )


# A reduced-width video UniFormer, built by the same code, that trains in minutes on two CPU cores: the model
# of `make demo` and of anyone trying the engine on a laptop. Not an official model: its cost is measured here
# (`uniformer info uniformer_tiny_motion`), and its accuracy is whatever the demo run reports.
_TINY_MOTION = ModelInfo(
    name="uniformer_tiny_motion",
    task="video",
    dataset="synthetic-motion",
    title="UniFormer-T (reduced width, synthetic motion demo)",
    model_args=MappingProxyType(dict(depth=(1, 1, 2, 1), embed_dim=(32, 64, 128, 256), head_dim=32, video=True)),
    releases=(Release(64, 0.08, None),),
    params_m=1.45,
    hub_repo="",
    kind=VIDEO_CLASSIFIER,
    num_frames=8,
    frame_stride=4,
    sampling="dense",
    test_clips=2,
    test_crops=1,
    notes="Demo model (not released): trained from scratch by `make demo` on `uniformer data synth` videos.",
)

MODELS: tuple[ModelInfo, ...] = (
    *(
        _kinetics(*row)
        for row in (
            # size, classes, frames, stride, top-1, GFLOPs over the 4 test views
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
        )
    ),
    _kinetics("small", 400, 32, 4, 82.0, 438, released=False),
    *(
        _something(*row)
        for row in (
            # size, version, Kinetics pretrain, frames, top-1, GFLOPs over the 3 test views
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
        )
    ),
    _TINY_MOTION,
)
