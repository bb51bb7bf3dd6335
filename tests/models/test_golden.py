"""Our models reproduce the official implementation's outputs on every golden case."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from uniformer import UniFormer, inflate_2d_to_3d, load_checkpoint
from uniformer.models.checkpoint import read_state_dict
from uniformer.models.uniformer import Attention

from golden import (
    GOLDEN,
    assert_close_to_golden,
    assert_outputs_match_golden,
    golden_cases,
    golden_model_kwargs,
    golden_state_dict,
)

CASES = {case["name"]: case for case in golden_cases()}


def _set_fused(model: torch.nn.Module, fused: bool) -> None:
    for module in model.modules():
        if isinstance(module, Attention):
            module.set_formulation("fast" if fused else "reference")


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "explicit"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_official_checkpoint_reproduces_official_output(name: str, fused: bool) -> None:
    case = CASES[name]
    model = UniFormer(**golden_model_kwargs(case)).eval()
    load_checkpoint(model, GOLDEN / case["checkpoint"])
    _set_fused(model, fused)
    io = load_file(GOLDEN / case["io"])
    assert tuple(io["input"].shape) == tuple(case["input_shape"])
    with torch.no_grad():
        out = model(io["input"])
    assert_outputs_match_golden(out, case, io)


def test_state_dict_layout_is_the_official_one_key_for_key() -> None:
    for case in CASES.values():
        official = golden_state_dict(case)
        ours = UniFormer(**golden_model_kwargs(case)).state_dict()
        assert list(ours) == list(official), case["name"]
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in official.items()}


def test_inflating_the_image_checkpoint_reproduces_the_official_inflated_video_model() -> None:
    case = CASES["video_tiny_inflated"]
    video = UniFormer(**golden_model_kwargs(case)).eval()
    inflated = inflate_2d_to_3d(read_state_dict(GOLDEN / "image_tiny.pth"), video)
    official = read_state_dict(GOLDEN / case["checkpoint"])
    assert set(inflated) == set(official)
    for key, value in official.items():
        torch.testing.assert_close(inflated[key], value, rtol=0, atol=1e-7, msg=key)
    video.load_state_dict(inflated)
    io = load_file(GOLDEN / case["io"])
    with torch.no_grad():
        assert_close_to_golden(video(io["input"]), io["output"])


def test_load_checkpoint_inflates_an_image_checkpoint_on_request() -> None:
    case = CASES["video_tiny_inflated"]
    video = load_checkpoint(UniFormer(**golden_model_kwargs(case)).eval(), GOLDEN / "image_tiny.pth", inflate=True)
    io = load_file(GOLDEN / case["io"])
    with torch.no_grad():
        assert_close_to_golden(video(io["input"]), io["output"])


def test_center_inflation_puts_the_kernel_in_the_middle_slice() -> None:
    image = read_state_dict(GOLDEN / "image_tiny.pth")
    video = UniFormer(**golden_model_kwargs(CASES["video_tiny_inflated"]))
    inflated = inflate_2d_to_3d(image, video, center=True)
    stem = inflated["patch_embed1.proj.weight"]  # (16, 3, 3, 4, 4) from (16, 3, 4, 4)
    assert stem.shape[2] == 3
    torch.testing.assert_close(stem[:, :, 1], image["patch_embed1.proj.weight"], rtol=0, atol=0)
    assert stem[:, :, 0].abs().max() == 0 and stem[:, :, 2].abs().max() == 0
    # a static clip then sees only the middle frame's response; the official (mean) inflation averages
    torch.testing.assert_close(
        inflate_2d_to_3d(image, video)["blocks1.0.attn.weight"].sum(2), image["blocks1.0.attn.weight"]
    )
