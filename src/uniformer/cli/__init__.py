"""The ``uniformer`` command line.

One module per command group (``models``, ``data``, ...), each exposing ``register(subparsers)``. The modules
stay thin: they parse arguments, call the library and print. Library errors about user input (``ValueError``,
``FileNotFoundError``) are printed as one ``error:`` line with exit status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Command-group modules under ``uniformer.cli``; each has ``register(subparsers)``.
COMMAND_GROUPS: tuple[str, ...] = ("models", "data", "benchmark", "engine", "predict")


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="uniformer",
        description="UniFormer image and video models: zoo, checkpoints, data, training and evaluation.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_GROUPS:
        importlib.import_module(f"uniformer.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``uniformer`` console script; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(status or 0)
