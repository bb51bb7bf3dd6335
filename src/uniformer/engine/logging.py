"""What a run tells the user: ``metrics.jsonl``, TensorBoard scalars, PNG curves, progress bars, a summary line.

Only rank 0 writes (:class:`RunLogger` is inert elsewhere). ``metrics.jsonl`` has one JSON object per line with a
``kind``: ``"step"`` (every ``trainer.log_every_steps`` optimizer steps: mean loss of the window, lr, gradient
norm, clips/s), ``"epoch"`` (train loss, validation top-1/top-5, time), ``"nan_skip"`` (a step skipped for a
non-finite loss or gradient), ``"summary"`` (end of run). On resume, records after the checkpoint's step are
dropped first, so the file reads as if the run had never stopped.
"""

from __future__ import annotations

import json
import math
import os
import resource
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from uniformer._fileio import atomic_write, atomic_write_text
from uniformer._progress import progress_bar, progress_enabled

__all__ = ["RunLogger", "format_bytes", "format_duration", "peak_memory", "progress_bar", "progress_enabled"]


class RunLogger:
    """Appends records to ``metrics.jsonl`` and TensorBoard and redraws ``curves.png`` (rank 0 only)."""

    def __init__(self, output_dir: str | os.PathLike[str], *, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self.curves_path = Path(output_dir) / "curves.png"
        self.records: list[dict[str, Any]] = []
        self._writer: Any = None
        if not enabled:
            return
        if self.path.is_file():
            self.records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imports TensorBoard: only for runs that log to it

            self._writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Forget records of steps after ``step`` (they belong to work lost when the run stopped)."""
        if not self.enabled:
            return
        kept = [r for r in self.records if r.get("step", 0) <= step and r.get("kind") != "summary"]
        if len(kept) != len(self.records):
            self.records = kept
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def log(self, kind: str, **values: Any) -> None:
        """Record ``values`` (JSON-serialisable; floats rounded to 6 significant digits) under ``kind``."""
        if not self.enabled:
            return
        record = {"kind": kind, **{k: _round(v) for k, v in values.items()}}
        self.records.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None and "step" in record:
            for key, value in record.items():
                if key not in ("kind", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{kind}/{key}", value, record["step"])
            self._writer.flush()

    def plot(self) -> None:
        """Redraw ``curves.png``: training loss, validation accuracy and learning rate against steps."""
        if not self.enabled:
            return
        steps = [r for r in self.records if r["kind"] == "step"]
        epochs = [r for r in self.records if r["kind"] == "epoch"]
        figure = Figure(figsize=(15, 4), layout="constrained")
        loss_ax, acc_ax, lr_ax = figure.subplots(1, 3)
        loss_ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, alpha=0.6, label="train (window)")
        loss_ax.plot([r["step"] for r in epochs], [r["train_loss"] for r in epochs], "o-", label="train (epoch)")
        loss_ax.set(title="loss", xlabel="step")
        keys = sorted({k for r in epochs for k, v in r.items() if k.startswith("val_") and isinstance(v, float)})
        for key in keys:
            points = [(r["epoch"] + 1, r[key]) for r in epochs if r.get(key) is not None]
            if points:
                acc_ax.plot(*zip(*points, strict=True), "o-", label=key.removeprefix("val_").replace("_", " "))
        acc_ax.set(title="validation", xlabel="epoch")
        lr_ax.plot([r["step"] for r in steps], [r["lr"] for r in steps])
        lr_ax.set(title="learning rate", xlabel="step")
        for ax in (loss_ax, acc_ax):
            if ax.has_data():
                ax.legend()
        for ax in (loss_ax, acc_ax, lr_ax):
            ax.grid(alpha=0.3)
        atomic_write(self.curves_path, lambda tmp: FigureCanvasAgg(figure).print_png(tmp))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _round(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.6g}")
    if isinstance(value, float):
        return str(value)  # nan / inf are not JSON
    return value


def peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak memory in bytes and what it measures: allocated GPU memory, or the process's resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "GPU memory"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "RSS"


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def format_bytes(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"
