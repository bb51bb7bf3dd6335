"""``uniformer demo detection``: a small dense UniFormer Mask R-CNN learns synthetic shape instances on a CPU.

1. :func:`~uniformer.tasks.detection.synth.write_instances` writes the images and COCO annotations;
2. ``uniformer train`` trains with the shipped recipe ``demo/shapes_detection_tiny`` (the real task, data,
   detector and validation), run as a user would (a child process: tasks do not import the engine);
3. ``uniformer eval`` scores the last checkpoint on the held-out images with pycocotools (box and mask AP);
4. the task's prediction draws boxes, masks and names on a few held-out images (a grid in ``report.md``).

``report.md`` and ``result.json`` (held-out box AP50 as ``value``, chance 0, seconds) hold the measured numbers.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any

from uniformer.models.checkpoint import read_checkpoint
from uniformer.models.factory import create_model
from uniformer.models.zoo.catalog import model_info
from uniformer.runtime import feed
from uniformer.tasks._demo import train_and_test, write_report
from uniformer.tasks.detection import TASK
from uniformer.tasks.detection.predict import draw_detections
from uniformer.tasks.detection.synth import INSTANCE_CLASSES, write_instances

__all__ = ["CONFIG", "run_demo"]

CONFIG = "demo/shapes_detection_tiny"  # the shipped recipe (uniformer/configs/demo/shapes_detection_tiny.yaml)
THREADS = {"OMP_NUM_THREADS": "1"}  # one torch thread, data loaded in a second process (see the recipe's notes)


def run_demo(
    out: Path,
    *,
    train_images: int = 800,
    val_images: int = 100,
    size: int = 96,
    seed: int = 0,
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run the demo into ``out`` (an earlier demo's output there is replaced); returns ``result.json``'s content."""
    started = time.perf_counter()
    ran = train_and_test(
        out,
        "data/annotations/instances_val.json",
        lambda data: write_instances(data, {"train": train_images, "val": val_images}, size=size, seed=seed),
        f"1/3 synthetic shapes: {train_images} training and {val_images} held-out images",
        CONFIG,
        seed=seed,
        overrides=overrides,
        steps=("2/3 training", "3/3 held-out test"),
        env=THREADS,
    )
    data, run, times, final, metrics = ran.data, ran.run, ran.times, ran.final, ran.metrics["values"]

    file = read_checkpoint(final)  # the trained detector, as `uniformer predict --checkpoint` builds it
    model = create_model(file.model_name, checkpoint_path=file).eval()
    setup = TASK.prediction_setup(model_info(file.model_name), model, file, None)
    images = sorted((data / "images" / "val").glob("*.png"))[:8]
    pictures = []
    loop = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=1)  # one image at a time
    for prediction in TASK.predict(model, [str(p) for p in images], setup, loop, topk=10):
        name = f"prediction_{Path(prediction.path).stem}.png"
        draw_detections(prediction.path, prediction, out / name)
        pictures.append(name)

    result = {
        "metric": "bbox_AP50",
        "value": metrics["bbox_AP50"],
        "chance": 0.0,
        "seconds": round(time.perf_counter() - started, 1),
        **{k: metrics[k] for k in ("bbox_AP", "segm_AP", "segm_AP50") if k in metrics},
    }
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = next((r for r in reversed(records) if r.get("kind") == "summary"), {})
    rows = [f"| {k} | {100 * v:.1f} |" for k, v in metrics.items() if k.startswith(("bbox_", "segm_"))]
    lines = [
        "# UniFormer demo: instance segmentation learnt from scratch",
        "",
        f"`{CONFIG}` on {train_images} synthetic {size} x {size} images of {len(INSTANCE_CLASSES)} shapes "
        f"(1-4 overlapping instances each), tested on {val_images} held-out images, seed {seed}. Expected: box AP50 "
        ">= 80%, mask AP50 >= 75%.",
        "",
        "| metric (pycocotools) | % |",
        "|---|---|",
        *rows,
        "",
        f"Training: {summary.get('step')} steps in {summary.get('train_seconds', 0):.0f} s, "
        f"{summary.get('clips_per_s', 0):.1f} images/s.",
        "",
        " ".join(f"![{name}]({name})" for name in pictures),
        "",
    ]
    write_report(out, lines, times, result)
    print(
        f"held-out box AP50 {100 * result['value']:.1f}%, box AP {100 * metrics['bbox_AP']:.1f}%, "
        f"mask AP50 {100 * metrics.get('segm_AP50', 0):.1f}%, {result['seconds']:.0f} s"
    )
    return result
