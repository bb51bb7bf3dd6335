"""``uniformer train`` and ``uniformer eval``: a YAML recipe plus dotted ``key=value`` overrides.

Both run the same under ``torchrun`` (``torchrun --nproc-per-node 8 -m uniformer.cli train ...``); only rank 0
prints.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from uniformer.engine import TrainingDiverged, TrainingInterrupted, evaluate, load_config, train
from uniformer.engine.config import resolve_config, shipped_configs, task_of
from uniformer.runtime import cleanup_distributed

# Shorthands `uniformer eval` accepts for its most used keys (``checkpoint=...`` reads better than eval.checkpoint).
_EVAL_ALIASES = {"checkpoint": "eval.checkpoint", "aggregate": "eval.aggregate"}

_OVERRIDES_HELP = (
    "dotted config overrides, e.g. data.root=/data/k400 output_dir=runs/k400 seed=1 trainer.max_epochs=30 "
    "trainer.max_steps=100 trainer.resume=auto model.checkpoint=uniformer_small_in1k.pth"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``eval``."""
    train = subparsers.add_parser(
        "train",
        help="train or fine-tune a model with a YAML recipe (`uniformer configs`) and key=value overrides",
        description="Train with a recipe. The resolved config, checkpoints, metrics.jsonl, TensorBoard logs and "
        "curves.png go to output_dir. Under torchrun, every process runs this same command.",
    )
    train.add_argument(
        "config",
        metavar="CONFIG",
        help="YAML recipe: a file or a shipped name (`uniformer configs`), e.g. video/k400_uniformer_small_16x4",
    )
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=_OVERRIDES_HELP)
    train.add_argument(
        "--dry-run", action="store_true", help="resolve the config, build model and data, print them, and stop"
    )
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "eval",
        help="multi-view test of a checkpoint: top-1/top-5, per-class accuracy, confusion matrix, predictions",
        description="Evaluate checkpoint=PATH (or checkpoint=released) on data.val_list with the model's official "
        "test views. aggregate=sum (default, official) or softmax_mean. Report files go to eval.output_dir "
        "(default <output_dir>/eval).",
    )
    evaluate.add_argument("config", metavar="CONFIG", help="the YAML recipe the model was trained with")
    evaluate.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="checkpoint=PATH aggregate=softmax_mean data.root=... and any dotted override",
    )
    evaluate.set_defaults(func=_eval)

    configs = subparsers.add_parser("configs", help="list the recipes shipped with the package (train/eval CONFIG)")
    configs.set_defaults(func=_configs)

    demo = subparsers.add_parser(
        "demo",
        help="run a task's end-to-end demo (all tasks by default) into demo_out/TASK/",
        description="Each demo makes its data, trains, evaluates and writes demo_out/TASK/report.md and result.json.",
    )
    # no argparse choices: with nargs="*" they would refuse the empty default (every task)
    demo.add_argument(
        "tasks", nargs="*", metavar="TASK", help=f"tasks to run (default: every task: {', '.join(DEMOS)})"
    )
    demo.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    demo.set_defaults(func=_demo)


def _setup_logging() -> bool:
    """Console logging for rank 0 (warnings only elsewhere); returns whether this process prints."""
    main = int(os.environ.get("RANK", "0")) == 0
    logging.basicConfig(level=logging.INFO if main else logging.WARNING, format="%(message)s", stream=sys.stderr)
    return main


def _train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    main = _setup_logging()
    if args.dry_run:
        return _dry_run(cfg)
    try:
        result = train(cfg)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        if main:
            print(str(exc), file=sys.stderr)
        return 128 + exc.signal
    if main:
        print(result.summary)
    return 0


def _dry_run(cfg: object) -> int:
    resolved = resolve_config(cfg)  # type: ignore[arg-type]
    task = task_of(resolved)
    print(OmegaConf.to_yaml(resolved), end="")
    train_set = task.build_dataset(resolved, "train")
    outputs = task.num_outputs(resolved, train_set)
    model = task.build_model(resolved, outputs)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"# model: {resolved.model.name}, {params:.2f}M parameters, {outputs} {task.outputs_noun}")
    print(f"# train: {train_set}")
    if task.has_validation(resolved):
        print(f"# val:   {task.build_dataset(resolved, 'val')}")
    return 0


def _configs(args: argparse.Namespace) -> int:
    for name in shipped_configs():
        print(name)
    return 0


# each task's end-to-end demo, by module (imported when it runs: a demo pulls in its plotting and data stacks)
DEMOS = {
    "classification": "uniformer.tasks.classification.demo",
    "segmentation": "uniformer.tasks.segmentation.demo",
    "pose": "uniformer.tasks.pose.demo",
    "detection": "uniformer.tasks.detection.demo",
}


def run_task_demo(name: str, out_dir: Path) -> dict[str, Any]:
    """Task ``name``'s demo into ``out_dir``; returns ``result.json``'s content (``metric``, ``value``, ``chance``,
    ``seconds``)."""
    outcome = importlib.import_module(DEMOS[name]).run_demo(out_dir)
    return outcome["result"] if name == "classification" else outcome  # classification returns all it measured


def _demo(args: argparse.Namespace) -> int:
    """Each task's demo in turn, then one line per task (``make demo``)."""
    unknown = [name for name in args.tasks if name not in DEMOS]
    if unknown:
        raise ValueError(f"no demo for {', '.join(unknown)}; demos: {', '.join(DEMOS)}")
    results = {name: run_task_demo(name, Path(args.out) / name) for name in args.tasks or DEMOS}
    print()
    for name, r in results.items():
        print(
            f"{name}: {r['metric']} {100 * r['value']:.2f}% (chance {100 * r['chance']:.2f}%) in {r['seconds']:.0f} s; "
            f"report: {Path(args.out) / name / 'report.md'}"
        )
    return 0


def _eval(args: argparse.Namespace) -> int:
    overrides = []
    for item in args.overrides:
        key, sep, value = item.partition("=")
        overrides.append(f"{_EVAL_ALIASES.get(key, key)}{sep}{value}")
    cfg = load_config(args.config, overrides)
    main = _setup_logging()
    try:
        report = evaluate(cfg)
    finally:
        cleanup_distributed()
    if main:
        print(report.summary)
    return 0
