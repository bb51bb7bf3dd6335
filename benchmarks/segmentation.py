"""UniFormer-S UperNet against torchvision's DeepLabV3-ResNet50 on one 512 x 512 image.

Run from the repository root: ``.venv/bin/python -m benchmarks.segmentation [--repeats 3]``. Random weights, one
input, every variant timed interleaved in one process (``uniformer.benchmarks.models.measure_table``). UniFormer
runs as the plain model (official formulation) and through ``optimize_for_inference`` (fp32, and bf16 where the CPU
computes it natively); the peer runs
in eager fp32 as torchvision ships it (its ``out`` head only). Published ADE20K mIoU is read from the registry for
UniFormer; the peer has no ADE20K release in torchvision (its weights are COCO-VOC), so none is quoted for it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torchvision.models.segmentation import deeplabv3_resnet50

from uniformer.benchmarks.models import BenchmarkTable, machine_description, measure_table, no_grad_call
from uniformer.models.complexity import count_gmacs
from uniformer.models.factory import create_model
from uniformer.models.optimize import optimize_for_inference, warn_if_cpu_bf16_is_slow
from uniformer.models.uniformer import set_formulation
from uniformer.models.zoo.catalog import model_info

NAME = "uniformer_small_upernet_ade20k"


class _PeerOut(nn.Module):
    """The peer's segmentation logits alone (torchvision returns a dict with ``out``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def run(repeats: int = 3, size: int = 512, log: Callable[[str], Any] = print, cpu_time: bool = False) -> BenchmarkTable:
    """The table: ms/image, GMAC/s and the ratio to the plain UniFormer row, for each variant. ``cpu_time``: one
    thread, timed by its CPU time (``time.thread_time``), for a machine shared with other jobs."""
    if cpu_time:
        torch.set_num_threads(1)
    torch.manual_seed(0)
    plain = set_formulation(create_model(NAME).eval(), "reference")
    torch.manual_seed(0)
    peer = _PeerOut(deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)).eval()
    models = {
        f"{NAME} plain fp32 (official formulation)": plain,
        f"{NAME} optimized fp32": optimize_for_inference(plain),
    }
    slow_bf16 = warn_if_cpu_bf16_is_slow("benchmarks.segmentation")
    if not slow_bf16:
        models[f"{NAME} optimized bf16"] = optimize_for_inference(plain, torch.bfloat16)
    models["torchvision deeplabv3_resnet50 fp32"] = peer
    shape = (1, 3, size, size)
    x = torch.randn(shape)
    ours, theirs = count_gmacs(plain, shape), count_gmacs(peer, shape)
    gmacs = {label: theirs if label.startswith("torchvision") else ours for label in models}
    clock = "CPU time of one thread" if cpu_time else "wall time"
    table = measure_table(
        f"semantic segmentation, one {size}x{size} image, cpu, {clock}",
        {label: no_grad_call(model, x) for label, model in models.items()},
        batch_size=1,
        gmacs=gmacs,
        repeats=repeats,
        device=torch.device("cpu"),
        log=log,
        clock=time.thread_time if cpu_time else time.perf_counter,
    )
    with torch.no_grad():
        reference = plain(x)
        for label in [label for label in models if "optimized" in label]:
            error = (models[label](x).float() - reference).abs().max() / reference.abs().max()
            table.notes.append(f"{label}: max |logit error| / max |logit| = {error:.2e}")
    if slow_bf16:
        table.notes.append("no bf16 row: this CPU has no native bfloat16 (reference kernels, not worth timing)")
    table.notes.append(f"published ADE20K mIoU of {NAME}: {model_info(NAME).release().metrics['miou']}")
    table.notes.append(machine_description())
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.segmentation", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--size", type=int, default=512, help="input height = width")
    parser.add_argument("--cpu-time", action="store_true", help="one thread, timed by its CPU time (shared machine)")
    args = parser.parse_args(argv)
    print(run(args.repeats, args.size, cpu_time=args.cpu_time).format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
