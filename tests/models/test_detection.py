"""The detectors: official mmdet Mask R-CNN and Cascade Mask R-CNN layouts (converted, strict), mmdet semantics of
their parts, torchvision API."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, paste_masks_in_image
from torchvision.ops import generalized_box_iou_loss, roi_align

import uniformer
from uniformer import CheckpointError
from uniformer.models.detection import (
    AlignedMultiScaleRoIAlign,
    CascadeRoIHeads,
    DetectorOptions,
    MMDetAnchorGenerator,
    UniFormerCascadeMaskRCNN,
    UniFormerFPN,
    UniFormerMaskRCNN,
    build_detector,
    build_mask_rcnn,
    detector_options,
    giou_box_loss,
    l1_box_loss,
    paste_mask,
    postprocess_detections,
)

TINY = dict(depth=(1, 1, 2, 1), embed_dim=(16, 32, 48, 64), head_dim=16, attn_mode="hybrid", window_size=7)
NAME = "uniformer_small_h14_mask_rcnn_coco_1x"


def official_neck_and_rpn_layout(widths: tuple[int, ...], width: int = 256) -> dict[str, tuple[int, ...]]:
    """mmdet 2.x key -> shape of the FPN (``width`` channels) and RPNHead (written from mmdet's modules)."""
    layout: dict[str, tuple[int, ...]] = {}
    for i, c in enumerate(widths):
        layout |= {
            f"neck.lateral_convs.{i}.conv.weight": (width, c, 1, 1),
            f"neck.lateral_convs.{i}.conv.bias": (width,),
        }
    for i in range(len(widths)):
        layout |= {f"neck.fpn_convs.{i}.conv.weight": (width, width, 3, 3), f"neck.fpn_convs.{i}.conv.bias": (width,)}
    return layout | {
        "rpn_head.rpn_conv.weight": (width, width, 3, 3),
        "rpn_head.rpn_conv.bias": (width,),
        "rpn_head.rpn_cls.weight": (3, width, 1, 1),
        "rpn_head.rpn_cls.bias": (3,),
        "rpn_head.rpn_reg.weight": (12, width, 1, 1),
        "rpn_head.rpn_reg.bias": (12,),
    }


def official_mask_rcnn_layout(widths: tuple[int, ...], num_classes: int) -> dict[str, tuple[int, ...]]:
    """mmdet 2.x key -> shape of FPN, RPNHead, Shared2FCBBoxHead and FCNMaskHead (written from mmdet's modules,
    not from ours); the backbone's keys are the dense backbone's (tests/models/test_dense.py)."""
    layout = official_neck_and_rpn_layout(widths)
    layout |= {
        "roi_head.bbox_head.fc_cls.weight": (num_classes + 1, 1024),
        "roi_head.bbox_head.fc_cls.bias": (num_classes + 1,),
        "roi_head.bbox_head.fc_reg.weight": (4 * num_classes, 1024),
        "roi_head.bbox_head.fc_reg.bias": (4 * num_classes,),
        "roi_head.bbox_head.shared_fcs.0.weight": (1024, 256 * 7 * 7),
        "roi_head.bbox_head.shared_fcs.0.bias": (1024,),
        "roi_head.bbox_head.shared_fcs.1.weight": (1024, 1024),
        "roi_head.bbox_head.shared_fcs.1.bias": (1024,),
    }
    for i in range(4):
        layout |= {
            f"roi_head.mask_head.convs.{i}.conv.weight": (256, 256, 3, 3),
            f"roi_head.mask_head.convs.{i}.conv.bias": (256,),
        }
    layout |= {
        "roi_head.mask_head.upsample.weight": (256, 256, 2, 2),
        "roi_head.mask_head.upsample.bias": (256,),
        "roi_head.mask_head.conv_logits.weight": (num_classes, 256, 1, 1),
        "roi_head.mask_head.conv_logits.bias": (num_classes,),
    }
    return layout


def official_checkpoint(tmp_path: Path, num_classes: int = 3, drop: str | None = None, extra: str | None = None):
    backbone = uniformer.UniFormer(**TINY, dense=True).state_dict()
    state = {f"backbone.{k}": torch.randn(v.shape) for k, v in backbone.items()}
    state |= {k: torch.randn(shape) for k, shape in official_mask_rcnn_layout(TINY["embed_dim"], num_classes).items()}
    if drop:
        del state[drop]
    if extra:
        state[extra] = torch.zeros(1)
    path = tmp_path / "mask_rcnn.pth"
    torch.save({"meta": {"epoch": 12, "CLASSES": ["a", "b", "c"]}, "state_dict": state}, path)
    return path, state


def test_official_mask_rcnn_checkpoint_converts_and_loads_strictly_with_class_rows_mapped(tmp_path: Path) -> None:
    path, official = official_checkpoint(tmp_path, num_classes=3)
    model = uniformer.create_model(NAME, checkpoint_path=path, **TINY)
    assert isinstance(model, MaskRCNN) and model.num_classes == 3  # the class count comes from the file
    ours = model.state_dict()
    # background: last row in mmdet, first in torchvision; object class i (label i + 1) follows in order
    cls_w, cls_b = ours["roi_heads.box_predictor.cls_score.weight"], ours["roi_heads.box_predictor.cls_score.bias"]
    torch.testing.assert_close(cls_w[0], official["roi_head.bbox_head.fc_cls.weight"][3], rtol=0, atol=0)
    torch.testing.assert_close(cls_b[0], official["roi_head.bbox_head.fc_cls.bias"][3], rtol=0, atol=0)
    reg_w, reg_b = ours["roi_heads.box_predictor.bbox_pred.weight"], ours["roi_heads.box_predictor.bbox_pred.bias"]
    assert not reg_w[:4].any() and not reg_b[:4].any()  # no background deltas in mmdet
    logits = ours["roi_heads.mask_predictor.mask_fcn_logits.weight"]
    assert not logits[0].any()
    for i in range(3):
        torch.testing.assert_close(cls_w[1 + i], official["roi_head.bbox_head.fc_cls.weight"][i], rtol=0, atol=0)
        torch.testing.assert_close(cls_b[1 + i], official["roi_head.bbox_head.fc_cls.bias"][i], rtol=0, atol=0)
        rows = slice(4 * i, 4 * i + 4)
        torch.testing.assert_close(reg_w[4 + 4 * i : 8 + 4 * i], official["roi_head.bbox_head.fc_reg.weight"][rows])
        torch.testing.assert_close(reg_b[4 + 4 * i : 8 + 4 * i], official["roi_head.bbox_head.fc_reg.bias"][rows])
        torch.testing.assert_close(logits[1 + i], official["roi_head.mask_head.conv_logits.weight"][i])
    renamed = {
        "backbone.body.patch_embed1.proj.weight": "backbone.patch_embed1.proj.weight",
        "backbone.fpn.lateral_convs.2.conv.weight": "neck.lateral_convs.2.conv.weight",
        "rpn.head.conv.0.0.weight": "rpn_head.rpn_conv.weight",
        "rpn.head.cls_logits.weight": "rpn_head.rpn_cls.weight",
        "rpn.head.bbox_pred.bias": "rpn_head.rpn_reg.bias",
        "roi_heads.box_head.fc6.weight": "roi_head.bbox_head.shared_fcs.0.weight",
        "roi_heads.box_head.fc7.bias": "roi_head.bbox_head.shared_fcs.1.bias",
        "roi_heads.mask_head.3.0.weight": "roi_head.mask_head.convs.3.conv.weight",
        "roi_heads.mask_predictor.conv5_mask.weight": "roi_head.mask_head.upsample.weight",
    }
    for key, source in renamed.items():
        torch.testing.assert_close(ours[key], official[source], rtol=0, atol=0)


def test_a_missing_or_leftover_key_of_an_official_checkpoint_is_an_error_naming_it(tmp_path: Path) -> None:
    path, _ = official_checkpoint(tmp_path, drop="roi_head.mask_head.upsample.bias")
    with pytest.raises(CheckpointError, match=r"1 missing keys: roi_heads\.mask_predictor\.conv5_mask\.bias"):
        uniformer.create_model(NAME, checkpoint_path=path, **TINY)
    path, _ = official_checkpoint(tmp_path, extra="roi_head.bbox_head.shared_convs.0.conv.weight")
    with pytest.raises(CheckpointError, match=r"1 keys .* no counterpart: roi_head\.bbox_head\.shared_convs"):
        uniformer.create_model(NAME, checkpoint_path=path, **TINY)


def test_backbone_and_fpn_equal_an_independent_computation() -> None:
    torch.manual_seed(0)
    neck = UniFormerFPN(uniformer.UniFormer(**TINY, dense=True)).eval()
    for p in neck.fpn.parameters():  # the FPN initialises biases to zero: make them count
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        ours = neck(x)
        maps = neck.body(x)
        lat = [F.conv2d(m, c.conv.weight, c.conv.bias) for m, c in zip(maps, neck.fpn.lateral_convs)]  # 1x1 laterals
        for i in (3, 2, 1):  # nearest top-down: every pixel repeated 2 x 2 (the sizes halve exactly here)
            lat[i - 1] = lat[i - 1] + lat[i].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        outs = [F.conv2d(t, c.conv.weight, c.conv.bias, padding=1) for t, c in zip(lat, neck.fpn.fpn_convs)]
        outs.append(outs[-1][:, :, ::2, ::2])  # P6: stride-2 subsampling of P5 (max-pool of kernel 1)
    assert list(ours) == ["0", "1", "2", "3", "pool"] and neck.out_channels == 256
    for got, expected, stride in zip(ours.values(), outs, (4, 8, 16, 32, 64)):
        assert got.shape[-2:] == (-(-128 // stride), -(-192 // stride))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_anchors_are_mmdets_unrounded_base_anchors_at_the_level_strides() -> None:
    generator = MMDetAnchorGenerator()
    # stride 4, size 8 x 4 = 32: ratio h/w 0.5 -> w = 32 sqrt(2), h = 32 / sqrt(2); centred on (0, 0)
    half = 16 * 2**0.5
    expected = torch.tensor(
        [[-half, -half / 2, half, half / 2], [-16, -16, 16, 16], [-half / 2, -half, half / 2, half]]
    )
    torch.testing.assert_close(generator.cell_anchors[0], expected)
    # 800 x 1216: P6 is 13 x 19; its cells are 64 pixels apart (torchvision's 800 // 13 would give 61)
    sizes = [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]
    images = ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1216)])
    anchors = generator(images, [torch.zeros(1, 1, h, w) for h, w in sizes])[0]
    assert anchors.shape == (3 * sum(h * w for h, w in sizes), 4)
    p6 = anchors[-3 * 13 * 19 :].reshape(13, 19, 3, 4)
    torch.testing.assert_close(p6[1, 2, 1], torch.tensor([128.0 - 256, 64.0 - 256, 128.0 + 256, 64.0 + 256]))


def test_roi_align_is_aligned_adaptive_and_mapped_to_mmdets_levels() -> None:
    pool = AlignedMultiScaleRoIAlign(["0", "1", "2", "3"], 7)
    maps = {str(i): torch.randn(1, 2, 256 // s, 256 // s) for i, s in enumerate((4, 8, 16, 32))}
    # sqrt(wh) = 112 -> floor(log2(112 / 56)) = level 1 (stride 8); sqrt(wh) = 40 -> level 0; 500 -> level 3
    boxes = torch.tensor([[10.0, 20.0, 122.0, 132.0], [0.0, 0.0, 40.0, 40.0], [0.0, 0.0, 250.0, 1000.0]])
    out = pool(maps, [boxes], [(256, 256)])
    for i, (level, stride) in enumerate(((1, 8), (0, 4), (3, 32))):
        rois = torch.cat([torch.zeros(1, 1), boxes[i : i + 1]], dim=1)
        expected = roi_align(maps[str(level)], rois, (7, 7), 1 / stride, sampling_ratio=0, aligned=True)
        torch.testing.assert_close(out[i : i + 1], expected, rtol=0, atol=0)


def test_box_loss_is_l1_on_the_positives_class_deltas_over_all_sampled_rois() -> None:
    logits = torch.zeros(3, 3)
    regression = torch.arange(36, dtype=torch.float32).reshape(3, 12) / 10
    targets = torch.zeros(3, 4)
    classification, box = l1_box_loss(logits, regression, [torch.tensor([0, 2, 1])], [targets])
    assert classification.item() == pytest.approx(torch.log(torch.tensor(3.0)).item())
    # RoI 1, class 2: columns 8..11 of row 1 (2.0 .. 2.3); RoI 2, class 1: columns 4..7 of row 2 (2.8 .. 3.1)
    assert box.item() == pytest.approx((2.0 + 2.1 + 2.2 + 2.3 + 2.8 + 2.9 + 3.0 + 3.1) / 3)


def _targets(size: tuple[int, int], mask: bool) -> dict[str, torch.Tensor]:
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]]), "labels": torch.tensor([2])}
    if mask:
        target["masks"] = torch.zeros(1, *size, dtype=torch.uint8)
        target["masks"][0, 8:48, 8:40] = 1
    return target


@pytest.mark.parametrize("mask", [True, False])
def test_the_detector_follows_torchvisions_api_in_training_and_eval(mask: bool) -> None:
    torch.manual_seed(0)
    small = dict(rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(100, 100), box_detections_per_img=10)
    model = build_mask_rcnn(2, TINY, mask=mask, min_size=64, max_size=96, **small)
    images = [torch.rand(3, 64, 80), torch.rand(3, 70, 64)]
    losses = model.train()(images, [_targets((64, 80), mask), _targets((70, 64), mask)])
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"} | (
        {"loss_mask"} if mask else set()
    )
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        outputs = model.eval()(images)
    assert len(outputs) == 2
    for out, (h, w) in zip(outputs, [(64, 80), (70, 64)]):
        assert set(out) == {"boxes", "labels", "scores"} | ({"masks"} if mask else set())
        n = len(out["boxes"])
        assert n <= 10 and out["boxes"].shape == (n, 4) and ((out["labels"] >= 1) & (out["labels"] <= 2)).all()
        assert (out["boxes"][:, 2] <= w).all() and (out["boxes"][:, 3] <= h).all() and (out["scores"] >= 0.05).all()
        if mask:
            assert out["masks"].shape == (n, 1, h, w)


def test_zoo_entries_carry_the_published_numbers_and_coco_classes() -> None:
    names = uniformer.list_models(task="detection")
    assert names == [
        "uniformer_small_h14_mask_rcnn_coco_1x",
        "uniformer_small_h14_mask_rcnn_coco_3x",
        "uniformer_base_h14_mask_rcnn_coco_1x",
        "uniformer_base_h14_mask_rcnn_coco_3x",
        "uniformer_small_h14_cascade_mask_rcnn_coco_3x",
        "uniformer_base_h14_cascade_mask_rcnn_coco_3x",
        "uniformer_xxs_mask_rcnn_coco_1x",
        "uniformer_xs_mask_rcnn_coco_1x",
    ]
    info = uniformer.model_info("uniformer_base_h14_cascade_mask_rcnn_coco_3x")
    release = info.release()
    assert (release.metrics, info.params_m, release.gflops) == ({"box_ap": 53.8, "mask_ap": 46.4}, 107, 878)
    assert release.input_hw == (800, 1280) and info.model_args["attn_mode"] == "hybrid"
    assert info.num_classes == 80 and info.labels[0] == "person" and info.labels[-1] == "toothbrush"
    ids = uniformer.labels.load_category_ids("coco")
    assert len(ids) == 80 and ids[:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13] and ids[-1] == 90
    with torch.device("meta"):
        cascade = uniformer.create_model("uniformer_small_h14_cascade_mask_rcnn_coco_3x")
    assert isinstance(cascade, UniFormerCascadeMaskRCNN) and cascade.roi_heads.num_stages == 3
    with pytest.raises(ValueError, match="unknown detector 'htc'; known: mask_rcnn, cascade_mask_rcnn"):
        build_detector("htc", 2, TINY)


def test_convert_writes_the_converted_layout_that_loads_strictly(tmp_path: Path) -> None:
    path, official = official_checkpoint(tmp_path, num_classes=3)
    written = uniformer.convert_checkpoint(path, tmp_path / "mask_rcnn.safetensors")
    assert "roi_heads.box_predictor.cls_score.weight" in written and not any(k.startswith("roi_head.") for k in written)
    model = uniformer.create_model(NAME, checkpoint_path=tmp_path / "mask_rcnn.safetensors", **TINY)
    torch.testing.assert_close(
        model.state_dict()["roi_heads.box_predictor.cls_score.weight"][0],
        official["roi_head.bbox_head.fc_cls.weight"][3],
    )


def test_under_bf16_autocast_boxes_are_decoded_and_returned_in_float32() -> None:
    torch.manual_seed(0)
    small = dict(rpn_post_nms_top_n=(50, 50), box_detections_per_img=5, fpn_channels=16, representation_size=32)
    model = build_mask_rcnn(2, TINY, min_size=64, max_size=64, mask_channels=16, **small).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        (out,) = model([torch.rand(3, 64, 64)])
        features = model.backbone(torch.rand(1, 3, 64, 64))
        logits, deltas = model.rpn.head(list(features.values()))
    assert out["boxes"].dtype == out["scores"].dtype == out["masks"].dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in logits + deltas)


# Cascade Mask R-CNN -------------------------------------------------------------------------------------------

CASCADE = "uniformer_small_h14_cascade_mask_rcnn_coco_3x"
# narrow heads keep the test file small: FPN / conv width 32, box FC 64 (official 256 / 1024)
NARROW = dict(fpn_channels=32, representation_size=64, mask_channels=32)


def official_cascade_layout(widths: tuple[int, ...], num_classes: int, width: int, fc: int) -> dict[str, tuple]:
    """mmdet 2.x key -> shape of the official Cascade Mask R-CNN (written from mmdet's modules, not from ours):
    FPN and RPNHead, then per stage s a ``ConvFCBBoxHead(num_shared_convs=4, num_shared_fcs=1, norm_cfg=SyncBN)``
    (mmcv ``ConvModule``: ``conv`` without bias, ``bn``; ``fc_reg`` class-specific, ``reg_class_agnostic=False``)
    and an ``FCNMaskHead`` (4 ``ConvModule`` with bias, ``upsample``, ``conv_logits``), at FPN width ``width`` and
    FC width ``fc`` (official 256 and 1024)."""
    layout = official_neck_and_rpn_layout(widths, width)
    for s in range(3):
        box, mask = f"roi_head.bbox_head.{s}.", f"roi_head.mask_head.{s}."
        for i in range(4):
            layout[f"{box}shared_convs.{i}.conv.weight"] = (width, width, 3, 3)
            for stat in ("weight", "bias", "running_mean", "running_var"):
                layout[f"{box}shared_convs.{i}.bn.{stat}"] = (width,)
            layout[f"{box}shared_convs.{i}.bn.num_batches_tracked"] = ()
            layout[f"{mask}convs.{i}.conv.weight"] = (width, width, 3, 3)
            layout[f"{mask}convs.{i}.conv.bias"] = (width,)
        layout |= {
            f"{box}shared_fcs.0.weight": (fc, width * 7 * 7),
            f"{box}shared_fcs.0.bias": (fc,),
            f"{box}fc_cls.weight": (num_classes + 1, fc),
            f"{box}fc_cls.bias": (num_classes + 1,),
            f"{box}fc_reg.weight": (4 * num_classes, fc),
            f"{box}fc_reg.bias": (4 * num_classes,),
            f"{mask}upsample.weight": (width, width, 2, 2),
            f"{mask}upsample.bias": (width,),
            f"{mask}conv_logits.weight": (num_classes, width, 1, 1),
            f"{mask}conv_logits.bias": (num_classes,),
        }
    return layout


def official_cascade_checkpoint(tmp_path: Path, drop: str | None = None, extra: str | None = None):
    backbone = uniformer.UniFormer(**TINY, dense=True).state_dict()
    state = {f"backbone.{k}": torch.randn(v.shape) for k, v in backbone.items()}
    layout = official_cascade_layout(TINY["embed_dim"], 3, NARROW["fpn_channels"], NARROW["representation_size"])
    state |= {k: torch.tensor(7) if not shape else torch.randn(shape) for k, shape in layout.items()}
    if drop:
        del state[drop]
    if extra:
        state[extra] = torch.zeros(1)
    path = tmp_path / "cascade_mask_rcnn.pth"
    torch.save({"meta": {"epoch": 36, "CLASSES": ["a", "b", "c"]}, "state_dict": state}, path)
    return path, state


def test_official_cascade_checkpoint_converts_and_loads_strictly_with_class_rows_mapped_per_stage(
    tmp_path: Path,
) -> None:
    path, official = official_cascade_checkpoint(tmp_path)
    model = uniformer.create_model(CASCADE, checkpoint_path=path, **TINY, **NARROW)
    assert isinstance(model, UniFormerCascadeMaskRCNN) and model.num_classes == 3
    ours = model.state_dict()
    for s in range(3):
        box, mask = f"roi_head.bbox_head.{s}.", f"roi_head.mask_head.{s}."
        for p in ("weight", "bias"):
            cls, reg = (
                ours[f"roi_heads.box_predictor.{s}.cls_score.{p}"],
                ours[f"roi_heads.box_predictor.{s}.bbox_pred.{p}"],
            )
            logits = ours[f"roi_heads.mask_predictor.{s}.mask_fcn_logits.{p}"]
            # row by row: background first here, last in mmdet; no background deltas nor mask in mmdet
            assert torch.equal(cls[0], official[f"{box}fc_cls.{p}"][3])
            assert not reg[:4].any() and not logits[0].any()
            for i in range(3):
                assert torch.equal(cls[1 + i], official[f"{box}fc_cls.{p}"][i])
                assert torch.equal(reg[4 + 4 * i : 8 + 4 * i], official[f"{box}fc_reg.{p}"][4 * i : 4 * i + 4])
                assert torch.equal(logits[1 + i], official[f"{mask}conv_logits.{p}"][i])
        renamed = {
            f"roi_heads.box_head.{s}.0.0.weight": f"{box}shared_convs.0.conv.weight",
            f"roi_heads.box_head.{s}.3.1.running_var": f"{box}shared_convs.3.bn.running_var",
            f"roi_heads.box_head.{s}.2.1.num_batches_tracked": f"{box}shared_convs.2.bn.num_batches_tracked",
            f"roi_heads.box_head.{s}.5.weight": f"{box}shared_fcs.0.weight",
            f"roi_heads.mask_head.{s}.3.0.bias": f"{mask}convs.3.conv.bias",
            f"roi_heads.mask_predictor.{s}.conv5_mask.weight": f"{mask}upsample.weight",
        }
        for key, source in renamed.items():
            assert torch.equal(ours[key], official[source].to(ours[key].dtype)), key
    assert torch.equal(ours["rpn.head.bbox_pred.weight"], official["rpn_head.rpn_reg.weight"])
    # `uniformer convert` writes the converted layout, which loads strictly again
    written = uniformer.convert_checkpoint(path, tmp_path / "cascade.safetensors")
    assert not any(k.startswith("roi_head.") for k in written)
    again = uniformer.create_model(CASCADE, checkpoint_path=tmp_path / "cascade.safetensors", **TINY, **NARROW)
    assert all(torch.equal(v, ours[k]) for k, v in again.state_dict().items())


def test_a_missing_or_leftover_key_of_an_official_cascade_checkpoint_is_an_error_naming_it(tmp_path: Path) -> None:
    path, _ = official_cascade_checkpoint(tmp_path, drop="roi_head.bbox_head.2.shared_convs.3.bn.running_mean")
    with pytest.raises(CheckpointError, match=r"1 missing keys: roi_heads\.box_head\.2\.3\.1\.running_mean"):
        uniformer.create_model(CASCADE, checkpoint_path=path, **TINY, **NARROW)
    path, _ = official_cascade_checkpoint(tmp_path, extra="roi_head.bbox_head.1.shared_convs.4.conv.weight")
    with pytest.raises(CheckpointError, match=r"1 keys .* no counterpart: roi_head\.bbox_head\.1\.shared_convs\.4"):
        uniformer.create_model(CASCADE, checkpoint_path=path, **TINY, **NARROW)


class _Ones(nn.Module):
    """A RoI pooler whose every RoI's features are ones: heads that ignore the image, outputs set by their biases."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.output_size = (size, size)

    def forward(self, features: Any, boxes: list[torch.Tensor], shapes: Any) -> torch.Tensor:
        return torch.ones(sum(len(b) for b in boxes), 1, *self.output_size)


def _constant(layer: nn.Module, bias: list[float]) -> nn.Module:
    nn.init.zeros_(layer.weight)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor(bias))
    return layer


def _predictor(logits: list[float], deltas: list[float]) -> FastRCNNPredictor:
    predictor = FastRCNNPredictor(1, 3)  # background, class 1, class 2
    _constant(predictor.cls_score, logits)
    _constant(predictor.bbox_pred, deltas)
    return predictor


def test_cascade_detections_average_the_stage_logits_on_the_last_stages_boxes_and_masks_of_every_stage() -> None:
    log2 = math.log(2.0)
    stage_logits = [[3.0, 0.0, 1.0], [0.0, 2.0, 0.5], [0.0, -1.0, 2.0]]  # (background, class 1, class 2)
    stage_deltas = [  # per class (dx, dy, dw, dh), before the coder's 1/std: stds 0.1/0.2, 0.05/0.1, 0.033/0.067
        [0, 0, 0, 0, 0, 5.0, 0, 0, 1.0, 0, 0, 0],  # stage 0 regresses by class 2: dx 1.0 x 0.1 = +0.1 w
        [0, 0, 0, 0, 0, 0, 10 * log2, 10 * log2, 0, 3.0, 0, 0],  # stage 1 by class 1: w and h doubled
        [0, 0, 0, 0, 0, 0, 0, 0, -0.1 / 0.033, 0, 0, 0],  # last stage: class 1 stays, class 2 moves by -0.1 w
    ]
    mask_bias = [[0.0, 0.0, 1.0], [0.0, 2.0, -1.0], [0.0, -1.0, 0.5]]
    heads = CascadeRoIHeads(
        _Ones(1),
        [nn.Flatten() for _ in range(3)],
        [_predictor(lg, d) for lg, d in zip(stage_logits, stage_deltas)],
        detections_per_img=10,
        mask_roi_pool=_Ones(2),
        mask_heads=[nn.Identity() for _ in range(3)],
        mask_predictors=[_constant(nn.Conv2d(1, 3, 1), b) for b in mask_bias],
    ).eval()
    with torch.no_grad():
        (out,), _ = heads({}, [torch.tensor([[10.0, 10.0, 30.0, 50.0]])], [(64, 64)])
    # stage 0 (background scores highest, the best object class is 2): x + 0.1 x 20 -> (12, 10, 32, 50);
    # stage 1 (class 1): w, h doubled about the centre (22, 30) -> (2, -10, 42, 70), clipped to (2, 0, 42, 64);
    # last stage: class 1 keeps it, class 2 moves by -0.1 x 40 -> (-2, 0, 38, 64), clipped to (0, 0, 38, 64)
    e = [math.exp(v) for v in (1.0, 1 / 3, 7 / 6)]  # the logits averaged over the stages, then the softmax
    assert out["labels"].tolist() == [2, 1]
    torch.testing.assert_close(out["scores"], torch.tensor([e[2], e[1]]) / sum(e))
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.0, 0.0, 38.0, 64.0], [2.0, 0.0, 42.0, 64.0]]))
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = [sum(sigmoid(b[c]) for b in mask_bias) / 3 for c in (2, 1)]  # every stage's mask, averaged
    assert out["masks"].shape == (2, 1, 2, 2)
    torch.testing.assert_close(out["masks"][:, 0, 0, 0], torch.tensor(expected))


def test_giou_box_loss_decodes_the_positives_class_deltas_and_averages_over_all_sampled_rois() -> None:
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    gt = torch.tensor([[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 1.0, 1.0]])
    regression = torch.zeros(2, 12)
    regression[0, 8] = 5.0  # RoI 0, class 2: dx 5 / 10 = 0.5 -> decoded (5, 0, 15, 10)
    regression[0, 4:8] = 9.0  # class 1's deltas: not read
    classification, box = giou_box_loss(torch.zeros(2, 3), regression, proposals, torch.tensor([2, 0]), gt, coder)
    assert classification.item() == pytest.approx(math.log(3.0))
    # (5, 0, 15, 10) vs (5, 5, 15, 15): intersection 50, union 150, enclosing box 150 -> GIoU 1/3; loss 2/3,
    # x 10, over the 2 sampled RoIs (the background one counts in the average, not in the sum)
    assert box.item() == pytest.approx(10 * (2 / 3) / 2, rel=1e-5)
    decoded = torch.tensor([[5.0, 0.0, 15.0, 10.0]])
    assert box.item() == pytest.approx(10 * generalized_box_iou_loss(decoded, gt[:1]).item() / 2, rel=1e-5)


def test_a_cascade_training_step_returns_finite_stage_losses_weighted_1_half_quarter() -> None:
    small = dict(rpn_pre_nms_top_n=(100, 50), rpn_post_nms_top_n=(50, 50), box_batch_size_per_image=32)
    sizes = dict(min_size=64, max_size=96, fpn_channels=16, representation_size=32, mask_channels=16, **small)
    torch.manual_seed(0)
    weighted = build_detector("cascade_mask_rcnn", 2, TINY, **sizes)
    plain = build_detector("cascade_mask_rcnn", 2, TINY, stage_loss_weights=(1.0, 1.0, 1.0), **sizes)
    plain.load_state_dict(weighted.state_dict())
    images = [torch.rand(3, 64, 80), torch.rand(3, 70, 64)]
    empty = dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64), masks=torch.zeros(0, 70, 64))
    targets = [_targets((64, 80), True), empty]  # an image without objects: all its RoIs are background
    losses = []
    for model in (weighted, plain):
        torch.manual_seed(1)  # the same anchor and RoI samples for both
        losses.append(model.train()(images, targets))
    stage_keys = {f"s{s}.loss_{n}" for s in range(3) for n in ("classifier", "box_reg", "mask")}
    assert set(losses[0]) == stage_keys | {"loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses[0].values())
    for key in losses[0]:
        weight = {"s0": 1.0, "s1": 0.5, "s2": 0.25}.get(key[:2], 1.0)
        torch.testing.assert_close(losses[0][key], weight * losses[1][key])
    assert all(losses[1][f"s{s}.loss_classifier"] > 0 for s in range(3))
    sum(losses[0].values()).backward()
    assert all(p.grad is not None for p in weighted.roi_heads.box_head.parameters())
    with torch.no_grad():  # eval: torchvision's outputs, masks pasted into each image
        outputs = weighted.eval()(images)
    for out, (h, w) in zip(outputs, [(64, 80), (70, 64)]):
        n = len(out["boxes"])
        assert set(out) == {"boxes", "labels", "scores", "masks"} and out["masks"].shape == (n, 1, h, w)
        assert ((out["labels"] >= 1) & (out["labels"] <= 2)).all() and (out["scores"] >= 0.05).all()


class _Recording(_Ones):
    """:class:`_Ones` that keeps the boxes of every call (the RoIs each stage pools)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.calls: list[list[torch.Tensor]] = []

    def forward(self, features: Any, boxes: list[torch.Tensor], shapes: Any) -> torch.Tensor:
        self.calls.append([b.clone() for b in boxes])
        return super().forward(features, boxes, shapes)


def test_in_training_each_stage_refines_the_previous_stages_sampled_rois_without_the_ground_truth() -> None:
    pool = _Recording(1)
    # stage 0: classes (background, 1, 2) scored (0, 0, 1); class 1 moves x by 0.1 w, class 2 moves y by 0.1 h
    first = _predictor([0.0, 0.0, 1.0], [0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0, 0, 0])
    heads = CascadeRoIHeads(
        pool,
        [nn.Flatten() for _ in range(3)],
        [first, _predictor([0.0] * 3, [0.0] * 12), _predictor([0.0] * 3, [0.0] * 12)],
    ).train()
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    proposals = torch.tensor([[0.0, 0.0, 20.0, 18.0], [40.0, 40.0, 60.0, 60.0]])  # IoU 0.9 (class 1) and 0
    _, losses = heads({}, [proposals], [(64, 64)], [{"boxes": gt, "labels": torch.tensor([1])}])
    assert len(pool.calls) == 3
    torch.testing.assert_close(pool.calls[0][0], torch.cat([proposals, gt]))  # the ground truth added
    # the positive by its class 1 (x + 2), the background RoI by its best object class 2 (y + 2), the ground-truth
    # box dropped after stage 0 and added again by stage 1
    refined = torch.tensor([[2.0, 0.0, 22.0, 18.0], [40.0, 42.0, 60.0, 62.0]])
    torch.testing.assert_close(pool.calls[1][0], torch.cat([refined, gt]))
    # stage 1 regresses nothing: stage 2 sees the same RoIs
    torch.testing.assert_close(pool.calls[2][0], torch.cat([refined, gt]))
    # stage 2's positives at IoU 0.7: (2, 0, 22, 18) (IoU 324 / 436; enclosing box 440) and the ground truth
    # (GIoU 1); x 10 over the 3 sampled RoIs, x the stage weight 0.25
    giou = 324 / 436 - (440 - 436) / 440
    assert losses["s2.loss_box_reg"].item() == pytest.approx(0.25 * 10 * (1 - giou) / 3, rel=1e-5)


def test_create_model_passes_the_cascade_stage_loss_weights_to_the_detector() -> None:
    cascade = uniformer.create_model(CASCADE, stage_loss_weights=(1.0, 1.0, 0.5), **TINY, **NARROW)
    assert cascade.roi_heads.stage_loss_weights == (1.0, 1.0, 0.5)
    with pytest.raises(TypeError, match="stage_loss_weights"):  # a Mask R-CNN has one stage: refused by name
        uniformer.create_model("uniformer_small_h14_mask_rcnn_coco_1x", stage_loss_weights=(1.0,), **TINY, **NARROW)


def test_a_calls_score_threshold_is_its_own_and_leaves_the_shared_model_as_it_was() -> None:
    torch.manual_seed(0)
    model = build_detector("mask_rcnn", 2, TINY, min_size=(64,), max_size=64, mask=False).eval()
    images = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        plain = model(images)[0]
        strict = model(images, score_thresh=0.99)[0]
        again = model(images)[0]
    assert model.roi_heads.score_thresh == 0.05 and len(plain["scores"]) > 0 and len(strict["scores"]) == 0
    assert torch.equal(again["scores"], plain["scores"]) and torch.equal(again["boxes"], plain["boxes"])


def test_one_pasted_mask_equals_torchvisions_paste_of_the_stack_thresholded() -> None:
    torch.manual_seed(0)
    masks = torch.rand(6, 1, 28, 28)
    boxes = torch.tensor(
        [[3.2, 4.7, 30.1, 20.9], [0, 0, 79, 59], [60.5, 40.2, 79.9, 59.9], [10, 10, 10.4, 10.3], [-5, -3, 12, 9],
         [70, 2, 95, 30]]
    )  # fmt: skip
    pasted = paste_masks_in_image(masks, boxes, (60, 80)) > 0.5
    for mask, box, reference in zip(masks, boxes, pasted, strict=True):
        mine = paste_mask(mask[0], box, (60, 80), 0.5)
        assert mine.dtype == torch.bool and torch.equal(mine, reference[0])


def test_unpasted_masks_are_the_boxes_probabilities_of_the_pasted_ones() -> None:
    torch.manual_seed(0)
    model = build_detector("mask_rcnn", 2, TINY, min_size=(64,), max_size=64, mask_channels=16).eval()
    images = [torch.rand(3, 48, 64)]
    with torch.no_grad():
        pasted = model(images, score_thresh=0.0)[0]
        boxes_only = model(images, score_thresh=0.0, paste_masks=False)[0]
    assert len(pasted["scores"]) > 0 and boxes_only["masks"].shape == (len(pasted["scores"]), 1, 28, 28)
    assert torch.equal(pasted["boxes"], boxes_only["boxes"]) and torch.equal(pasted["scores"], boxes_only["scores"])
    for mask, box, reference in zip(boxes_only["masks"], boxes_only["boxes"], pasted["masks"], strict=True):
        assert torch.equal(paste_mask(mask[0], box, (48, 64), 0.5), reference[0] > 0.5)


def test_postprocessing_is_torchvisions_at_the_heads_own_threshold() -> None:
    torch.manual_seed(0)
    heads = build_detector("mask_rcnn", 2, TINY, min_size=(64,), max_size=64, mask=False).roi_heads
    corners = torch.rand(20, 2) * 40
    proposals = list(torch.cat([corners, corners + 1 + torch.rand(20, 2) * 20], 1).split([12, 8]))
    logits, deltas, shapes = torch.randn(20, 3) * 3, torch.randn(20, 12), [(64, 64), (48, 64)]
    ours = postprocess_detections(heads, logits, deltas, proposals, shapes)
    theirs = RoIHeads.postprocess_detections(heads, logits, deltas, proposals, shapes)
    for mine, reference in zip(ours, theirs, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(mine, reference, strict=True))
    lowered = postprocess_detections(heads, logits, deltas, proposals, shapes, score_thresh=0.0)
    assert sum(map(len, lowered[1])) >= sum(map(len, ours[1])) and heads.score_thresh == 0.05


def test_detector_options_are_one_dataclass_whose_unset_top_n_is_each_detectors_own() -> None:
    assert detector_options({"min_size": [64, 96], "max_size": 96, "group_by_aspect": True}) == {
        "min_size": (64, 96),
        "max_size": 96,
    }
    kept = {
        detector: build_detector(detector, 2, TINY, **NARROW).rpn._post_nms_top_n
        for detector in ("mask_rcnn", "cascade_mask_rcnn")
    }
    assert kept == {
        "mask_rcnn": {"training": 1000, "testing": 1000},
        "cascade_mask_rcnn": {"training": 2000, "testing": 1000},
    }
    chosen = build_detector("cascade_mask_rcnn", 2, TINY, rpn_post_nms_top_n=(300, 200), **NARROW)
    assert chosen.rpn._post_nms_top_n == {"training": 300, "testing": 200}
    with pytest.raises(TypeError, match="frobnicate"):
        build_detector("mask_rcnn", 2, TINY, frobnicate=1)


def test_a_detector_uses_the_parts_it_is_given_and_builds_only_the_missing_ones() -> None:
    options = DetectorOptions(min_size=64, max_size=96, **NARROW)
    donor = build_mask_rcnn(2, TINY, min_size=64, max_size=96, **NARROW)
    backbone = UniFormerFPN(uniformer.UniFormer(**TINY, dense=True), NARROW["fpn_channels"])
    model = UniFormerMaskRCNN(backbone, 2, options, rpn=donor.rpn, transform=donor.transform)
    assert model.rpn is donor.rpn and model.transform is donor.transform and model.backbone is backbone
    assert model.roi_heads is not donor.roi_heads and model.roi_heads.has_mask() and model.num_classes == 2
