"""``uniformer benchmark onnx``: onnxruntime against PyTorch eager and :func:`optimize_for_inference`, fp32.

All three run the same random weights (seed 0) on the same input, timed interleaved (one call of each per round,
after a warm-up round; :func:`uniformer.benchmarks.models.interleaved`). onnxruntime runs the file
``uniformer export`` writes (:func:`uniformer.deploy.export.export_program` + ``save_onnx``) on its CPU execution
provider with as many intra-op threads as PyTorch uses, its default graph optimisations (level "all") and its
threads' spin-waiting off (interleaved, a spinning pool would slow the PyTorch call timed after it).
Needs the ``export`` extra.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from uniformer.benchmarks.models import BenchmarkTable, Row, interleaved, machine_description
from uniformer.deploy.export import export_program, save_onnx
from uniformer.deploy.hub import hub_config
from uniformer.models.complexity import count_gmacs
from uniformer.models.factory import create_model
from uniformer.models.optimize import optimize_for_inference
from uniformer.models.zoo.catalog import model_info

__all__ = ["run_onnx_benchmark"]

EAGER, FAST = "PyTorch eager fp32", "optimize_for_inference fp32"
ORT, ORT_BASIC = "onnxruntime fp32 (CPU EP)", "onnxruntime fp32, basic graph optimisations only"


def _session(ort: Any, path: Path, level: Any) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # ORT's pool otherwise busy-waits after each run, taking the cores from the PyTorch call timed next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = level
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx_benchmark(
    name: str,
    *,
    batch_size: int = 1,
    repeats: int = 5,
    img_size: int | None = None,
    num_frames: int | None = None,
    threads: int | None = None,
    cpu_time: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> BenchmarkTable:
    """ms per view of the three runtimes on one (batch_size, 3, [T,] H, W) input of zoo model ``name``.

    ``threads``: intra-op threads of both PyTorch (``torch.set_num_threads``) and onnxruntime (default: PyTorch's
    current count). On a machine shared with other jobs, one thread each keeps the comparison fair: PyTorch's
    OpenMP threads wait for each other at every operator, so a core taken away stalls them all. ``cpu_time``
    (one thread only, where every runtime computes on the calling thread) times CPU time instead of wall time
    (:func:`~uniformer.benchmarks.models.interleaved`), which a loaded machine does not inflate.
    """
    import onnxruntime as ort  # the export extra

    if threads is not None:
        torch.set_num_threads(threads)
    if cpu_time and torch.get_num_threads() != 1:
        raise ValueError("--cpu-time measures one thread's work: pass --threads 1")

    info = model_info(name)
    if info.task not in ("image", "video"):
        raise ValueError(f"{name}: the ONNX benchmark runs classification models")
    torch.manual_seed(0)
    model = create_model(name).eval()
    clip = {"crop_size": img_size or info.release().img_size}
    if info.task == "video":
        clip["num_frames"] = num_frames or info.num_frames
    elif num_frames is not None:
        raise ValueError(f"{name} is an image model; --num-frames does not apply")
    config = hub_config(model, clip=clip)
    shape = (batch_size, *config["pretrained_cfg"]["input_size"])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    fast = optimize_for_inference(model)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"exporting {name} at {tuple(shape[1:])} to ONNX")
        path = save_onnx(export_program(model, config), config, Path(tmp) / "model.onnx")
        levels = {
            ORT: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            ORT_BASIC: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        }
        sessions = {label: _session(ort, path, level) for label, level in levels.items()}
    feed = {"input": x.numpy()}

    def eager_call() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    def fast_call() -> torch.Tensor:
        with torch.no_grad():
            return fast(x)

    def ort_call(label: str) -> Callable[[], torch.Tensor]:
        return lambda: torch.from_numpy(sessions[label].run(["logits"], feed)[0])

    calls = {EAGER: eager_call, FAST: fast_call, ORT: ort_call(ORT), ORT_BASIC: ort_call(ORT_BASIC)}
    times = interleaved(
        calls, repeats, torch.device("cpu"), log, clock=time.thread_time if cpu_time else time.perf_counter
    )
    gmacs = count_gmacs(model, (1, *shape[1:]))
    rows = [Row(label, times[label], batch_size, gmacs) for label in calls]
    clock = "CPU time of the calling thread" if cpu_time else "wall time"
    table = BenchmarkTable(f"{name} fp32 inference, input {tuple(shape)}: onnxruntime vs PyTorch ({clock})", rows)
    reference = eager_call()
    for label in (FAST, ORT, ORT_BASIC):
        error = (calls[label]() - reference).abs().max().item() / reference.abs().max().item()
        table.notes.append(f"{label}: max |logit error| / max |logit| = {error:.2e} vs eager")
    by_label = {row.variant: row.ms_per_view for row in rows}
    table.notes.append(
        f"optimize_for_inference vs onnxruntime: {by_label[ORT] / by_label[FAST]:.2f}x (above 1: ours is faster); "
        f"onnxruntime {ort.__version__} with {torch.get_num_threads()} intra-op threads"
    )
    table.notes.append(
        "basic graph optimisations (onnxruntime's level 1): constant folding, redundant-node removal and the "
        "Conv + Add/Mul/BatchNorm fusions; the default level adds the extended fusions where their patterns "
        "match (GELU, LayerNorm, attention, MatMul + Add) and the blocked NCHWc layout of its convolutions (on "
        "UniFormer-S only the NCHWc convolutions, FusedMatMul and Split apply: benchmarks/RESULTS.md)"
    )
    table.notes.append(machine_description())
    return table
