"""Model speed (``uniformer benchmark model``): the fast paths against the plain formulation, side by side.

Ratios on a shared or throttled machine are only meaningful when the variants run under the same conditions,
so every benchmark here builds all of its variants first and then times them *interleaved*: one call of each
variant per round, after a warm-up round, and reports the median and the spread (min-max) over the rounds.
The baseline ("plain") is this package's model in the ``"reference"`` formulation (:func:`uniformer.set_formulation`:
attention as the official code spells it, maps in the official contiguous layout); the golden tests prove it
reproduces the official outputs. The experiments behind ``benchmarks/RESULTS.md`` (allocator settings, resident
memory, peers, bf16 agreement) are scripts in the repository's ``benchmarks/`` folder built on these pieces.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from uniformer.models.complexity import count_gmacs
from uniformer.models.factory import create_model
from uniformer.models.optimize import optimize_for_inference, warn_if_cpu_bf16_is_slow
from uniformer.models.uniformer import set_formulation
from uniformer.models.zoo.catalog import model_info

__all__ = [
    "BenchmarkTable",
    "Row",
    "cuda_peak_mb",
    "gmacs_per_view",
    "input_shape",
    "interleaved",
    "machine_description",
    "measure_table",
    "native_precisions",
    "no_grad_call",
    "paired_speedup",
    "plain_model",
    "run_model_benchmark",
    "run_train_benchmark",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def native_precisions(precisions: Sequence[str], what: str) -> tuple[list[str], bool]:
    """The ``precisions`` (names of :data:`DTYPES`) worth timing on this CPU, and whether bf16 was left out: it is
    when the CPU has no native bfloat16 (:func:`~uniformer.models.optimize.warn_if_cpu_bf16_is_slow` warns once
    for ``what``), where its reference kernels would time PyTorch's fallback, not the model. An empty or unknown
    request, or one for bf16 alone on such a CPU, is a ``ValueError``."""
    if not precisions or any(p not in DTYPES for p in precisions):
        raise ValueError(f"precisions must be some of {', '.join(DTYPES)}; got {list(precisions)}")
    slow_bf16 = "bf16" in precisions and warn_if_cpu_bf16_is_slow(what)
    kept = [p for p in precisions if p != "bf16" or not slow_bf16]
    if not kept:
        raise ValueError("only bf16 was asked for, and this CPU has no native bfloat16")
    return kept, slow_bf16


@dataclass
class Row:
    """One variant's numbers. ``ms`` are per call (a batch); per-view figures divide by the batch size."""

    variant: str
    ms: list[float]
    batch_size: int
    gmacs_per_view: float | None
    peak_mb: float | None = None
    tensor_mb: float | None = None

    @property
    def ms_per_view(self) -> float:
        return statistics.median(self.ms) / self.batch_size

    def format(self, baseline: Row | None, step: bool) -> str:
        per_view = self.ms_per_view
        spread = f"{min(self.ms) / self.batch_size:.0f}-{max(self.ms) / self.batch_size:.0f}"
        gmac_s = f"{self.gmacs_per_view * (3 if step else 1) / per_view * 1000:.0f}" if self.gmacs_per_view else "-"
        memory = [self.peak_mb] + ([self.tensor_mb] if step else [])
        peaks = " | ".join(f"{mb:.0f}" if mb is not None else "-" for mb in memory)
        ratio = f"{baseline.ms_per_view / per_view:.2f}x" if baseline is not None else "-"
        clips = 1000 / per_view
        return f"| {self.variant} | {per_view:.1f} | {spread} | {clips:.2f} | {gmac_s} | {peaks} | {ratio} |"


def paired_speedup(ours: Row, peer: Row) -> tuple[float, int]:
    """How much faster ``ours`` ran than ``peer`` round by round: the median over the timed rounds of peer time /
    our time, and in how many of them ours was faster. The two ran back to back in each round
    (:func:`interleaved`), so a round's ratio cancels the slow swings of a shared machine that widen each row's
    own spread."""
    ratios = [theirs / mine for mine, theirs in zip(ours.ms, peer.ms, strict=True)]
    return statistics.median(ratios), sum(ratio > 1 for ratio in ratios)


@dataclass
class BenchmarkTable:
    """A titled set of rows measured interleaved in one run; the first row is the baseline of the ratios."""

    title: str
    rows: list[Row]
    step: bool = False
    notes: list[str] = field(default_factory=list)
    memory_label: str = "peak extra MB"  # what the memory column measured (see measure_table)

    def format(self) -> str:
        unit = "ms/step per clip" if self.step else "ms/view"
        memory = f"{self.memory_label} (step) | peak tensor MB (step)" if self.step else self.memory_label
        gmac = "GMAC/s (fwd+bwd = 3x fwd)" if self.step else "GMAC/s"
        lines = [
            f"### {self.title}",
            "",
            f"| variant | {unit} (median) | spread (min-max) | clips/s | {gmac} | {memory} | vs plain |",
            "|---" * (8 if self.step else 7) + "|",
        ]
        lines += [row.format(self.rows[0] if self.rows else None, self.step) for row in self.rows]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------------
# measurement primitives


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Memory = Callable[[Callable[[], Any], torch.device], "float | None"]  # (call, device) -> MB or None


def cuda_peak_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Memory one call of ``fn`` needs on top of what is allocated before it (MB): the CUDA allocator's peak.
    None on a CPU, where no public API reports a per-call peak (the repository's ``benchmarks/memory.py``
    measures the resident size on Linux)."""
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    variants: dict[str, Callable[[], Any]],
    repeats: int,
    device: torch.device,
    log: Callable[[str], None],
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Milliseconds per call of each variant: one warm-up round, then ``repeats`` rounds, one call each.
    ``clock``: wall time by default; ``time.thread_time`` counts the CPU time of the calling thread, which on a
    machine shared with other jobs measures single-threaded work without the time it waited for a core."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(repeats + 1):
        for name, fn in variants.items():
            _sync(device)
            start = clock()
            fn()
            _sync(device)
            if round_index:
                times[name].append((clock() - start) * 1000)
        log(f"round {round_index}/{repeats} done" if round_index else "warm-up done")
    return times


def measure_table(
    title: str,
    variants: dict[str, Callable[[], Any]],
    *,
    batch_size: int,
    gmacs: dict[str, float | None],
    repeats: int,
    device: torch.device,
    log: Callable[[str], None],
    step: bool = False,
    memory: Memory = cuda_peak_mb,
    tensor_memory: Memory = cuda_peak_mb,
    clock: Callable[[], float] = time.perf_counter,
) -> BenchmarkTable:
    """Times ``variants`` interleaved with ``clock`` (see :func:`interleaved`), then measures each one's peak
    memory with ``memory`` (and, for training steps, ``tensor_memory``) in calls of their own."""
    times = interleaved(variants, repeats, device, log, clock=clock)
    peaks = {name: memory(fn, device) for name, fn in variants.items()}
    tensors = {name: tensor_memory(fn, device) if step else None for name, fn in variants.items()}
    rows = [Row(name, times[name], batch_size, gmacs[name], peaks[name], tensors[name]) for name in variants]
    return BenchmarkTable(title, rows, step=step)


# ------------------------------------------------------------------------------------------------------
# models and inputs


def input_shape(name: str, batch_size: int, img_size: int | None, num_frames: int | None) -> tuple[int, ...]:
    """The zoo entry's input shape for ``batch_size``, with the size and frame count overridden where given."""
    shape = list(model_info(name).input_shape(batch_size=batch_size))
    if img_size is not None:
        shape[-2:] = [img_size, img_size]
    if num_frames is not None:
        if len(shape) != 5:
            raise ValueError(f"{name} is an image model; --num-frames does not apply")
        shape[2] = num_frames
    return tuple(shape)


def plain_model(name: str, seed: int = 0) -> nn.Module:
    """The baseline: zoo model ``name`` with random weights (``seed``) in the official (reference) formulation."""
    torch.manual_seed(seed)
    return set_formulation(create_model(name).eval(), "reference")


def gmacs_per_view(model: nn.Module, shape: tuple[int, ...]) -> float:
    """Multiply-accumulates (G) of one view of ``shape``."""
    return count_gmacs(model, (1, *shape[1:]))


ExtraModels = Callable[[nn.Module, tuple[int, ...]], dict[str, nn.Module]]


def run_model_benchmark(
    name: str,
    *,
    batch_size: int = 1,
    dtypes: tuple[str, ...] = ("fp32", "bf16"),
    compile: bool = False,
    repeats: int = 3,
    img_size: int | None = None,
    num_frames: int | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = lambda _: None,
    extra_models: ExtraModels | None = None,
    memory: Memory = cuda_peak_mb,
) -> BenchmarkTable:
    """Inference: the plain model against :func:`optimize_for_inference` in each of ``dtypes``, interleaved.

    All variants share the random weights of the plain model (seed 0) and one random input batch.
    ``extra_models(plain, input_shape)`` may add variants timed between the plain and the optimized rows (the
    repository's ``benchmarks/`` scripts time each fast path on its own that way); every variant's largest
    logit error against the plain model goes to the table's notes.
    """
    dev = torch.device(device)
    shape = input_shape(name, batch_size, img_size, num_frames)
    plain = plain_model(name).to(dev)
    x = torch.randn(shape, device=dev)
    models: dict[str, nn.Module] = {"plain fp32 (official formulation)": plain}
    if extra_models is not None:
        models.update(extra_models(plain, shape))
    for dtype in dtypes:
        models[f"optimized {dtype}"] = optimize_for_inference(plain, DTYPES[dtype])
        if compile:
            models[f"optimized {dtype} + compile"] = optimize_for_inference(plain, DTYPES[dtype], compile=True)
    gmacs = gmacs_per_view(plain, shape)
    variants = {label: no_grad_call(model, x) for label, model in models.items()}
    title = f"{name} inference, input {tuple(shape)}, {device}"
    table = measure_table(
        title,
        variants,
        batch_size=batch_size,
        gmacs=dict.fromkeys(models, gmacs),
        repeats=repeats,
        device=dev,
        log=log,
        memory=memory,
    )
    with torch.no_grad():
        reference = plain(x).float()
        for label, model in list(models.items())[1:]:
            error = (model(x).float() - reference).abs().max().item() / reference.abs().max().item()
            table.notes.append(f"{label}: max |logit error| / max |logit| = {error:.2e} on this input")
    return table


def no_grad_call(model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """A timed call: ``model(x)`` without autograd."""

    def call() -> Any:
        with torch.no_grad():
            return model(x)

    return call


def run_train_benchmark(
    name: str,
    *,
    batch_size: int = 2,
    repeats: int = 2,
    img_size: int | None = None,
    num_frames: int | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = lambda _: None,
    memory: Memory = cuda_peak_mb,
    tensor_memory: Memory = cuda_peak_mb,
) -> BenchmarkTable:
    """Training step (forward, cross-entropy, backward, AdamW) of the plain model against the fast paths.

    "fast" is the same network with fused attention and channels-last weights and inputs; "fast +
    checkpointing" adds activation checkpointing (``set_grad_checkpointing``), which trades recomputation for
    memory; "fast + bf16 autocast" is what ``trainer.precision=bf16`` runs (fp32 weights and optimizer, the
    forward under ``torch.autocast``). Each variant has its own copy of the weights and its own optimizer.
    """
    dev = torch.device(device)
    shape = input_shape(name, batch_size, img_size, num_frames)
    video = len(shape) == 5
    layout = torch.channels_last_3d if video else torch.channels_last
    x = torch.randn(shape, device=dev)
    fast_x = x.contiguous(memory_format=layout)
    plain = plain_model(name).to(dev).train()
    labels = torch.randint(0, plain.num_classes, (batch_size,), device=dev)
    fast, checkpointed, mixed = (
        set_formulation(plain_model(name), "fast").to(dev, memory_format=layout).train() for _ in range(3)
    )
    checkpointed.set_grad_checkpointing(True)

    def step_fn(model: nn.Module, inputs: torch.Tensor, bf16: bool = False) -> Callable[[], None]:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(inputs)
            F.cross_entropy(logits.float(), labels).backward()
            optimizer.step()

        return step

    variants = {
        "plain fp32 (official formulation)": step_fn(plain, x),
        "fast (SDPA + channels-last)": step_fn(fast, fast_x),
        "fast + activation checkpointing": step_fn(checkpointed, fast_x),
        "fast + bf16 autocast": step_fn(mixed, fast_x, bf16=True),
    }
    gmacs = gmacs_per_view(plain, shape)
    title = f"{name} training step (fwd + bwd + AdamW), input {tuple(shape)}, fp32 weights, {device}"
    return measure_table(
        title,
        variants,
        batch_size=batch_size,
        gmacs=dict.fromkeys(variants, gmacs),
        repeats=repeats,
        device=dev,
        log=log,
        step=True,
        memory=memory,
        tensor_memory=tensor_memory,
    )


def machine_description() -> str:
    """CPU model, cores, torch version and threads: the context every number here needs."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as info:
            present = next(line for line in info if line.startswith("flags")).split()
        flags = ", ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in present)
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"CPU {cpu} ({os.cpu_count()} cores visible{'; ' + flags if flags else ''}), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}, GPU: {gpu}"
    )
