"""Top-down pose models: the official (mmpose 0.16) checkpoint layout loads strictly, the head, the flip test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import uniformer
from uniformer import CheckpointError, load_checkpoint
from uniformer.models.heads import TopDownSimpleHead
from uniformer.models.pose import COCO_FLIP_PAIRS, TopDownPoseModel, build_pose_model, flip_back

TINY = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 48, 64), head_dim=16)


def official_head_layout(in_channels: int, keypoints: int, channels: int = 256) -> dict[str, tuple[int, ...]]:
    """mmpose 0.16 TopDownSimpleHead (3 deconvs, extra=dict(final_conv_kernel=1)) under ``keypoint_head.``:
    Sequential(ConvTranspose2d(bias=False), BN, ReLU) x 3 -> indices 0/1, 3/4, 6/7; one Conv2d final_layer."""
    keys: dict[str, tuple[int, ...]] = {}
    for i in range(3):
        keys[f"keypoint_head.deconv_layers.{3 * i}.weight"] = (in_channels if i == 0 else channels, channels, 4, 4)
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"keypoint_head.deconv_layers.{3 * i + 1}.{name}"] = (channels,)
        keys[f"keypoint_head.deconv_layers.{3 * i + 1}.num_batches_tracked"] = ()
    keys["keypoint_head.final_layer.weight"] = (keypoints, channels, 1, 1)
    keys["keypoint_head.final_layer.bias"] = (keypoints,)
    return keys


def write_official(path: Path, backbone_args: dict, keypoints: int = 17, channels: int = 256) -> dict:
    """An mmcv-style file ({"meta", "state_dict", "optimizer"}) with random values in the official layout."""
    backbone = uniformer.UniFormer(**backbone_args, dense=True).state_dict()
    layout = {f"backbone.{k}": tuple(v.shape) for k, v in backbone.items()}
    layout |= official_head_layout(backbone_args["embed_dim"][-1], keypoints, channels)
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(3)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
    torch.save({"meta": {"epoch": 210}, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    return state


def test_an_official_layout_checkpoint_loads_strictly(tmp_path: Path) -> None:
    state = write_official(tmp_path / "pose.pth", TINY, channels=32)
    model = load_checkpoint(build_pose_model(17, TINY, channels=32), tmp_path / "pose.pth").eval()
    assert set(model.state_dict()) == set(state)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
    with torch.no_grad():
        heatmaps = model(torch.randn(2, 3, 96, 64))
    assert heatmaps.shape == (2, 17, 24, 16)


def test_create_model_loads_an_official_file_into_a_zoo_pose_entry(tmp_path: Path) -> None:
    write_official(tmp_path / "s.pth", TINY)  # the zoo entry's layout at a reduced width (same code path)
    model = uniformer.create_model("uniformer_small_topdown_coco_256x192", checkpoint_path=tmp_path / "s.pth", **TINY)
    assert isinstance(model, TopDownPoseModel)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 256, 192)).shape == (1, 17, 64, 48)


def test_a_renamed_head_key_is_refused_with_the_key(tmp_path: Path) -> None:
    state = write_official(tmp_path / "pose.pth", TINY, channels=32)
    state["keypoint_head.final_conv.weight"] = state.pop("keypoint_head.final_layer.weight")
    torch.save({"state_dict": state}, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: keypoint_head\.final_layer\.weight"):
        load_checkpoint(build_pose_model(17, TINY, channels=32), tmp_path / "renamed.pth")


def test_the_head_is_initialised_as_mmpose() -> None:
    torch.manual_seed(0)
    head = TopDownSimpleHead(512, 17)
    deconvs = [head.deconv_layers[i] for i in (0, 3, 6)]
    assert [tuple(d.weight.shape) for d in deconvs] == [(512, 256, 4, 4), (256, 256, 4, 4), (256, 256, 4, 4)]
    assert all(d.bias is None and d.stride == (2, 2) and d.padding == (1, 1) for d in deconvs)
    for weight in [d.weight.detach() for d in deconvs] + [head.final_layer.weight.detach()]:
        assert abs(float(weight.std()) - 0.001) < 1e-4 and abs(float(weight.mean())) < 1e-4
    assert torch.all(head.final_layer.bias == 0)
    for bn in (head.deconv_layers[i] for i in (1, 4, 7)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert head(torch.randn(1, 512, 8, 6)).shape == (1, 17, 64, 48)


def test_flip_back_swaps_pairs_mirrors_and_shifts_one_pixel_right() -> None:
    # 3 keypoints, pair (1, 2); each channel a row of 4 values
    flipped = torch.tensor([[[[1.0, 2, 3, 4]], [[10.0, 20, 30, 40]], [[100.0, 200, 300, 400]]]])
    # swap 1 <-> 2, mirror: [4 3 2 1], [400 300 200 100], [40 30 20 10]; shift right keeping the first pixel
    expected = torch.tensor([[[[4.0, 4, 3, 2]], [[400.0, 400, 300, 200]], [[40.0, 40, 30, 20]]]])
    torch.testing.assert_close(flip_back(flipped, [(1, 2)]), expected)
    unshifted = torch.tensor([[[[4.0, 3, 2, 1]], [[400.0, 300, 200, 100]], [[40.0, 30, 20, 10]]]])
    torch.testing.assert_close(flip_back(flipped, [(1, 2)], shift=False), unshifted)


def test_flip_test_averages_with_the_flipped_crops_heatmaps_in_eval_only() -> None:
    torch.manual_seed(0)
    model = build_pose_model(17, TINY, channels=16).eval()
    for weight in model.keypoint_head.parameters():  # away from the near-zero initial heatmaps
        weight.data.normal_()
    crops = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(crops)
        averaged = model(crops, flip_test=True)
        again = model(crops)  # a call's flip test is its own: the model keeps none
        mirrored = model.heatmaps(crops.flip(-1))
    # float rounding relative to the largest heatmap value: the flip test runs both crops in one batch, which
    # oneDNN may compute with other kernels than the plain batch (a Xeon with AMX: 7e-4 against a largest 2e4)
    expected = (plain + flip_back(mirrored, COCO_FLIP_PAIRS)) / 2
    torch.testing.assert_close(averaged, expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    assert not torch.allclose(averaged, plain) and torch.equal(again, plain)
    model.train()
    assert model(crops, flip_test=True).shape == plain.shape  # training mode: the plain heatmaps


def test_coco_flip_pairs_are_the_left_right_names_of_the_keypoints() -> None:
    names = uniformer.load_labels("coco-keypoints")
    pairs = {(names.index(n), names.index("right_" + n[5:])) for n in names if n.startswith("left_")}
    assert pairs == set(COCO_FLIP_PAIRS) and len(names) == 17


def test_pose_entries_carry_the_published_numbers() -> None:
    names = uniformer.list_models(task="pose")
    assert names == [
        f"uniformer_{s}_topdown_coco_{r}" for s in ("small", "base") for r in ("256x192", "384x288", "448x320")
    ]
    small = uniformer.model_info("uniformer_small_topdown_coco_256x192").release()
    assert small.metrics == {"ap": 74.0, "ap50": 90.3, "ap75": 82.2, "apm": 66.8, "apl": 76.7, "ar": 79.5}
    assert small.input_hw == (256, 192) and small.gflops == 4.7
    assert uniformer.model_info("uniformer_base_topdown_coco_448x320").release().metrics["ap"] == 77.4
