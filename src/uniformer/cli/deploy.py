"""``uniformer export NAME --format onnx|exported-program --output OUT``, ``uniformer quantize NAME --calibration FILES
--output OUT.onnx`` and ``uniformer app --model NAME``."""

from __future__ import annotations

import argparse
import sys

from uniformer.cli.predict import expand_inputs, parse_task_options
from uniformer.deploy.export import OPSET, export_model, exportable_task
from uniformer.models.checkpoint import read_checkpoint
from uniformer.models.factory import create_model
from uniformer.tasks import task_for_model


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a classification, segmentation or pose model as ONNX or a torch.export .pt2 (metadata inside)",
        description="Exports the inference graph (BatchNorms folded, fused attention) with a dynamic batch axis: "
        "classification models at their test input (the clip: frames and crop size), segmentation models at "
        "--input-size with a dynamic height and width (fixed in the ONNX file of an UperNet, whose pyramid pooling "
        "does not translate at symbolic sizes), pose models at their crop. ONNX files carry the class names and "
        "the preprocessing (mean, std, input size, frames, the clip; palette and test resize for segmentation; "
        "keypoint names, limbs and flip pairs for pose) as metadata_props; .pt2 archives a config.json. "
        "Detection models are refused (torchvision's Mask R-CNN does not trace).",
    )
    p.add_argument("name", help="zoo name (`uniformer models`)")
    p.add_argument("--checkpoint", default=None, help="weights: a file (.pth, .safetensors, .pt) or a saved folder")
    p.add_argument("--format", choices=["onnx", "exported-program"], default="onnx")
    p.add_argument("--output", required=True, help="OUT.onnx or OUT.pt2")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18)")
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="segmentation / pose: the exported input size (default: 512 512 for segmentation, the test crop "
        "for pose; a dynamic size is traced here: multiples of 32)",
    )
    p.set_defaults(func=_export)

    p = subparsers.add_parser(
        "quantize",
        help="write an int8 ONNX file of a classification, segmentation or pose model, calibrated on your files",
        description="Exports the model as `uniformer export` does, runs the calibration files through the "
        "preprocessing of `uniformer predict` and writes onnxruntime's static int8 quantization of the file (QDQ: "
        "int8 weights per channel, uint8 activations at the convolutions and matrix products, ranges from the "
        "calibration inputs), with the fp32 file's metadata. Needs the export extra.",
    )
    p.add_argument("name", help="zoo name (`uniformer models`)")
    p.add_argument(
        "--calibration",
        nargs="+",
        required=True,
        metavar="FILE",
        help="images or videos like those the model will see (@LIST: a file with one path per line)",
    )
    p.add_argument("--output", required=True, help="OUT.onnx")
    p.add_argument("--checkpoint", default=None, help="weights: a file (.pth, .safetensors, .pt) or a saved folder")
    p.add_argument("--samples", type=int, default=64, help="calibration inputs used at most (default 64)")
    p.add_argument(
        "--input-size", type=int, nargs=2, metavar=("H", "W"), default=None, help="segmentation: as for export"
    )
    p.add_argument(
        "--reduce-range",
        action="store_true",
        help="7-bit weights, for CPUs without VNNI where onnxruntime's uint8 x int8 kernels may saturate",
    )
    p.set_defaults(func=_quantize)

    p = subparsers.add_parser(
        "app",
        help="a web page (Gradio) that shows a model's predictions on an uploaded video or image",
        description="Serves a page where a video or image is uploaded (or a shipped example picked). A "
        "classification model's page shows the top-5 classes, the frames the model saw and the time taken; a "
        "segmentation model's the colour overlay with the legend of the classes present and their shares of the "
        "pixels; a pose model's the skeletons of the people in the person boxes typed on the page, else those "
        "the detector of --detector NAME [--detector-checkpoint FILE] finds, else of the whole image as one person; "
        "a detector's the boxes and masks with class names and scores, above a score-threshold slider. Other options "
        "go to the model's task, as with `uniformer predict`. Needs the app extra (pip install 'uniformer[app]').",
    )
    p.add_argument("--model", required=True, help="zoo name (`uniformer models`)")
    p.add_argument("--checkpoint", default=None, help="weights: a file (.pth, .safetensors, .pt) or a saved folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--max-upload-mb", type=int, default=None, help="refuse uploads larger than this many megabytes (default 200)"
    )
    p.set_defaults(func=_app, task_args=[])


def _export(args: argparse.Namespace) -> int:
    exportable_task(args.name)  # a detector is refused before anything is built
    file = None if args.checkpoint is None else read_checkpoint(args.checkpoint)
    if file is None:
        print(f"warning: no --checkpoint: {args.name} is exported with random weights", file=sys.stderr)
    model = create_model(args.name, checkpoint_path=file)
    path = export_model(
        model, args.output, args.format, checkpoint=file, input_size=args.input_size, opset=args.opset or OPSET
    )
    print(f"wrote {path} ({args.format}, {path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from uniformer.deploy.quantize import quantize_model  # imports onnxruntime (the export extra)

    exportable_task(args.name)  # a detector is refused before anything is built
    if args.samples < 1:
        raise ValueError(f"--samples must be at least 1, got {args.samples}")
    if args.checkpoint is None:
        print(f"warning: no --checkpoint: {args.name} is quantized with random weights", file=sys.stderr)
    path = quantize_model(
        args.name,
        expand_inputs(args.calibration),
        args.output,
        args.checkpoint,
        limit=args.samples,
        input_size=args.input_size,
        reduce_range=args.reduce_range,
    )
    print(f"wrote {path} (int8 ONNX, {path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _app(args: argparse.Namespace) -> int:
    from uniformer.deploy.app import serve  # imports gradio (the app extra): only when the page is asked for

    options = parse_task_options(task_for_model(args.model), args.task_args)  # before the model is built
    limit = {} if args.max_upload_mb is None else {"max_upload_mb": args.max_upload_mb}
    serve(args.model, args.checkpoint, host=args.host, port=args.port, task_options=options, **limit)
    return 0
