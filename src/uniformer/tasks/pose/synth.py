"""Synthetic people: stick figures with COCO's 17 keypoints on textured backgrounds, in COCO keypoint format.

Each image holds one figure facing the viewer (so its left side is on the image's right): a torso of random size,
tilt and position, a head disc with eyes (ears and nose on it), and arms and legs as thick segments at random
angles, each limb a random colour (at least 100 RGB units from the background), drawn over a background of a
random colour, a low-frequency wave and pixel noise. With probability 0.5 a block of background-like texture
hides part of the figure: the keypoints under it are marked labelled-but-hidden (``v = 1``, as COCO marks
occluded keypoints); keypoints outside the image are unlabelled (``v = 0``). The annotation's ``bbox`` is the
box around the drawn figure and its ``area`` that box's area (COCOeval's OKS scale).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from uniformer.labels import load_labels
from uniformer.tasks.pose.coco import COCO_SKELETON

__all__ = ["draw_figure", "write_figures"]

_LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 11), (6, 12), (5, 6), (11, 12))


def _unit(angle: float) -> np.ndarray:
    return np.array([np.sin(angle), np.cos(angle)])  # angle 0 points down the image


def _pose(rng: np.random.Generator, size: int) -> np.ndarray:
    """Keypoints (17, 2) of a random figure."""
    s = rng.uniform(0.2, 0.3) * size  # torso length
    tilt = rng.normal(0, 0.25)
    down, right = _unit(tilt), np.array([np.cos(tilt), -np.sin(tilt)])
    centre = rng.uniform(0.35, 0.65, 2) * size
    neck, pelvis = centre - down * s / 2, centre + down * s / 2
    k = np.zeros((17, 2))
    k[5], k[6] = neck + right * 0.4 * s, neck - right * 0.4 * s  # left shoulder on the image's right
    k[11], k[12] = pelvis + right * 0.25 * s, pelvis - right * 0.25 * s
    head = neck - down * 0.45 * s + right * rng.normal(0, 0.05) * s
    k[0] = head + down * 0.05 * s
    k[1], k[2] = head - down * 0.06 * s + right * 0.1 * s, head - down * 0.06 * s - right * 0.1 * s
    k[3], k[4] = head + right * 0.2 * s, head - right * 0.2 * s
    for shoulder, elbow, wrist, side in ((5, 7, 9, 1), (6, 8, 10, -1)):
        upper = tilt + side * rng.uniform(0.1, 2.8)
        k[elbow] = k[shoulder] + _unit(upper) * 0.5 * s
        k[wrist] = k[elbow] + _unit(upper + side * rng.uniform(-0.5, 2.2)) * 0.45 * s
    for hip, knee, ankle, side in ((11, 13, 15, 1), (12, 14, 16, -1)):
        thigh = tilt + side * rng.uniform(-0.2, 0.9)
        k[knee] = k[hip] + _unit(thigh) * 0.55 * s
        k[ankle] = k[knee] + _unit(thigh - side * rng.uniform(-0.3, 1.0)) * 0.55 * s
    return k


def _texture(rng: np.random.Generator, size: int, base: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle, freq = rng.uniform(0, np.pi), rng.uniform(1, 6)
    wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi))
    return base + rng.uniform(10, 40) * wave[..., None] + rng.normal(0, 8, (size, size, 3))


def _colour(rng: np.random.Generator, base: np.ndarray) -> tuple[int, int, int]:
    colour = rng.uniform(0, 255, 3)
    while np.linalg.norm(colour - base) < 100:
        colour = rng.uniform(0, 255, 3)
    return tuple(int(v) for v in colour)


def draw_figure(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """One ``(image (size, size, 3) uint8, keypoints (17, 3) x y v, bbox [x, y, w, h])``."""
    k = _pose(rng, size)
    s = np.linalg.norm(k[5] - k[11])
    base = rng.uniform(40, 215, 3)
    background = _texture(rng, size, base)
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(canvas)
    width = max(2, int(0.14 * s))
    torso = [tuple(k[i]) for i in (5, 6, 12, 11)]
    pen.polygon(torso, fill=_colour(rng, base))
    for a, b in _LIMBS[:8]:
        pen.line([tuple(k[a]), tuple(k[b])], fill=_colour(rng, base), width=width)
        pen.ellipse(
            [*(k[b] - width / 2), *(k[b] + width / 2)], fill=_colour(rng, base) if b in (9, 10, 15, 16) else None
        )
    head_r = 0.22 * s
    head = (k[3] + k[4]) / 2
    pen.ellipse([*(head - head_r), *(head + head_r)], fill=_colour(rng, base))
    eye_r = max(1.0, 0.04 * s)
    for eye in (k[1], k[2]):
        pen.ellipse([*(eye - eye_r), *(eye + eye_r)], fill=(0, 0, 0))
    pen.ellipse([*(k[0] - eye_r * 0.8), *(k[0] + eye_r * 0.8)], fill=(255, 255, 255))
    image = np.asarray(canvas).astype(np.float32)
    visibility = np.full(17, 2.0)
    if rng.random() < 0.5:  # an occluder of background texture over part of the figure
        w, h = rng.uniform(0.2, 0.45, 2) * size
        x0, y0 = k[rng.integers(17)] - rng.uniform(0, 1, 2) * [w, h]
        x1, y1 = int(max(0, x0)), int(max(0, y0))
        x2, y2 = int(min(size, x0 + w)), int(min(size, y0 + h))
        image[y1:y2, x1:x2] = _texture(rng, size, base)[y1:y2, x1:x2]
        hidden = (k[:, 0] >= x1) & (k[:, 0] < x2) & (k[:, 1] >= y1) & (k[:, 1] < y2)
        visibility[hidden] = 1
    outside = (k[:, 0] < 0) | (k[:, 0] > size - 1) | (k[:, 1] < 0) | (k[:, 1] > size - 1)
    visibility[outside] = 0
    margin = width
    lo = np.clip(k.min(axis=0) - margin, 0, size - 1)
    hi = np.clip(k.max(axis=0) + margin, 0, size - 1)
    keypoints = np.concatenate([k, visibility[:, None]], axis=1)
    keypoints[visibility == 0] = 0
    return np.clip(image, 0, 255).astype(np.uint8), keypoints, [float(lo[0]), float(lo[1]), *(hi - lo).tolist()]


def write_figures(root: str | os.PathLike[str], splits: dict[str, int], size: int = 128, seed: int = 0) -> Path:
    """Write ``splits`` (name -> image count) under ``root``: ``<name>/*.png`` and
    ``annotations/person_keypoints_<name>.json``; returns ``root``."""
    root = Path(root)
    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": load_labels("coco-keypoints"),
        "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for offset, (split, count) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, offset])
        (root / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            image, keypoints, box = draw_figure(rng, size)
            name = f"{i:05d}.png"
            Image.fromarray(image).save(root / split / name)
            images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
            annotations.append(
                {
                    "id": i + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": [round(v, 2) for v in box],
                    "area": round(box[2] * box[3], 2),
                    "iscrowd": 0,
                    "num_keypoints": int((keypoints[:, 2] > 0).sum()),
                    "keypoints": [round(float(v), 2) for v in keypoints.reshape(-1)],
                }
            )
        data = {"images": images, "annotations": annotations, "categories": [category]}
        (root / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(data))
    return root
