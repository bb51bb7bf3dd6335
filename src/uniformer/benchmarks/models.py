"""Model speed (``uniformer benchmark model|peers|all``): fast paths against the plain formulation, side by side.

Ratios on a shared or throttled machine are only meaningful when the variants run under the same conditions,
so every benchmark here builds all of its variants first and then times them *interleaved*: one call of each
variant per round, after a warm-up round, and reports the median and the spread (min-max) over the rounds.
The baseline ("plain") is this package's model in the ``"reference"`` formulation (:func:`uniformer.set_formulation`:
attention as the official code spells it, maps in the official contiguous layout); the golden tests prove it
reproduces the official outputs.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from uniformer.models.complexity import count_gmacs
from uniformer.models.optimize import InplaceGELU, PrepareInput, optimize_for_inference
from uniformer.models.registry import create_model, model_info
from uniformer.models.uniformer import Attention, set_formulation

__all__ = [
    "BenchmarkTable",
    "Row",
    "run_model_benchmark",
    "run_train_benchmark",
    "run_peer_benchmark",
    "bf16_agreement",
    "machine_description",
    "matmul_ceiling",
    "retain_freed_memory",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


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


@dataclass
class BenchmarkTable:
    """A titled set of rows measured interleaved in one run; the first row is the baseline of the ratios."""

    title: str
    rows: list[Row]
    step: bool = False
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        unit = "ms/step per clip" if self.step else "ms/view"
        memory = "peak extra RSS MB (step) | peak tensor MB (step)" if self.step else "peak extra RSS MB"
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


def _rss_mb(field_name: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _libc() -> Any:
    """glibc through ctypes, or None (other C libraries, other systems)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the kernel (process-wide, for good).

    By default glibc serves large blocks (above a threshold that adapts to what the process freed before) with
    fresh ``mmap`` pages and unmaps them on free, so a forward pass that allocates big temporaries (the plain
    model's 1568x1568 attention matrices) pays page faults and kernel zeroing on every call, and how much it
    pays depends on what ran earlier in the process: plain UniFormer-S 16x224 measured 790 ms per view in a
    fresh process and 541 ms in the same process after one batch-8 pass. With the thresholds pinned high,
    every variant runs against a warm heap (the steady state of a long-running service, or of PyTorch with
    jemalloc/tcmalloc). Returns False where glibc is not available.
    """
    libc = _libc()
    if libc is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def _peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Memory that one call of ``fn`` needs on top of what is already resident (its peak, in MB).

    CUDA: the allocator's peak. CPU (Linux, glibc): free heap memory is first returned to the kernel
    (``malloc_trim``) so that the resident size counts live memory only; then the high-water mark is reset
    through ``/proc/self/clear_refs`` and read back after the call.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    libc = _libc()
    if libc is None:
        return None
    libc.malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return None
    before = _rss_mb("VmRSS")
    fn()
    peak = _rss_mb("VmHWM")
    return None if before is None or peak is None else peak - before


def _peak_tensor_memory_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak of the tensor memory allocated during one call of ``fn`` above what was allocated before it (MB).

    Where the resident size also counts what the allocator keeps after a free, this counts only memory that
    tensors hold, which is what activation checkpointing controls and what a GPU's peak allocated memory
    reports: glibc keeps the blocks that a checkpointed step frees and reallocates while it recomputes, so its
    resident peak was 2.5-3 times its tensor peak in our measurements (UniFormer-S 16x224, batch 2).
    CUDA: the allocator's peak. CPU: the running total over the profiler's allocation events, in time order
    (``experimental_event_tree``, an experimental PyTorch API; None where it is missing).
    """
    if device.type == "cuda":
        return _peak_memory_mb(fn, device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        roots = prof.profiler.kineto_results.experimental_event_tree()
    except AttributeError:
        return None
    allocation = torch._C._profiler._EventType.Allocation
    events, stack = [], list(roots)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
    live = peak = 0
    for _, size in sorted(events, key=lambda event: event[0]):
        live += size
        peak = max(peak, live)
    return peak / 2**20


def matmul_ceiling(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GMAC/s of one large square matrix product in ``dtype`` (best of ``repeats``): what this CPU can reach."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return size**3 / best / 1e9


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    variants: dict[str, Callable[[], Any]], repeats: int, device: torch.device, log: Callable[[str], None]
) -> dict[str, list[float]]:
    """Milliseconds per call of each variant: one warm-up round, then ``repeats`` rounds, one call each."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(repeats + 1):
        for name, fn in variants.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if round_index:
                times[name].append((time.perf_counter() - start) * 1000)
        log(f"round {round_index}/{repeats} done" if round_index else "warm-up done")
    return times


def _table(
    title: str,
    variants: dict[str, Callable[[], Any]],
    *,
    batch_size: int,
    gmacs: dict[str, float | None],
    repeats: int,
    device: torch.device,
    log: Callable[[str], None],
    step: bool = False,
) -> BenchmarkTable:
    times = interleaved(variants, repeats, device, log)
    peaks = {name: _peak_memory_mb(fn, device) for name, fn in variants.items()}
    tensors = {name: _peak_tensor_memory_mb(fn, device) if step else None for name, fn in variants.items()}
    rows = [Row(name, times[name], batch_size, gmacs[name], peaks[name], tensors[name]) for name in variants]
    return BenchmarkTable(title, rows, step=step)


# ------------------------------------------------------------------------------------------------------
# models and inputs


def _input_shape(name: str, batch_size: int, img_size: int | None, num_frames: int | None) -> tuple[int, ...]:
    shape = list(model_info(name).input_shape(batch_size=batch_size))
    if img_size is not None:
        shape[-2:] = [img_size, img_size]
    if num_frames is not None:
        if len(shape) != 5:
            raise ValueError(f"{name} is an image model; --num-frames does not apply")
        shape[2] = num_frames
    return tuple(shape)


def _plain_model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return set_formulation(create_model(name).eval(), "reference")


def _gmacs_per_view(model: nn.Module, shape: tuple[int, ...]) -> float:
    return count_gmacs(model, (1, *shape[1:]))


def run_model_benchmark(
    name: str,
    *,
    batch_size: int = 1,
    dtypes: tuple[str, ...] = ("fp32", "bf16"),
    compile: bool = False,
    ablation: bool = False,
    repeats: int = 3,
    img_size: int | None = None,
    num_frames: int | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = lambda _: None,
) -> BenchmarkTable:
    """Inference: the plain model against :func:`optimize_for_inference` in each of ``dtypes``, interleaved.

    All variants share the random weights of the plain model (seed 0) and one random input batch. With
    ``ablation`` the fast paths are also timed one at a time (fused attention, channels-last maps, then
    weights and input, BatchNorm folding; the optimized fp32 copy adds the in-place GELU), so the table shows
    what each step buys.
    """
    dev = torch.device(device)
    shape = _input_shape(name, batch_size, img_size, num_frames)
    plain = _plain_model(name).to(dev)
    x = torch.randn(shape, device=dev)
    models: dict[str, nn.Module] = {"plain fp32 (official formulation)": plain}
    if ablation:
        layout = torch.channels_last_3d if len(shape) == 5 else torch.channels_last
        models["+ SDPA"] = _fused_attention_only(copy.deepcopy(plain))
        models["+ SDPA + channels-last maps"] = set_formulation(copy.deepcopy(plain), "fast")
        models["+ channels-last weights and input"] = copy.deepcopy(models["+ SDPA + channels-last maps"])
        models["+ channels-last weights and input"].to(memory_format=layout)
        models["+ channels-last weights and input"].register_forward_pre_hook(PrepareInput(torch.float32, layout))
        models["+ BatchNorm folded"] = _out_of_place_activations(optimize_for_inference(plain))
    for dtype in dtypes:
        models[f"optimized {dtype}"] = optimize_for_inference(plain, DTYPES[dtype])
        if compile:
            models[f"optimized {dtype} + compile"] = optimize_for_inference(plain, DTYPES[dtype], compile=True)
    gmacs = _gmacs_per_view(plain, shape)
    variants = {label: _no_grad_call(model, x) for label, model in models.items()}
    title = f"{name} inference, input {tuple(shape)}, {device}"
    table = _table(
        title, variants, batch_size=batch_size, gmacs=dict.fromkeys(models, gmacs), repeats=repeats, device=dev, log=log
    )
    with torch.no_grad():
        reference = plain(x).float()
        for label, model in list(models.items())[1:]:
            error = (model(x).float() - reference).abs().max().item() / reference.abs().max().item()
            table.notes.append(f"{label}: max |logit error| / max |logit| = {error:.2e} on this input")
    if ablation:
        table.notes.append(
            "plain keeps the official memory layout (patch-embedding maps copied to contiguous memory); "
            "+ channels-last maps drops that copy (this package's default model); "
            "optimized fp32 = all rows above + the MLPs' GELU computed in place (`InplaceGELU`)"
        )
    return table


def _out_of_place_activations(model: nn.Module) -> nn.Module:
    """An optimized copy with its in-place GELUs put back to ordinary ones (to time what they buy)."""
    for module in model.modules():
        if isinstance(getattr(module, "act", None), InplaceGELU):
            module.act = nn.GELU(approximate=module.act.approximate)
    return model


def _fused_attention_only(model: nn.Module) -> nn.Module:
    """The reference formulation with only the attention kernel swapped for SDPA (official layout kept)."""
    for module in model.modules():
        if isinstance(module, Attention):
            module.set_formulation("fast")
    return model


def _no_grad_call(model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
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
) -> BenchmarkTable:
    """Training step (forward, cross-entropy, backward, AdamW) of the plain model against the fast paths.

    "fast" is the same network with fused attention and channels-last weights and inputs; "fast +
    checkpointing" adds activation checkpointing (``set_grad_checkpointing``), which trades recomputation for
    memory; "fast + bf16 autocast" is what ``trainer.precision=bf16`` runs (fp32 weights and optimizer, the
    forward under ``torch.autocast``). Each variant has its own copy of the weights and its own optimizer.
    """
    dev = torch.device(device)
    shape = _input_shape(name, batch_size, img_size, num_frames)
    video = len(shape) == 5
    layout = torch.channels_last_3d if video else torch.channels_last
    x = torch.randn(shape, device=dev)
    fast_x = x.contiguous(memory_format=layout)
    plain = _plain_model(name).to(dev).train()
    labels = torch.randint(0, plain.num_classes, (batch_size,), device=dev)
    fast, checkpointed, mixed = (
        set_formulation(_plain_model(name), "fast").to(dev, memory_format=layout).train() for _ in range(3)
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
    gmacs = _gmacs_per_view(plain, shape)
    title = f"{name} training step (fwd + bwd + AdamW), input {tuple(shape)}, fp32 weights, {device}"
    return _table(
        title,
        variants,
        batch_size=batch_size,
        gmacs=dict.fromkeys(variants, gmacs),
        repeats=repeats,
        device=dev,
        log=log,
        step=True,
    )


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
    from torchvision.models.video import MViT_V2_S_Weights, Swin3D_T_Weights, mvit_v2_s, swin3d_t

    dev = torch.device(device)
    shape = _input_shape(name, 1, None, None)
    x = torch.randn(shape, device=dev)
    plain = _plain_model(name).to(dev)
    models: dict[str, nn.Module] = {
        f"{name} plain fp32": plain,
        f"{name} optimized fp32": optimize_for_inference(plain),
        f"{name} optimized bf16": optimize_for_inference(plain, torch.bfloat16),
    }
    gmacs: dict[str, float | None] = dict.fromkeys(models, _gmacs_per_view(plain, shape))
    for builder in (mvit_v2_s, swin3d_t):
        torch.manual_seed(0)
        peer = builder().eval().to(dev)
        models[f"torchvision {builder.__name__} fp32"] = peer
        gmacs[f"torchvision {builder.__name__} fp32"] = _gmacs_per_view(peer, shape)
    variants = {label: _no_grad_call(model, x) for label, model in models.items()}
    table = _table(
        f"peers, one 16x224x224 clip, {device}",
        variants,
        batch_size=1,
        gmacs=gmacs,
        repeats=repeats,
        device=dev,
        log=log,
    )
    published = [f"{name} {model_info(name).release().top1} ({model_info(name).release().gflops})"]
    for weights in (MViT_V2_S_Weights.DEFAULT, Swin3D_T_Weights.DEFAULT):
        meta = weights.meta
        published.append(f"{type(weights).__name__} {meta['_metrics']['Kinetics-400']['acc@1']} ({meta['_ops']})")
    table.notes.append("published Kinetics-400 top-1 (GFLOPs per view): " + ", ".join(published))
    return table


def bf16_agreement(
    name: str = "uniformer_small_k400_16x4",
    *,
    samples: int = 200,
    batch_size: int = 4,
    calibration: int = 32,
    img_size: int | None = None,
    num_frames: int | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Top-1 agreement and largest logit error of the optimized bf16 model against fp32, with two heads.

    The fp32 side is the optimized fp32 copy (equal to the plain model to float rounding, tested to 1e-4 of
    the largest logit, and faster). Random weights (seed 0) and ``samples`` fixed random inputs (seed 1). Both
    models return their pooled features, and two heads read them (in bf16 on the bf16 side, as the bf16
    model's own head does):

    - ``model``: the network's own randomly initialised classifier. A random network maps every input to
      nearly the same features, so its top-1 falls on very few classes and agreement is easy;
    - ``centred``: random directions over the features standardised with the mean and spread of
      ``calibration`` other inputs (seed 2), so that decisions depend only on what differs between inputs
      and spread over the classes. Since those differences are small in a random network (the
      ``feature_spread`` returned: between-input standard deviation over mean magnitude, a few percent),
      this head amplifies bf16 rounding far more than a trained classifier reading trained features would.
    """
    plain = _plain_model(name)
    head = copy.deepcopy(plain.head)
    plain.reset_classifier(0)
    fp32, fast = optimize_for_inference(plain), optimize_for_inference(plain, torch.bfloat16)

    def inputs(count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(_input_shape(name, count, img_size, num_frames), generator=generator)

    with torch.no_grad():
        generator = torch.Generator().manual_seed(2)
        calib = torch.cat([fp32(inputs(batch_size, generator)) for _ in range(-(-calibration // batch_size))])
        mean, spread = calib.mean(0), calib.std(0)
        directions = torch.randn(head.out_features, calib.shape[1], generator=generator.manual_seed(3))
        weight = directions / calib.shape[1] ** 0.5 / spread
        heads = {"model": (head.weight, head.bias), "centred": (weight, -weight @ mean)}
        stats = {key: {"agree": 0, "abs": 0.0, "rel": 0.0, "winners": set()} for key in heads}
        generator = torch.Generator().manual_seed(1)
        for start in range(0, samples, batch_size):
            x = inputs(min(batch_size, samples - start), generator)
            reference, low = fp32(x), fast(x)
            for key, (w, b) in heads.items():
                ref, out = F.linear(reference, w, b), F.linear(low, w.bfloat16(), b.bfloat16()).float()
                error = (out - ref).abs().amax(1)
                entry = stats[key]
                entry["agree"] += int((ref.argmax(1) == out.argmax(1)).sum())
                entry["winners"].update(ref.argmax(1).tolist())
                entry["abs"] = max(entry["abs"], error.max().item())
                entry["rel"] = max(entry["rel"], (error / ref.abs().amax(1)).max().item())
            log(f"bf16 agreement: {start + x.shape[0]}/{samples}")
    result: dict[str, Any] = {"samples": samples, "feature_spread": (spread.mean() / mean.abs().mean()).item()}
    for key, entry in stats.items():
        result[key] = {
            "top1_agreement": entry["agree"] / samples,
            "max_abs_logit_error": entry["abs"],
            "max_rel_logit_error": entry["rel"],
            "distinct_fp32_top1": len(entry["winners"]),
        }
    return result


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
