"""The video classifiers (official ``video_classification`` model zoo: Kinetics-400/600, Something-Something
V1/V2) and the reduced-width demo model.

Published numbers and the Google Drive ids of the released files come from Sense-X/UniFormer
``video_classification/README.md``; the Hub files and their SHA-256 from the Hub repositories
``Sense-X/uniformer_video`` and ``Andy1621/uniformer`` (their Git LFS pointers); mmaction2's re-hosted Kinetics-400
files (classifier renamed and its rows in mmaction2's label order, mapped back on reading) from its
``configs/recognition/uniformer/README.md``. The UCF101 and HMDB51 class lists are those of the official
``video_classification/data_list`` (split 1). GFLOPs are given per view: the table's total over all test views
divided by clips x crops.
"""

from __future__ import annotations

from types import MappingProxyType

from uniformer.models.zoo.image import SIZES, build_classifier
from uniformer.models.zoo.schema import ModelInfo, ModelKind, Release
from uniformer.models.zoo.sources import MMACTION2_UNIFORMER, DriveFile, HubFile, Source, UrlFile

__all__ = ["MODELS", "VIDEO_CLASSIFIER"]

VIDEO_HUB_REPO = "Sense-X/uniformer_video"

# image weights are inflated into a video model: they do not set its class count
VIDEO_CLASSIFIER = ModelKind(build_classifier, head="auto", inflates_image_weights=True)

# Published parameter counts of the video models (millions), per size and dataset head.
_PARAMS = {"small": 21.4, "base": 49.8}


def _video(
    name: str, size: str, dataset: str, title: str, release: Release, params_m: float | None = None, **clip: object
) -> ModelInfo:
    """A video entry: the size's architecture in 3-D and its published parameters (unless ``params_m`` says)."""
    return ModelInfo(
        name=name,
        task="video",
        dataset=dataset,
        title=f"{SIZES[size][0]} {title}",
        model_args=MappingProxyType({**SIZES[size][1], "video": True}),
        releases=(release,),
        params_m=_PARAMS[size] if params_m is None else params_m,
        kind=VIDEO_CLASSIFIER,
        **clip,
    )


# Where each released file is, by entry name. Sources are tried Hub first, then OpenMMLab's server (both download
# by themselves), then Google Drive (the official README's link; needs gdown).
# Hub files with the SHA-256 and size of their Git LFS pointers
_HUB: dict[str, tuple[HubFile, ...]] = {
    "uniformer_small_k400_16x8": tuple(
        HubFile(
            repo,
            "uniformer_small_k400_16x8.pth",
            "d5fd7b0c49ee6a5422ef5d0c884d962c742003bfbd900747485eb99fa269d0db",
            85735325,
        )
        for repo in (VIDEO_HUB_REPO, "Andy1621/uniformer")
    ),
    "uniformer_base_k400_16x4": (
        HubFile(
            "Andy1621/uniformer",
            "uniformer_base_k400_16x4.pth",
            "a36e08ecff0a2b11020d6e88046353f80fdeb10b40fe167f2fbc0c1d976fb873",
            199525573,
        ),
    ),
    "uniformer_base_k400_32x4": (
        HubFile(
            VIDEO_HUB_REPO,
            "uniformer_base_k400_32x4.pth",
            "b432450566cdc4f50222e4851b5d304bba4444a699cdbb43fa529ceb18ae1f8e",
            199525573,
        ),
    ),
    "uniformer_small_k600_16x8": (
        HubFile(
            VIDEO_HUB_REPO,
            "uniformer_small_k600_16x8.pth",
            "2a9143a63691c442b23f912ed3489e5800fc5916fb7aa1b25322ad5da2466c6f",
            86145693,
        ),
    ),
    "uniformer_base_k600_32x4": (
        HubFile(
            VIDEO_HUB_REPO,
            "uniformer_base_k600_32x4.pth",
            "d44685e1d12e5aa413032e7719a8be45b95a19da4e7f76ac0e811f9a6f4825ae",
            199935941,
        ),
    ),
    # the one Hub file whose pointer page is not among the stored pages: no published digest here
    "uniformer_small_sthv1_prek600_16": (HubFile(VIDEO_HUB_REPO, "uniformer_small_sthv1_16_prek600.pth"),),
    "uniformer_base_sthv1_prek600_32": (
        HubFile(
            VIDEO_HUB_REPO,
            "uniformer_base_sthv1_32_prek600.pth",
            "8da7f948d7fcc72444dd3783ff12fb18e997d78acc3d70135d14687433448090",
            199061829,
        ),
    ),
    "uniformer_small_sthv2_prek600_16": (
        HubFile(
            VIDEO_HUB_REPO,
            "uniformer_small_sthv2_16_prek600.pth",
            "6b085f96980edf491386893902a5a304a63f4da395d528bcdeef6e7464bd160f",
            85271581,
        ),
    ),
    "uniformer_base_sthv2_prek600_32": (
        HubFile(
            VIDEO_HUB_REPO,
            "uniformer_base_sthv2_32_prek600.pth",
            "b7a74408ed230e9671d30da2f596bef84900aaaa325a5793f6cb3ba25f721eae",
            199061829,
        ),
    ),
}
# mmaction2's Kinetics-400 files (file-name suffix: date and SHA-256 prefix)
_MMACTION2 = {
    "uniformer_small_k400_16x4": "uniformer-small_imagenet1k-pre_16x4x1_kinetics400-rgb_20221219-c630a037.pth",
    "uniformer_base_k400_16x4": "uniformer-base_imagenet1k-pre_16x4x1_kinetics400-rgb_20221219-157c2e66.pth",
    "uniformer_base_k400_32x4": "uniformer-base_imagenet1k-pre_32x4x1_kinetics400-rgb_20221219-b776322c.pth",
}
# Google Drive ids of the official README's "Model" links
_DRIVE = {
    "uniformer_small_k400_8x8": "1-kitVTkWErHXI_x-sLItvK9-sOmb53j6",
    "uniformer_small_k400_16x4": "1-jGZIIuTM5IYIpqkNTojhGhfMc7Gu9Kt",
    "uniformer_small_k400_16x8": "174muWZJcZHieABDZMKiJ0tNeFLoEkJLx",
    "uniformer_base_k400_8x8": "1hBxGU-QE8hGRBjSNCymJ7Au06LhluvTv",
    "uniformer_base_k400_16x4": "15ipzFaZdTt-aHv7jcr_h_vgYD2X7D6AD",
    "uniformer_base_k400_16x8": "1VoZcpFZbk9lEyRQ7gqRgT4CsnVt9g7uk",
    "uniformer_base_k400_32x4": "1gHxx8cr1H0CNvngj1kB9ArgcPfJtqjCV",
    "uniformer_small_k600_16x4": "1-dqzjm5RZVspWHQLRD4S1vo4_6jyVltb",
    "uniformer_small_k600_16x8": "1-c835NJjg_015WxLBQF-1cPdQsyWMWfY",
    "uniformer_base_k600_16x4": "1nBQCBCsCflhZ4OGUoGB3pAkc_GDau7vd",
    "uniformer_base_k600_16x8": "1aidHdSd-h65-_EUkfNOdMMw0ZB8G5maY",
    "uniformer_base_k600_32x4": "1-DwdVf8w8lYj-iFpU40pfEpog9VE5PQB",
    "uniformer_small_sthv1_prek400_16": "1-bdFsmXt2Ztf43lrVgmqS8_VYJ8tub6J",
    "uniformer_small_sthv1_prek600_16": "1-YbYGjM15MDtQnrmCeZ9H2ybNdYTFkgO",
    "uniformer_small_sthv1_prek400_32": "1-Y5ADssqM2C8o_1jix48fQM788mVGWQ3",
    "uniformer_small_sthv1_prek600_32": "1-XEgaGqXGp1EGzFl63ctApnvU54X27WP",
    "uniformer_base_sthv1_prek400_16": "1uMq4W5lf17vOHUmccNjYLeTMqaWHSh6v",
    "uniformer_base_sthv1_prek600_16": "1xpiL8zEDWYHFR55gOsbQiI41YEjTD89J",
    "uniformer_base_sthv1_prek400_32": "18A3FuUUbdQ8ehMQ0D78qTTtm6YmIVWaO",
    "uniformer_base_sthv1_prek600_32": "1xE1aJYAYFOlXOkpiIbJFHu_jSrr8reKm",
    "uniformer_small_sthv2_prek400_16": "1-Wq22024HB7tT8kPX6eSMn2GUNMI-_gY",
    "uniformer_small_sthv2_prek600_16": "1-V1mQp4fIIYhaXUWCgZXkJ0H6ne0Z8rz",
    "uniformer_small_sthv2_prek400_32": "1-5Q5S-NRmHFkIBygaRYpJLT7aI9cpmky",
    "uniformer_small_sthv2_prek600_32": "1-1K5R3Ed4t8d_DZnJ62xysIt1dBNmx96",
    "uniformer_base_sthv2_prek400_16": "1s78JBpnykyJ7pYEGRDK8BZL9seIRIUlC",
    "uniformer_base_sthv2_prek600_16": "16nCBGWzMM8n8Vr_EY0UmvgzLG0S_QYef",
    "uniformer_base_sthv2_prek400_32": "1-rpMARXnyvyj6YUJkIvVqtna86egpjoS",
    "uniformer_base_sthv2_prek600_32": "1-lkRB3546l_ECuObN_IrHws1C9a-qKPr",
    "uniformer_small_ucf101_16x4": "1Ey8JIGcP8G2H0bKxyNnD61lvHV1eerVt",
    "uniformer_small_hmdb51_16x4": "1Es4xtcEvQSomnbp6Eo7TC3JejIwHf5yS",
}


def _sources(name: str) -> tuple[Source, ...]:
    """The sources of entry ``name`` in the order ``pretrained=True`` tries them; empty when it was not released."""
    mmaction2 = name in _MMACTION2
    url = (UrlFile(MMACTION2_UNIFORMER + _MMACTION2[name], sha256=_MMACTION2[name][-12:-4]),) if mmaction2 else ()
    drive = (DriveFile(_DRIVE[name]),) if name in _DRIVE else ()
    return (*_HUB.get(name, ()), *url, *drive)


def _kinetics(size: str, classes: int, frames: int, stride: int, top1: float, gflops_total: float) -> ModelInfo:
    name = f"uniformer_{size}_k{classes}_{frames}x{stride}"
    sources = _sources(name)
    return _video(
        name,
        size,
        f"kinetics-{classes}",
        f"{frames}x{stride} (Kinetics-{classes})",
        Release(224, round(gflops_total / 4, 2), sources, metrics={"top1": top1}),
        num_frames=frames,
        frame_stride=stride,
        sampling="dense",
        test_clips=4,
        test_crops=1,
        pretrain=f"uniformer_{size}_in1k.pth (inflated)",
        notes="" if sources else "Published result; the checkpoint was not released.",
    )


def _something(size: str, version: int, pretrain: int, frames: int, top1: float, gflops_total: float) -> ModelInfo:
    name = f"uniformer_{size}_sthv{version}_prek{pretrain}_{frames}"
    return _video(
        name,
        size,
        f"something-something-v{version}",
        f"{frames} frames (Something-Something V{version}, K{pretrain} pretrain)",
        Release(224, round(gflops_total / 3, 2), _sources(name), metrics={"top1": top1}),
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
    releases=(Release(64, 0.08),),
    params_m=1.45,
    kind=VIDEO_CLASSIFIER,
    num_frames=8,
    frame_stride=4,
    sampling="dense",
    test_clips=2,
    test_crops=1,
    notes="Demo model (not released): trained from scratch by `make demo` on `uniformer data synth` videos.",
)

_FINETUNE_NOTES = {
    "ucf101": "Parameters counted from the architecture (the README gives none).",
    "hmdb51": (
        "Parameters counted from the architecture (the README gives none). The official config sets"
        " MODEL.NUM_CLASSES 101 and run.sh does not override it: if the released file's classifier has 101 rows,"
        " only the first 51 are HMDB51 classes."
    ),
}


def _small_finetune(dataset: str, title: str, top1: float) -> ModelInfo:
    """UniFormer-S 16x4 fine-tuned from Kinetics-400 on a small dataset (official ``exp/uniformer_s16x4_*_prek400``):
    16 frames x 3 crops x 5 clips at test, 625 GFLOPs over the 15 views; the README gives no parameter count
    (counted from the architecture with the dataset's classifier)."""
    name = f"uniformer_small_{dataset}_16x4"
    return _video(
        name,
        "small",
        dataset,
        f"16x4 ({title}, K400 pretrain)",
        Release(224, round(625 / 15, 2), _sources(name), metrics={"top1": top1}),
        params_m={"ucf101": 21.25, "hmdb51": 21.22}[dataset],
        num_frames=16,
        frame_stride=4,
        sampling="dense",
        test_clips=5,
        test_crops=3,
        pretrain="uniformer_small_k400_16x4",
        notes=_FINETUNE_NOTES[dataset],
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
            ("small", 400, 32, 4, 82.0, 438),  # published result; the checkpoint was not released
        )
    ),
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
    _small_finetune("ucf101", "UCF101", 98.3),
    _small_finetune("hmdb51", "HMDB51", 77.5),
    _TINY_MOTION,
)
