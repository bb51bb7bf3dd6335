"""The zoo: every entry builds with the official layout, published cost, labels and weights."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import timm
import torch

import uniformer
from uniformer.labels import load_palette
from uniformer.models import measure_model
from uniformer.models.checkpoint import TRAIN_FORMAT
from uniformer.models.zoo import catalog
from uniformer.models.zoo.datasets import DATASETS
from uniformer.models.zoo.schema import ModelKind, Release
from uniformer.models.zoo.sources import DriveFile, HubFile

from golden import GOLDEN

OFFICIAL_KEYS = json.loads((GOLDEN / "official_keys.json").read_text())

EXPECTED_IMAGE = [
    "uniformer_small",
    "uniformer_small_plus",
    "uniformer_small_plus_dim64",
    "uniformer_base",
    "uniformer_base_ls",
]
EXPECTED_TL = [
    f"uniformer_{s}_tl"
    for s in ("small", "small_dim64", "small_plus", "small_plus_dim64", "base", "base_dim64", "large_ls")
]
EXPECTED_LIGHT_IMAGE = [f"uniformer_xxs_{s}" for s in (128, 160, 192, 224)] + ["uniformer_xs_192", "uniformer_xs_224"]
EXPECTED_LIGHT = [
    *EXPECTED_LIGHT_IMAGE,
    *(
        f"uniformer_xxs_k400_{f}f_{s}"
        for f, s in [(4, 128), (4, 160), (8, 128), (8, 160), (16, 128), (16, 160), (32, 160)]
    ),
    "uniformer_xs_k400_32f_192",
    "uniformer_xxs_mask_rcnn_coco_1x",
    "uniformer_xs_mask_rcnn_coco_1x",
    "uniformer_xxs_fpn_ade20k",
    "uniformer_xs_fpn_ade20k",
]
RELEASED_KINETICS = {
    "k400": {"small": ["8x8", "16x4", "16x8"], "base": ["8x8", "16x4", "16x8", "32x4"]},
    "k600": {"small": ["16x4", "16x8"], "base": ["16x4", "16x8", "32x4"]},
}


def _official_family(name: str) -> str:
    info = uniformer.model_info(name)
    size = "small" if name.startswith("uniformer_small") else "base"
    if info.task == "image":
        if info.model_args.get("token_labeling"):
            return f"imagenet_token_labeling/{name.removesuffix('_tl')}"
        return f"imagenet/{name}"
    if info.dataset.startswith("kinetics"):
        return f"video_k{info.num_classes}/uniformer_{size}"
    return f"video_sthv2/uniformer_{size}"  # V1 and V2 share the 174-class layout


def test_every_required_name_is_registered() -> None:
    names = set(uniformer.list_models())
    required = set(EXPECTED_IMAGE) | set(EXPECTED_TL) | set(EXPECTED_LIGHT)
    for dataset, sizes in RELEASED_KINETICS.items():
        required |= {f"uniformer_{s}_{dataset}_{fs}" for s, settings in sizes.items() for fs in settings}
    required |= {
        f"uniformer_{s}_sthv{v}_prek{p}_{f}"
        for s in ("small", "base")
        for v in (1, 2)
        for p in (400, 600)
        for f in (16, 32)
    }
    assert required <= names, sorted(required - names)
    assert uniformer.list_models("*sthv1*") == sorted(
        uniformer.list_models("*sthv1*"), key=uniformer.list_models().index
    )
    assert set(uniformer.list_models(task="image")) == set(EXPECTED_IMAGE) | set(EXPECTED_TL) | set(
        EXPECTED_LIGHT_IMAGE
    )
    demo = uniformer.model_info("uniformer_tiny_motion")
    assert demo.release().sources == () and demo.labels[0] == "moving_right" and demo.num_classes == 8


# the demo model is ours; the segmentors', pose models' and detectors' layouts are tested against mmseg's, mmpose's
# and mmdet's in test_segmentation.py, test_pose.py and test_detection.py; the light models' against the official
# light files' checkpoints, key for key, in test_golden.py
OFFICIAL_NAMES = [
    n
    for n in uniformer.list_models()
    if n != "uniformer_tiny_motion"
    and uniformer.model_info(n).task not in ("segmentation", "pose", "detection")
    and not uniformer.model_info(n).model_args.get("light")
    and uniformer.model_info(n).dataset not in ("ucf101", "hmdb51")
]


@pytest.mark.parametrize("name", OFFICIAL_NAMES)
def test_state_dict_matches_the_official_checkpoint_layout(name: str) -> None:
    with torch.device("meta"):
        model = uniformer.create_model(name)
    official = OFFICIAL_KEYS[_official_family(name)]
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == official["keys"]
    assert sum(p.numel() for p in model.parameters()) == official["params"]


@pytest.mark.parametrize("name, classes", [("uniformer_small_ucf101_16x4", 101), ("uniformer_small_hmdb51_16x4", 51)])
def test_small_dataset_fine_tunes_have_the_kinetics_layout_with_their_own_classifier(name: str, classes: int) -> None:
    """UCF101 / HMDB51 fine-tune UniFormer-S 16x4 from Kinetics-400: its layout, the dataset's classifier."""
    with torch.device("meta"):
        model = uniformer.create_model(name)
    official = OFFICIAL_KEYS["video_k400/uniformer_small"]["keys"]
    expected = {**official, "head.weight": [classes, 512], "head.bias": [classes]}
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == expected
    info = uniformer.model_info(name)
    assert (info.num_frames, info.frame_stride, info.test_clips, info.test_crops) == (16, 4, 5, 3)
    assert len(info.labels) == classes == len(set(info.labels))


# Published cost that disagrees with the architecture itself: pinned to what the architecture measures.
MEASURED_NOT_PUBLISHED = {
    ("uniformer_large_ls_tl", 224): 19.71,
    ("uniformer_large_ls_tl", 384): 62.76,
    ("uniformer_small_h14_fpn_ade20k", 512): 190.91,
    ("uniformer_base_topdown_coco_384x288", 384): 22.05,
    ("uniformer_xs_224", 224): 1.93,
    ("uniformer_xxs_k400_8f_160", 160): 3.22,
}


@pytest.mark.parametrize(
    "name,img_size",
    [(n, r.img_size) for n in uniformer.list_models() for r in uniformer.model_info(n).releases],
)
def test_params_and_gflops_match_the_published_tables(name: str, img_size: int) -> None:
    info = uniformer.model_info(name)
    release = info.release(img_size)
    measured = measure_model(name, img_size)
    # the published counts leave out the token-labeling aux_head (embed_dim[-1] x 1000 + 1000)
    params = measured.params - (513_000 if "_tl" in name and "large" not in name else 0)
    params -= 641_000 if name == "uniformer_large_ls_tl" else 0
    # image tables give whole millions: allow 2% or that rounding, whichever is larger
    params_tol = max(0.02 * info.params_m, 0.5 if info.task == "image" else 0.0)
    assert abs(params / 1e6 - info.params_m) <= params_tol
    if (name, img_size) in MEASURED_NOT_PUBLISHED:
        assert measured.gmacs == pytest.approx(MEASURED_NOT_PUBLISHED[name, img_size], abs=0.01)
        assert "disagree" in info.notes
    else:
        assert measured.gmacs == pytest.approx(release.gflops, rel=0.02)


def test_metadata_of_video_entries() -> None:
    k400 = uniformer.model_info("uniformer_small_k400_16x4")
    assert (k400.num_frames, k400.frame_stride, k400.sampling) == (16, 4, "dense")
    assert (k400.test_clips, k400.test_crops, k400.release().img_size) == (4, 1, 224)
    assert k400.release().metrics == {"top1": 80.8} and k400.num_classes == 400
    mmaction2 = k400.release().sources[0]
    assert mmaction2.name == "uniformer-small_imagenet1k-pre_16x4x1_kinetics400-rgb_20221219-c630a037.pth"
    assert mmaction2.sha256 == "c630a037" and k400.release().sources[1] == DriveFile(
        "1-jGZIIuTM5IYIpqkNTojhGhfMc7Gu9Kt"
    )
    hub = uniformer.model_info("uniformer_small_k400_16x8").release().sources[0]
    assert hub == HubFile(
        "Sense-X/uniformer_video",
        "uniformer_small_k400_16x8.pth",
        sha256="d5fd7b0c49ee6a5422ef5d0c884d962c742003bfbd900747485eb99fa269d0db",
        size=85735325,
    )
    ssv2 = uniformer.model_info("uniformer_base_sthv2_prek600_32")
    assert (ssv2.num_frames, ssv2.sampling, ssv2.test_clips, ssv2.test_crops) == (32, "segment", 1, 3)
    assert ssv2.release().sources[0].filename == "uniformer_base_sthv2_32_prek600.pth"
    assert uniformer.model_info("uniformer_small_k400_32x4").release().sources == ()
    tl = uniformer.model_info("uniformer_small_tl")
    assert [r.img_size for r in tl.releases] == [224, 384]
    assert tl.release(384).sources == (DriveFile("16p4CXzuXC5J4_SJK67dsvnc8gTKmtKN1"),)
    with pytest.raises(ValueError, match="released sizes: 224, 384"):
        tl.release(256)


def test_label_lists_ship_with_the_package_in_classifier_order() -> None:
    for name, dataset in DATASETS.items():
        labels = uniformer.load_labels(name)
        assert len(labels) == dataset.num_classes, name
        if name != "imagenet-1k":  # WordNet descriptions repeat twice in ImageNet ("crane", "maillot")
            assert len(set(labels)) == len(labels), name
    k400 = uniformer.load_labels("kinetics-400")
    assert k400[0] == "riding a bike" and k400[1] == "marching"
    assert uniformer.load_labels("kinetics-600")[1] == "poking bellybutton"
    assert uniformer.load_labels("something-something-v2")[0] == "Approaching [something] with your camera"
    assert uniformer.load_labels("imagenet-1k")[0].startswith("tench")
    assert uniformer.model_info("uniformer_small_k600_16x4").labels == uniformer.load_labels("kinetics-600")


def test_ade20k_names_and_palette_are_mmsegs() -> None:
    names, palette = uniformer.load_labels("ade20k"), load_palette("ade20k")
    assert len(names) == len(palette) == 150 and len(set(names)) == 150
    assert names[:3] == ["wall", "building", "sky"] and names[7] == "bed" and names[-1] == "flag"
    assert palette[0] == (120, 120, 120) and palette[-1] == (92, 0, 255)
    assert palette[6] == palette[48] == (140, 140, 140)  # road and skyscraper share a colour in mmseg
    with pytest.raises(ValueError, match="no colour palette for dataset 'kinetics-400'"):
        load_palette("kinetics-400")


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="did you mean uniformer_small"):
        uniformer.model_info("uniformer_smal")
    with pytest.raises(ValueError, match="no checkpoint was released"):
        uniformer.create_model("uniformer_small_k400_32x4", pretrained=True)


def test_image_models_are_registered_in_timm() -> None:
    assert set(timm.list_models("uniformer_*")) == set(uniformer.list_models(task="image"))
    model = timm.create_model("uniformer_small_tl", num_classes=7)
    assert model.token_labeling and model.head.out_features == 7
    cfg = timm.models.get_pretrained_cfg("uniformer_small_tl.tl_in1k_384")
    assert cfg.input_size == (3, 384, 384) and cfg.hf_hub_id is None  # on Google Drive only: not timm's to fetch
    hub = timm.models.get_pretrained_cfg("uniformer_small_plus.in1k")
    assert (hub.hf_hub_id, hub.hf_hub_filename) == ("Sense-X/uniformer_image", "uniformer_small_plus_in1k.pth")
    assert timm.models.get_pretrained_cfg("uniformer_small_plus.in1k").first_conv == "patch_embed1.proj.0"
    features = timm.create_model("uniformer_small", features_only=True, pretrained=False)
    maps = features(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 320, 4, 6), (1, 512, 2, 3)]
    assert features.feature_info.reduction() == [4, 8, 16, 32]


def _fake_hub_cache(cache: Path, source: HubFile, payload: dict) -> Path:
    """The Hub cache's layout: the file is a blob named by its ETag (a Git LFS file's SHA-256, here the published
    one) that the snapshot links to."""
    folder = cache / f"models--{source.repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "blobs").mkdir()
    blob = folder / "blobs" / (source.sha256 or "0" * 64)
    torch.save(payload, blob)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / source.filename).symlink_to(blob)
    return snapshot / source.filename


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def test_pretrained_loads_the_released_file_from_the_hub_cache(offline_hub: Path) -> None:
    reference = uniformer.create_model("uniformer_small_plus")
    _fake_hub_cache(
        offline_hub, uniformer.model_info("uniformer_small_plus").release().sources[0], reference.state_dict()
    )
    model = uniformer.create_model("uniformer_small_plus", pretrained=True)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_timm_pretrained_fits_a_token_labeling_checkpoint_to_new_classes_and_one_channel(tmp_path: Path) -> None:
    """timm's own pretrained path (its ``test_model_load_pretrained``): for a new class count both classifiers
    start afresh, every other weight is the file's, and the stem is adapted to ``in_chans=1`` (summed kernels).
    The token-labeling weights are on Google Drive only, so timm is given the downloaded file."""
    small = {"depth": (1, 1, 1, 1)}
    reference = timm.create_model("uniformer_small_tl", **small).state_dict()
    torch.save(reference, tmp_path / "uniformer_small_tl.pth")
    overlay = {"file": str(tmp_path / "uniformer_small_tl.pth")}
    model = timm.create_model(
        "uniformer_small_tl", pretrained=True, pretrained_cfg_overlay=overlay, in_chans=1, num_classes=5, **small
    )
    assert model.head.out_features == model.aux_head.out_features == 5
    state = model.state_dict()
    torch.testing.assert_close(state["patch_embed1.proj.weight"], reference["patch_embed1.proj.weight"].sum(1, True))
    for key, value in reference.items():
        if not key.startswith(("head.", "aux_head.", "patch_embed1.proj.weight")):
            assert torch.equal(state[key], value), key


def test_pretrained_without_network_says_what_to_fetch(offline_hub: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        uniformer.create_model("uniformer_small_k400_16x8", pretrained=True)
    message = str(err.value)
    assert "uniformer_small_k400_16x8.pth" in message and "Sense-X/uniformer_video" in message
    assert "checkpoint_path=" in message


def test_new_num_classes_reinitialises_only_the_head(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = uniformer.create_model("uniformer_small_k400_8x8", depth=(1, 1, 1, 1))
    path = tmp_path / "k400.pth"
    torch.save({"model_state": source.state_dict()}, path)
    with caplog.at_level(logging.WARNING):
        model = uniformer.create_model(
            "uniformer_small_k400_8x8", checkpoint_path=path, num_classes=5, depth=(1, 1, 1, 1)
        )
    assert "re-initialised for 5 classes" in caplog.text and "400-class head" in caplog.text
    assert model.head.out_features == 5
    for key, value in source.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(model.state_dict()[key], value), key


def test_a_release_names_its_published_numbers_by_known_metric_keys() -> None:
    assert uniformer.model_info("uniformer_small").release().metrics == {"top1": 82.9}
    assert uniformer.model_info("uniformer_tiny_motion").release().metrics == {}
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['acc'\]"):
        Release(224, 1.0, None, metrics={"acc": 1.0})


def test_create_model_builds_an_entry_by_the_builder_its_kind_names(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def build(info: uniformer.ModelInfo, num_classes: int, overrides: dict, file: object) -> torch.nn.Module:
        calls.append((info.name, num_classes, overrides, file))
        return torch.nn.Linear(2, num_classes)

    entry = dataclasses.replace(uniformer.model_info("uniformer_base_h14_fpn_ade20k"), kind=ModelKind(build))
    monkeypatch.setattr(catalog, "_MODELS", {**catalog._MODELS, entry.name: entry})
    model = uniformer.create_model(entry.name, num_classes=3, drop_path_rate=0.1)
    assert isinstance(model, torch.nn.Linear) and calls == [(entry.name, 3, {"drop_path_rate": 0.1}, None)]
    assert model.zoo_cfg == dict(name=entry.name, overrides={"drop_path_rate": 0.1}, classes=None, clip=None)


POSE = "uniformer_small_topdown_coco_256x192"
TINY_POSE = dict(depth=[1, 1, 1, 1], embed_dim=[16, 32, 48, 64], head_dim=16)


@pytest.mark.parametrize("recorded", ["model_args", "config of an older run"])
def test_a_training_checkpoint_brings_the_model_args_its_task_recorded(tmp_path: Path, recorded: str) -> None:
    trained = uniformer.create_model(POSE, head_channels=16, **TINY_POSE)
    config = {"model": {"name": POSE, "overrides": TINY_POSE}}
    container = {"format": TRAIN_FORMAT, "model": trained.state_dict(), "config": config}
    if recorded == "model_args":
        container["model_args"] = {"head_channels": 16}
    else:  # written before runs recorded it: the pose config's head.channels
        config["head"] = {"channels": 16}
    torch.save(container, tmp_path / "run.pt")
    model = uniformer.create_model(POSE, checkpoint_path=tmp_path / "run.pt")  # strict: a 256-wide head would not fit
    assert model.zoo_cfg["overrides"] == {"head_channels": 16, **TINY_POSE}
    key = "keypoint_head.final_layer.weight"
    assert torch.equal(model.state_dict()[key], trained.state_dict()[key])
