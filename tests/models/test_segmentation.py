"""Segmentors: official (mmseg 0.x) checkpoint layouts load strictly, outputs, head components, zoo entries."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import uniformer
from uniformer import CheckpointError, load_checkpoint
from uniformer.labels import load_palette
from uniformer.models.heads import FPN, PPM, ConvModule, FCNHead, FPNHead, UPerHead
from uniformer.models.heads.modules import resize, upsampled_conv3x3
from uniformer.models.segmentor import (
    InferenceConfig,
    UniFormerSegmentor,
    build_segmentor,
    head_widths,
    slide_inference,
)
from uniformer.models.zoo.tables import zoo_table

from golden import GOLDEN, assert_close_to_golden, golden_cases, golden_model_kwargs, golden_state_dict

CASE = {case["name"]: case for case in golden_cases()}["dense_tiny_hybrid7"]
WIDTHS = (16, 32, 48, 64)
BACKBONE = {k: v for k, v in golden_model_kwargs(CASE).items() if k != "num_classes"}
CLASSES = 5


# Official key -> shape layouts, written from mmseg 0.13 (decode_heads/uper_head.py, psp_head.py, fcn_head.py,
# fpn_head.py, necks/fpn.py) and mmcv's ConvModule (conv, then bn; a conv bias only without norm).
def _conv_module(prefix: str, cin: int, cout: int, k: int, norm: bool = True) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.conv.weight": (cout, cin, k, k)}
    if not norm:
        return {**keys, f"{prefix}.conv.bias": (cout,)}
    keys.update({f"{prefix}.bn.{n}": (cout,) for n in ("weight", "bias", "running_mean", "running_var")})
    return {**keys, f"{prefix}.bn.num_batches_tracked": ()}


def _classifier(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.conv_seg.weight": (CLASSES, channels, 1, 1), f"{prefix}.conv_seg.bias": (CLASSES,)}


def upernet_layout(channels: int, aux_channels: int) -> dict[str, tuple[int, ...]]:
    keys = _classifier("decode_head", channels)
    for i in range(4):  # pool scales 1, 2, 3, 6
        keys |= _conv_module(f"decode_head.psp_modules.{i}.1", WIDTHS[3], channels, 1)
    keys |= _conv_module("decode_head.bottleneck", WIDTHS[3] + 4 * channels, channels, 3)
    for i in range(3):
        keys |= _conv_module(f"decode_head.lateral_convs.{i}", WIDTHS[i], channels, 1)
        keys |= _conv_module(f"decode_head.fpn_convs.{i}", channels, channels, 3)
    keys |= _conv_module("decode_head.fpn_bottleneck", 4 * channels, channels, 3)
    keys |= _classifier("auxiliary_head", aux_channels)
    return keys | _conv_module("auxiliary_head.convs.0", WIDTHS[2], aux_channels, 3)


def fpn_layout(neck: int, channels: int) -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    for i in range(4):
        keys |= _conv_module(f"neck.lateral_convs.{i}", WIDTHS[i], neck, 1, norm=False)
        keys |= _conv_module(f"neck.fpn_convs.{i}", neck, neck, 3, norm=False)
    keys |= _classifier("decode_head", channels)
    for level, convs in enumerate((1, 1, 2, 3)):  # max(1, log2(stride / 4)) convs, each + Upsample above level 0
        for k in range(convs):
            index = 2 * k if level else k
            keys |= _conv_module(f"decode_head.scale_heads.{level}.{index}", neck if k == 0 else channels, channels, 3)
    return keys


def official_checkpoint(path: Path, head_layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Write {"state_dict": golden dense backbone under backbone.* + random heads in ``head_layout``}."""
    state = {f"backbone.{k}": v for k, v in golden_state_dict(CASE).items()}
    generator = torch.Generator().manual_seed(0)
    for key, shape in head_layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = 0.2 * torch.randn(shape, generator=generator)
    torch.save({"state_dict": state}, path)
    return state


HEADS = {
    "upernet": (dict(channels=16, aux_channels=8), upernet_layout(16, 8)),
    "fpn": (dict(channels=12, neck_channels=20), fpn_layout(20, 12)),
}


@pytest.mark.parametrize("decoder", sorted(HEADS))
def test_an_official_layout_checkpoint_loads_strictly_and_segments(decoder: str, tmp_path: Path) -> None:
    head_args, layout = HEADS[decoder]
    state = official_checkpoint(tmp_path / "seg.pth", layout)
    model = load_checkpoint(build_segmentor(decoder, CLASSES, BACKBONE, **head_args), tmp_path / "seg.pth").eval()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("backbone.")} == layout
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)

    io = load_file(GOLDEN / CASE["io"])  # 2 x 3 x 136 x 168: stride-4 map 34 x 42
    with torch.no_grad():
        logits = model(io["input"])
        maps = model.features(io["input"])
        stride4 = model.decode_head(maps)
        backbone_maps = model.backbone(io["input"])
    assert logits.shape == (2, CLASSES, 136, 168) and stride4.shape == (2, CLASSES, 34, 42)
    # "whole" inference: the stride-4 logits resized bilinearly (align_corners=False) to the input
    torch.testing.assert_close(logits, F.interpolate(stride4, size=(136, 168), mode="bilinear", align_corners=False))
    for i, ours in enumerate(backbone_maps):  # the backbone part is the official one
        assert_close_to_golden(ours, io[f"output.{i}"])

    model.train()
    outputs = model(io["input"][:, :, :100, :72])  # any size, also in training
    assert sorted(outputs) == (["aux", "out"] if decoder == "upernet" else ["out"])
    assert all(v.shape == (2, CLASSES, 100, 72) for v in outputs.values())


@pytest.mark.parametrize("decoder", sorted(HEADS))
def test_a_wrong_key_is_an_error_naming_it(decoder: str, tmp_path: Path) -> None:
    head_args, layout = HEADS[decoder]
    state = official_checkpoint(tmp_path / "seg.pth", layout)
    state["decode_head.cls.weight"] = state.pop("decode_head.conv_seg.weight")
    torch.save({"state_dict": state}, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_segmentor(decoder, CLASSES, BACKBONE, **head_args), tmp_path / "renamed.pth")
    assert "1 missing keys: decode_head.conv_seg.weight" in str(err.value)
    assert "1 unexpected keys: decode_head.cls.weight" in str(err.value)


def _identity_conv_module(channels: int, k: int, norm: bool = True) -> ConvModule:
    """A ConvModule computing relu(x) (norm) or x (no norm): centre tap 1, BatchNorm with unit variance."""
    module = ConvModule(channels, channels, k, padding=k // 2, norm=norm, act=norm).eval()
    with torch.no_grad():
        module.conv.weight.zero_()
        module.conv.weight[range(channels), range(channels), k // 2, k // 2] = 1.0
        if not norm:
            module.conv.bias.zero_()
        else:
            module.bn.running_var.fill_(1.0 - module.bn.eps)
    return module


def test_pyramid_pooling_by_hand() -> None:
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)  # positive: the ReLU passes it
    ppm = PPM((1, 2), 1, 1).eval()
    for branch in ppm:
        branch[1] = _identity_conv_module(1, 1)
    with torch.no_grad():
        whole, quarters = ppm(x)
    torch.testing.assert_close(whole, torch.full((1, 1, 4, 4), 8.5))  # the mean, everywhere
    means = torch.tensor([[3.5, 5.5], [11.5, 13.5]])  # 2 x 2 block means
    # bilinear 2 -> 4 with align_corners=False samples at -0.25, 0.25, 0.75, 1.25 (clamped at the border)
    up = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    torch.testing.assert_close(quarters[0, 0], up @ means @ up.T)


def test_fpn_neck_top_down_pass_by_hand() -> None:
    neck = FPN([1, 1, 1], 1)
    neck.lateral_convs = torch.nn.ModuleList(_identity_conv_module(1, 1, norm=False) for _ in range(3))
    neck.fpn_convs = torch.nn.ModuleList(_identity_conv_module(1, 3, norm=False) for _ in range(3))
    maps = [torch.full((1, 1, 4, 4), 1.0), torch.full((1, 1, 2, 2), 10.0), torch.tensor([[[[100.0]]]])]
    maps[1][0, 0, 0, 1] = 20.0
    with torch.no_grad():
        low, mid, top = neck(maps)
    torch.testing.assert_close(top, maps[2])
    torch.testing.assert_close(mid, torch.tensor([[[[110.0, 120.0], [110.0, 110.0]]]]))
    # nearest upsampling: each stride-2 value covers a 2 x 2 block of the level below
    expected = torch.tensor([[111.0, 111.0, 121.0, 121.0], [111.0, 111.0, 121.0, 121.0]] + [[111.0] * 4] * 2)
    torch.testing.assert_close(low[0, 0], expected)


def test_heads_give_stride4_logits_for_odd_map_sizes() -> None:
    maps = [torch.randn(1, c, 17 // 2**i + 1, 23 // 2**i + 1) for i, c in enumerate(WIDTHS)]
    sizes = [tuple(m.shape[2:]) for m in maps]
    assert sizes == [(18, 24), (9, 12), (5, 6), (3, 3)]
    with torch.no_grad():
        assert UPerHead(WIDTHS, 8, CLASSES).eval()(maps).shape == (1, CLASSES, 18, 24)
        assert FPNHead(WIDTHS, 8, CLASSES).eval()(maps).shape == (1, CLASSES, 18, 24)
        assert FCNHead(WIDTHS[2], 8, CLASSES).eval()(maps).shape == (1, CLASSES, 5, 6)


def test_the_zoo_builds_the_official_segmentors() -> None:
    with torch.device("meta"):
        upernet = uniformer.create_model("uniformer_base_upernet_ade20k")
        hybrid = uniformer.create_model("uniformer_small_h32_upernet_ade20k")
        fpn = uniformer.create_model("uniformer_small_fpn_ade20k", attn_mode="window", window_size=16)
    assert isinstance(upernet, UniFormerSegmentor) and upernet.num_classes == 150 and upernet.neck is None
    assert upernet.decode_head.conv_seg.in_channels == 512 and len(upernet.decode_head.psp_modules) == 4
    assert [m[0].output_size for m in upernet.decode_head.psp_modules] == [1, 2, 3, 6]
    assert upernet.auxiliary_head.in_index == 2 and upernet.auxiliary_head.convs[0].conv.in_channels == 320
    assert upernet.auxiliary_head.conv_seg.in_channels == 256 and upernet.decode_head.dropout.p == 0.1
    assert [b.window_size for b in hybrid.backbone.blocks3] == [32, 32, 32, None] * 2
    assert fpn.auxiliary_head is None and fpn.neck.fpn_convs[0].conv.out_channels == 256
    assert fpn.decode_head.conv_seg.in_channels == 128 and all(b.window_size == 16 for b in fpn.backbone.blocks3)


def test_create_model_loads_an_official_fpn_checkpoint(tmp_path: Path) -> None:
    official_checkpoint(tmp_path / "fpn.pth", fpn_layout(256, 128))  # official head widths, tiny backbone
    model = uniformer.create_model(
        "uniformer_small_fpn_ade20k", checkpoint_path=tmp_path / "fpn.pth", num_classes=CLASSES, **BACKBONE
    )
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 96)).shape == (1, CLASSES, 64, 96)


def test_segmentation_entries_carry_ade20k_and_the_published_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    info = uniformer.model_info("uniformer_small_upernet_ade20k")
    release = info.release()
    assert (info.task, info.decoder, info.num_classes, release.metrics) == (
        "segmentation",
        "upernet",
        150,
        {"miou": 47.6, "ms_miou": 48.5},
    )
    assert info.input_shape() == (1, 3, 512, 2048)
    assert info.labels == uniformer.load_labels("ade20k") and info.palette == load_palette("ade20k")
    assert uniformer.model_info("uniformer_base_h14_fpn_ade20k").release().metrics == {"miou": 47.0}
    assert uniformer.model_info("uniformer_small_h14_upernet_ade20k").release().sources == ()
    assert set(uniformer.list_models("*_ade20k")) == set(uniformer.list_models(task="segmentation"))
    assert len(uniformer.list_models(task="segmentation")) == 16 + 2  # the README's tables and the light XXS/XS FPN
    w32 = uniformer.model_info("uniformer_base_w32_fpn_ade20k")
    assert dict(w32.model_args) == {**info.model_args, "depth": (5, 8, 20, 7), "attn_mode": "window", "window_size": 32}
    assert w32.release().sources == uniformer.model_info("uniformer_base_fpn_ade20k").release().sources
    row = zoo_table(["uniformer_small_upernet_ade20k"]).splitlines()[-1]
    assert "| 47.6 mIoU | 52 | 1004 | [Hub lllyasviel/Annotators](https://huggingface.co/lllyasviel/" in row
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"https://drive\.google\.com/file/d/14bEsZqM.*checkpoint_path="):
        uniformer.create_model("uniformer_small_fpn_ade20k", pretrained=True)


def test_a_segmentor_needs_a_dense_backbone() -> None:
    with pytest.raises(ValueError, match="dense backbone"):
        UniFormerSegmentor(uniformer.UniFormer(**{**BACKBONE, "dense": False}), UPerHead(WIDTHS, 8, CLASSES))
    with pytest.raises(ValueError, match="decoder must be"):
        build_segmentor("deeplab", CLASSES, BACKBONE)


def _position_dependent(crop: torch.Tensor) -> torch.Tensor:
    """Fake 'logits' of a crop that depend on where each pixel sits in it (a running sum along both axes), so a
    window in the wrong place or a wrong average shows."""
    return crop[:, :2].cumsum(-1).cumsum(-2)


def test_slide_inference_averages_the_overlapping_windows_by_hand() -> None:
    images = torch.rand(2, 3, 96, 64)
    # crop 64, stride 32 on 96 x 64: rows start at 0 and 32 (the second ends at the edge), one column
    out = slide_inference(_position_dependent, images, crop_size=64, stride=32)
    top, bottom = _position_dependent(images[:, :, 0:64]), _position_dependent(images[:, :, 32:96])
    torch.testing.assert_close(out[:, :, :32], top[:, :, :32])
    torch.testing.assert_close(out[:, :, 32:64], (top[:, :, 32:] + bottom[:, :, :32]) / 2)
    torch.testing.assert_close(out[:, :, 64:], bottom[:, :, 32:])
    # 112 rows, stride 40: windows at 0, 40 and 80, the last moved back to end at the edge (48..112)
    images = torch.rand(1, 3, 112, 64)
    out = slide_inference(_position_dependent, images, crop_size=64, stride=40)
    total, count = torch.zeros(1, 2, 112, 64), torch.zeros(112, 1)
    for y1, y2 in [(0, 64), (40, 104), (48, 112)]:
        total[:, :, y1:y2] += _position_dependent(images[:, :, y1:y2])
        count[y1:y2] += 1
    assert count[:, 0].tolist() == [1] * 40 + [2] * 8 + [3] * 16 + [2] * 40 + [1] * 8
    torch.testing.assert_close(out, total / count)


def test_slide_with_a_window_covering_the_image_is_whole_inference() -> None:
    model = build_segmentor("upernet", CLASSES, BACKBONE, channels=8, aux_channels=8).eval()
    images = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        whole = model(images)
        torch.testing.assert_close(model(images, InferenceConfig("slide", crop_size=96, stride=64)), whole)
        # windows 64 x 64 every 16 pixels: columns at 0 and 16; what slide_inference gives for the model's own
        slide = InferenceConfig("slide", crop_size=64, stride=16)
        left, right = model.whole_inference(images[..., :64]), model.whole_inference(images[..., 16:])
        expected = torch.cat([left[..., :16], (left[..., 16:] + right[..., :48]) / 2, right[..., 48:]], -1)
        torch.testing.assert_close(model(images, slide), expected)
        torch.testing.assert_close(model(images), whole)  # a call's test mode is its own: the model keeps none


def test_flip_and_multi_scale_average_the_views_probabilities() -> None:
    model = build_segmentor("fpn", CLASSES, BACKBONE, channels=8, neck_channels=8).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = model.whole_inference(images).softmax(1)
        flipped = model.whole_inference(images.flip(-1)).flip(-1).softmax(1)
        half = F.interpolate(
            model.whole_inference(F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)),
            size=(64, 64),
            mode="bilinear",
            align_corners=False,
        ).softmax(1)
        torch.testing.assert_close(model(images, InferenceConfig(flip=True)).exp(), (plain + flipped) / 2)
        torch.testing.assert_close(model(images, InferenceConfig(scales=(0.5, 1.0))).exp(), (half + plain) / 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"mode": "sliding"}, "'whole' or 'slide'"), ({"stride": 600}, "stride <= crop_size"), ({"scales": ()}, "ratios")],
)
def test_bad_inference_settings_are_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InferenceConfig(**kwargs)


@pytest.mark.parametrize(
    ("name", "widths"),
    [
        ("uniformer_small_upernet_ade20k", {"channels": 8, "aux_channels": 4}),
        ("uniformer_small_fpn_ade20k", {"channels": 8, "neck_channels": 4}),
    ],
)
def test_create_model_builds_the_head_widths_the_weights_were_trained_with(
    name: str, widths: dict, tmp_path: Path
) -> None:
    info = uniformer.model_info(name)
    trained = build_segmentor(info.decoder, CLASSES, BACKBONE, **widths).eval()
    assert head_widths(trained.state_dict()) == widths
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "reduced.pth")
    model = uniformer.create_model(name, checkpoint_path=tmp_path / "reduced.pth", **BACKBONE).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), trained(images))


@pytest.mark.parametrize(
    ("small", "size"),
    [((3, 4), (12, 16)), ((1, 1), (4, 4)), ((5, 7), (9, 13)), ((6, 6), (6, 6)), ((8, 8), (5, 3))],
    ids=["x4", "one-pixel", "odd", "same", "down"],
)
def test_upsampled_conv3x3_is_the_convolution_of_the_resized_map(small: tuple, size: tuple) -> None:
    x = torch.randn(2, 5, *small).to(memory_format=torch.channels_last)
    weight = torch.randn(7, 5, 3, 3)
    expected = F.conv2d(resize(x, size), weight, padding=1)
    assert_close_to_golden(upsampled_conv3x3(x, weight, size), expected)


def test_uperhead_fast_fusion_equals_the_official_concatenation() -> None:
    head = UPerHead((8, 16, 24, 32), 12, 5).eval()
    for module in head.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 1.5)
    maps = [torch.randn(2, c, 33 // 2**i, 47 // 2**i) for i, c in enumerate((8, 16, 24, 32))]
    with torch.no_grad():
        fast = head(maps)
        head.set_formulation("reference")
        reference = head(maps)
    assert fast.shape == (2, 5, 33, 47)
    assert_close_to_golden(fast, reference)
