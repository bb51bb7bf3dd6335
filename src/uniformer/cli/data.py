"""``uniformer data``: make the synthetic motion dataset, check a dataset's videos, prepare a dataset for training at
scale (re-encode, frames, lists) and write it as WebDataset shards."""

from __future__ import annotations

import argparse
import os

from uniformer.data import check_videos, synthesize
from uniformer.data.lists import FORMATS, read_video_list
from uniformer.data.prepare import build_lists, extract_frames, resize_videos, write_report
from uniformer.data.shards import write_shards


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data synth``, ``data check``, ``data prepare`` and ``data shard``."""
    parser = subparsers.add_parser("data", help="video data tools: synthetic dataset, check, prepare, shard")
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
    _register_prepare(commands)

    shard = commands.add_parser(
        "shard",
        help="pack a list's videos into WebDataset tar shards plus index.json (train with data.format=webdataset)",
        description="Write OUT/shard-000000.tar ... (video bytes, label, metadata per sample; a new shard past "
        "--max-bytes) and OUT/index.json. Upload OUT as it is; point data.train_list at its index.json.",
    )
    shard.add_argument("source", metavar="LIST_OR_DIR", help="a list file ('path label' by default) or class folders")
    shard.add_argument("out", metavar="OUT")
    shard.add_argument("--format", choices=FORMATS, default=None, help="list format (default: kinetics, or folder)")
    shard.add_argument("--root", default=None, help="folder that relative paths in the list start from")
    shard.add_argument("--labels-file", default=None, help="class names file")
    shard.add_argument("--max-bytes", type=_size, default=1 << 30, help="shard size, e.g. 500M, 1G (default 1G)")
    shard.add_argument("--prefix", default="shard", help="shard file name prefix (default shard)")
    shard.set_defaults(func=_shard)


def _register_prepare(commands: argparse._SubParsersAction) -> None:
    prepare = commands.add_parser(
        "prepare",
        help="prepare a dataset for training: re-encode videos, extract frames, build lists",
        description="Each tool writes its outputs atomically; a rerun skips finished outputs and redoes "
        "half-written ones. Unreadable sources are skipped and listed.",
    )
    tools = prepare.add_subparsers(dest="prepare_command", required=True, metavar="TOOL")
    workers = dict(type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    report = dict(default=None, help="also write the run's report (written, skipped with reasons) as JSON")

    resize = tools.add_parser(
        "resize",
        help="re-encode every video under SRC to DST (same relative path, .mp4) at a short side",
        description="Re-encode videos (PyAV) with the short side scaled to --short-side, keeping fps and duration "
        "(or at a constant --fps, the official Something-Something V2 option).",
    )
    resize.add_argument("src", metavar="SRC")
    resize.add_argument("dst", metavar="DST")
    resize.add_argument("--short-side", type=int, default=320, help="short side in pixels (default 320)")
    resize.add_argument("--fps", type=float, default=None, help="constant output frame rate (default: keep)")
    resize.add_argument("--codec", default=None, help="encoder (default libx264 where available, else mpeg4)")
    resize.add_argument("--workers", **workers)
    resize.add_argument("--report", **report)
    resize.set_defaults(func=_prepare, tool=resize_videos, options=("short_side", "fps", "codec"))

    frames = tools.add_parser(
        "frames",
        help="extract the frames of every video under SRC to DST/<video>/00001.jpg ...",
        description="Extract JPEG frames, numbered from 1 as the official Something-Something lists expect.",
    )
    frames.add_argument("src", metavar="SRC")
    frames.add_argument("dst", metavar="DST")
    frames.add_argument(
        "--fps", type=lambda text: float(text) or None, default=30.0, help="frames per second kept (default 30; 0: all)"
    )
    frames.add_argument("--template", default="{:05d}.jpg", help="file name of frame N (default {:05d}.jpg)")
    frames.add_argument("--short-side", type=int, default=None, help="resize frames to this short side")
    frames.add_argument("--workers", **workers)
    frames.add_argument("--report", **report)
    frames.set_defaults(func=_prepare, tool=extract_frames, options=("fps", "template", "short_side"))

    lists = tools.add_parser(
        "lists",
        help="write OUT/NAME.txt and OUT/classes.txt from class folders or a Kinetics csv",
        description="Lines 'path label' (videos) or 'path num_frames label' (--frames), paths relative to ROOT, "
        "labels in the official class order (Kinetics' label files when the classes are theirs, else sorted).",
    )
    lists.add_argument("root", metavar="ROOT", help="folder of the videos (class folders unless --csv)")
    lists.add_argument("out", metavar="OUT", help="folder to write the list and classes.txt to")
    lists.add_argument("--csv", default=None, help="Kinetics annotation csv (youtube_id,time_start,time_end,label)")
    lists.add_argument("--frames", action="store_true", help="list frame folders with their frame counts")
    lists.add_argument("--name", default="train", help="list file name without .txt (default train)")
    lists.set_defaults(func=_lists)


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


def _prepare(args: argparse.Namespace) -> int:
    """Run the chosen ``prepare`` tool with its own options (``args.options`` names them)."""
    options = {name: getattr(args, name) for name in args.options}
    report = args.tool(args.src, args.dst, workers=args.workers, progress=True, **options)
    print(report.summary())
    if args.report is not None:
        write_report(report, args.report)
        print(f"report: {args.report}")
    return 0


def _lists(args: argparse.Namespace) -> int:
    list_path, classes_path, missing = build_lists(
        args.root, args.out, annotations=args.csv, frames=args.frames, name=args.name
    )
    print(f"wrote {list_path} and {classes_path}")
    for clip, reason in missing:
        print(f"  missing {clip}: {reason}")
    if missing:
        print(f"{len(missing)} listed clip(s) not found, left out of the list")
    return 0


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    number, unit = (text[:-1], units[text[-1].upper()]) if text and text[-1].upper() in units else (text, 1)
    try:
        return int(float(number) * unit)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 500M or 1G, got {text!r}") from None


def _shard(args: argparse.Namespace) -> int:
    source = args.source
    fmt = args.format or ("folder" if os.path.isdir(source) else "kinetics")
    videos = read_video_list(
        fmt,
        args.root or (source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))),
        list_file=None if fmt == "folder" else source,
        labels_file=args.labels_file,
    )
    report = write_shards(videos, args.out, max_bytes=args.max_bytes, prefix=args.prefix, progress=True)
    print(
        f"wrote {report.samples} videos ({report.bytes / 2**20:.1f} MiB) in {len(report.shards)} shard(s); index: {report.index}"
    )
    for path, reason in report.failed:
        print(f"  skipped {path}: {reason}")
    return 0
