"""The light models (UniFormer-XXS / XS) against lightweight peers on this CPU: images/s and clips/s.

Run from the repository root: ``.venv/bin/python -m benchmarks.light [--repeats 5] [--batch-size 8]``. Random
weights, fp32, the same batch for every model of a table, every variant timed interleaved in one process
(``uniformer.benchmarks.models.measure_table``); the ratio of each peer to ours is the median over the rounds of
their time / our time (``paired_speedup``), which cancels the slow swings of a shared machine.

Each model runs at the input of its published accuracy and on its fast path: ours through
``optimize_for_inference`` (BatchNorms folded, fused attention, channels-last); the peers in eval mode with
channels-last weights and inputs (the layout oneDNN's convolutions prefer), as timm and torchvision ship them.
Images: XXS at 160 px and XS at 224 against timm's ``mobilevit_xs`` (256 px), ``pvt_v2_b1`` and
``efficientnet_b0`` (224 px). Videos: XXS 8x160 and 16x160 against torchvision's ``r2plus1d_18`` (16x112, its
published clip) and ``s3d`` (16x224; its published accuracy uses 128-frame clips). X3D (pytorchvideo) is not
installed here.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import timm
import torch
import torch.nn as nn
from torchvision.models.video import R2Plus1D_18_Weights, S3D_Weights, r2plus1d_18, s3d

from uniformer.benchmarks.models import (
    BenchmarkTable,
    machine_description,
    measure_table,
    no_grad_call,
    paired_speedup,
)
from uniformer.models.complexity import count_gmacs
from uniformer.models.factory import create_model
from uniformer.models.optimize import optimize_for_inference
from uniformer.models.zoo.catalog import model_info

IMAGE_MODELS = ("uniformer_xxs_160", "uniformer_xs_224")
IMAGE_PEERS = {"mobilevit_xs": 256, "pvt_v2_b1": 224, "efficientnet_b0": 224}  # timm name -> input size
VIDEO_MODELS = ("uniformer_xxs_k400_8f_160", "uniformer_xxs_k400_16f_160")
VIDEO_PEERS: dict[str, tuple[Callable[..., nn.Module], tuple[int, int], Any]] = {
    "r2plus1d_18": (r2plus1d_18, (16, 112), R2Plus1D_18_Weights.DEFAULT),
    "s3d": (s3d, (16, 224), S3D_Weights.DEFAULT),
}


def _peer(model: nn.Module, video: bool) -> nn.Module:
    layout = torch.channels_last_3d if video else torch.channels_last
    return model.eval().to(memory_format=layout)


def _table(
    title: str,
    entries: dict[str, tuple[nn.Module, torch.Tensor]],
    ours: tuple[str, ...],
    batch_size: int,
    repeats: int,
    log: Callable[[str], Any],
    cpu_time: bool,
) -> BenchmarkTable:
    if cpu_time:
        torch.set_num_threads(1)
    gmacs = {label: count_gmacs(model, (1, *x.shape[1:])) for label, (model, x) in entries.items()}
    table = measure_table(
        title,
        {label: no_grad_call(model, x) for label, (model, x) in entries.items()},
        batch_size=batch_size,
        gmacs=gmacs,
        repeats=repeats,
        device=torch.device("cpu"),
        log=log,
        clock=time.thread_time if cpu_time else time.perf_counter,
    )
    rows = {row.variant: row for row in table.rows}
    for mine in ours:
        ratios = []
        for label in entries:
            if label not in ours:
                ratio, faster = paired_speedup(rows[mine], rows[label])
                ratios.append(f"{label} {ratio:.2f}x ({faster}/{repeats} rounds faster)")
        table.notes.append(f"{mine} vs peers, median of per-round time ratios (peer / ours): " + "; ".join(ratios))
    return table


def run_images(
    repeats: int = 5, batch_size: int = 8, log: Callable[[str], Any] = print, cpu_time: bool = False
) -> BenchmarkTable:
    """Images/s of XXS-160 and XS-224 against the timm peers, one batch of ``batch_size`` each. ``cpu_time``: one
    thread, timed by its CPU time (``time.thread_time``), for a machine shared with other jobs."""
    entries: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for name in IMAGE_MODELS:
        torch.manual_seed(0)
        size = model_info(name).release().img_size
        entries[f"{name} optimized fp32 ({size} px)"] = (
            optimize_for_inference(create_model(name).eval()),
            torch.randn(batch_size, 3, size, size),
        )
    for name, size in IMAGE_PEERS.items():
        torch.manual_seed(0)
        x = torch.randn(batch_size, 3, size, size).to(memory_format=torch.channels_last)
        entries[f"timm {name} fp32 ({size} px)"] = (_peer(timm.create_model(name), video=False), x)
    ours = tuple(label for label in entries if label.startswith("uniformer"))
    clock = "CPU time of one thread" if cpu_time else "wall time"
    title = f"light image models, batch {batch_size}, cpu, {clock}"
    table = _table(title, entries, ours, batch_size, repeats, log, cpu_time)
    published = [f"{name} {model_info(name).release().metrics['top1']}" for name in IMAGE_MODELS]
    table.notes.append("published ImageNet-1K top-1: " + ", ".join(published))
    table.notes.append(machine_description())
    return table


def run_videos(
    repeats: int = 5, batch_size: int = 1, log: Callable[[str], Any] = print, cpu_time: bool = False
) -> BenchmarkTable:
    """Clips/s of XXS-8x160 and XXS-16x160 against torchvision's light video models, ``batch_size`` clips
    (``cpu_time`` as in :func:`run_images`)."""
    entries: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for name in VIDEO_MODELS:
        torch.manual_seed(0)
        info = model_info(name)
        shape = info.input_shape(batch_size=batch_size)
        entries[f"{name} optimized fp32 ({info.num_frames}x{shape[-1]})"] = (
            optimize_for_inference(create_model(name).eval()),
            torch.randn(shape),
        )
    published = [f"{name} {model_info(name).release().metrics['top1']}" for name in VIDEO_MODELS]
    for name, (builder, (frames, size), weights) in VIDEO_PEERS.items():
        torch.manual_seed(0)
        x = torch.randn(batch_size, 3, frames, size, size).to(memory_format=torch.channels_last_3d)
        entries[f"torchvision {name} fp32 ({frames}x{size})"] = (_peer(builder(), video=True), x)
        published.append(f"{name} {weights.meta['_metrics']['Kinetics-400']['acc@1']}")
    ours = tuple(label for label in entries if label.startswith("uniformer"))
    clock = "CPU time of one thread" if cpu_time else "wall time"
    title = f"light video models, {batch_size} clip(s), cpu, {clock}"
    table = _table(title, entries, ours, batch_size, repeats, log, cpu_time)
    table.notes.append("published Kinetics-400 top-1: " + ", ".join(published))
    table.notes.append(machine_description())
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.light", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds after one warm-up round")
    parser.add_argument("--batch-size", type=int, default=8, help="images per call (videos: one clip per call)")
    parser.add_argument("--cpu-time", action="store_true", help="one thread, timed by its CPU time (shared machine)")
    args = parser.parse_args(argv)
    print(run_images(args.repeats, args.batch_size, cpu_time=args.cpu_time).format())
    print(run_videos(args.repeats, cpu_time=args.cpu_time).format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
