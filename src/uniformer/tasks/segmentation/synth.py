"""Synthetic segmentation data: shapes (disc, square, triangle, ring, cross) on textured backgrounds.

Every image has a random background texture (a base colour, a random low-frequency wave and pixel noise) and
one to three shapes of random size, position and colour (at least 100 RGB units from the background's base),
whole and apart (a shape is placed where it does not touch the others, else left out: a half-covered shape
would show no shape at all). Colour says nothing about the class, so a model must learn the shapes; the ring's
hole shows the background.
Written in the ``folder`` layout (``images/<split>``, ``masks/<split>``, ``classes.txt``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from uniformer.data.shapes import SHAPE_CLASSES, shape_mask

__all__ = ["draw_sample", "write_shapes"]

RADIUS = (0.2, 0.32)  # shape radius, a fraction of the image side
MAX_PLACEMENT_TRIES = 20  # random positions tried for a shape before it is left out


def draw_sample(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image (size, size, 3) uint8, mask (size, size) uint8)`` pair."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 8)
    wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi))
    base = rng.uniform(40, 215, 3)
    image = base + rng.uniform(10, 40) * wave[..., None] + rng.normal(0, 8, (size, size, 3))
    mask = np.zeros((size, size), np.uint8)
    taken = np.zeros((size, size), bool)  # the shapes so far, grown by a margin: a new shape may not touch them
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.integers(1, len(SHAPE_CLASSES)))
        for _attempt in range(MAX_PLACEMENT_TRIES):
            r = rng.uniform(*RADIUS) * size
            cy, cx = rng.uniform(r, size - r, 2)
            region = shape_mask(SHAPE_CLASSES[label], size, cy, cx, r)
            if not (region & taken).any():
                break
        else:
            continue  # no room left for this shape
        taken |= shape_mask("disc", size, cy, cx, 1.2 * r + 2)
        colour = rng.uniform(0, 255, 3)
        while np.linalg.norm(colour - base) < 100:  # visible against the background
            colour = rng.uniform(0, 255, 3)
        image[region] = colour + rng.normal(0, 8, (int(region.sum()), 3))
        mask[region] = label
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_shapes(root: str | os.PathLike[str], splits: dict[str, int], size: int = 64, seed: int = 0) -> Path:
    """Write ``splits`` (split name -> image count) of synthetic pairs under ``root``; returns ``root``."""
    root = Path(root)
    for offset, (split, count) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, offset])
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = draw_sample(rng, size)
            Image.fromarray(image).save(root / "images" / split / f"{i:05d}.png")
            Image.fromarray(mask).save(root / "masks" / split / f"{i:05d}.png")
    (root / "classes.txt").write_text("\n".join(SHAPE_CLASSES) + "\n")
    return root
