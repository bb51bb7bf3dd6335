"""``uniformer benchmark <what>``: throughput measurements. ``data`` measures the video input pipeline."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``benchmark`` group; each measured subsystem is a subcommand (``data`` here)."""
    parser = subparsers.add_parser("benchmark", help="measure throughput of a part of the library")
    targets = parser.add_subparsers(dest="benchmark_target", required=True, metavar="WHAT")

    data = targets.add_parser(
        "data",
        help="training clips/s per decoder backend, and PyAV seek vs sequential decoding on long videos",
        description="Synthesises videos (unless --root is given) and times a DataLoader of training clips for every "
        "installed decoder backend, then times reading one clip of a long video by seeking against decoding it all.",
    )
    data.add_argument("--root", default=None, help="a dataset with train.txt (default: synthesise one in a temp dir)")
    data.add_argument("--backends", nargs="+", default=None, help="backends to time (default: all that work here)")
    data.add_argument("--num-frames", type=int, default=16)
    data.add_argument("--stride", type=int, default=4)
    data.add_argument("--crop-size", type=int, default=224)
    data.add_argument("--batch-size", type=int, default=8)
    data.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers (default: all cores)"
    )
    data.add_argument("--batches", type=int, default=8, help="timed batches per backend, after one warm-up batch")
    data.add_argument("--no-rand-augment", action="store_true", help="time without RandAugment (decode-bound view)")
    data.add_argument("--long-frames", type=int, default=1800, help="frames of the long video for the seek test")
    data.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    data.set_defaults(func=_data)


def _data(args: argparse.Namespace) -> int:
    from uniformer.benchmarks.data import run_data_benchmark

    result = run_data_benchmark(
        root=args.root,
        backends=args.backends,
        num_frames=args.num_frames,
        stride=args.stride,
        crop_size=args.crop_size,
        batch_size=args.batch_size,
        workers=args.workers,
        batches=args.batches,
        rand_augment=not args.no_rand_augment,
        long_frames=args.long_frames,
        log=print,
    )
    print(result.format())
    if args.json:
        result.write_json(args.json)
    return 0
