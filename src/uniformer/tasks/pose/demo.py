"""``uniformer demo pose``: a small dense UniFormer + heatmap head learns synthetic stick figures from scratch on a CPU.

1. :func:`~uniformer.tasks.pose.synth.write_figures` writes the images and their COCO keypoint files;
2. ``uniformer train`` trains with the shipped recipe ``demo/pose_tiny`` (the real task: crops, augmentation,
   heatmap targets, loss and validation), run as a user would (a child process: tasks do not import the engine);
3. ``uniformer eval`` tests the last checkpoint on the held-out figures' ground-truth boxes (flip test, decoding,
   rescoring, OKS-NMS, ``COCOeval``) against chance: the mean training pose placed in each box;
4. the task's prediction draws the predicted skeletons of a few held-out figures (the runtime's loop, batches of 16).

``report.md`` and ``result.json`` (held-out AP and chance as fractions, seconds) hold the measured numbers.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from uniformer.data.images import read_image
from uniformer.models.checkpoint import read_checkpoint
from uniformer.models.factory import create_model
from uniformer.models.zoo.catalog import model_info
from uniformer.runtime import feed
from uniformer.tasks._demo import train_and_test, write_report
from uniformer.tasks.pose import TASK
from uniformer.tasks.pose.coco import read_keypoint_file
from uniformer.tasks.pose.codec import PIXEL_STD
from uniformer.tasks.pose.metrics import evaluate_coco_keypoints
from uniformer.tasks.pose.predict import draw_people
from uniformer.tasks.pose.synth import write_figures
from uniformer.tasks.pose.transforms import box_to_center_scale

__all__ = ["CONFIG", "mean_pose_ap", "run_demo"]

CONFIG = "demo/pose_tiny"  # the shipped recipe (uniformer/configs/demo/pose_tiny.yaml)
# One compute thread, the data in a second process (data.num_workers: 1): on this project's 2 shared cores, a
# 32-crop training step of the demo model took 0.9-1.0 s with one torch thread and 2.8-3.4 s with two (load ~6:
# two OpenMP threads wait on each other while other jobs hold the cores).
THREADS = {"OMP_NUM_THREADS": "1"}


def mean_pose_ap(train_ann: Path, val_ann: Path, aspect_ratio: float) -> float:
    """Chance: the AP (fraction) of predicting, in each held-out ground-truth box, the mean training pose (each
    keypoint's mean position relative to the box's center and scale, over the persons where it is labelled)."""
    train = read_keypoint_file(train_ann, train_ann.parent)
    sums, counts = np.zeros((len(train.keypoint_names), 2)), np.zeros((len(train.keypoint_names), 1))
    for inst in train.instances:
        center, scale = box_to_center_scale(inst.box, aspect_ratio)
        labelled = inst.keypoints[:, 2:3] > 0
        sums += np.where(labelled, (inst.keypoints[:, :2] - center) / (scale * PIXEL_STD), 0)
        counts += labelled
    mean = sums / np.maximum(counts, 1)
    results = []
    for inst in read_keypoint_file(val_ann, val_ann.parent).instances:
        center, scale = box_to_center_scale(inst.box, aspect_ratio)
        points = np.c_[mean * scale * PIXEL_STD + center, np.ones(len(mean))]
        results.append(
            {"image_id": inst.image_id, "category_id": 1, "keypoints": points.reshape(-1).tolist(), "score": 1.0}
        )
    return evaluate_coco_keypoints(val_ann, results)["AP"]


def run_demo(
    out: Path, *, train_images: int = 1500, val_images: int = 200, seed: int = 0, overrides: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run the demo into ``out`` (an earlier demo's output there is replaced); returns ``result.json``'s content."""
    started = time.perf_counter()
    ran = train_and_test(
        out,
        "data/annotations/person_keypoints_val.json",
        lambda data: write_figures(data, {"train": train_images, "val": val_images}, size=128, seed=seed),
        f"1/3 synthetic figures: {train_images} training and {val_images} held-out images",
        CONFIG,
        seed=seed,
        overrides=overrides,
        steps=("2/3 training", "3/3 held-out test"),
        env=THREADS,
    )
    data, run, times, final, metrics = ran.data, ran.run, ran.times, ran.final, ran.metrics

    file = read_checkpoint(final)  # the trained model, as `uniformer predict --checkpoint` builds it
    model = create_model(file.model_name, checkpoint_path=file).eval()
    setup = TASK.prediction_setup(model_info(file.model_name), model, file, None)  # the run's crop and names
    val_ann = data / "annotations" / "person_keypoints_val.json"
    annotations = read_keypoint_file(val_ann, data / "val")
    shown = annotations.instances[:6]
    boxes = {Path(inst.image).name: [list(inst.box)] for inst in shown}
    setup = replace(setup, boxes=boxes)  # the held-out ground-truth boxes, as the test uses them
    drawings = []
    loop = partial(feed, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=16)  # as `uniformer predict`
    for inst, prediction in zip(shown, TASK.predict(model, [i.image for i in shown], setup, loop, 1), strict=True):
        image = read_image(inst.image)
        truth = draw_people(image, [{"keypoints": inst.keypoints.tolist()}], setup.skeleton, 0.5)
        predicted = draw_people(image, prediction.persons, setup.skeleton, setup.vis_thr)
        pair = torch.cat([truth, torch.full((3, image.shape[1], 4), 255, dtype=torch.uint8), predicted], dim=2)
        name = f"skeletons_{Path(inst.image).stem}.png"
        Image.fromarray(pair.permute(1, 2, 0).numpy()).save(out / name)
        drawings.append(name)

    height, width = setup.input_size
    chance = mean_pose_ap(data / "annotations" / "person_keypoints_train.json", val_ann, width / height)
    result = {
        "metric": "AP",
        "value": metrics["AP"] / 100,
        "chance": chance,
        "seconds": round(time.perf_counter() - started, 1),
        **{k: metrics[k] / 100 for k in ("AP50", "AP75", "AR")},
    }
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = next((r for r in reversed(records) if r.get("kind") == "summary"), {})
    rows = [f"| {k} | {metrics[k]:.1f}% |" for k in ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75")]
    lines = [
        "# UniFormer demo: human pose estimation learnt from scratch",
        "",
        f"`{CONFIG}` on {train_images} synthetic 128 x 128 stick figures (COCO's 17 keypoints), tested on the "
        f"ground-truth boxes of {val_images} held-out figures, seed {seed}.",
        "",
        f"Held-out COCO keypoint AP {metrics['AP']:.1f}% (COCOeval, OKS); chance (the mean training pose in each "
        f"box): AP {100 * chance:.1f}%.",
        "",
        "| metric | value |",
        "|---|---|",
        *rows,
        "",
        f"Training: {summary.get('step')} steps in {summary.get('train_seconds', 0):.0f} s, "
        f"{summary.get('clips_per_s', 0):.1f} crops/s.",
        "",
        "Left: ground truth; right: prediction (keypoints above confidence 0.2).",
        "",
        *[f"![{name}]({name})" for name in drawings],
        "",
    ]
    write_report(out, lines, times, result)
    print(f"held-out AP {100 * result['value']:.1f}% (chance {100 * chance:.1f}%), {result['seconds']:.0f} s")
    return result
