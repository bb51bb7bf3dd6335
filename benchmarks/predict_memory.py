"""Peak resident memory of ``uniformer predict`` (segmentation and detection, with ``--out-dir``) on large photos.

Run from the repository root: ``.venv/bin/python -m benchmarks.predict_memory [--megapixels 12 48]``. Each
measurement is a fresh process (``ru_maxrss``: its resident high-water mark, the model and its weights included)
predicting one generated 4:3 JPEG (smooth colour gradients and noise) and writing its files. Random weights; the
detector's classifier bias favours its first class so that about a hundred candidates pass its own test threshold
(0.05) and none the prediction's (0.3): a real photo's worst case, every candidate's mask computed, none kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from uniformer.benchmarks.models import machine_description

MODELS = {"segmentation": "uniformer_small_upernet_ade20k", "detection": "uniformer_small_h14_mask_rcnn_coco_1x"}

_CHILD = """
import json, resource, sys
import torch
from uniformer.engine.predict import Predictor

model, photo, out = sys.argv[1:4]
predictor = Predictor(model, batch_size=1)
heads = getattr(predictor.model, "roi_heads", None)
if heads is not None:  # about a hundred candidates above the detector's 0.05, none above the prediction's 0.3
    with torch.no_grad():
        heads.box_predictor.cls_score.bias[1] += 3.0
predictions = predictor.predict([photo])
files = predictor.task.write_predictions(predictions, predictor.setup, out)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "error": predictions[0].error, "files": len(files)}))
"""


def write_photo(path: Path, megapixels: float) -> tuple[int, int]:
    """A 4:3 JPEG of about ``megapixels`` (gradients plus noise, so it compresses like a photo); its size."""
    height = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
    width = height * 4 // 3
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    rng = np.random.default_rng(0)
    image = np.empty((height, width, 3), np.uint8)
    for c, (a, b) in enumerate(((1.0, 0.0), (0.0, 1.0), (0.5, 0.5))):
        noise = rng.integers(0, 24, (height, width), dtype=np.uint8)
        image[..., c] = np.clip(a * rows + b * cols, 0, 231).astype(np.uint8) + noise
    Image.fromarray(image).save(path, quality=90)
    return width, height


def measure(model: str, photo: Path, out: Path) -> dict[str, object]:
    """The child's report: peak RSS in MB, the prediction's error (if any), files written."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, model, str(photo), str(out)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{model} on {photo} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[12, 48])
    parser.add_argument("--tasks", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    args = parser.parse_args()
    print(machine_description())
    print("| task | model | photo | peak RSS MB |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for megapixels in args.megapixels:
            photo = Path(tmp) / f"photo_{megapixels:g}mp.jpg"
            width, height = write_photo(photo, megapixels)
            for task in args.tasks:
                report = measure(MODELS[task], photo, Path(tmp) / "out")
                if report["error"]:
                    raise RuntimeError(f"{MODELS[task]} could not predict {photo}: {report['error']}")
                print(f"| {task} | {MODELS[task]} | {width}x{height} | {report['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
