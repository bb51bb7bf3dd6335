"""``uniformer benchmark onnx --cpu-time``: the clock is pluggable, and CPU time is refused with several threads."""

from __future__ import annotations

import itertools

import pytest
import torch

from uniformer.benchmarks.models import interleaved

pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'uniformer[export]'")


def test_interleaved_times_with_the_given_clock():
    ticks = itertools.count(0.0, 0.25)  # every reading 0.25 s after the last: each call takes 250 ms
    calls = []
    times = interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        2,
        torch.device("cpu"),
        lambda _: None,
        clock=lambda: next(ticks),
    )
    assert times == {"a": [250.0, 250.0], "b": [250.0, 250.0]}
    assert calls == ["a", "b"] * 3  # a warm-up round, then two timed rounds, interleaved


def test_cpu_time_needs_one_thread():
    from uniformer.benchmarks.onnx import run_onnx_benchmark

    before = torch.get_num_threads()
    try:
        with pytest.raises(ValueError, match="--cpu-time measures one thread's work: pass --threads 1"):
            run_onnx_benchmark("uniformer_small", threads=2, cpu_time=True)
    finally:
        torch.set_num_threads(before)
