"""``uniformer benchmark <what>``: throughput measurements.

``data`` measures the video input pipeline; ``model`` the fast paths of one zoo model against its plain
formulation: how fast it is on this machine; ``onnx`` onnxruntime against eager PyTorch and that fast path.
The experiments behind ``benchmarks/RESULTS.md`` are the repository's ``benchmarks/`` scripts
(``python -m benchmarks.results``).
"""

from __future__ import annotations

import argparse
import os

from uniformer.benchmarks.data import run_data_benchmark
from uniformer.benchmarks.models import run_model_benchmark, run_train_benchmark
from uniformer.benchmarks.onnx import run_onnx_benchmark


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``benchmark`` group; each measured subsystem is a subcommand."""
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

    model = targets.add_parser(
        "model",
        help="ms/view, clips/s, GMAC/s, peak memory of the plain and optimized model, interleaved",
        description="Times the plain model (official formulation) and optimize_for_inference copies (or training "
        "steps with --train) in interleaved rounds, after a warm-up round, with random weights and inputs.",
    )
    model.add_argument("--model", default="uniformer_small_k400_16x4", help="zoo model name (`uniformer models`)")
    model.add_argument("--batch-size", type=int, default=None, help="default: 1 (inference), 2 (--train)")
    model.add_argument("--dtype", choices=("fp32", "bf16"), nargs="+", default=None, help="default: both")
    model.add_argument("--train", action="store_true", help="time forward + backward + AdamW steps instead")
    model.add_argument("--compile", action="store_true", help="add torch.compile variants (first call compiles)")
    _common(model)
    model.add_argument("--img-size", type=int, default=None, help="input height = width (default: the model's)")
    model.add_argument("--num-frames", type=int, default=None, help="input frames of a video model")
    model.set_defaults(func=_model)

    onnx = targets.add_parser(
        "onnx",
        help="onnxruntime vs PyTorch eager vs optimize_for_inference, fp32, same input, interleaved",
        description="Exports the model to ONNX (as `uniformer export` does), then times onnxruntime (CPU), the "
        "eager model and its optimize_for_inference copy on one random input, in interleaved rounds. Needs the "
        "export extra.",
    )
    onnx.add_argument("--model", default="uniformer_small", help="zoo model name (`uniformer models`)")
    onnx.add_argument("--batch-size", type=int, default=1)
    onnx.add_argument("--repeats", type=int, default=5, help="timed rounds after one warm-up round")
    onnx.add_argument("--img-size", type=int, default=None, help="input height = width (default: the model's)")
    onnx.add_argument("--num-frames", type=int, default=None, help="input frames of a video model")
    onnx.add_argument("--threads", type=int, default=None, help="intra-op threads of both (default: PyTorch's)")
    onnx.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the calling thread's CPU time instead of wall time (with --threads 1; fair on a loaded machine)",
    )
    onnx.set_defaults(func=_onnx)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")


def _data(args: argparse.Namespace) -> int:
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


def _model(args: argparse.Namespace) -> int:
    common = dict(img_size=args.img_size, num_frames=args.num_frames, device=args.device, repeats=args.repeats)
    if args.train:
        if args.dtype or args.compile:
            raise ValueError("--train times fp32 eager steps; --dtype and --compile apply to inference only")
        table = run_train_benchmark(args.model, batch_size=args.batch_size or 2, log=print, **common)
    else:
        dtypes = tuple(args.dtype or ("fp32", "bf16"))
        batch_size = args.batch_size or 1
        table = run_model_benchmark(
            args.model, batch_size=batch_size, dtypes=dtypes, compile=args.compile, log=print, **common
        )
    print(table.format())
    return 0


def _onnx(args: argparse.Namespace) -> int:
    table = run_onnx_benchmark(
        args.model,
        batch_size=args.batch_size,
        repeats=args.repeats,
        img_size=args.img_size,
        num_frames=args.num_frames,
        threads=args.threads,
        cpu_time=args.cpu_time,
        log=print,
    )
    print(table.format())
    return 0
