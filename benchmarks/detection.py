"""UniFormer-S h14 Mask R-CNN against torchvision's ``maskrcnn_resnet50_fpn_v2`` on one 800 x 1216 image.

Run from the repository root: ``.venv/bin/python -m benchmarks.detection [--repeats 3]``. Random weights, one
input, every variant timed interleaved in one process (``uniformer.benchmarks.models.measure_table``). UniFormer
runs as the plain detector (official formulation), through ``optimize_for_inference`` (the backbone's BatchNorms
folded, fused attention, channels-last) in fp32 and under bf16 autocast; the peer runs as torchvision ships it,
in fp32 and under bf16 autocast. Both detectors keep the input's size (800 x 1216 is what the official
800 / 1333 rule gives it) and run the whole test path as a trained detector does: random weights score every
class near 1 / (classes + 1), below the 0.05 threshold, which would skip the mask head, so the classifier's last
layer is set to score one class 0.65 for every RoI (:func:`_full_test_path`): 1000 proposals through the box
head, their boxes through NMS, 100 detections through the mask head (the notes give the count). GMACs are
mmdet's ``get_flops`` count (``UniFormerMaskRCNN.forward_dummy``: backbone, FPN, RPN head, box head on 1000
RoIs, mask head on 100), the same pass for both, counted on ``meta`` copies.
"""

from __future__ import annotations

import argparse
import copy
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

from uniformer.benchmarks.models import BenchmarkTable, machine_description, measure_table, native_precisions
from uniformer.models.complexity import count_gmacs
from uniformer.models.detection import UniFormerMaskRCNN
from uniformer.models.factory import create_model
from uniformer.models.optimize import optimize_for_inference
from uniformer.models.uniformer import UniFormer, set_formulation
from uniformer.models.zoo.catalog import model_info

NAME = "uniformer_small_h14_mask_rcnn_coco_3x"
_LABEL = {"fp32": "fp32", "bf16": "bf16 autocast"}
PEER = "torchvision maskrcnn_resnet50_fpn_v2"


def _full_test_path(model: nn.Module, height: int, width: int, proposals: int) -> nn.Module:
    """Keep ``height x width`` inputs at their size, keep ``proposals`` RPN proposals and a tenth as many
    detections, and make every RoI score class 1 at 0.65 (logit 5 against 0 for the other 80 or 90 rows; the
    regression stays random), in place."""
    model.transform.min_size, model.transform.max_size = (height,), max(height, width)
    model.rpn._post_nms_top_n["testing"] = proposals
    model.roi_heads.detections_per_img = proposals // 10
    classifier = model.roi_heads.box_predictor.cls_score
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.zero_()
        classifier.bias[1] = 5.0
    return model


def _call(
    model: nn.Module, images: list[torch.Tensor], bf16: bool, counts: dict[str, int], key: str
) -> Callable[[], Any]:
    """A timed call; records the number of detections of the image in ``counts[key]``."""

    def call() -> Any:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(images)
        counts[key] = len(out[0]["boxes"])
        return out

    return call


def run(
    repeats: int = 3,
    height: int = 800,
    width: int = 1216,
    precisions: Sequence[str] = ("fp32", "bf16"),
    proposals: int = 1000,
    log: Callable[[str], Any] = print,
) -> BenchmarkTable:
    """The table: ms/image, GMAC/s and the ratio to the plain UniFormer row, for each variant; the notes give
    UniFormer's ratio to the peer and check that the fast path computes the plain detector's features.
    ``precisions``: fp32 and/or bf16 (autocast); ``proposals``: 1000 as both official test configs."""
    precisions, slow_bf16 = native_precisions(precisions, "benchmarks.detection")
    torch.manual_seed(0)
    plain = _full_test_path(set_formulation(create_model(NAME).eval(), "reference"), height, width, proposals)
    fast = optimize_for_inference(plain)
    torch.manual_seed(0)
    peer = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).eval()
    peer = _full_test_path(peer, height, width, proposals)
    images = [torch.rand(3, height, width)]
    variants, counts = {}, {}
    if "fp32" in precisions:
        plain_label = f"{NAME} plain fp32 (official formulation)"
        variants[plain_label] = _call(plain, images, False, counts, plain_label)
        variants[f"{NAME} optimized fp32"] = _call(fast, images, False, counts, f"{NAME} optimized fp32")
    if "bf16" in precisions:
        label = f"{NAME} optimized bf16 autocast"
        variants[label] = _call(fast, images, True, counts, label)
    for precision in precisions:
        label = f"{PEER} {_LABEL[precision]}"
        variants[label] = _call(peer, images, precision == "bf16", counts, label)
    shape = (1, 3, height, width)
    ours = count_gmacs(copy.deepcopy(plain).to("meta"), shape)
    counted = copy.deepcopy(peer).to("meta")
    counted.forward_dummy = types.MethodType(UniFormerMaskRCNN.forward_dummy, counted)  # the same counted pass
    theirs = count_gmacs(counted, shape)
    table = measure_table(
        f"Mask R-CNN inference, one {height}x{width} image, cpu",
        variants,
        batch_size=1,
        gmacs={label: theirs if label.startswith(PEER) else ours for label in variants},
        repeats=repeats,
        device=torch.device("cpu"),
        log=log,
    )
    ms = {row.variant: row.ms_per_view for row in table.rows}
    for precision in precisions:
        label = _LABEL[precision]
        ours = [t for v, t in ms.items() if v.startswith(NAME) and label in v]
        table.notes.append(f"{label}: fastest UniFormer / peer time = {min(ours) / ms[f'{PEER} {label}']:.2f}")
    with torch.no_grad():
        batch = plain.transform(images)[0].tensors
        reference, optimized = plain.backbone(batch), fast.backbone(batch)
        error = max((optimized[k].float() - v).abs().max() / v.abs().max() for k, v in reference.items())
    folded = sum(isinstance(m, nn.BatchNorm2d) for m in plain.backbone.modules()) - sum(
        isinstance(m, nn.BatchNorm2d) for m in fast.backbone.modules()
    )
    found = any(isinstance(m, UniFormer) for m in fast.backbone.modules())
    table.notes.append(
        f"{NAME} optimized fp32: max |FPN feature error| / max |feature| = {error:.2e}; "
        f"backbone found: {found}, {folded} BatchNorms folded"
    )
    if slow_bf16:
        table.notes.append("no bf16 rows: this CPU has no native bfloat16 (reference kernels, not worth timing)")
    table.notes.append("detections per image: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    release = model_info(NAME).release()
    table.notes.append(
        f"published COCO box AP: {NAME} {release.metrics['box_ap']}, {PEER} 47.4 (torchvision's weights)"
    )
    table.notes.append(machine_description())
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--height", type=int, default=800, help="input height")
    parser.add_argument("--width", type=int, default=1216, help="input width")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    args = parser.parse_args(argv)
    print(run(args.repeats, args.height, args.width, args.precisions, log=lambda m: print(m, flush=True)).format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
