"""``uniformer data``: make the synthetic motion dataset, check a dataset's videos."""

from __future__ import annotations

import argparse
import os

from uniformer.data import check_videos, synthesize
from uniformer.data.lists import FORMATS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data synth`` and ``data check``."""
    parser = subparsers.add_parser("data", help="video data tools: synthetic dataset, integrity check")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    synth = commands.add_parser(
        "synth",
        help="write a synthetic video dataset whose classes are motions (mp4 + train/val lists)",
        description="Write OUT_DIR/videos/<class>/*.mp4, train.txt, val.txt (Kinetics 'path label') and classes.txt.",
    )
    synth.add_argument("out_dir", metavar="OUT_DIR")
    synth.add_argument("--classes", type=int, default=8, help="number of motion classes, 2-8 (default 8)")
    synth.add_argument("--videos-per-class", type=int, default=25, help="videos per class (default 25)")
    synth.add_argument("--frames", type=int, default=40, help="frames per video (default 40)")
    synth.add_argument(
        "--size", type=int, nargs="+", default=[128], metavar="PX", help="side, or HEIGHT WIDTH (default 128)"
    )
    synth.add_argument("--fps", type=int, default=25, help="frame rate (default 25)")
    synth.add_argument("--val-fraction", type=float, default=0.2, help="share of each class held out (default 0.2)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="encoding processes (default: all cores)"
    )
    synth.set_defaults(func=_synth)

    check = commands.add_parser(
        "check",
        help="decode every video of a list or folder; write a JSON report; exit 1 if any is broken",
        description="Fully decode every video (in parallel) and report ok / mismatch (frame count) / broken.",
    )
    check.add_argument("source", metavar="LIST_OR_DIR", help="a list file ('path label' by default) or a folder")
    check.add_argument("--format", choices=FORMATS, default=None)
    check.add_argument("--root", default=None, help="folder that relative paths in the list start from")
    check.add_argument("--labels-file", default=None, help="class names file (ssv1, ssv2, ucf101)")
    check.add_argument("--output", default="data_check.json", help="JSON report path (default data_check.json)")
    check.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="decoding processes (default: all cores)"
    )
    check.set_defaults(func=_check)


def _synth(args: argparse.Namespace) -> int:
    if len(args.size) not in (1, 2):
        raise ValueError(f"--size takes one side or HEIGHT WIDTH, got {args.size}")
    size = args.size[0] if len(args.size) == 1 else (args.size[0], args.size[1])
    result = synthesize(
        args.out_dir,
        num_classes=args.classes,
        videos_per_class=args.videos_per_class,
        num_frames=args.frames,
        size=size,
        fps=args.fps,
        val_fraction=args.val_fraction,
        seed=args.seed,
        workers=args.workers,
    )
    print(f"wrote {result.num_train} train + {result.num_val} val videos ({result.codec}) to {result.root}")
    print(f"  lists: {result.train_list} {result.val_list}  classes: {result.classes_file}")
    return 0


def _check(args: argparse.Namespace) -> int:
    report = check_videos(
        args.source,
        workers=args.workers,
        format=args.format,
        root=args.root,
        labels_file=args.labels_file,
    )
    report.write_json(args.output)
    print(
        f"checked {len(report.files)} videos: {report.count('ok')} ok, {report.count('mismatch')} frame-count "
        f"mismatch, {report.count('broken')} broken; report: {args.output}"
    )
    for entry in report.files:
        if entry.status != "ok":
            print(f"  {entry.status}: {entry.path}: {entry.reason}")
    return 1 if report.broken else 0
