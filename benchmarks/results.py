"""Every measurement behind ``benchmarks/RESULTS.md`` and the targets they meet, as one markdown report.

Run from the repository root: ``.venv/bin/python -m benchmarks.results --write benchmarks/RESULTS.md`` (about
ten minutes on 2 CPU cores). Repeat counts shrink for the slowest case (batch 8 video); the spread column shows
how much each median can be trusted.
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.ablation import NOTE, fast_path_steps
from benchmarks.bf16_agreement import bf16_agreement
from benchmarks.memory import peak_rss_mb, peak_tensor_mb, retain_freed_memory
from benchmarks.peers import run_peer_benchmark
from uniformer._fileio import atomic_write_text
from uniformer.benchmarks.data import run_data_benchmark
from uniformer.benchmarks.models import (
    BenchmarkTable,
    Row,
    machine_description,
    run_model_benchmark,
    run_train_benchmark,
)

VIDEO, IMAGE = "uniformer_small_k400_16x4", "uniformer_small"


def matmul_ceiling(
    dtype: torch.dtype, size: int = 2048, repeats: int = 5, clock: Callable[[], float] = time.perf_counter
) -> float:
    """GMAC/s of one large square matrix product in ``dtype`` (best of ``repeats``): what this CPU can reach.
    ``clock`` as for :func:`uniformer.benchmarks.models.interleaved` (``time.thread_time`` with one thread)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        a @ b
        best = min(best, clock() - start)
    return size**3 / best / 1e9


def _inference(name: str, *, ablation: bool = False, **kwargs: Any) -> BenchmarkTable:
    """An inference table with resident-memory peaks, and the fast paths one by one with ``ablation``."""
    table = run_model_benchmark(name, extra_models=fast_path_steps if ablation else None, memory=peak_rss_mb, **kwargs)
    table.memory_label = "peak extra RSS MB"
    if ablation:
        table.notes.append(NOTE)
    return table


def _row(table: BenchmarkTable, prefix: str) -> Row:
    return next(row for row in table.rows if row.variant.startswith(prefix))


def _ratio(table: BenchmarkTable, prefix: str) -> float:
    return table.rows[0].ms_per_view / _row(table, prefix).ms_per_view


def _target(text: str, value: str, met: bool) -> str:
    return f"| {text} | {value} | {'met' if met else 'NOT met'} |"


def _speedup(text: str, table: BenchmarkTable, prefix: str, goal: float, ceiling: float | None = None) -> str:
    """A ratio target; when missed, says whether the goal is above what the matrix-product ceiling allows."""
    ratio = _ratio(table, prefix)
    value = f"{ratio:.2f}x"
    plain = table.rows[0]
    if ratio < goal and ceiling is not None and plain.gmacs_per_view:
        needed = plain.gmacs_per_view / plain.ms_per_view * 1000 * goal
        if needed > ceiling:
            value += f" (needs {needed:.1f} GMAC/s, above the measured {ceiling:.1f} GMAC/s matrix-product ceiling)"
    return _target(text, value, ratio >= goal)


def run_all(
    *, repeats: int = 3, samples: int = 200, device: str = "cpu", log: Callable[[str], None] = lambda _: None
) -> str:
    """Run every benchmark and return the markdown report (machine, command, tables, targets)."""
    slow = max(1, min(repeats, 2))
    log("video S batch 1, default allocator")
    cold = _inference(VIDEO, batch_size=1, ablation=True, repeats=repeats, device=device, log=log)
    cold.title += ", fresh process, default glibc allocator"
    log("video S batch 8, default allocator")
    cold8 = _inference(VIDEO, batch_size=8, repeats=slow, device=device, log=log)
    cold8.title += ", default glibc allocator"
    warm = retain_freed_memory()
    log("video S batch 1, warm allocator")
    video1 = _inference(VIDEO, batch_size=1, compile=True, ablation=True, repeats=repeats, device=device, log=log)
    if warm:
        video1.title += ", warm allocator (freed memory retained)"
    ceilings = {name: matmul_ceiling(dtype) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    log("video S batch 8, warm allocator")
    video8 = _inference(VIDEO, batch_size=8, repeats=slow, device=device, log=log)
    if warm:
        video8.title += ", warm allocator"
    log("training step")
    train = run_train_benchmark(
        VIDEO, batch_size=2, repeats=repeats, device=device, log=log, memory=peak_rss_mb, tensor_memory=peak_tensor_mb
    )
    train.memory_label = "peak extra RSS MB"
    log("bf16 agreement")
    agreement = bf16_agreement(VIDEO, samples=samples, log=log)
    log("image S")
    image1 = _inference(IMAGE, batch_size=1, repeats=repeats * 3, device=device, log=log)
    image64 = _inference(IMAGE, batch_size=64, repeats=slow, device=device, log=log)
    log("peers")
    peers = run_peer_benchmark(name=VIDEO, repeats=repeats, device=device, log=log)
    log("data loader")
    data = run_data_benchmark(workers=4, batch_size=8, batches=4, long_frames=0, log=log)

    plain_train, fast_train, ckpt_train = train.rows[:3]
    train_ratio = plain_train.ms_per_view / fast_train.ms_per_view
    ckpt_time = ckpt_train.ms_per_view / fast_train.ms_per_view
    memory = [row.peak_mb for row in train.rows[:3]]
    tensors = [row.tensor_mb for row in train.rows[:3]]
    ckpt_memory, ckpt_vs_plain_memory = (
        (memory[2] / memory[1], memory[2] / memory[0]) if None not in memory else (float("nan"), float("nan"))
    )
    ckpt_tensors, ckpt_vs_plain_tensors = (
        (tensors[2] / tensors[1], tensors[2] / tensors[0]) if None not in tensors else (float("nan"), float("nan"))
    )
    ckpt_vs_plain_time = ckpt_train.ms_per_view / plain_train.ms_per_view
    uniformer_ms = _row(peers, f"{VIDEO} optimized fp32").ms_per_view
    peer_ms = [row.ms_per_view for row in peers.rows if row.variant.startswith("torchvision")]
    video_clips = 1000 / _row(video1, "optimized bf16").ms_per_view
    train_clips = 1000 / fast_train.ms_per_view
    targets = [
        "| target | measured | |",
        "|---|---|---|",
        _speedup(
            "video S 16x224 fp32 batch 1 >= 2x plain (fresh process)", cold, "optimized fp32", 2, ceilings["fp32"]
        ),
        _speedup(
            "video S 16x224 fp32 batch 1 >= 2x plain (warm allocator)", video1, "optimized fp32", 2, ceilings["fp32"]
        ),
        _speedup("... with torch.compile (warm allocator)", video1, "optimized fp32 + compile", 2, ceilings["fp32"]),
        _speedup(
            "video S 16x224 fp32 batch 8 >= 1.5x plain (default allocator)",
            cold8,
            "optimized fp32",
            1.5,
            ceilings["fp32"],
        ),
        _speedup(
            "video S 16x224 fp32 batch 8 >= 1.5x plain (warm allocator)",
            video8,
            "optimized fp32",
            1.5,
            ceilings["fp32"],
        ),
        _speedup("video S bf16 >= 4x plain fp32 (fresh process)", cold, "optimized bf16", 4, ceilings["bf16"]),
        _speedup("video S bf16 >= 4x plain fp32 (warm allocator)", video1, "optimized bf16", 4, ceilings["bf16"]),
        _speedup("... with torch.compile (warm allocator)", video1, "optimized bf16 + compile", 4, ceilings["bf16"]),
        *(
            _target(
                f"bf16 top-1 = fp32 on >= 99% of {samples} inputs, {label}",
                f"{entry['top1_agreement']:.1%} ({entry['distinct_fp32_top1']} distinct fp32 top-1 classes), max "
                f"logit error {entry['max_abs_logit_error']:.3g} ({entry['max_rel_logit_error']:.2%} of max |logit|)",
                entry["top1_agreement"] >= 0.99,
            )
            for label, entry in (("model's random head", agreement["model"]), ("centred head", agreement["centred"]))
        ),
        _target("training step >= 1.3x plain", f"{train_ratio:.2f}x", train_ratio >= 1.3),
        _target(
            "training peak memory not higher than plain",
            f"{memory[1]:.0f} vs {memory[0]:.0f} MB" if None not in memory else "not measured",
            None not in memory and memory[1] <= memory[0],
        ),
        _target(
            "checkpointing: tensor memory <= 50% at <= 1.4x time, vs the fast step",
            f"{ckpt_tensors:.0%} of tensor memory at {ckpt_time:.2f}x time",
            ckpt_tensors <= 0.5 and ckpt_time <= 1.4,
        ),
        _target(
            "... resident memory (RSS), vs the fast step",
            f"{ckpt_memory:.0%} of RSS at {ckpt_time:.2f}x time",
            ckpt_memory <= 0.5 and ckpt_time <= 1.4,
        ),
        _target(
            "checkpointing: tensor memory <= 50% at <= 1.4x time, vs the plain step",
            f"{ckpt_vs_plain_tensors:.0%} of tensor memory ({ckpt_vs_plain_memory:.0%} of RSS) at "
            f"{ckpt_vs_plain_time:.2f}x time",
            ckpt_vs_plain_tensors <= 0.5 and ckpt_vs_plain_time <= 1.4,
        ),
        _speedup("image S 224 fp32 batch 1 >= 2x plain", image1, "optimized fp32", 2, ceilings["fp32"]),
        _target(
            "UniFormer-S per view beats mvit_v2_s and swin3d_t",
            f"{uniformer_ms:.0f} ms vs " + ", ".join(f"{ms:.0f}" for ms in peer_ms) + " ms",
            all(uniformer_ms < ms for ms in peer_ms),
        ),
        _target(
            "data loader keeps up with the model",
            f"loader {max(data.clips_per_s.values(), default=float('nan')):.1f} clips/s vs model bf16 inference "
            f"{video_clips:.2f}, training {train_clips:.2f} clips/s",
            max(data.clips_per_s.values(), default=0.0) >= max(video_clips, train_clips),
        ),
    ]
    gpu = (
        "not measured: no GPU on the machine that produced this report (no device was lent to this run)."
        if device == "cpu"
        else f"measured above on {torch.cuda.get_device_name(0)}."
    )
    sections = [
        "# UniFormer benchmarks",
        "",
        f"Generated {datetime.date.today()} by `python -m benchmarks.results --repeats {repeats} --samples {samples}"
        f"{' --device ' + device if device != 'cpu' else ''} --write benchmarks/RESULTS.md`.",
        "",
        f"Machine: {machine_description()}. Measured ceiling of one 2048^3 matrix product: "
        f"{ceilings['fp32']:.0f} GMAC/s fp32, {ceilings['bf16']:.0f} GMAC/s bf16.",
        "",
        "All variants of a table run interleaved in one process (one warm-up round, then one call of each variant "
        "per round); medians with min-max spread. *plain* is this package's model with the official formulation "
        "(`set_formulation(model, 'reference')`: explicit attention, patch-embedding maps copied to contiguous "
        "memory as the official `PatchEmbed` does), which the golden tests tie to the "
        "official outputs. *optimized* is `optimize_for_inference` (BatchNorm folded, SDPA, channels-last, dtype). "
        "Random weights. Peak extra RSS is the process' resident high-water mark during one call minus the resident "
        "size before it (free heap returned first with `malloc_trim`; Linux `/proc/self/clear_refs`). The training "
        "table also gives the peak tensor memory of a step (the running total of the profiler's allocation "
        "events, what a GPU's peak allocated memory reports): glibc keeps blocks freed during a step for reuse, "
        "so the resident peak can be well above what the tensors ever held at once.",
        "",
        "The first two tables run with glibc's default allocator (the first in a fresh process), which unmaps "
        "large freed blocks, so each call of the plain model pays page faults for its big attention temporaries. "
        "From the third table on, freed memory is retained "
        f"(`retain_freed_memory`{'' if warm else ': not available here'}), the best "
        "case for the plain model; a ratio target is only physically reachable there if the baseline's GMAC/s "
        "times the target stays below the matrix-product ceiling.",
        "",
        "## Targets",
        "",
        *targets,
        "",
        "## Tables",
        "",
        cold.format(),
        cold8.format(),
        video1.format(),
        video8.format(),
        train.format(),
        image1.format(),
        image64.format(),
        peers.format(),
        "### bf16 top-1 agreement",
        "",
        f"{samples} fixed random inputs (16x224x224), random weights; fp32 side: optimized fp32. Two heads read "
        "the pooled features of both models (the bf16 side in bf16): the network's own random classifier, and a "
        "*centred* head, random directions over the features standardised with the mean and spread of 32 other "
        "inputs, which decides on what differs between inputs only.",
        "",
        "| head | top-1 agreement | distinct fp32 top-1 classes | max abs logit error | relative to max logit |",
        "|---|---|---|---|---|",
        *(
            f"| {label} | {entry['top1_agreement']:.1%} | {entry['distinct_fp32_top1']} | "
            f"{entry['max_abs_logit_error']:.3g} | {entry['max_rel_logit_error']:.2%} |"
            for label, entry in (("model's random head", agreement["model"]), ("centred", agreement["centred"]))
        ),
        "",
        "A random network maps all inputs to nearly the same features: here their spread between inputs is "
        f"{agreement['feature_spread']:.1%} of their mean magnitude. The model's head therefore picks very few "
        "classes (an easy agreement), while the centred head reads only that small spread and so magnifies bf16 "
        "rounding against it, far more than a trained classifier on trained features would. Between them lies "
        "the case that matters, trained weights on real clips, which this machine cannot measure (no weights "
        "can be downloaded here).",
        "",
        "### Data loader",
        "",
        "```",
        data.format(),
        "```",
        "",
        "## GPU",
        "",
        gpu,
        "",
    ]
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.results", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--samples", type=int, default=200, help="inputs of the bf16 top-1 agreement check")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--write", default=None, help="write the markdown report to this file")
    args = parser.parse_args(argv)
    report = run_all(repeats=args.repeats, samples=args.samples, device=args.device, log=print)
    print(report)
    if args.write:
        atomic_write_text(Path(args.write), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
