"""int8 (``uniformer quantize``, onnxruntime static QDQ) against fp32: agreement on the demo tasks' held-out data and
speed against ``optimize_for_inference`` fp32, in one run.

Run from the repository root after ``make demo`` (its trained models and data are read from ``--demo-out``):
``.venv/bin/python -m benchmarks.quantization --demo-out demo_out [--repeats 7]``.

Agreement: the classification demo (video, ``uniformer_tiny_motion``) and the segmentation demo (UniFormer +
UperNet, 64 x 64) are quantized with calibration on 32 of their training files and run on every held-out file
by onnxruntime in fp32 (the exported file) and int8: top-1 agreement per clip (the views' logits summed, as
``predict`` does) and per view, accuracy; for segmentation the mIoU of each against the ground truth.
Speed: ms per call, one thread, CPU time of the calling thread, interleaved rounds, median of the per-round
ratios (:func:`uniformer.benchmarks.models.paired_speedup`), for the demo models and for UniFormer-S image 224 and
video 8x224 with random weights (calibrated on random inputs: speed does not depend on the ranges).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.results import matmul_ceiling
from uniformer.benchmarks.models import Row, interleaved, machine_description, paired_speedup
from uniformer.deploy.export import export_model
from uniformer.deploy.quantize import calibration_inputs, quantize_onnx
from uniformer.engine.predict import Predictor
from uniformer.models.checkpoint import read_checkpoint
from uniformer.models.factory import create_model
from uniformer.models.optimize import optimize_for_inference
from uniformer.tasks.segmentation.metrics import intersect_and_union

CALIBRATION_FILES = 32


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _files(folder: Path, listing: str, count: int | None) -> tuple[list[str], list[int]]:
    """Paths and labels of a classification list file, ``count`` of them picked at random (seed 0)."""
    rows = [line.split() for line in (folder / listing).read_text().splitlines() if line.strip()]
    order = np.random.default_rng(0).permutation(len(rows))[:count] if count else range(len(rows))
    return [str(folder / rows[i][0]) for i in order], [int(rows[i][1]) for i in order]


def _latest(run: Path) -> str:
    return str(sorted((run / "checkpoints").glob("checkpoint-*.pt"))[-1])


def _speed(
    model: torch.nn.Module, sessions: dict[str, Any], x: np.ndarray, repeats: int, log: Callable[[str], None]
) -> list[str]:
    """Table rows: one call on ``x`` of ``optimize_for_inference(model)`` and of the fp32 and int8 ``sessions``,
    interleaved, CPU time of one thread, each against the fp32 fast path (median of per-round ratios)."""
    fast, tensor = optimize_for_inference(model), torch.from_numpy(x)
    calls = {
        "optimize_for_inference fp32": lambda: fast(tensor),
        "onnxruntime fp32": lambda: sessions["fp32"].run(None, {"input": x}),
        "onnxruntime int8": lambda: sessions["int8"].run(None, {"input": x}),
    }
    with torch.no_grad():
        times = interleaved(calls, repeats, torch.device("cpu"), log, clock=time.thread_time)
    rows = {label: Row(label, ms, 1, None) for label, ms in times.items()}
    base = rows["optimize_for_inference fp32"]
    lines = []
    for label, row in rows.items():
        ratio, wins = paired_speedup(row, base) if row is not base else (1.0, 0)
        lines.append(f"| {label} | {row.ms_per_view:.1f} | {ratio:.2f}x | {wins}/{len(row.ms)} |")
    return lines


def classification_demo(demo: Path, folder: Path, repeats: int, log: Callable[[str], None]) -> list[str]:
    root = demo / "classification"
    file = read_checkpoint(_latest(root / "run"))
    predictor = Predictor("uniformer_tiny_motion", file)
    train, _ = _files(root / "data", "train.txt", CALIBRATION_FILES)
    val, labels = _files(root / "data", "val.txt", None)
    calibration, _ = calibration_inputs(predictor, train, limit=2 * CALIBRATION_FILES)
    held_out, skipped = calibration_inputs(predictor, val, limit=len(val) * predictor.setup.spec.views)
    x = np.concatenate(held_out)
    views = predictor.setup.spec.views
    if x.shape[0] != views * (len(val) - len(skipped)):
        raise ValueError(f"expected {views} views of each of {len(val) - len(skipped)} clips, got {x.shape[0]}")
    fp32 = export_model(predictor.model, folder / "motion.onnx", "onnx", "uniformer_tiny_motion")
    int8 = quantize_onnx(fp32, folder / "motion_int8.onnx", calibration)
    sessions = {"fp32": _session(fp32), "int8": _session(int8)}
    logits = {k: s.run(["logits"], {"input": x})[0] for k, s in sessions.items()}
    clips = {k: v.reshape(-1, views, v.shape[-1]).sum(1) for k, v in logits.items()}
    truth = np.array([label for path, label in zip(val, labels) if path not in skipped])
    agree_clip = (clips["fp32"].argmax(1) == clips["int8"].argmax(1)).mean()
    agree_view = (logits["fp32"].argmax(1) == logits["int8"].argmax(1)).mean()
    accuracy = {k: (v.argmax(1) == truth).mean() for k, v in clips.items()}
    speed = _speed(predictor.model, sessions, x[:1], repeats, log)
    return [
        f"#### classification demo (uniformer_tiny_motion, {len(truth)} held-out clips x {views} views)",
        "",
        f"- top-1 agreement int8 vs fp32: {agree_clip:.1%} of clips, {agree_view:.1%} of views",
        f"- top-1 accuracy: fp32 {accuracy['fp32']:.1%}, int8 {accuracy['int8']:.1%}",
        "",
        "| one view (1, 3, 8, 64, 64) | CPU ms | vs optimize_for_inference fp32 (median of per-round ratios) | "
        "faster in rounds |",
        "|---|---|---|---|",
        *speed,
        "",
    ]


def segmentation_demo(demo: Path, folder: Path, repeats: int, log: Callable[[str], None]) -> list[str]:
    root = demo / "segmentation"
    file = read_checkpoint(str(root / "run" / "checkpoints" / "best.pt"))
    predictor = Predictor("uniformer_small_upernet_ade20k", file)
    images = sorted((root / "data" / "images" / "val").glob("*.png"))
    train = sorted((root / "data" / "images" / "train").glob("*.png"))
    picked = [str(train[i]) for i in np.random.default_rng(0).permutation(len(train))[:CALIBRATION_FILES]]
    calibration, _ = calibration_inputs(predictor, picked, limit=CALIBRATION_FILES)
    held_out, skipped = calibration_inputs(predictor, [str(p) for p in images], limit=len(images))
    if skipped:
        raise ValueError(f"unreadable held-out images: {sorted(skipped)}")
    x = np.concatenate(held_out)
    size = list(x.shape[-2:])
    fp32 = export_model(
        predictor.model, folder / "seg.onnx", "onnx", "uniformer_small_upernet_ade20k", checkpoint=file, input_size=size
    )
    int8 = quantize_onnx(fp32, folder / "seg_int8.onnx", calibration)
    sessions = {"fp32": _session(fp32), "int8": _session(int8)}
    num_classes = predictor.model.num_classes
    masks = [torch.from_numpy(np.array(Image.open(root / "data" / "masks" / "val" / p.name))).long() for p in images]
    miou, labels = {}, {}
    for key, session in sessions.items():
        pred = torch.from_numpy(session.run(None, {"input": x})[0]).argmax(1)
        labels[key] = pred
        areas = [intersect_and_union(p, m, num_classes, 255) for p, m in zip(pred, masks, strict=True)]
        inter, union = sum(a.intersect for a in areas), sum(a.union for a in areas)
        miou[key] = float((inter[union > 0].double() / union[union > 0]).mean())
    pixels = float((labels["fp32"] == labels["int8"]).double().mean())
    speed = _speed(predictor.model, sessions, x[:1], repeats, log)
    return [
        f"#### segmentation demo (UniFormer + UperNet as the demo trains it, {len(images)} held-out images "
        f"{size[0]}x{size[1]})",
        "",
        f"- mIoU: fp32 {miou['fp32']:.2%}, int8 {miou['int8']:.2%} ({(miou['int8'] - miou['fp32']) * 100:+.2f} "
        f"points); pixels labelled as in fp32: {pixels:.2%}",
        "",
        f"| one image (1, 3, {size[0]}, {size[1]}) | CPU ms | vs optimize_for_inference fp32 (median of per-round "
        "ratios) | faster in rounds |",
        "|---|---|---|---|",
        *speed,
        "",
    ]


def zoo_speed(name: str, clip: dict[str, int], folder: Path, repeats: int, log: Callable[[str], None]) -> list[str]:
    """int8 vs fp32 speed of a full-size zoo model with random weights (random calibration inputs)."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    from uniformer.deploy.hub import hub_config

    config = hub_config(model, clip=clip)
    shape = (1, *config["pretrained_cfg"]["input_size"])
    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randn(shape, generator=generator).numpy() for _ in range(4)]
    fp32 = export_model(model, folder / f"{name}.onnx", "onnx", name, clip=clip)
    int8 = quantize_onnx(fp32, folder / f"{name}_int8.onnx", calibration)
    x = torch.randn(shape, generator=generator).numpy()
    sessions = {"fp32": _session(fp32), "int8": _session(int8)}
    speed = _speed(model, sessions, x, repeats, log)
    return [
        f"#### {name}, one view {shape}, random weights",
        "",
        "| variant | CPU ms | vs optimize_for_inference fp32 (median of per-round ratios) | faster in rounds |",
        "|---|---|---|---|",
        *speed,
        "",
    ]


def run(demo: Path, repeats: int = 7, log: Callable[[str], None] = print) -> str:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sections = [
            f"Machine: {machine_description()}; one 2048^3 fp32 matrix product: "
            f"{matmul_ceiling(torch.float32, clock=time.thread_time):.0f} GMAC/s (one thread, CPU time).",
            "",
        ]
        sections += classification_demo(demo, folder, repeats, log)
        sections += segmentation_demo(demo, folder, repeats, log)
        sections += zoo_speed("uniformer_small", {"crop_size": 224}, folder, repeats, log)
        sections += zoo_speed("uniformer_small_k400_8x8", {"crop_size": 224, "num_frames": 8}, folder, repeats, log)
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quantization", description=__doc__.splitlines()[0])
    parser.add_argument("--demo-out", default="demo_out", help="the folder `make demo` wrote (default demo_out)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds after one warm-up round")
    args = parser.parse_args(argv)
    print(run(Path(args.demo_out), args.repeats, log=lambda _: None), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
