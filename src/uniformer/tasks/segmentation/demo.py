"""``uniformer demo segmentation``: a small dense UniFormer + UperNet learns synthetic shapes from scratch on a CPU.

1. :func:`~uniformer.tasks.segmentation.synth.write_shapes` writes the images and masks (``folder`` layout);
2. ``uniformer train`` trains with the shipped recipe ``demo/shapes_tiny`` (the real task, data pipeline, loss
   and validation), run as a user would (a child process, as the classification demo does: tasks do not import
   the engine);
3. ``uniformer eval`` scores the last checkpoint on the held-out images (mIoU, aAcc, mAcc and the per-class
   report) against chance: predicting background everywhere;
4. ``uniformer predict --out-dir`` writes label maps and overlays of a few held-out images, drawn with their
   truth into ``grid.png`` (input | truth | prediction).

``report.md`` and ``result.json`` (held-out mIoU and chance as fractions, seconds) hold the measured numbers;
``curves.png`` the training loss and validation mIoU.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from uniformer.data.images import read_image, read_label_map
from uniformer.data.shapes import SHAPE_CLASSES
from uniformer.models.zoo.catalog import model_info
from uniformer.tasks._demo import run_cli, train_and_test, write_report
from uniformer.tasks.segmentation.metrics import Areas, compute_metrics, intersect_and_union
from uniformer.tasks.segmentation.predict import palette_for
from uniformer.tasks.segmentation.synth import write_shapes

__all__ = ["CONFIG", "background_miou", "run_demo"]

CONFIG = "demo/shapes_tiny"  # the shipped recipe (uniformer/configs/demo/shapes_tiny.yaml)
MODEL = "uniformer_small_upernet_ade20k"  # the recipe's model.name (its architecture family, reduced there)


def background_miou(mask_dir: Path, num_classes: int, ignore_index: int = 255) -> float:
    """Chance: the mIoU (fraction) of predicting background (class 0) everywhere on the masks in ``mask_dir``."""
    total = torch.zeros(4, num_classes, dtype=torch.long)
    for path in sorted(mask_dir.glob("*.png")):
        label = torch.from_numpy(read_label_map(path).astype(np.int64))
        areas = intersect_and_union(torch.zeros_like(label), label, num_classes, ignore_index)
        total += torch.stack([areas.intersect, areas.union, areas.pred, areas.label])
    return compute_metrics(Areas(*total), list(SHAPE_CLASSES), 0, {}).miou / 100


def _grid(data: Path, predicted: Path, stems: list[str], out: Path, zoom: int = 3) -> None:
    """Rows of held-out input | true mask | predicted mask (class colours), each ``zoom`` times enlarged."""
    palette = np.asarray(palette_for(model_info(MODEL), len(SHAPE_CLASSES)), np.uint8)  # predict's colours
    rows = []
    for stem in stems:
        image = read_image(data / "images" / "val" / f"{stem}.png").permute(1, 2, 0).numpy()
        truth = palette[read_label_map(data / "masks" / "val" / f"{stem}.png")]
        pred = palette[read_label_map(predicted / f"{stem}_labels.png")]
        gap = np.full((image.shape[0], 2, 3), 255, np.uint8)
        rows.append(np.concatenate([image, gap, truth, gap, pred], axis=1))
    sheet = np.concatenate([np.concatenate([r, np.full((2, r.shape[1], 3), 255, np.uint8)]) for r in rows])
    Image.fromarray(sheet).resize((sheet.shape[1] * zoom, sheet.shape[0] * zoom), Image.NEAREST).save(out)


def run_demo(
    out: Path, *, train_images: int = 1200, val_images: int = 200, seed: int = 0, overrides: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run the demo into ``out`` (an earlier demo's output there is replaced); returns ``result.json``'s content."""
    started = time.perf_counter()
    ran = train_and_test(
        out,
        "data/classes.txt",
        lambda data: write_shapes(data, {"train": train_images, "val": val_images}, size=64, seed=seed),
        f"1/4 synthetic shapes: {train_images} training and {val_images} held-out images",
        CONFIG,
        seed=seed,
        overrides=overrides,
        steps=("2/4 training", "3/4 held-out test"),
    )
    data, run, times, final, metrics = ran.data, ran.run, ran.times, ran.final, ran.metrics

    stems = [p.stem for p in sorted((data / "images" / "val").glob("*.png"))[:4]]
    predicted = out / "predictions"
    images = [str(data / "images" / "val" / f"{stem}.png") for stem in stems]
    times["predict (uniformer predict)"], _ = run_cli(
        "4/4 held-out predictions",
        ["predict", *images, "--model", MODEL, "--checkpoint", str(final), "--out-dir", str(predicted), "--json"],
        capture=True,
    )
    _grid(data, predicted, stems, out / "grid.png")
    if (run / "curves.png").is_file():
        shutil.copy(run / "curves.png", out / "curves.png")

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
        "Held-out images: input | truth | prediction.",
        "",
        "![grid](grid.png)",
        "",
        "![curves](curves.png)",
        "",
        *[f"![{stem}](predictions/{stem}_overlay.png)" for stem in stems],
        "",
    ]
    write_report(out, lines, times, result)
    print(f"held-out mIoU {100 * result['value']:.2f}% (chance {100 * chance:.2f}%), {result['seconds']:.0f} s")
    return result
