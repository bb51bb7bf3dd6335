"""``uniformer models``, ``uniformer info NAME`` and ``uniformer convert IN OUT``."""

from __future__ import annotations

import argparse
import json
import typing

from uniformer.models.complexity import measure_model
from uniformer.models.convert import convert_checkpoint
from uniformer.models.zoo.catalog import list_models, model_info
from uniformer.models.zoo.schema import METRIC_LABELS, Task
from uniformer.models.zoo.sources import describe
from uniformer.models.zoo.tables import zoo_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the model zoo")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. '*k400*'")
    p.add_argument("--task", choices=typing.get_args(Task), default=None, help="only the zoo models of this task")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (as on the docs' model zoo page)")
    p.set_defaults(func=_models)

    p = subparsers.add_parser(
        "info", help="everything known about one zoo model: measured params/GMACs, where its weights come from"
    )
    p.add_argument("name")
    p.add_argument("--img-size", type=int, default=None, help="release to describe (e.g. 384 for *_tl)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_info)

    p = subparsers.add_parser("convert", help="official checkpoint (.pth) -> clean .safetensors")
    p.add_argument("src", help="official .pth/.pyth/.safetensors checkpoint")
    p.add_argument("dst", help="output .safetensors file")
    p.add_argument("--model", default=None, help="zoo model the weights must fit (checked before writing)")
    p.set_defaults(func=_convert)


def _models(args: argparse.Namespace) -> int:
    names = list_models(args.pattern, task=args.task)
    if not names:
        raise ValueError(f"no zoo model matches {args.pattern!r}")
    print(zoo_table(names, markdown=args.markdown))
    return 0


def _info(args: argparse.Namespace) -> int:
    info = model_info(args.name)
    release = info.release(args.img_size)
    measured = measure_model(args.name, release.img_size)
    data = info.to_dict()
    published = release.metrics
    data.update(
        release=release.to_dict(),
        measured_params=measured.params,
        measured_gmacs_per_view=round(measured.gmacs, 3),
        view_shape=list(measured.input_shape),
    )
    if args.json:
        print(json.dumps(data, indent=2, default=list))
        return 0
    rows = [
        ("name", info.name),
        ("title", info.title),
        ("task / dataset", f"{info.task} / {info.dataset} ({info.num_classes} classes)"),
        ("architecture", ", ".join(f"{k}={v}" for k, v in info.model_args.items())),
        ("input (one view)", " x ".join(map(str, measured.input_shape))),
    ]
    if info.task == "video":
        sampling = f"{info.sampling}, {info.frames_label}"
        rows.append(("frames", sampling))
    if info.task == "segmentation":
        multi = f", multi-scale + flip {published['ms_miou']:.1f}" if "ms_miou" in published else ""
        rows += [
            ("decoder", info.decoder),
            ("published mIoU", f"{published['miou']:.1f} single-scale{multi}"),
        ]
    elif info.task == "detection":
        rows += [
            ("detector", info.detector),
            ("published COCO val2017", f"box AP {published['box_ap']:.1f}, mask AP {published['mask_ap']:.1f}"),
        ]
    elif info.task == "pose":
        keypoint_ap = ", ".join(f"{METRIC_LABELS[k]} {v:.1f}" for k, v in published.items()) or "-"
        rows.append(("published COCO val", keypoint_ap))
    else:
        rows += [
            ("test views", f"{info.test_clips} clips x {info.test_crops} crops"),
            ("published top-1", f"{published['top1']:.1f}" if "top1" in published else "-"),
        ]
    per = {"segmentation": "image", "detection": "image", "pose": "crop"}.get(info.task, "view")
    rows += [
        ("params", f"{measured.params / 1e6:.2f} M measured, {info.params_m:g} M published"),
        (f"GFLOPs per {per}", f"{measured.gmacs:.2f} measured (multiply-adds), {release.gflops:g} published"),
    ]
    # pretrained=True tries the sources in this order
    weights = [(f"weights {i}", describe(source)) for i, source in enumerate(release.sources, 1)]
    rows += weights or [("weights", "not released")]
    rows.append(("normalisation", f"mean {info.mean}, std {info.std}"))
    if len(info.releases) > 1:
        rows.append(("releases (img_size)", ", ".join(str(r.img_size) for r in info.releases)))
    if info.pretrain:
        rows.append(("initialised from", info.pretrain))
    if info.notes:
        rows.append(("notes", info.notes))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    state = convert_checkpoint(args.src, args.dst, model_name=args.model)
    params = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    print(f"wrote {args.dst}: {len(state)} tensors, {params / 1e6:.2f} M values")
    return 0
