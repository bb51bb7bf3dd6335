"""The four maps against restatements of their published formulas, and the model left as it was."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from uniformer import create_model
from uniformer.explain import (
    attention_received,
    class_activation_map,
    default_stage,
    grad_cam,
    min_max,
    stage_features,
    upsample,
)

TINY_VIDEO = dict(depth=(1, 1, 2, 1), embed_dim=(32, 64, 128, 256), head_dim=32, video=True, num_classes=5)


@pytest.fixture(scope="module")
def video_model() -> torch.nn.Module:
    torch.manual_seed(1)
    return create_model("uniformer_small_k400_8x8", **TINY_VIDEO).eval()


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(2))


def _last_block_output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The notebook's ``y[-1]``: what the last block of stage 4 returns, caught by a hook of the test's own."""
    caught = []
    handle = model.blocks4[-1].register_forward_hook(lambda m, a, out: caught.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    return caught[0]


def test_cam_is_the_official_notebook_formula(video_model, clip) -> None:
    cam, logits, targets = class_activation_map(video_model, clip, target=3)
    layerout = _last_block_output(video_model, clip)
    weights = video_model.head.weight.data.numpy().transpose()  # (C, classes), as the notebook takes it
    for b in range(len(clip)):
        out = layerout[b].permute(1, 2, 3, 0).numpy()  # (T, H, W, C)
        expected = np.zeros(out.shape[:3], np.float32)
        for i, w in enumerate(weights[:, 3]):
            expected += w * out[:, :, :, i]
        np.testing.assert_allclose(cam[b].numpy(), expected, rtol=1e-4, atol=1e-5)
    assert targets.tolist() == [3, 3] and torch.equal(logits, video_model(clip))
    # time: the notebook's downsample=False path interpolates T' -> 2T' linearly, as our upsampling does
    t, h, w = cam.shape[1:]
    notebook = F.interpolate(cam[0].reshape(t, h * w).T[None], size=2 * t, mode="linear")[0].T.reshape(2 * t, h, w)
    torch.testing.assert_close(upsample(cam[:1], (2 * t, h, w))[0], notebook)


def test_cam_explains_the_top_class_by_default(video_model, clip) -> None:
    _, logits, targets = class_activation_map(video_model, clip)
    assert torch.equal(targets, logits.argmax(1))


def test_grad_cam_is_mmaction2s_formula_on_the_chosen_stage(video_model, clip) -> None:
    for stage in (2, 4):
        caught = {}
        block = getattr(video_model, f"blocks{stage}")[-1]

        def keep(module, args, out, caught=caught):
            out.retain_grad()
            caught["a"] = out

        handle = block.register_forward_hook(keep)
        x = clip.clone().requires_grad_(True)
        logits = video_model(x)
        logits[:, 1].sum().backward()
        handle.remove()
        video_model.zero_grad(set_to_none=True)
        a, g = caught["a"].detach(), caught["a"].grad
        alpha = g.flatten(2).mean(2)[:, :, None, None, None]
        expected = (alpha * a).sum(1).relu()
        cam, _, targets = grad_cam(video_model, clip, target=1, stage=stage)
        assert targets.tolist() == [1, 1]
        torch.testing.assert_close(cam, expected, rtol=1e-4, atol=1e-6)


def _reference_attention(model: torch.nn.Module, x: torch.Tensor, stage: int) -> list[torch.Tensor]:
    """The attention matrices of the model's explicit (reference) formulation, caught at its dropout."""
    reference = copy.deepcopy(model)
    for module in reference.modules():
        if hasattr(module, "set_formulation"):
            module.set_formulation("reference")
    caught = []
    for block in getattr(reference, f"blocks{stage}"):
        block.attn.attn_drop.register_forward_hook(lambda m, a, out: caught.append(out))
    with torch.no_grad():
        reference(x)
    return caught


def test_attention_received_is_the_mean_over_heads_queries_and_blocks(video_model, clip) -> None:
    received, _ = attention_received(video_model, clip, stage=3)
    matrices = _reference_attention(video_model, clip, 3)
    expected = torch.stack([m.mean(1).mean(1) for m in matrices]).mean(0).reshape(received.shape)
    torch.testing.assert_close(received, expected, rtol=1e-4, atol=1e-7)
    tokens = received[0].numel()
    torch.testing.assert_close(received.flatten(1).sum(1), torch.ones(2), rtol=1e-5, atol=1e-5)  # rows sum to 1
    assert received.shape == (2, 4, 4, 4) and tokens == 64
    # from one query location: the rows of that position in every time slice
    from_query, _ = attention_received(video_model, clip, stage=3, query=(0.9, 0.1))  # x, y: column 3, row 0
    rows = [t * 16 + 0 * 4 + 3 for t in range(4)]
    expected = torch.stack([m.mean(1)[:, rows].mean(1) for m in matrices]).mean(0).reshape(received.shape)
    torch.testing.assert_close(from_query, expected, rtol=1e-4, atol=1e-7)


def test_attention_with_divided_space_time_attends_within_frames() -> None:
    model = create_model("uniformer_small_k400_8x8", **{**TINY_VIDEO, "split": True}).eval()
    x = torch.randn(1, 3, 8, 64, 64)
    received, _ = attention_received(model, x, stage=4)
    assert received.shape == (1, 4, 2, 2)
    torch.testing.assert_close(received.sum((2, 3)), torch.ones(1, 4))  # each frame's keys receive its queries'


def test_features_are_the_channel_means_of_each_stage(video_model, clip) -> None:
    maps, logits = stage_features(video_model, clip)
    with torch.no_grad():
        stages = video_model.forward_intermediates(clip, intermediates_only=True)
    assert [tuple(m.shape) for m in maps] == [(2, 4, 16, 16), (2, 4, 8, 8), (2, 4, 4, 4), (2, 4, 2, 2)]
    for got, stage in zip(maps, stages, strict=True):
        torch.testing.assert_close(got, stage.mean(1))
    assert torch.equal(logits, video_model(clip))


def test_explaining_leaves_the_model_as_it_was(video_model, clip) -> None:
    before = video_model(clip).detach()
    state = {k: v.clone() for k, v in video_model.state_dict().items()}
    class_activation_map(video_model, clip)
    grad_cam(video_model, clip, stage=3)
    attention_received(video_model, clip, stage=4, query=(0.5, 0.5))
    stage_features(video_model, clip)
    assert torch.equal(video_model(clip), before)  # bit-identical
    assert all(torch.equal(v, state[k]) for k, v in video_model.state_dict().items())
    assert all(p.grad is None for p in video_model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in video_model.modules())
    assert not video_model.training


def test_image_model_and_bf16() -> None:
    model = create_model("uniformer_small", depth=(1, 1, 1, 1), embed_dim=(32, 64, 128, 256), head_dim=32).eval()
    x = torch.randn(2, 3, 64, 64)
    cam, _, _ = class_activation_map(model, x)
    low, _, _ = class_activation_map(model, x, precision="bf16")
    assert cam.shape == (2, 2, 2) and low.dtype == torch.float32
    assert torch.corrcoef(torch.stack([cam.flatten(), low.flatten()]))[0, 1] > 0.95
    assert grad_cam(model, x)[0].shape == (2, 8, 8)  # the default stage at 64 px


def test_training_mode_and_headless_models_are_refused(video_model, clip) -> None:
    training = copy.deepcopy(video_model).train()
    with pytest.raises(ValueError, match="eval mode"):
        grad_cam(training, clip)
    headless = create_model("uniformer_small_k400_8x8", **{**TINY_VIDEO, "num_classes": 0}).eval()
    with pytest.raises(ValueError, match="classifier"):
        stage_features(headless, clip)
    with pytest.raises(ValueError, match="out of range"):
        class_activation_map(video_model, clip, target=7)
    with pytest.raises(ValueError, match="stage must be one of 3, 4"):
        attention_received(video_model, clip, stage=2)


def test_default_stage_keeps_at_least_seven_cells() -> None:
    assert default_stage((224, 224)) == 4  # 7 x 7
    assert default_stage((1, 3, 8, 128, 160)) == 3  # 8 x 10 at stage 3, 4 x 5 at stage 4
    assert default_stage((64, 64)) == 2  # 8 x 8; stage 3 would be 4 x 4
    assert default_stage((32, 32)) == 1


def test_min_max_scales_each_sample_over_all_its_frames() -> None:
    maps = torch.stack([torch.arange(8.0).reshape(2, 2, 2), torch.full((2, 2, 2), 3.0)])
    scaled = min_max(maps)
    assert scaled[0].min() == 0 and scaled[0].max() == 1 and scaled[0, 1, 1, 1] == 1
    assert torch.equal(scaled[1], torch.zeros(2, 2, 2))
