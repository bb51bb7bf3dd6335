"""``uniformer explain PATH... --model NAME --out DIR``: where a classifier looks (CAM, Grad-CAM, attention,
stage features), as pictures and JSON."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

from uniformer.cli.predict import add_model_arguments, build_predictor, expand_inputs
from uniformer.explain import METHODS, explain_files
from uniformer.explain.render import VIDEO_FORMATS, write_explanation


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain",
        help="show where an image or video classifier looks: CAM, Grad-CAM, attention or stage features",
        description="Explains the centre view (centre clip, centre crop of the model's test transform) of each "
        "input. cam: the official class activation map (last block of stage 4 weighted by the class's "
        "classifier row); gradcam: Grad-CAM on --stage (default: the deepest stage with at least 7 cells across "
        "the input); attention: the attention each position of stage 3 or 4 receives, averaged over heads, "
        "queries (or from --query) and blocks; features: the channel mean of every stage per time step. Writes "
        "for an image a PNG (input, map, overlay), for a video a strip of 8 frames and the animations asked by "
        "--video-format, and a JSON (class, score, map statistics) per input into --out.",
    )
    add_model_arguments(p)
    p.add_argument("--method", choices=METHODS, default="gradcam")
    p.add_argument("--target", default="top1", help="class to explain: index, name, or top1 (each input's top class)")
    p.add_argument("--stage", type=int, default=None, help="gradcam: 1-4; attention: 3 or 4")
    p.add_argument("--query", default=None, metavar="X,Y", help="attention from one location, fractions of the frame")
    p.add_argument("--no-crop", action="store_true", help="explain the whole frame instead of the test crop")
    p.add_argument(
        "--video-format", nargs="*", choices=VIDEO_FORMATS, default=["gif"], help="animations of a video (gif mp4)"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout, for scripts")
    p.set_defaults(func=_explain)


def _query(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--query {text!r}: expected X,Y as fractions of the frame, e.g. 0.5,0.25") from None
    return x, y


def _stems(paths: list[str]) -> list[str]:
    """Output names: the input's file name without its extension, numbered where two inputs share one."""
    names = [Path(p.rstrip("/")).stem for p in paths]
    repeated = {n for n, c in Counter(names).items() if c > 1}
    return [f"{i:03d}_{n}" if n in repeated else n for i, n in enumerate(names)]


def _explain(args: argparse.Namespace) -> int:
    paths = expand_inputs(args.inputs)
    query = _query(args.query)
    predictor = build_predictor(args)
    explanations = explain_files(
        predictor,
        paths,
        args.method,
        target=args.target,
        stage=args.stage,
        query=query,
        crop=not args.no_crop,
    )
    written = {}
    for explanation, stem in zip(explanations, _stems(paths), strict=True):
        written[explanation.path] = write_explanation(explanation, args.out, stem, args.video_format)
    if args.json:
        document = {
            "model": args.model,
            "explanations": [{**e.to_dict(), "files": [os.fspath(p) for p in written[e.path]]} for e in explanations],
        }
        print(json.dumps(document, indent=2))
    else:
        for e in explanations:
            if e.error:
                print(f"{e.path}: could not be read: {e.error}")
                continue
            stage = f" stage {e.stage}" if e.stage is not None else ""
            print(f"{e.path}: {e.method}{stage} for {e.label} ({100 * e.score:.2f}%)")
            for path in written[e.path]:
                print(f"  wrote {path}")
    return 1 if any(e.error for e in explanations) else 0
