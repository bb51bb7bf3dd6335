"""``uniformer demo segmentation``: a small dense UniFormer + UperNet learns synthetic shapes from scratch on a CPU.

1. :func:`~uniformer.tasks.segmentation.synth.write_shapes` writes the images and masks (``folder`` layout);
2. ``uniformer train`` trains with the shipped recipe ``demo/shapes_tiny`` (the real task, data pipeline, loss
   and validation), run as a user would (a child process, as the classification demo does: tasks do not import
   the engine);
3. ``uniformer eval`` scores the last checkpoint on the held-out images (mIoU, aAcc, mAcc and the per-class
   report) against chance: predicting background everywhere;
4. the task's prediction draws colour overlays of a few held-out images (its one-batch-at-a-time loop here).

``report.md`` and ``result.json`` (held-out mIoU and chance as fractions, seconds) hold the measured numbers.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

from uniformer._fileio import atomic_write_text
from uniformer.configs import find_config
from uniformer.models.checkpoint import read_checkpoint
from uniformer.models.registry import model_info
from uniformer.tasks._demo import prepare_output, run_cli
from uniformer.tasks.segmentation import TASK
from uniformer.tasks.segmentation.metrics import Areas, compute_metrics, intersect_and_union
from uniformer.tasks.segmentation.predict import write_overlay
from uniformer.tasks.segmentation.synth import SHAPE_CLASSES, write_shapes

__all__ = ["CONFIG", "background_miou", "run_demo"]

CONFIG = "demo/shapes_tiny"  # the shipped recipe (uniformer/configs/demo/shapes_tiny.yaml)


def background_miou(mask_dir: Path, num_classes: int, ignore_index: int = 255) -> float:
    """Chance: the mIoU (fraction) of predicting background (class 0) everywhere on the masks in ``mask_dir``."""
    total = torch.zeros(4, num_classes, dtype=torch.long)
    for path in sorted(mask_dir.glob("*.png")):
        label = torch.from_numpy(np.asarray(Image.open(path)).astype(np.int64))
        areas = intersect_and_union(torch.zeros_like(label), label, num_classes, ignore_index)
        total += torch.stack([areas.intersect, areas.union, areas.pred, areas.label])
    return compute_metrics(Areas(*total), list(SHAPE_CLASSES), 0, {}).miou / 100


@torch.no_grad()
def _feed(model: torch.nn.Module, dataset: Any, accumulator: Any) -> None:
    """What ``uniformer predict`` does with the engine's loop, one image at a time on this CPU."""
    for index in accumulator.indices(0, 1):
        batch = TASK.collate([dataset[index]])
        accumulator.update(model(TASK.model_inputs(batch)), batch)


def run_demo(
    out: Path, *, train_images: int = 1200, val_images: int = 200, seed: int = 0, overrides: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run the demo into ``out`` (an earlier demo's output there is replaced); returns ``result.json``'s content."""
    started = time.perf_counter()
    prepare_output(out, "data/classes.txt")
    data, run = out / "data", out / "run"
    times: dict[str, float] = {}
    tic = time.perf_counter()
    print(f"=== 1/3 synthetic shapes: {train_images} training and {val_images} held-out images in {data}", flush=True)
    write_shapes(data, {"train": train_images, "val": val_images}, size=64, seed=seed)
    times["make the data"] = time.perf_counter() - tic
    common = [f"data.root={data}", f"output_dir={run}", f"seed={seed}", "trainer.progress=false", *overrides]
    config = str(find_config(CONFIG))
    times["train (uniformer train)"], _ = run_cli("2/3 training", ["train", config, *common])
    final = max((run / "checkpoints").glob("checkpoint-*.pt"))  # the last weights, not chosen on held-out images
    times["test (uniformer eval)"], _ = run_cli(
        "3/3 held-out test", ["eval", config, *common, f"checkpoint={final}", f"eval.output_dir={out / 'eval'}"]
    )
    metrics = json.loads((out / "eval" / "metrics.json").read_text())

    file = read_checkpoint(final)
    resolved = file.config or {}
    model = TASK.build_model(OmegaConf.create(resolved), len(SHAPE_CLASSES))
    model.load_state_dict(file.state_dict)
    setup = TASK.prediction_setup(model_info(resolved["model"]["name"]), model, file, None)
    images = sorted((data / "images" / "val").glob("*.png"))[:4]
    overlays = []
    for prediction in TASK.predict(model.eval(), [str(p) for p in images], setup, _feed, topk=len(SHAPE_CLASSES)):
        name = f"overlay_{Path(prediction.path).stem}.png"
        write_overlay(prediction.path, prediction.label_map, setup.palette, out / name)
        overlays.append(name)

    chance = background_miou(data / "masks" / "val", len(SHAPE_CLASSES))
    result = {
        "metric": "miou",
        "value": metrics["miou"] / 100,
        "chance": chance,
        "seconds": round(time.perf_counter() - started, 1),
        "aacc": metrics["aacc"] / 100,
        "macc": metrics["macc"] / 100,
    }
    with open(out / "eval" / "per_class.csv", newline="") as f:
        rows = [f"| {r['class']} | {float(r['iou']):.2f}% | {float(r['acc']):.2f}% |" for r in csv.DictReader(f)]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = next((r for r in reversed(records) if r.get("kind") == "summary"), {})
    lines = [
        "# UniFormer demo: semantic segmentation learnt from scratch",
        "",
        f"`{CONFIG}` on {train_images} synthetic 64 x 64 images of {len(SHAPE_CLASSES) - 1} shapes, tested on "
        f"{val_images} held-out images, seed {seed}.",
        "",
        f"Held-out: mIoU {metrics['miou']:.2f}%, aAcc {metrics['aacc']:.2f}%, mAcc {metrics['macc']:.2f}%; chance "
        f"(background everywhere): mIoU {100 * chance:.2f}%.",
        "",
        "| class | IoU | Acc |",
        "|---|---|---|",
        *rows,
        "",
        f"Training: {summary.get('step')} steps in {summary.get('train_seconds', 0):.0f} s, "
        f"{summary.get('clips_per_s', 0):.1f} images/s.",
        "",
        *[f"![{name}]({name})" for name in overlays],
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {step} | {seconds:.0f} |" for step, seconds in times.items()],
        "",
    ]
    atomic_write_text(out / "report.md", "\n".join(lines))
    atomic_write_text(out / "result.json", json.dumps(result, indent=2) + "\n")
    print(f"held-out mIoU {100 * result['value']:.2f}% (chance {100 * chance:.2f}%), {result['seconds']:.0f} s")
    return result
