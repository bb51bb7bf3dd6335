"""``optimize_for_inference`` and the reference switch: every fast path equals the plain model (never timing)."""

from __future__ import annotations

import copy

import pytest
import timm.utils
import torch
from safetensors.torch import load_file

from uniformer import UniFormer, load_checkpoint, optimize_for_inference, set_formulation
from uniformer.models.layers import mlp as mlp_layers
from uniformer.models.layers.mlp import FusedMlp, InplaceGELU
from uniformer.models.optimize import fold_batchnorms
from uniformer.models.pose import build_pose_model
from uniformer.models.segmentor import build_segmentor
from uniformer.models.uniformer import Attention, ConvMlp, chunked_attention

from golden import GOLDEN, assert_close_to_golden, assert_outputs_match_golden, golden_cases, golden_model_kwargs

CASES = {case["name"]: case for case in golden_cases()}
TINY = dict(depth=(1, 1, 2, 1), embed_dim=(16, 32, 64, 128), head_dim=16, num_classes=10)
# bf16 keeps 8 mantissa bits: logits of these tiny models stay within 3% of the largest one
# (measured: 0.5% image, 1.1% video).
BF16_TOLERANCE = 3e-2
_BatchNorm = torch.nn.modules.batchnorm._BatchNorm


def _with_trained_batchnorm_statistics(model: UniFormer) -> UniFormer:
    """Non-trivial running statistics and affine parameters, so that folding them is actually exercised."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


def _tiny(video: bool, **kwargs) -> UniFormer:
    return _with_trained_batchnorm_statistics(UniFormer(video=video, **TINY, **kwargs))


def _input(video: bool, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 8, 64, 64) if video else torch.randn(batch, 3, 64, 64)


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimized_official_checkpoint_reproduces_official_output(name: str) -> None:
    case = CASES[name]
    model = UniFormer(**golden_model_kwargs(case)).eval()
    load_checkpoint(model, GOLDEN / case["checkpoint"])
    io = load_file(GOLDEN / case["io"])
    with torch.no_grad():
        assert_outputs_match_golden(optimize_for_inference(model)(io["input"]), case, io)


@pytest.mark.parametrize("kwargs", [{}, {"conv_stem": True}, {"layer_scale": "all"}], ids=["patch", "conv", "ls"])
@pytest.mark.parametrize("video", [False, True], ids=["image", "video"])
def test_fp32_matches_the_reference_formulation(video: bool, kwargs: dict) -> None:
    model = _tiny(video, **kwargs)
    x = _input(video)
    with torch.no_grad():
        expected = set_formulation(model, "reference")(x)
        assert_close_to_golden(optimize_for_inference(model)(x), expected)


@pytest.mark.parametrize("video", [False, True], ids=["image", "video"])
def test_bf16_is_close_and_agrees_in_top1(video: bool) -> None:
    model = _tiny(video)
    x = _input(video, batch=8)
    with torch.no_grad():
        expected = model(x)
        out = optimize_for_inference(model, dtype=torch.bfloat16)(x)
    assert out.dtype == torch.bfloat16
    err = (out.float() - expected).abs().max().item()
    assert err <= BF16_TOLERANCE * expected.abs().max().item()
    # Top-1 must agree wherever fp32's winner leads by more than twice the bf16 error bound.
    top2 = expected.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 2 * err
    assert torch.equal(out.float().argmax(1)[decided], expected.argmax(1)[decided])


def test_the_users_model_is_left_untouched() -> None:
    model = _tiny(True).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model, dtype=torch.bfloat16)
    assert fast is not model and model.training
    assert all(p.dtype == torch.float32 and p.requires_grad for p in model.parameters())
    assert all(m.norm1.__class__.__name__ == "BatchNorm3d" for m in model.blocks1)
    assert all(type(m.mlp.act) is torch.nn.GELU for m in [*model.blocks1, *model.blocks3])
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
        assert value.is_contiguous(), key


def test_reference_switch_changes_kernels_and_layout_not_parameters_or_outputs() -> None:
    """The official formulation: explicit attention and contiguous maps after each patch embedding (official
    ``PatchEmbed`` ends in ``.permute(...).contiguous()``); this package's default keeps the maps channels-last."""
    model = _tiny(True)
    keys = {k: v.shape for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        default_map, default_out = model.patch_embed1(x), model(x)
    assert not default_map.is_contiguous() and default_map.is_contiguous(memory_format=torch.channels_last_3d)
    set_formulation(model, "reference")
    assert all(m.formulation == "reference" for m in model.modules() if isinstance(m, Attention))
    with torch.no_grad():
        assert model.patch_embed1(x).is_contiguous()
        reference_out = model(x)
    assert (reference_out - default_out).abs().max() <= 1e-4 * default_out.abs().max()
    set_formulation(model, "fast")
    assert all(m.formulation == "fast" for m in model.modules() if isinstance(m, Attention))
    with torch.no_grad():
        assert not model.patch_embed1(x).is_contiguous()
    assert {k: v.shape for k, v in model.state_dict().items()} == keys


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_inplace_gelu_overwrites_its_input_with_fp32_gelu_values(dtype: torch.dtype) -> None:
    """In place, in any layout, and equal to fp32 GELU over row-major memory rounded once to ``dtype`` (PyTorch's
    own kernel on channels-last strides is off by an ulp on some elements, in bf16 by a bf16 ulp)."""
    for layout in (torch.contiguous_format, torch.channels_last_3d):
        x = torch.randn(2, 8, 4, 6, 6).to(dtype).contiguous(memory_format=layout)
        expected = torch.nn.functional.gelu(x.float().contiguous()).to(dtype)
        assert InplaceGELU()(x) is x and torch.equal(x, expected) and x.is_contiguous(memory_format=layout)
    fast = optimize_for_inference(_tiny(True), dtype=dtype)
    mlps = [block.mlp for block in [*fast.blocks1, *fast.blocks2, *fast.blocks3, *fast.blocks4]]
    assert all(isinstance(mlp, FusedMlp) and isinstance(mlp.act, InplaceGELU) for mlp in mlps)


@pytest.mark.parametrize("post_op", [True, False], ids=["gelu-post-op", "gelu-in-place"])
@pytest.mark.parametrize("rows_per_block", [None, 7], ids=["one-block", "ragged-blocks"])
@pytest.mark.parametrize("kind", ["conv2d", "conv3d", "linear"])
def test_fused_mlp_equals_the_mlp_it_replaces_and_runs_onednn_fused_kernels(
    kind: str, rows_per_block: int | None, post_op: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GELU inside fc1's oneDNN kernel (AVX-512 CPUs) or in place after fc1's matrix product (elsewhere), rows in
    blocks: the fp32 result is the plain MLP's to float rounding (also when the rows span several blocks), bf16
    stays within bf16 rounding of it (also under autocast, where the plain ops run), the fp64 fallback is exact,
    and the CPU profile shows the kernels of the chosen path."""
    monkeypatch.setattr(mlp_layers, "_gelu_post_op_pays", lambda: post_op)
    torch.manual_seed(0)
    if kind == "linear":
        mlp, x = timm.layers.Mlp(24, 96), torch.randn(2, 50, 24)
    else:
        video = kind == "conv3d"
        mlp = ConvMlp(24, 96, video=video)
        x = torch.randn(2, 24, 3, 10, 10) if video else torch.randn(2, 24, 10, 10)
        x = x.contiguous(memory_format=torch.channels_last_3d if video else torch.channels_last)
    mlp.eval()
    fused = FusedMlp(mlp.fc1, mlp.fc2)
    if rows_per_block:  # fp32 hidden rows of 96 values
        monkeypatch.setattr(mlp_layers, "_HIDDEN_BLOCK_BYTES", rows_per_block * 96 * 4)
    with torch.no_grad():
        expected = mlp(x)
        with torch.profiler.profile() as profile:
            out = fused(x)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        if kind == "linear":
            assert out.stride() == expected.stride()
        else:  # channels-last maps stay so (a plain Conv3d returns contiguous maps on some CPUs)
            assert out.is_contiguous(memory_format=torch.channels_last_3d if video else torch.channels_last)
        low = copy.deepcopy(fused).to(torch.bfloat16)(x.to(torch.bfloat16)).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 weights, bf16 maps: the plain ops take over
            autocast = fused(x.to(torch.bfloat16)).float()
        torch.testing.assert_close(fused.double()(x.double()), mlp.double()(x.double()), rtol=0, atol=1e-12)
    kernels = {event.name for event in profile.events()}
    if post_op:
        assert "mkldnn::_linear_pointwise" in kernels and "aten::gelu_" not in kernels
    else:
        assert "mkldnn::_linear_pointwise" not in kernels and {"aten::addmm", "aten::gelu_"} <= kernels
    assert (low - expected).abs().max() <= 2e-2 * expected.abs().max()
    assert (autocast - expected).abs().max() <= 2e-2 * expected.abs().max()
    with pytest.raises(TypeError, match=r"needs a Linear or point-wise Conv2d/Conv3d fc1, got Conv2d\(4, 4, kernel"):
        FusedMlp(torch.nn.Conv2d(4, 4, 3), mlp.fc2)


def test_unsupported_dtype_is_rejected() -> None:
    with pytest.raises(ValueError, match="dtype"):
        optimize_for_inference(_tiny(False), dtype=torch.float64)


@pytest.mark.parametrize("chunk", [5, 16, 64], ids=["ragged", "exact", "single"])
def test_chunked_attention_equals_the_fused_kernel(chunk: int) -> None:
    q, k, v = torch.randn(3, 2, 4, 48, 16).unbind(0)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(chunked_attention(q, k, v, 0.3, chunk=chunk), expected, rtol=1e-5, atol=1e-6)


def test_an_unknown_formulation_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="formulation must be 'reference' or 'fast', got 'official'"):
        set_formulation(_tiny(False), "official")  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{}, {"conv_stem": True}], ids=["patch", "conv"])
def test_modules_fold_their_own_batchnorms_as_timm_reparameterize_model_asks(kwargs: dict) -> None:
    """timm's ``reparameterize_model`` calls each module's ``reparameterize()``: every BatchNorm but the final
    one is gone, the output is the same, and folding again changes nothing."""
    model = _tiny(True, **kwargs)
    x = _input(True)
    folded = timm.utils.reparameterize_model(model)
    assert [name for name, m in folded.named_modules() if isinstance(m, _BatchNorm)] == ["norm"]
    with torch.no_grad():
        assert_close_to_golden(folded(x), model(x))
    state = {k: v.clone() for k, v in folded.state_dict().items()}
    fold_batchnorms(folded)
    assert all(torch.equal(value, state[key]) for key, value in folded.state_dict().items())


@pytest.mark.parametrize("kind", ["upernet", "fpn", "pose"])
def test_dense_models_lose_every_batchnorm_and_keep_their_outputs(kind: str) -> None:
    # The heads' ConvModules (UperNet, FPN) and the pose head's transposed convolutions fold theirs too.
    dense = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 48, 64), head_dim=16)
    if kind == "pose":
        model = build_pose_model(17, dense, channels=16)
    else:
        model = build_segmentor(kind, 5, dense, channels=16, aux_channels=8, neck_channels=8)
    model = _with_trained_batchnorm_statistics(model)
    assert any(isinstance(m, _BatchNorm) for name, m in model.named_modules() if not name.startswith("backbone"))
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, _BatchNorm) for m in fast.modules())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        assert_close_to_golden(fast(x), expected)
