"""Synthetic instance data: the segmentation demo's shapes, several instances per image, in COCO format.

Each image has the segmentation demo's textured background and one to four shapes (disc, square, triangle,
ring, cross) of random size, position and colour, drawn in turn: a later shape covers part of an earlier one
(overlaps allowed), so each instance's mask is what stays visible and its box is that mask's extent (an
instance with fewer than ``min_area`` visible pixels is left out of the annotations). Written as
``images/<split>/*.png`` and ``annotations/instances_<split>.json`` (masks as RLE, categories 1 .. 5).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from uniformer.data.shapes import SHAPE_CLASSES, shape_mask

__all__ = ["INSTANCE_CLASSES", "draw_instances", "write_instances"]

INSTANCE_CLASSES = SHAPE_CLASSES[1:]  # the shapes; the background is no category


def draw_instances(
    rng: np.random.Generator, size: int = 96, max_instances: int = 4, min_area: int = 20
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One image (size, size, 3) uint8 and its instances as (category id 1 .. 5, visible mask (size, size) bool)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 8)
    wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi))
    base = rng.uniform(40, 215, 3)
    image = base + rng.uniform(10, 40) * wave[..., None] + rng.normal(0, 8, (size, size, 3))
    drawn: list[tuple[int, np.ndarray]] = []
    for _ in range(int(rng.integers(1, max_instances + 1))):
        category = int(rng.integers(1, len(INSTANCE_CLASSES) + 1))
        r = rng.uniform(0.1, 0.22) * size
        cy, cx = rng.uniform(r * 0.8, size - r * 0.8, 2)
        region = shape_mask(INSTANCE_CLASSES[category - 1], size, cy, cx, r)
        colour = rng.uniform(0, 255, 3)
        while np.linalg.norm(colour - base) < 100:  # visible against the background
            colour = rng.uniform(0, 255, 3)
        image[region] = colour + rng.normal(0, 8, (int(region.sum()), 3))
        drawn = [(c, m & ~region) for c, m in drawn] + [(category, region)]
    instances = [(c, m) for c, m in drawn if m.sum() >= min_area]
    return np.clip(image, 0, 255).astype(np.uint8), instances


def write_instances(root: str | os.PathLike[str], splits: dict[str, int], size: int = 96, seed: int = 0) -> Path:
    """Write ``splits`` (split name -> image count) of synthetic images and their COCO annotations under ``root``."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(INSTANCE_CLASSES)]
    for offset, (split, count) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, offset])
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            image, instances = draw_instances(rng, size)
            name = f"{i:05d}.png"
            Image.fromarray(image).save(root / "images" / split / name)
            images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
            for category, mask in instances:
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": category,
                        "bbox": [x, y, w, h],
                        "area": float(mask.sum()),
                        "iscrowd": 0,
                        "segmentation": {"size": [size, size], "counts": rle["counts"].decode("ascii")},
                    }
                )
        data = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root
