"""The light (XXS/XS) models: the official token-evolution semantics, training outputs and explicit state."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from uniformer import UniFormer, load_checkpoint, optimize_for_inference
from uniformer.models.checkpoint import fit_dense_backbone, load_for_fine_tuning, read_state_dict
from uniformer.models.segmentor import build_segmentor
from uniformer.models.uniformer import HourglassBlock, set_formulation

from golden import GOLDEN, assert_close_to_golden, golden_cases, golden_model_kwargs

LIGHT = {case["name"]: case for case in golden_cases() if case["name"].startswith("light_")}
TRAINED = sorted(name for name, case in LIGHT.items() if "train_outputs" in case)


def _official(name: str) -> tuple[UniFormer, dict[str, torch.Tensor]]:
    case = LIGHT[name]
    model = load_checkpoint(UniFormer(**golden_model_kwargs(case)).eval(), GOLDEN / case["checkpoint"])
    return model, load_file(GOLDEN / case["io"])


def _train_with_frozen_norms(model: UniFormer) -> UniFormer:
    """The golden training mode: model.train() with every BatchNorm back in eval (running statistics)."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model


def test_every_light_case_is_covered() -> None:
    assert len(LIGHT) == 7 and len(TRAINED) == 6


@pytest.mark.parametrize("formulation", ["fast", "reference"])
@pytest.mark.parametrize("name", TRAINED)
def test_two_head_training_outputs_equal_the_official_ones(name: str, formulation: str) -> None:
    model, io = _official(name)
    set_formulation(_train_with_frozen_norms(model), formulation)
    with torch.no_grad():
        outputs = model.forward_train(io["input"])
        single = model(io["input"])
    keys = LIGHT[name]["train_outputs"]["keys"]
    assert len(outputs) == len(keys) == 2
    for ours, key in zip(outputs, keys):
        assert_close_to_golden(ours, io[key])
    # forward returns the average-pool head alone, in training mode too
    assert_close_to_golden(single, io[keys[0]])


@pytest.mark.parametrize("formulation", ["fast", "reference"])
@pytest.mark.parametrize("name", sorted(LIGHT))
def test_scores_and_kept_tokens_of_every_pruning_block_equal_the_official_ones(name: str, formulation: str) -> None:
    model, io = _official(name)
    set_formulation(model, formulation)
    seen: dict[str, torch.Tensor] = {}
    for stage in (3, 4):
        for index, block in enumerate(getattr(model, f"blocks{stage}")):
            if block.keep_ratio < 1:

                def record(module: HourglassBlock, args: tuple, key: str = f"{stage}.{index}") -> None:
                    seen[key] = args[2].clone()

                block.register_forward_pre_hook(record)
    with torch.no_grad():
        model(io["input"])
    expected = sorted(key.split(".", 1)[1] for key in LIGHT[name]["aux"]["keys"] if key.startswith("score."))
    assert sorted(seen) == expected
    for key, scores in seen.items():
        official = io[f"score.{key}"]
        assert scores.shape == official.shape
        assert (scores - official).abs().max() <= 1e-4 * official.abs().max()
        stage, index = (int(part) for part in key.split("."))
        kept = int(scores.shape[1] * getattr(model, f"blocks{stage}")[index].keep_ratio)
        ours = scores.argsort(dim=1, descending=True)[:, :kept].sort(dim=1).values
        assert torch.equal(ours, io[f"kept.{key}"].long()), key


def test_samples_of_one_batch_keep_different_tokens() -> None:
    """The batch-2 cases rank tokens per sample: a gather or scatter across the batch would not pass them."""
    io = load_file(GOLDEN / LIGHT["light_image_tiny_odd"]["io"])
    kept = io["kept.3.1"]
    assert not torch.equal(kept[0], kept[1])


def test_two_light_models_interleaved_give_the_outputs_of_each_alone() -> None:
    image, image_io = _official("light_image_tiny_odd")
    video, video_io = _official("light_video_tiny_plain")
    with torch.no_grad():
        alone = image(image_io["input"]), video(video_io["input"])
        # stage by stage, alternating: each model's stages run while the other's forward is half done
        interleaved = zip(image._stages(image_io["input"]), video._stages(video_io["input"]), strict=True)
        (image_map, _), (video_map, _) = list(interleaved)[-1]
        both = image.forward_head(image.norm(image_map)), video.forward_head(video.norm(video_map))
    assert torch.equal(both[0], alone[0]) and torch.equal(both[1], alone[1])
    assert_close_to_golden(alone[0], image_io["output"])
    assert_close_to_golden(alone[1], video_io["output"])


def test_one_light_model_runs_two_interleaved_forwards() -> None:
    """Two threads sharing a model: the token scores of one forward never reach the other."""
    model, io = _official("light_image_tiny_odd")
    other = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        alone = model(io["input"]), model(other)
        (first, _), (second, _) = list(zip(model._stages(io["input"]), model._stages(other), strict=True))[-1]
        both = model.forward_head(model.norm(first)), model.forward_head(model.norm(second))
    assert torch.equal(both[0], alone[0]) and torch.equal(both[1], alone[1])
    assert_close_to_golden(alone[0], io["output"])


def test_a_forward_does_not_depend_on_the_one_before() -> None:
    model, io = _official("light_image_tiny")
    with torch.no_grad():
        first = model(io["input"])
        model(torch.randn(3, 3, 96, 160))
        assert torch.equal(model(io["input"]), first)


def test_default_schedule_is_the_official_pattern() -> None:
    model = UniFormer(depth=(1, 1, 4, 2), embed_dim=(16, 32, 48, 64), head_dim=16, light=True, num_classes=3)
    assert [b.keep_ratio for b in model.blocks3] == [1.0, 0.5, 0.5, 0.5]
    assert [b.keep_ratio for b in model.blocks4] == [0.5, 0.5]
    assert [b.trade_off for b in [*model.blocks3, *model.blocks4]] == [1.0] + [0.5] * 5
    assert "cls_token" in model.no_weight_decay()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(conv_stem=True), "conv_stem"),
        (dict(token_labeling=True), "token_labeling"),
        (dict(layer_scale="all"), "layer_scale='all'"),
        (dict(keep_ratio=((0.5, 0.5), (0.5,))), "first stage-3 block must keep every token"),
        (dict(keep_ratio=((1, 1), (0.5,))), "last one must prune"),
        (dict(keep_ratio=((1, 0.5, 0.5), (0.5,))), "one value per stage-3 and stage-4 block"),
    ],
)
def test_light_options_that_do_not_combine_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UniFormer(depth=(1, 1, 2, 1), embed_dim=(16, 32, 48, 64), head_dim=16, light=True, **kwargs)


def test_keep_ratio_needs_light() -> None:
    with pytest.raises(ValueError, match="options of the light models"):
        UniFormer(depth=(1, 1, 2, 1), embed_dim=(16, 32, 48, 64), head_dim=16, keep_ratio=((1, 0.5), (0.5,)))


def test_a_light_classification_checkpoint_initialises_a_light_dense_backbone() -> None:
    """Mask R-CNN / Semantic FPN start from the light ImageNet file: its two heads and norms are dropped."""
    kwargs = golden_model_kwargs(LIGHT["light_dense_tiny"])
    dense = UniFormer(**kwargs)
    image = read_state_dict(GOLDEN / LIGHT["light_image_tiny"]["checkpoint"])
    state, fresh = fit_dense_backbone(dense, image)
    assert not any(key.startswith(("head", "norm_cls", "norm.")) for key in state)
    load_checkpoint(dense, GOLDEN / LIGHT["light_image_tiny"]["checkpoint"])
    torch.testing.assert_close(dense.cls_token, image["cls_token"], rtol=0, atol=0)
    assert fresh


def test_the_dense_recipes_start_their_backbone_from_the_light_imagenet_file() -> None:
    """model.checkpoint of the light detection / segmentation recipes: the bare ImageNet file fills the backbone."""
    kwargs = {k: v for k, v in golden_model_kwargs(LIGHT["light_dense_tiny"]).items() if k != "num_classes"}
    segmentor = build_segmentor("fpn", 3, kwargs)
    load_for_fine_tuning(segmentor, GOLDEN / LIGHT["light_image_tiny"]["checkpoint"])
    image = read_state_dict(GOLDEN / LIGHT["light_image_tiny"]["checkpoint"])
    torch.testing.assert_close(segmentor.backbone.blocks4[1].attn.qkv.weight, image["blocks4.1.attn.qkv.weight"])
    with torch.no_grad():
        assert segmentor.eval()(torch.randn(1, 3, 64, 96)).shape == (1, 3, 64, 96)


def test_the_light_image_checkpoint_inflates_into_the_light_video_model() -> None:
    """The official light video recipes start from the light ImageNet file by inflation."""
    video = UniFormer(**golden_model_kwargs(LIGHT["light_video_tiny_plain"]))
    image = read_state_dict(GOLDEN / LIGHT["light_image_tiny"]["checkpoint"])
    load_checkpoint(video, GOLDEN / LIGHT["light_image_tiny"]["checkpoint"])
    stem = video.patch_embed1.proj[0].weight
    assert stem.shape == (8, 3, 3, 3, 3)
    torch.testing.assert_close(stem.sum(2), image["patch_embed1.proj.0.weight"])
    with torch.no_grad():
        assert video(torch.randn(1, 3, 4, 64, 64)).shape == (1, 9)


def test_zoo_entries_carry_the_official_recipes_test_views_and_variants() -> None:
    import uniformer

    video = uniformer.model_info("uniformer_xxs_k400_16f_160")
    assert (video.num_frames, video.frame_stride, video.sampling, video.test_views) == (16, None, "segment", 1)
    assert video.model_args["video"] and video.model_args["light"] and "layer_scale" not in video.model_args
    # the 4-frame and 8-frame 128 px recipes are the layer-scale variant
    for name in ("uniformer_xxs_k400_4f_128", "uniformer_xxs_k400_4f_160", "uniformer_xxs_k400_8f_128"):
        assert uniformer.model_info(name).model_args["layer_scale"] == "all"
    assert video.pretrain == "uniformer_xxs_160 (inflated)"
    image = uniformer.model_info("uniformer_xxs_160").release()
    assert (image.img_size, image.metrics, image.gflops) == (160, {"top1": 79.1}, 0.67)
    # the authors' Hub copy first (digest from its LFS pointer), then the Google Drive original
    assert [source.url for source in image.sources] == [
        "https://huggingface.co/Andy1621/uniformer_light/resolve/main/uniformer_xxs_160_in1k.pth",
        "https://drive.google.com/file/d/1CsXCzfVFPyM2mY8BA_1fO3q_VBngnF44/view",
    ]
    assert image.sources[0].sha256.startswith("f53dffcf") and image.sources[0].automatic
    assert [s.kind for s in uniformer.model_info("uniformer_xxs_128").release().sources] == ["drive"]
    model = uniformer.create_model("uniformer_xxs_k400_4f_128")
    assert model.blocks1[0].gamma_1 is not None and model.blocks4[0].gamma_1[0].item() == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["light_image_tiny", "light_video_tiny_ls"])
def test_bf16_autocast_training_and_bf16_inference_run(name: str) -> None:
    """Under autocast a block's input and output dtypes differ; the token scatter and the score pooling follow."""
    model, io = _official(name)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, score_token = model(io["input"], train_outputs=True)
    (pooled.float().sum() + score_token.float().sum()).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.cls_token.grad.abs().sum() > 0
    with torch.no_grad():
        out = model.eval()(io["input"].bfloat16().float())
        fast = optimize_for_inference(model, torch.bfloat16)(io["input"])
    assert fast.dtype == torch.bfloat16 and fast.shape == out.shape and torch.isfinite(fast).all()
