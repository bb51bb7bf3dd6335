"""Memory experiments on Linux + glibc: the allocator's handling of freed memory, and per-call peaks.

Two peaks are measured per call: the resident size (what the operating system sees, including what glibc keeps
after a free) and the tensor memory (what tensors held at once, what a GPU's peak allocated memory reports).
On CUDA both are the allocator's peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

import torch

from uniformer.benchmarks.models import cuda_peak_mb

__all__ = ["peak_rss_mb", "peak_tensor_mb", "retain_freed_memory"]


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
    pays depends on what ran earlier in the process (RESULTS.md has the figures). With the thresholds pinned
    high, every variant runs against a warm heap (the steady state of a long-running service, or of PyTorch
    with jemalloc/tcmalloc). Returns False where glibc is not available.
    """
    libc = _libc()
    if libc is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def peak_rss_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Memory that one call of ``fn`` needs on top of what is already resident (its peak, in MB).

    CPU (Linux, glibc): free heap memory is first returned to the kernel (``malloc_trim``) so that the resident
    size counts live memory only; then the high-water mark is reset through ``/proc/self/clear_refs`` and read
    back after the call. CUDA: the allocator's peak.
    """
    if device.type == "cuda":
        return cuda_peak_mb(fn, device)
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


def peak_tensor_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak of the tensor memory allocated during one call of ``fn`` above what was allocated before it (MB).

    Where the resident size also counts what the allocator keeps after a free, this counts only memory that
    tensors hold, which is what activation checkpointing controls: glibc keeps the blocks that a checkpointed
    step frees and reallocates while it recomputes, so its resident peak can be several times its tensor peak.
    CPU: the running total over the profiler's allocation events in time order (``experimental_event_tree``, a
    private PyTorch API; None where it is missing). CUDA: the allocator's peak.
    """
    if device.type == "cuda":
        return cuda_peak_mb(fn, device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        roots = prof.profiler.kineto_results.experimental_event_tree()
        allocation = torch._C._profiler._EventType.Allocation
    except AttributeError:
        return None
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
