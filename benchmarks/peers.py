"""UniFormer-S 16x224 next to torchvision's video transformers ``mvit_v2_s`` and ``swin3d_t``, on one clip."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torchvision.models.video import MViT_V2_S_Weights, Swin3D_T_Weights, mvit_v2_s, swin3d_t

from benchmarks.memory import peak_rss_mb
from uniformer.benchmarks.models import (
    BenchmarkTable,
    gmacs_per_view,
    input_shape,
    measure_table,
    no_grad_call,
    plain_model,
)
from uniformer.models.optimize import optimize_for_inference
from uniformer.models.zoo.catalog import model_info

__all__ = ["run_peer_benchmark"]


def run_peer_benchmark(
    *,
    name: str = "uniformer_small_k400_16x4",
    repeats: int = 3,
    device: str = "cpu",
    log: Callable[[str], None] = lambda _: None,
) -> BenchmarkTable:
    """UniFormer (plain and optimized) next to torchvision's ``mvit_v2_s`` and ``swin3d_t`` on the same clip.

    Peers run with random weights in eager fp32 as torchvision ships them; published Kinetics-400 top-1 and
    GFLOPs are read from the registry and from torchvision's weight metadata for the notes.
    """
    dev = torch.device(device)
    shape = input_shape(name, 1, None, None)
    x = torch.randn(shape, device=dev)
    plain = plain_model(name).to(dev)
    models: dict[str, nn.Module] = {
        f"{name} plain fp32": plain,
        f"{name} optimized fp32": optimize_for_inference(plain),
        f"{name} optimized bf16": optimize_for_inference(plain, torch.bfloat16),
    }
    gmacs: dict[str, float | None] = dict.fromkeys(models, gmacs_per_view(plain, shape))
    for builder in (mvit_v2_s, swin3d_t):
        torch.manual_seed(0)
        peer = builder().eval().to(dev)
        models[f"torchvision {builder.__name__} fp32"] = peer
        gmacs[f"torchvision {builder.__name__} fp32"] = gmacs_per_view(peer, shape)
    variants = {label: no_grad_call(model, x) for label, model in models.items()}
    table = measure_table(
        f"peers, one 16x224x224 clip, {device}",
        variants,
        batch_size=1,
        gmacs=gmacs,
        repeats=repeats,
        device=dev,
        log=log,
        memory=peak_rss_mb,
    )
    table.memory_label = "peak extra RSS MB"
    published = [f"{name} {model_info(name).release().metrics['top1']} ({model_info(name).release().gflops})"]
    for weights in (MViT_V2_S_Weights.DEFAULT, Swin3D_T_Weights.DEFAULT):
        meta = weights.meta
        published.append(f"{type(weights).__name__} {meta['_metrics']['Kinetics-400']['acc@1']} ({meta['_ops']})")
    table.notes.append("published Kinetics-400 top-1 (GFLOPs per view): " + ", ".join(published))
    return table
