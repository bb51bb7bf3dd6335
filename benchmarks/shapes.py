"""Speed at every classification shape: the model as ``create_model`` returns it and ``optimize_for_inference``
against the official formulation, at video 8x224, video 16x224 and image 224, batch 1, fp32.

Run from the repository root: ``.venv/bin/python -m benchmarks.shapes [--repeats 7] [--threads 1] [--profile]``.
Per shape, the three variants share random weights (seed 0) and one input and run interleaved in one process
(one warm-up round, then one call of each per round; :func:`uniformer.benchmarks.models.interleaved`), timed by the
CPU time of the calling thread with one thread (waiting for a core on a shared machine is not counted). The ratio
is the median of the per-round ratios (:func:`uniformer.benchmarks.models.paired_speedup`). The table also gives
each variant's GMAC/s against the matrix-product ceiling measured in the same run (one 2048^3 product, best of 5),
and what the goal asks of it; the ceiling is timed by the same clock. ``--profile`` adds where the time goes (``torch.profiler``, one call each, self CPU
time by kind of operator).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
import torch.nn as nn

from benchmarks.results import matmul_ceiling
from uniformer.benchmarks.models import Row as TimedRow
from uniformer.benchmarks.models import (
    gmacs_per_view,
    input_shape,
    interleaved,
    machine_description,
    no_grad_call,
    paired_speedup,
    plain_model,
)
from uniformer.models.optimize import optimize_for_inference
from uniformer.models.uniformer import set_formulation

# shape label -> (zoo model, frames, goal for the create_model default, goal for optimize_for_inference)
SHAPES: dict[str, tuple[str, int | None, float | None, float | None]] = {
    "video 8x224": ("uniformer_small_k400_8x8", 8, 1.3, 1.8),
    "video 16x224": ("uniformer_small_k400_16x4", 16, None, None),
    "image 224": ("uniformer_small", None, None, 1.5),
}
PLAIN, DEFAULT, OPTIMIZED = "official formulation", "create_model default", "optimize_for_inference"

# profiler operator name -> kind (the first match by prefix; the rest is "other")
KINDS = (
    ("matrix products", ("aten::addmm", "aten::mm", "aten::bmm", "mkldnn::_linear_pointwise", "aten::linear")),
    ("attention kernel", ("aten::_scaled_dot_product",)),
    ("softmax", ("aten::_softmax",)),
    ("convolutions (oneDNN)", ("aten::mkldnn_convolution",)),
    ("convolutions (native im2col)", ("aten::slow_conv", "aten::_slow_conv")),
    ("copies / layout conversions", ("aten::copy_", "aten::contiguous", "aten::clone")),
    ("GELU", ("aten::gelu",)),
    ("residual adds, scaling", ("aten::add", "aten::mul")),
    ("norms", ("aten::native_layer_norm", "aten::native_batch_norm")),
)


def _kind(name: str) -> str:
    return next((kind for kind, prefixes in KINDS if name.startswith(prefixes)), "other")


def profile_shares(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Self CPU time (ms) of one call of ``model`` by kind of operator (:data:`KINDS`)."""
    with torch.no_grad():
        model(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(x)
    shares: dict[str, float] = {}
    for event in prof.key_averages():
        shares[_kind(event.key)] = shares.get(_kind(event.key), 0.0) + event.self_cpu_time_total / 1000
    return shares


def _variants(name: str, frames: int | None) -> tuple[dict[str, nn.Module], tuple[int, ...]]:
    shape = input_shape(name, 1, None, frames)
    plain = plain_model(name)
    default = set_formulation(copy.deepcopy(plain), "fast")  # what create_model returns, with the same weights
    return {PLAIN: plain, DEFAULT: default, OPTIMIZED: optimize_for_inference(plain)}, shape


def run(repeats: int = 7, profile: bool = False, log: Callable[[str], None] = print) -> str:
    ceiling = matmul_ceiling(torch.float32, clock=time.thread_time)
    lines = [
        f"Machine: {machine_description()}. One 2048^3 fp32 matrix product: {ceiling:.1f} GMAC/s.",
        "",
        "| shape | variant | CPU ms (median) | GMAC/s | vs official (median of per-round ratios) | faster in rounds "
        "| goal |",
        "|---|---|---|---|---|---|---|",
    ]
    profiles: list[str] = []
    for label, (name, frames, default_goal, optimized_goal) in SHAPES.items():
        log(f"{label}: {name}")
        models, shape = _variants(name, frames)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        gmacs = gmacs_per_view(models[PLAIN], shape)
        calls = {variant: no_grad_call(model, x) for variant, model in models.items()}
        times = interleaved(calls, repeats, torch.device("cpu"), log, clock=time.thread_time)
        rows = {variant: TimedRow(variant, ms, 1, gmacs) for variant, ms in times.items()}
        goals = {PLAIN: None, DEFAULT: default_goal, OPTIMIZED: optimized_goal}
        for variant, row in rows.items():
            ratio, wins = paired_speedup(row, rows[PLAIN]) if variant != PLAIN else (1.0, 0)
            goal = goals[variant]
            verdict = "-"
            if goal is not None:
                needed = gmacs / rows[PLAIN].ms_per_view * 1000 * goal
                verdict = f">= {goal}x: {'met' if ratio >= goal else 'NOT met'} (needs {needed:.1f} GMAC/s)"
            rate = gmacs / row.ms_per_view * 1000
            lines.append(
                f"| {label} | {variant} | {row.ms_per_view:.0f} | {rate:.1f} | {ratio:.2f}x | "
                f"{wins}/{len(row.ms)} | {verdict} |"
            )
        if profile:
            shares = {variant: profile_shares(model, x) for variant, model in models.items()}
            kinds = [kind for kind, _ in KINDS] + ["other"]
            profiles += [
                f"#### where the time goes, {label} ({name}), self CPU ms of one call (torch.profiler)",
                "",
                "| kind | " + " | ".join(models) + " |",
                "|---" * (len(models) + 1) + "|",
                *(
                    f"| {kind} | " + " | ".join(f"{shares[variant].get(kind, 0.0):.0f}" for variant in models) + " |"
                    for kind in kinds
                ),
                "| total | " + " | ".join(f"{sum(shares[variant].values()):.0f}" for variant in models) + " |",
                "",
            ]
    return "\n".join([*lines, "", *profiles])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shapes", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds after one warm-up round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU time is exact with one)")
    parser.add_argument("--profile", action="store_true", help="also profile one call of each variant")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(run(args.repeats, args.profile, log=lambda _: None), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
