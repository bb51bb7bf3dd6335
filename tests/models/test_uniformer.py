"""Behaviour of the network a user relies on: inputs, sizes, heads, features, checkpointing."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.optim import create_optimizer_v2
from timm.optim._param_groups import param_groups_layer_decay

from uniformer import UniFormer

TINY = dict(depth=(1, 1, 2, 1), embed_dim=(16, 32, 64, 128), head_dim=16, num_classes=7)


def tiny(**kwargs) -> UniFormer:
    return UniFormer(**{**TINY, **kwargs})


@pytest.mark.parametrize(
    "video,shape",
    [
        (False, (2, 3, 64, 64)),
        (False, (1, 3, 96, 160)),  # non-square, not 224
        (True, (1, 3, 6, 64, 96)),
        (True, (2, 3, 2, 32, 32)),
    ],
)
def test_any_size_divisible_by_32_and_any_even_length(video: bool, shape: tuple[int, ...]) -> None:
    model = tiny(video=video).eval()
    with torch.no_grad():
        assert model(torch.randn(shape)).shape == (shape[0], 7)


@pytest.mark.parametrize(
    "video,shape,match",
    [
        (False, (3, 64, 64), r"\(B, C, H, W\) with C=3.*got shape \(3, 64, 64\)"),
        (False, (1, 1, 64, 64), r"with C=3.*got shape \(1, 1, 64, 64\)"),
        (False, (1, 3, 64, 80), r"multiples of 32.*got shape \(1, 3, 64, 80\)"),
        (True, (1, 3, 64, 64), r"\(B, C, T, H, W\).*got shape \(1, 3, 64, 64\)"),
        (True, (1, 3, 5, 64, 64), r"even T; got shape \(1, 3, 5, 64, 64\)"),
    ],
)
def test_wrong_input_shapes_name_the_expected_and_given_shape(video: bool, shape: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny(video=video)(torch.randn(shape))


def test_integer_input_is_refused() -> None:
    with pytest.raises(ValueError, match="floating-point.*torch.uint8"):
        tiny()(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_split_needs_video_and_layer_scale_values_are_checked() -> None:
    with pytest.raises(ValueError, match="needs a video model"):
        tiny(split=True)
    with pytest.raises(ValueError, match="layer_scale"):
        tiny(layer_scale="both")


def test_forward_is_features_then_head() -> None:
    model = tiny(video=True).eval()
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (1, 128, 2, 2, 2)
        pooled = model.forward_head(feats, pre_logits=True)
        torch.testing.assert_close(pooled, feats.flatten(2).mean(-1))
        torch.testing.assert_close(model(x), model.head(pooled))


def test_token_labeling_forward_is_one_tensor_in_both_modes_and_forward_train_gives_the_parts() -> None:
    model = tiny(token_labeling=True)
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        tokens = feats.flatten(2).transpose(1, 2)
        expected = model.head(tokens.mean(1)) + 0.5 * model.aux_head(tokens).max(1).values
        torch.testing.assert_close(model(x), expected)
    model.train()  # batch statistics now; no dropout in TINY, so both calls see the same network
    cls, aux = model.forward_train(x)
    assert cls.shape == (2, 7) and aux.shape == (2, 4, 7)  # 64/32 = 2x2 tokens
    out = model(x)
    torch.testing.assert_close(out, cls + 0.5 * aux.max(1).values)
    out.sum().backward()  # the default training output reaches both heads
    assert model.head.weight.grad.abs().sum() > 0 and model.aux_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="token-labeling model"):
        tiny().forward_train(x)


@pytest.mark.parametrize("video", [False, True], ids=["image", "video"])
def test_no_global_pool_returns_the_final_map_from_the_constructor_and_reset_classifier(video: bool) -> None:
    x = torch.randn(2, 3, 4, 64, 64) if video else torch.randn(2, 3, 64, 64)
    unpooled = (2, 128, 2, 2, 2) if video else (2, 128, 2, 2)
    built = tiny(video=video, num_classes=0, global_pool="").eval()
    reset = tiny(video=video).eval()
    with torch.no_grad():
        torch.testing.assert_close(built(x), built.forward_features(x), rtol=0, atol=0)
        assert built(x).shape == unpooled
        reset.reset_classifier(0, "")
        assert reset.num_classes == 0 and reset(x).shape == unpooled
        reset.reset_classifier(0)  # None keeps the pooling
        assert reset(x).shape == unpooled
        reset.reset_classifier(0, "avg")
        torch.testing.assert_close(reset(x), reset.forward_features(x).flatten(2).mean(-1))


def test_timm_create_model_passes_global_pool_through() -> None:
    model = timm.create_model("uniformer_small", num_classes=0, global_pool="", depth=(1, 1, 1, 1)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)


def test_global_pool_values_and_the_classifier_they_need_are_checked() -> None:
    with pytest.raises(ValueError, match="global_pool must be 'avg' or '', got 'max'"):
        tiny(global_pool="max")
    with pytest.raises(ValueError, match="needs num_classes=0, got 7"):
        tiny(global_pool="")
    model = tiny(num_classes=0, global_pool="")
    with pytest.raises(ValueError, match="needs num_classes=0, got 5"):
        model.reset_classifier(5)
    assert model.global_pool == "" and model.num_classes == 0  # a refused reset changes nothing
    model.reset_classifier(5, "avg")
    assert model.global_pool == "avg" and model.head.out_features == 5


def test_stage_feature_maps_have_strides_4_8_16_32() -> None:
    model = tiny(video=True).eval()
    x = torch.randn(1, 3, 8, 64, 128)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert [tuple(m.shape) for m in maps] == [
            (1, 16, 4, 16, 32),
            (1, 32, 4, 8, 16),
            (1, 64, 4, 4, 8),
            (1, 128, 4, 2, 4),
        ]
        torch.testing.assert_close(final, model.forward_features(x))
        only = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True, stop_early=True)
        torch.testing.assert_close(only[0], maps[1])
        torch.testing.assert_close(only[1], maps[2])
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]


def test_prune_for_backbone_use_keeps_requested_stages() -> None:
    model = tiny().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model.forward_intermediates(x, intermediates_only=True)
        kept = model.prune_intermediate_layers(indices=[0, 1])
        maps = model.forward_intermediates(x, indices=kept, intermediates_only=True)
    assert len(model.blocks3) == 0 and isinstance(model.head, torch.nn.Identity)
    for got, want in zip(maps, reference[:2]):
        torch.testing.assert_close(got, want)


def test_reset_classifier_replaces_both_heads() -> None:
    model = tiny(token_labeling=True)
    model.reset_classifier(3)
    assert model.head.out_features == 3 and model.aux_head.out_features == 3 and model.num_classes == 3
    model.reset_classifier(0)
    assert isinstance(model.head, torch.nn.Identity)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 128)  # pooled features


@pytest.mark.parametrize("video", [False, True])
def test_grad_checkpointing_keeps_outputs_gradients_and_batchnorm_stats(video: bool) -> None:
    torch.manual_seed(0)
    plain = tiny(video=video, drop_path_rate=0.2, drop_rate=0.1, layer_scale="all", ls_init_value=0.5).train()
    ckpt = copy.deepcopy(plain)
    ckpt.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 4, 32, 32) if video else torch.randn(2, 3, 64, 64)
    outputs = []
    for model in (plain, ckpt):
        torch.manual_seed(123)  # same drop-path / dropout masks
        out = model(x)
        out.square().mean().backward()
        outputs.append(out)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    for (name, p1), (_, p2) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-6, atol=1e-7, msg=name)
    for (name, b1), (_, b2) in zip(plain.named_buffers(), ckpt.named_buffers()):
        torch.testing.assert_close(b1, b2, rtol=0, atol=0, msg=name)


def test_no_weight_decay_names_the_layer_scales() -> None:
    assert tiny().no_weight_decay() == set()
    names = tiny(layer_scale="all").no_weight_decay()
    assert "blocks1.0.gamma_1" in names and "blocks4.0.gamma_2" in names and len(names) == 2 * 5
    optimizer = create_optimizer_v2(tiny(layer_scale="all"), "adamw", lr=1e-3, weight_decay=0.05)
    no_decay = [g for g in optimizer.param_groups if g["weight_decay"] == 0.0][0]["params"]
    assert sum(p.numel() for p in no_decay) > 0
    # 4-D layer scales of the local blocks would otherwise be decayed
    assert any(p.ndim == 4 for p in no_decay)


def test_layer_decay_groups_follow_depth() -> None:
    model = tiny()
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    scales = {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    assert scales["patch_embed1.proj.weight"] < scales["blocks1.0.conv1.weight"]
    assert scales["blocks1.0.conv1.weight"] < scales["patch_embed2.proj.weight"] < scales["blocks2.0.conv1.weight"]
    assert scales["blocks3.1.attn.qkv.weight"] < scales["blocks4.0.attn.qkv.weight"] < scales["head.weight"]
    assert scales["head.weight"] == 1.0


def test_split_attention_starts_as_identity_of_the_temporal_branch() -> None:
    model = tiny(video=True, split=True)
    block = model.blocks3[0]
    assert block.t_attn.qkv.weight.abs().sum() == 0 and torch.all(block.t_attn.proj.weight == 1)
    tokens = torch.randn(3, 4, 64)
    torch.testing.assert_close(block.t_attn(block.t_norm(tokens)), torch.zeros_like(tokens))


@pytest.mark.parametrize("block_type", ["local", "global"])
def test_bf16_training_gradients_are_finite_on_channels_last_maps(block_type: str) -> None:
    """PyTorch's CPU bf16 depthwise Conv3d weight gradient reads uninitialised memory on channels-last inputs
    of some shapes (NaN in most tries at this one for the global block without the guard); the blocks must
    not pass that on."""
    from uniformer.models.uniformer import GlobalBlock, LocalBlock

    torch.manual_seed(0)
    block = LocalBlock(64, video=True) if block_type == "local" else GlobalBlock(64, 2, video=True)
    for _ in range(6):
        garbage = torch.full((1 << 22,), float("nan"))  # freed memory full of NaN, as a long run leaves it
        del garbage
        x = torch.randn(4, 64, 2, 8, 8).contiguous(memory_format=torch.channels_last_3d).requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = block(x)
        out.float().square().mean().backward()
        bad = [name for name, p in block.named_parameters() if not torch.isfinite(p.grad).all()]
        assert not bad and torch.isfinite(x.grad).all(), bad
        block.zero_grad(set_to_none=True)


@pytest.mark.parametrize("video", [False, True], ids=["image", "video-split"])
def test_symbolic_trace_gives_the_same_outputs_and_keeps_the_input_check(video: bool) -> None:
    """torch.fx (timm's FX feature extraction) traces the model; the dtype/device-dependent kernels and the input
    check stay calls in the graph, so the traced module computes the same logits and still refuses bad shapes."""
    model = tiny(video=video, split=video, token_labeling=not video).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(1, 3, 4, 64, 64) if video else torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
    with pytest.raises(ValueError, match="multiples of 32"):
        traced(x[..., :60])


@pytest.mark.parametrize("video", [False, True], ids=["2d", "3d"])
@pytest.mark.parametrize("kernel", [1, 2], ids=["point-wise", "patch"])
def test_patchwise_convolution_of_a_channels_last_map_is_the_convolution(video: bool, kernel: int) -> None:
    """Kernel = stride convolutions (the local blocks' point-wise ones, the later patch embeddings) on a channels-last
    map run as a matrix product over patches: the convolution's result and layout, odd sizes cropped as the
    convolution does; a contiguous map keeps the convolution."""
    from uniformer.models.uniformer import _patchwise

    torch.manual_seed(0)
    size = (1, kernel, kernel) if video else (kernel, kernel)
    conv = (torch.nn.Conv3d if video else torch.nn.Conv2d)(6, 10, size, stride=size).double()
    shape = (2, 6, 3, 9, 7) if video else (2, 6, 9, 7)
    layout = torch.channels_last_3d if video else torch.channels_last
    x = torch.randn(shape, dtype=torch.float64)
    expected = conv(x)
    with torch.profiler.profile() as profile:
        out = _patchwise(conv, x.contiguous(memory_format=layout))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert out.is_contiguous(memory_format=layout)
    kernels = {event.name for event in profile.events()}
    assert "aten::linear" in kernels and "aten::convolution" not in kernels
    with torch.profiler.profile() as profile:
        torch.testing.assert_close(_patchwise(conv, x), expected, rtol=0, atol=0)
    assert "aten::convolution" in {event.name for event in profile.events()}
