"""The ``uniformer`` command line.

One module per command group (``models``, ``data``, ...), each exposing ``register(subparsers)``. The modules
stay thin: they parse arguments, call the library and print. Library errors about user input (``ValueError``,
``FileNotFoundError``) are printed as one ``error:`` line with exit status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from uniformer import __version__
from uniformer.engine.checkpointing import DiskFull, RunLocked

# Command-group modules under ``uniformer.cli``; each has ``register(subparsers)``.
COMMAND_GROUPS: tuple[str, ...] = ("models", "data", "benchmark", "engine", "predict", "explain", "deploy")


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="uniformer",
        description="UniFormer image and video models: zoo, checkpoints, data, training and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars, for any command (they are also off whenever the output is not a terminal)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_GROUPS:
        importlib.import_module(f"uniformer.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``uniformer`` console script; returns the process exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--no-progress" in argv:  # one switch for every command, accepted anywhere on the line
        argv = ["--no-progress", *(a for a in argv if a != "--no-progress")]
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "task_args"):  # `predict IMAGE --model POSE --boxes FILE`: the task's options
        args.task_args, extra = extra, []
    if extra:  # ``train CONFIG --dry-run key=value``: overrides after an option
        if not hasattr(args, "overrides") or any(item.startswith("-") for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    if args.no_progress:
        os.environ["UNIFORMER_NO_PROGRESS"] = "1"
    try:
        status = args.func(args)
    except (ValueError, FileNotFoundError, PermissionError, RunLocked, DiskFull) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `uniformer models | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return int(status or 0)
