"""UniFormer-S top-down pose (256 x 192) against SimpleBaseline ResNet-50 on a batch of 32 person crops.

Run from the repository root: ``.venv/bin/python -m benchmarks.pose [--repeats 3] [--threads 1 --cpu-time]``. Random weights, one batch,
every variant timed interleaved in one process (``uniformer.benchmarks.models.measure_table``). UniFormer runs as
the plain model (official formulation) and through ``optimize_for_inference`` (BatchNorms folded, the head's
included; fused attention; channels-last; weights in fp32 or bf16). The peer is SimpleBaseline as mmpose builds
it (``res50_coco_256x192``: the ResNet-50 trunk, here torchvision's, and the same ``TopDownSimpleHead`` on its
2048 channels), in eval mode with the generic part of our fast path: BatchNorms folded (the trunk's by
``torch.fx.experimental.optimization.fuse``, the head's as ours), channels-last, weights in fp32 or bf16. Both
compute plain heatmaps (no flip test). Published COCO val AP and GFLOPs come from the registry for UniFormer;
for the peer from the SimpleBaseline paper as the UniFormer paper's pose table quotes it (AP 70.4, 8.9 GFLOPs).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch.fx.experimental.optimization import fuse
from torchvision.models import resnet50

from uniformer.benchmarks.models import (
    DTYPES,
    BenchmarkTable,
    machine_description,
    measure_table,
    native_precisions,
    no_grad_call,
    paired_speedup,
)
from uniformer.models.complexity import count_gmacs
from uniformer.models.factory import create_model
from uniformer.models.heads.topdown import TopDownSimpleHead
from uniformer.models.optimize import PrepareInput, optimize_for_inference
from uniformer.models.uniformer import set_formulation
from uniformer.models.zoo.catalog import model_info

NAME = "uniformer_small_topdown_coco_256x192"
PEER = "SimpleBaseline ResNet-50"
PEER_PUBLISHED = "COCO val AP 70.4 at 8.9 GFLOPs (Xiao et al. 2018, as the UniFormer paper quotes it)"


def simple_baseline_resnet50(num_keypoints: int = 17) -> nn.Module:
    """SimpleBaseline ResNet-50: torchvision's trunk (stride 32, 2048 channels, no pooling or classifier) and the
    SimpleBaseline head this package's pose models use, randomly initialised."""
    trunk = resnet50(weights=None)
    return nn.Sequential(nn.Sequential(*list(trunk.children())[:-2]), TopDownSimpleHead(2048, num_keypoints))


def optimize_peer(model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The generic part of ``optimize_for_inference`` applied to the peer, on a copy: eval mode, BatchNorms
    folded, channels-last weights in ``dtype``, inputs cast to that dtype and layout."""
    trunk, head = copy.deepcopy(model).eval()
    head.reparameterize()
    fast = nn.Sequential(fuse(trunk), head).to(dtype=dtype, memory_format=torch.channels_last)
    fast.register_forward_pre_hook(PrepareInput(dtype, torch.channels_last))
    return fast.requires_grad_(False)


def _relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return float((output.float() - reference).abs().max() / reference.abs().max())


def run(
    repeats: int = 3,
    batch_size: int = 32,
    size: tuple[int, int] = (256, 192),
    precisions: Sequence[str] = ("fp32", "bf16"),
    log: Callable[[str], Any] = print,
    cpu_time: bool = False,
) -> BenchmarkTable:
    """The table (ms/crop, crops/s as "clips/s", GMAC/s, ratio to the plain UniFormer row) and notes with the
    UniFormer-to-peer ratios per precision and the fast paths' largest heatmap error against eager fp32.
    ``cpu_time`` (one thread only) times the CPU time of the calling thread, which waiting for a core on a shared
    machine does not inflate."""
    if cpu_time and torch.get_num_threads() != 1:
        raise ValueError("--cpu-time measures one thread's work: pass --threads 1")
    precisions, slow_bf16 = native_precisions(precisions, "benchmarks.pose")
    torch.manual_seed(0)
    plain = set_formulation(create_model(NAME).eval(), "reference")
    torch.manual_seed(0)
    peer = simple_baseline_resnet50().eval()
    ours_label, peer_label = f"{NAME} optimized", f"{PEER} (folded, channels-last)"
    models = {f"{NAME} plain fp32 (official formulation)": plain}
    for precision in precisions:
        models[f"{ours_label} {precision}"] = optimize_for_inference(plain, DTYPES[precision])
        models[f"{peer_label} {precision}"] = optimize_peer(peer, DTYPES[precision])
    shape = (batch_size, 3, *size)
    x = torch.randn(shape)
    ours, theirs = count_gmacs(plain, (1, 3, *size)), count_gmacs(peer, (1, 3, *size))
    gmacs = {label: theirs if label.startswith(PEER) else ours for label in models}
    table = measure_table(
        f"top-down pose, a batch of {batch_size} {size[0]}x{size[1]} crops, cpu",
        {label: no_grad_call(model, x) for label, model in models.items()},
        batch_size=batch_size,
        gmacs=gmacs,
        repeats=repeats,
        device=torch.device("cpu"),
        log=log,
        clock=time.thread_time if cpu_time else time.perf_counter,
    )
    rows = {row.variant: row for row in table.rows}
    for precision in precisions:
        mine, other = rows[f"{ours_label} {precision}"], rows[f"{peer_label} {precision}"]
        paired, wins = paired_speedup(mine, other)
        table.notes.append(
            f"{precision}: UniFormer-S {1000 / mine.ms_per_view:.1f} crops/s, {PEER} {1000 / other.ms_per_view:.1f} "
            f"crops/s: UniFormer-S / peer speed = {other.ms_per_view / mine.ms_per_view:.2f}x (medians); "
            f"round by round {paired:.2f}x, UniFormer-S faster in {wins} of {len(mine.ms)} rounds"
        )
    with torch.no_grad():
        references = {"ours": plain(x), "peer": peer(x)}
        for label in list(models)[1:]:
            error = _relative_error(models[label](x), references["peer" if label.startswith(PEER) else "ours"])
            table.notes.append(f"{label}: max |heatmap error| / max |heatmap| of eager fp32 = {error:.2e}")
    if slow_bf16:
        table.notes.append("no bf16 rows: this CPU has no native bfloat16 (reference kernels, not worth timing)")
    published = model_info(NAME).release()
    table.notes.append(
        f"published: {NAME} COCO val AP {published.metrics['ap']} at {published.gflops} GFLOPs; {PEER} "
        f"{PEER_PUBLISHED}; measured GMACs per crop: {ours:.2f} vs {theirs:.2f}"
    )
    table.notes.append(machine_description())
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pose", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--batch-size", type=int, default=32, help="person crops per call")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"), help="crop size")
    parser.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's)")
    parser.add_argument("--cpu-time", action="store_true", help="time the CPU time of one thread (--threads 1)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    table = run(args.repeats, args.batch_size, tuple(args.size), args.precisions, cpu_time=args.cpu_time)
    print(table.format(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
