"""What every task's demo shares: running ``uniformer ...`` as a user would, and claiming its output folder.

A demo drives the real commands in child processes (tasks do not import the engine), so what it measures is
what a user gets from the command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["prepare_output", "run_cli"]


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
