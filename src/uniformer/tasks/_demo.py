"""What every task's demo shares: running ``uniformer ...`` as a user would, and claiming its output folder; and
what the dense demos share: their data, training and held-out test steps (:func:`train_and_test`).

A demo drives the real commands in child processes (tasks do not import the engine), so what it measures is
what a user gets from the command line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uniformer._fileio import atomic_write_text
from uniformer.configs import find_config

__all__ = ["DemoRun", "prepare_output", "run_cli", "train_and_test", "write_report"]


def run_cli(step: str, args: list[str], capture: bool = False, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ``uniformer ARGS`` in a child process, its output streamed (or its stdout captured with ``capture``),
    with ``env`` added to its environment; return the seconds taken and the captured stdout. A failing command
    stops the demo with its exit status."""
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    print(f"\n=== {step}\n$ {shown + ' ' if shown else ''}uniformer {' '.join(args)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "uniformer.cli", *args],
        stdout=subprocess.PIPE if capture else None,
        text=True,
        env={**os.environ, **env} if env else None,
    )
    if result.returncode != 0:
        raise SystemExit(f"demo: `uniformer {args[0]}` failed with exit status {result.returncode}")
    return time.perf_counter() - start, result.stdout or ""


def prepare_output(out: Path, marker: str) -> None:
    """Make ``out`` an empty folder for a demo. An earlier demo's output there (recognised by ``report.md`` or
    the file ``marker`` inside it) is replaced; any other non-empty folder is refused, so nothing a user made is
    deleted."""
    if out.exists() and any(out.iterdir()):
        if not (out / "report.md").is_file() and not (out / marker).is_file():
            raise SystemExit(f"demo: {out} exists and is not a demo's output folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class DemoRun:
    """What :func:`train_and_test` leaves for a dense demo's own last step and report: the data and run folders,
    the seconds per step (keyed as the reports name them), the tested checkpoint and its ``metrics.json``."""

    data: Path
    run: Path
    times: dict[str, float]
    final: Path
    metrics: dict[str, Any]


def train_and_test(
    out: Path,
    marker: str,
    make_data: Callable[[Path], object],
    heading: str,
    recipe: str,
    *,
    seed: int,
    overrides: Sequence[str],
    steps: tuple[str, str],
    env: dict[str, str] | None = None,
) -> DemoRun:
    """The steps the dense demos share: claim ``out`` (:func:`prepare_output` with ``marker``), write the data
    into ``out/data`` with ``make_data`` under the step heading ``heading`` (the folder appended), then
    ``uniformer train`` of the shipped recipe ``recipe`` into ``out/run`` and ``uniformer eval`` of its *last*
    checkpoint into ``out/eval`` (not ``best.pt``, which was chosen on the held-out data it would be tested on);
    ``steps`` are the two commands' headings, ``env`` is added to their environment."""
    prepare_output(out, marker)
    data, run = out / "data", out / "run"
    times: dict[str, float] = {}
    tic = time.perf_counter()
    print(f"=== {heading} in {data}", flush=True)
    make_data(data)
    times["make the data"] = time.perf_counter() - tic
    config = str(find_config(recipe))
    common = [f"data.root={data}", f"output_dir={run}", f"seed={seed}", "trainer.progress=false", *overrides]
    times["train (uniformer train)"], _ = run_cli(steps[0], ["train", config, *common], env=env)
    final = max((run / "checkpoints").glob("checkpoint-*.pt"))
    times["test (uniformer eval)"], _ = run_cli(
        steps[1], ["eval", config, *common, f"checkpoint={final}", f"eval.output_dir={out / 'eval'}"], env=env
    )
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    return DemoRun(data, run, times, final, metrics)


def write_report(out: Path, lines: Sequence[str], times: Mapping[str, float], result: Mapping[str, Any]) -> None:
    """``out/report.md`` (``lines``, then the table of each step's seconds) and ``out/result.json`` (``result``)."""
    table = ["| step | seconds |", "|---|---|", *[f"| {step} | {seconds:.0f} |" for step, seconds in times.items()]]
    atomic_write_text(out / "report.md", "\n".join([*lines, *table, ""]))
    atomic_write_text(out / "result.json", json.dumps(result, indent=2) + "\n")
