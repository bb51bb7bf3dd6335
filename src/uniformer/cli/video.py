"""The video half of ``uniformer predict``: a dense model's annotated video and frame lines, a classifier's timeline.

``uniformer predict VIDEO --model <detection|segmentation|pose model> [--every K] [--out-dir DIR]`` writes
``<stem>_annotated.mp4`` and ``<stem>_frames.jsonl`` (:func:`uniformer.engine.video.predict_video`);
``uniformer predict VIDEO --model <video classifier> --timeline [--window S] [--stride S] [--out-dir DIR]`` writes
``<stem>_timeline.json`` and ``<stem>_timeline.png`` (:func:`uniformer.engine.timeline.video_timeline`). Without
``--timeline`` a classifier gives its clip-level answer, as for any input.
"""

from __future__ import annotations

import argparse
import json
import os

from uniformer.data.decode import is_video_path
from uniformer.engine.predict import Predictor
from uniformer.engine.timeline import video_timeline
from uniformer.engine.video import DENSE_TASKS, predict_video

__all__ = ["add_video_arguments", "predict_videos"]


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """``--every``, ``--timeline``, ``--window`` and ``--stride``."""
    group = parser.add_argument_group("videos")
    group.add_argument(
        "--every",
        type=int,
        default=None,
        metavar="K",
        help="detection, segmentation, pose: predict every K-th frame of a video (default 1: all)",
    )
    group.add_argument(
        "--timeline", action="store_true", help="video classification: classify each window of the video over time"
    )
    group.add_argument("--window", type=float, default=None, metavar="S", help="timeline window in seconds (2)")
    group.add_argument("--stride", type=float, default=None, metavar="S", help="seconds between windows (1)")


def predict_videos(args: argparse.Namespace, predictor: Predictor, paths: list[str]) -> int | None:
    """Run the video outputs the command line asks for and print what was written; ``None`` when it asks for
    none (the inputs are classified or predicted as files)."""
    task = predictor.task.name
    videos = [p for p in paths if is_video_path(p)]
    timeline = args.timeline or args.window is not None or args.stride is not None
    if timeline and task != "classification":
        raise ValueError(f"--timeline, --window and --stride label a video over time with a video classifier, "
                         f"not a {task} model")  # fmt: skip
    if args.every is not None and (task not in DENSE_TASKS or not videos):
        raise ValueError("--every K takes videos and a detection, segmentation or pose model")
    if args.every is not None and args.every < 1:
        raise ValueError(f"--every must be >= 1, got {args.every}")
    if timeline and not args.timeline:
        raise ValueError("--window and --stride set the windows of --timeline; add --timeline")
    if not timeline and not (task in DENSE_TASKS and videos):
        return None
    others = [p for p in paths if p not in videos]
    if others:
        raise ValueError(f"give videos alone with {'--timeline' if timeline else 'a ' + task + ' model'}; "
                         f"these are not video files: {', '.join(others[:5])}")  # fmt: skip
    if "--out" in getattr(args, "task_args", []):
        raise ValueError("pose's --out DIR writes files per image; a video's files go to --out-dir DIR")
    out_dir = args.out_dir or "."
    documents, interrupted = [], False
    for path in videos:
        if timeline:
            result = video_timeline(
                predictor,
                path,
                window=2.0 if args.window is None else args.window,
                stride=1.0 if args.stride is None else args.stride,
                progress=not args.json,
            )
            files = result.write(out_dir, topk=args.topk)
            documents.append({**result.to_dict(args.topk), "files": [os.fspath(f) for f in files]})
            if not args.json:
                _print_timeline(result.to_dict(1), files)
            continue
        run = predict_video(predictor, path, out_dir, every=args.every or 1, progress=not args.json)
        documents.append(run.to_dict())
        if not args.json:
            print("\n".join(run.lines()))
        if run.interrupted:
            interrupted = True
            break
    if args.json:
        print(json.dumps({"model": args.model, "videos": documents}, indent=2))
    return 130 if interrupted else 0


def _print_timeline(document: dict, files: list) -> None:
    """One line per window: its seconds and its top class."""
    print(f"{document['path']}  ({len(document['windows'])} windows of {document['window']} s)")
    for window in document["windows"]:
        (top,) = window["top"]
        print(f"  {window['start']:8.2f}-{window['end']:<8.2f} {top['label']:<40s} {100 * top['probability']:6.2f}%")
    for path in files:
        print(f"wrote {path}")
