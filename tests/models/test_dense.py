"""The dense backbone (``UniFormer(dense=True)``): sizes, attention modes, checkpoint layouts, training options."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import uniformer
from uniformer import CheckpointError, UniFormer, load_checkpoint
from uniformer.models.checkpoint import load_for_fine_tuning, read_state_dict

from golden import GOLDEN, golden_cases, golden_model_kwargs, golden_state_dict

CASES = {case["name"]: case for case in golden_cases()}
TINY = dict(depth=(1, 1, 2, 1), embed_dim=(16, 32, 48, 64), head_dim=16, dense=True)


def dense(**kwargs) -> UniFormer:
    return UniFormer(**{**TINY, **kwargs})


@pytest.mark.parametrize("mode", ["global", "window", "hybrid"])
@pytest.mark.parametrize("size", [(32, 32), (33, 47), (100, 72), (65, 129)])
def test_maps_are_floor_of_the_input_over_each_stride(mode: str, size: tuple[int, int]) -> None:
    model = dense(attn_mode=mode, window_size=7).eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 3, *size))
    assert isinstance(maps, tuple)
    expected = [(1, c, size[0] // s, size[1] // s) for c, s in zip((16, 32, 48, 64), (4, 8, 16, 32))]
    assert [tuple(m.shape) for m in maps] == expected
    assert all(m.is_contiguous() for m in maps)


def test_inputs_below_32_pixels_are_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match=r"H and W at least 32; got shape \(1, 3, 31, 64\)"):
        dense()(torch.randn(1, 3, 31, 64))


def test_a_dense_backbone_has_no_classifier_and_no_final_norm() -> None:
    model = dense()
    keys = model.state_dict().keys()
    assert not any(k.startswith(("head.", "norm.")) for k in keys)
    assert [k for k in keys if k.startswith("norm")] == [
        f"norm{i}.{p}" for i in range(1, 5) for p in ("weight", "bias")
    ]
    assert model.num_classes == 0 and model.norm1.eps == 1e-6


def test_outputs_are_the_output_norms_of_the_maps_the_next_stage_reads() -> None:
    model = dense().eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        maps = model(x)
        _, stages = model.forward_intermediates(x)  # the un-normalised stage outputs
    for i, (ours, raw) in enumerate(zip(maps, stages)):
        norm = getattr(model, f"norm{i + 1}")
        torch.testing.assert_close(ours, norm(raw.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_selected_stages_give_the_same_maps_and_run_no_stage_after_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    model = dense().eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        maps = model(x)
        ran = []
        run_block = model._run_block
        monkeypatch.setattr(model, "_run_block", lambda i, *args: ran.append(i) or run_block(i, *args))
        assert [m.shape for m in model.forward_dense(x, indices=(1,))] == [maps[1].shape]
        assert sorted(set(ran)) == [0, 1]
        for indices in [(3,), (0, 2)]:
            selected = model.forward_dense(x, indices=indices)
            assert all(torch.equal(a, maps[i]) for a, i in zip(selected, indices, strict=True))
    for bad in [(), (2, 1), (1, 1), (4,)]:
        with pytest.raises(ValueError, match="indices must be increasing stages in 0..3"):
            model.forward_dense(x, indices=bad)


def test_hybrid_keeps_every_fourth_stage3_block_global_and_stage4_global() -> None:
    model = dense(depth=(1, 1, 8, 2), attn_mode="hybrid", window_size=14)
    assert [b.window_size for b in model.blocks3] == [14, 14, 14, None, 14, 14, 14, None]
    assert [b.window_size for b in model.blocks4] == [None, None]
    assert [b.window_size for b in dense(attn_mode="window", window_size=5).blocks3] == [5, 5]


def test_one_window_covering_the_whole_map_is_global_attention() -> None:
    # 64 x 64 input: the stage-3 map is 4 x 4, exactly one 4 x 4 window (no padding)
    glob = dense().eval()
    window = dense(attn_mode="window", window_size=4).eval()
    window.load_state_dict(glob.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for ours, expected in zip(window(x), glob(x)):
            torch.testing.assert_close(ours, expected)
        # with padding the zero-padded tokens take part (no mask): outputs differ
        padded = dense(attn_mode="window", window_size=3).eval()
        padded.load_state_dict(glob.state_dict())
        assert not torch.allclose(padded(x)[2], glob(x)[2])


@pytest.mark.parametrize("key", ["state_dict", "model", None])
@pytest.mark.parametrize("prefix", ["backbone.", ""])
def test_the_official_dense_checkpoint_loads_under_any_wrapper_and_prefix(
    tmp_path: Path, key: str | None, prefix: str
) -> None:
    case = CASES["dense_tiny_hybrid7"]
    state = {prefix + k: v for k, v in golden_state_dict(case).items()}
    path = tmp_path / "dense.pth"
    torch.save(state if key is None else {key: state}, path)
    model = load_checkpoint(UniFormer(**golden_model_kwargs(case)), path)
    for name, value in golden_state_dict(case).items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_a_classification_checkpoint_loads_by_the_stated_rule(caplog: pytest.LogCaptureFixture) -> None:
    case = CASES["image_tiny"]  # head.weight/bias and the 5 tensors of the final BatchNorm norm.*
    model = UniFormer(**{**golden_model_kwargs(case), "dense": True})
    fresh = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("norm")}
    with caplog.at_level(logging.INFO, logger="uniformer.models.checkpoint"):
        load_checkpoint(model, GOLDEN / case["checkpoint"])
    official = read_state_dict(GOLDEN / case["checkpoint"])
    for name, value in model.state_dict().items():
        expected = fresh[name] if name in fresh else official[name]
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=name)
    lines = [r.getMessage() for r in caplog.records if "dense backbone" in r.getMessage()]
    assert len(lines) == 1 and "7 classifier and final-norm tensors" in lines[0] and "norm1..norm4" in lines[0]


def test_other_missing_or_unexpected_keys_are_errors_that_name_them(tmp_path: Path) -> None:
    case = CASES["dense_tiny_global"]
    state = golden_state_dict(case)
    state["decode_head.conv_seg.weight"] = torch.zeros(2, 4, 1, 1)
    del state["blocks3.1.attn.qkv.weight"]
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"1 missing keys: blocks3\.1\.attn\.qkv\.weight") as err:
        load_checkpoint(UniFormer(**golden_model_kwargs(case)), tmp_path / "bad.pth")
    assert "1 unexpected keys: decode_head.conv_seg.weight" in str(err.value)
    # a classification checkpoint missing a backbone tensor is refused too (only norm1..4 may stay fresh)
    image = read_state_dict(GOLDEN / "image_tiny.pth")
    del image["patch_embed1.proj.bias"]
    torch.save(image, tmp_path / "image.pth")
    with pytest.raises(CheckpointError, match=r"1 missing keys: patch_embed1\.proj\.bias"):
        load_checkpoint(
            UniFormer(**{**golden_model_kwargs(CASES["image_tiny"]), "dense": True}), tmp_path / "image.pth"
        )


def test_create_model_builds_the_zoo_backbones_dense_with_their_attention() -> None:
    with torch.device("meta"):
        small = uniformer.create_model("uniformer_small", dense=True, attn_mode="hybrid", window_size=14)
        base = uniformer.create_model("uniformer_base", dense=True)
    assert small.dense and [b.window_size for b in small.blocks3] == [14, 14, 14, None] * 2
    assert [m.normalized_shape[0] for m in (small.norm1, small.norm2, small.norm3, small.norm4)] == [64, 128, 320, 512]
    assert len(base.blocks3) == 20 and all(b.window_size is None for b in base.blocks3)


def test_invalid_dense_options_are_refused() -> None:
    with pytest.raises(ValueError, match="attn_mode must be"):
        dense(attn_mode="shifted")
    with pytest.raises(ValueError, match="2-D"):
        dense(video=True)
    with pytest.raises(ValueError, match="token-labeling"):
        dense(token_labeling=True)
    with pytest.raises(ValueError, match="checkpoint_num"):
        dense(checkpoint_num=(0, 0, 3, 0))


def test_norm_eval_keeps_batchnorm_statistics_frozen_in_training() -> None:
    model = dense(norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in norms]
    model(torch.randn(2, 3, 64, 64))
    assert model.training and not any(m.training for m in norms)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))
    assert all(m.training for m in dense().train().modules())  # off by default


def test_checkpoint_num_recomputes_the_first_blocks_of_each_stage_with_the_same_gradients() -> None:
    plain = dense(depth=(2, 1, 3, 1))
    ckpt = dense(depth=(2, 1, 3, 1), checkpoint_num=(1, 0, 2, 0))
    ckpt.load_state_dict(plain.state_dict())
    calls: dict[str, int] = {}
    for name, block in ckpt.named_modules():
        if name.count(".") == 1 and name.startswith("blocks"):  # count forward runs (hooks skip recomputes)

            def counted(x: torch.Tensor, forward=block.forward, name=name) -> torch.Tensor:
                calls[name] = calls.get(name, 0) + 1
                return forward(x)

            block.forward = counted
    x = torch.randn(2, 3, 64, 64)
    for model in (plain, ckpt):
        sum(m.square().mean() for m in model(x)).backward()
    twice = sorted(n for n, c in calls.items() if c == 2)
    assert twice == ["blocks1.0", "blocks3.0", "blocks3.1"] and len(calls) == 7
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("uniformer_small_upernet_ade20k", {}),
        ("uniformer_small_topdown_coco_256x192", {}),
        ("uniformer_small_h14_mask_rcnn_coco_1x", {"attn_mode": "hybrid", "window_size": 7}),
    ],
)
def test_an_imagenet_checkpoint_starts_the_backbone_of_a_whole_dense_model(tmp_path: Path, name: str, extra) -> None:
    # model.pretrained / model.checkpoint with a classification file: the backbone takes it by the dense rule,
    # heads and the output norms keep their initialisation, a file of the whole model still loads whole.
    dims = dict(depth=(1, 1, 2, 1), embed_dim=(16, 32, 48, 64), head_dim=16)
    classifier = uniformer.UniFormer(**dims, num_classes=10)
    torch.save({"model": classifier.state_dict()}, tmp_path / "in1k.pth")
    model = uniformer.create_model(name, **dims, **extra)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_for_fine_tuning(model, tmp_path / "in1k.pth")
    backbone = next(m for m in model.modules() if isinstance(m, uniformer.UniFormer))
    prefix = next(k for k, m in model.named_modules() if m is backbone) + "."
    for key, value in model.state_dict().items():
        inner = key.removeprefix(prefix)
        if key.startswith(prefix) and not inner.startswith(("norm1.", "norm2.", "norm3.", "norm4.")):
            torch.testing.assert_close(value, classifier.state_dict()[inner], rtol=0, atol=0, msg=key)
        else:
            torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    torch.save(model.state_dict(), tmp_path / "whole.pth")
    again = uniformer.create_model(name, **dims, **extra)
    load_for_fine_tuning(again, tmp_path / "whole.pth")
    for key, value in again.state_dict().items():
        torch.testing.assert_close(value, model.state_dict()[key], rtol=0, atol=0, msg=key)


def test_a_backbone_file_with_a_foreign_key_is_refused_by_a_whole_dense_model(tmp_path: Path) -> None:
    dims = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 48, 64), head_dim=16)
    state = uniformer.UniFormer(**dims, num_classes=10).state_dict() | {"extra.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "in1k.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys: extra\.weight"):
        load_for_fine_tuning(uniformer.create_model("uniformer_small_upernet_ade20k", **dims), tmp_path / "in1k.pth")
