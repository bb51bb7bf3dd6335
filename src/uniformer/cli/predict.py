"""``uniformer predict PATH...`` and ``uniformer features PATH... --output FILE``."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uniformer.cli.video import add_video_arguments, predict_videos
from uniformer.data import read_classes
from uniformer.engine.predict import Predictor
from uniformer.tasks import PredictTask, task_for_model
from uniformer.tasks.classification.predict import check_features_path, save_features


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs, the model and its weights, precision and batching: what predict, features and explain take."""
    parser.add_argument("inputs", nargs="+", metavar="PATH", help="videos, folders of frames or images; or @LIST")
    parser.add_argument("--model", required=True, help="zoo name (`uniformer models`)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", default=None, help="weights file (.pth, .safetensors, uniformer train .pt)")
    weights.add_argument("--pretrained", action="store_true", help="fetch the released weights from the Hub")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--batch-size", type=int, default=8, help="views per forward pass")
    parser.add_argument("--workers", type=int, default=0, help="decoding worker processes")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        allow_abbrev=False,  # a task's option (pose's --out) must reach the task, not match --out-dir by prefix
        help="classify videos, frame folders or images with the model's official test views",
        description="Runs every test view of the zoo model (clips x crops, its sampling) and prints the top "
        "classes with probabilities (softmax of the mean view logits). Options this command does not know go "
        "to the model's task: pose models take --boxes FILE (person boxes per image) or --detector NAME "
        "[--detector-checkpoint FILE] [--person-score-threshold T] (a detection model finds the people; default: "
        "the whole image is one person) and --out DIR (skeleton drawings and keypoints JSON); detection models "
        "take --score-threshold T (keep detections scoring above T, default 0.3). A video given to a detection, "
        "segmentation or pose model becomes an annotated video and a JSON line per frame in --out-dir; a video "
        "classifier labels a long video window by window with --timeline.",
    )
    add_model_arguments(p)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--labels", default=None, help="class-name file (one per line) overriding the model's")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout, for scripts")
    p.add_argument(
        "--out-dir",
        default=None,
        help="segmentation: each label map and colour overlay; detection: each picture and detections JSON; "
        "videos: the annotated video and frame lines, or the timeline (default: the current folder)",
    )
    add_video_arguments(p)
    p.set_defaults(func=_predict, task_args=[])

    p = subparsers.add_parser(
        "features",
        help="write UniFormer features of videos/images to .safetensors or .npy",
        description="Pooled pre-logit features averaged over the official test views, or with --stage-maps the "
        "four stage maps (strides 4, 8, 16, 32) of the centre view.",
    )
    add_model_arguments(p)
    p.add_argument("--output", required=True, help="FILE.safetensors or FILE.npy (pooled features only)")
    p.add_argument("--stage-maps", action="store_true")
    p.set_defaults(func=_features)


def expand_inputs(items: list[str]) -> list[str]:
    """Expand ``@LIST`` arguments (a file with one path per line) in place."""
    paths: list[str] = []
    for item in items:
        if item.startswith("@"):
            with open(item[1:], encoding="utf-8") as f:
                paths += [line.strip() for line in f if line.strip()]
        else:
            paths.append(item)
    return paths


def parse_task_options(task: PredictTask, words: Sequence[str]) -> dict[str, Any]:
    """The values of the words of a ``uniformer predict`` command line that belong to the model's task, parsed
    against the options it declares (:attr:`~uniformer.tasks.PredictTask.options`), by their ``dest``; only those
    given. A malformed value or a word the task does not take is a ``ValueError`` naming the task."""
    parser = argparse.ArgumentParser(
        prog=f"uniformer predict ({task.name} options)", add_help=False, exit_on_error=False, allow_abbrev=False
    )
    for option in task.options:
        parser.add_argument(option.flag, type=option.type, metavar=option.metavar, help=option.help)
    try:
        parsed, unknown = parser.parse_known_args(list(words))
    except argparse.ArgumentError as exc:
        raise ValueError(f"{task.name} options: {exc}") from None
    if unknown:
        takes = ", ".join(f"{o.flag} {o.metavar}" for o in task.options) or "no options"
        raise ValueError(f"unknown option(s) for {task.name} models: {' '.join(unknown)} ({task.name} takes {takes})")
    return {o.dest: getattr(parsed, o.dest) for o in task.options if getattr(parsed, o.dest) is not None}


def build_predictor(args: argparse.Namespace, labels: list[str] | None = None) -> Predictor:
    """The engine's predictor of the model, weights, precision and task options the command line names."""
    return Predictor(
        args.model,
        args.checkpoint,
        pretrained=args.pretrained,
        labels=labels,
        precision=args.precision,
        batch_size=args.batch_size,
        num_workers=args.workers,
        task_options=parse_task_options(task_for_model(args.model), getattr(args, "task_args", [])),
    )


def _predict(args: argparse.Namespace) -> int:
    if args.out_dir is not None:  # before any model is built
        task_for_model(args.model).check_out_dir(Path(args.out_dir))
    labels = None
    if args.labels:
        labels = read_classes(args.labels)
    predictor = build_predictor(args, labels)
    paths = expand_inputs(args.inputs)
    code = predict_videos(args, predictor, paths)
    if code is not None:
        return code
    predictions = predictor.predict(paths, topk=args.topk, progress=not args.json)
    written = (
        [] if args.out_dir is None else predictor.task.write_predictions(predictions, predictor.setup, args.out_dir)
    )
    if args.json:
        document = {"model": args.model, "predictions": [p.to_dict() for p in predictions]}
        if written:
            document["files"] = [os.fspath(p) for p in written]
        print(json.dumps(document, indent=2))
    else:
        for prediction in predictions:
            print("\n".join(prediction.lines(args.topk)))
        for path in written:
            print(f"wrote {path}")
    return 1 if any(p.error for p in predictions) else 0


def _features(args: argparse.Namespace) -> int:
    check_features_path(args.output, stage_maps=args.stage_maps)  # before any model runs
    paths = expand_inputs(args.inputs)
    predictor = build_predictor(args)
    tensors, failed = predictor.features(paths, stage_maps=args.stage_maps, progress=True)
    metadata = {"model": args.model, "checkpoint": args.checkpoint, "stage_maps": args.stage_maps, "failed": failed}
    save_features(args.output, tensors, paths, metadata)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items())
    print(f"wrote {os.fspath(args.output)}: {shapes}")
    for index, reason in failed.items():
        print(f"  could not be read (NaN row): {paths[index]}: {reason}")
    return 1 if failed else 0
