"""COCO person keypoints: the format's constants, the annotation file and the person boxes to test on.

Facts from mmpose 0.16 ``TopDownCocoDataset`` (vendored by Sense-X/UniFormer, ``pose_estimation/mmpose/datasets/
datasets/top_down/topdown_coco_dataset.py``): boxes are clipped to the image (``x2 = min(width - 1, x1 +
max(0, w - 1))``) and kept when their area is positive; persons without any labelled keypoint are left out of
training; keypoint visibility ``v`` (0 unlabelled, 1 labelled but hidden, 2 visible) counts as labelled when
``v > 0`` (``min(1, v)``); a detection-results file gives person boxes (``category_id`` 1, score at least
``det_bbox_thr``) for the official test, each scored with its detector score.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uniformer._fileio import read_json

__all__ = [
    "COCO_SIGMAS",
    "COCO_SKELETON",
    "UPPER_BODY_IDS",
    "Instance",
    "KeypointFile",
    "read_detections",
    "read_keypoint_file",
]

logger = logging.getLogger("uniformer.data")

# per-keypoint OKS constants of COCOeval (pycocotools ``kpt_oks_sigmas``; mmpose ``sigmas``)
COCO_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10
)
# limbs as 0-based keypoint pairs: the ``skeleton`` of COCO's person category (1-based there)
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
UPPER_BODY_IDS = frozenset(range(11))  # nose to wrists (mmpose ``upper_body_ids``)


@dataclass(frozen=True)
class Instance:
    """One person to crop: an image, a box (x, y, w, h) and, from the annotations, its keypoints (K, 3) as
    x, y, v; ``score`` is the box's (1 for ground-truth boxes, the detector's otherwise)."""

    image: str
    image_id: int
    box: tuple[float, float, float, float]
    keypoints: np.ndarray | None
    score: float = 1.0


@dataclass(frozen=True)
class KeypointFile:
    """A ``person_keypoints_*.json`` read once: keypoint names, skeleton, images and the usable persons."""

    path: Path
    keypoint_names: list[str]
    skeleton: list[tuple[int, int]]
    images: dict[int, tuple[str, int, int]]  # image id -> (file name, width, height)
    instances: list[Instance]


def _clean_box(box: Any, width: int, height: int) -> tuple[float, float, float, float] | None:
    """mmpose's box sanitising: clipped to the image, ``None`` when nothing is left."""
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(width - 1.0, x1 + max(0.0, w - 1)), min(height - 1.0, y1 + max(0.0, h - 1))
    return (x1, y1, x2 - x1, y2 - y1) if x2 > x1 and y2 > y1 else None


def read_keypoint_file(path: str | os.PathLike[str], image_dir: str | os.PathLike[str]) -> KeypointFile:
    """Read a COCO keypoints file; ``image_dir`` holds the images its ``file_name`` fields name.

    The file must have ``images``, ``annotations`` and a ``categories`` entry with ``keypoints`` names; a file
    that does not is refused naming the field. Annotations that cannot be used (a malformed ``bbox`` or
    ``keypoints`` such as ``null``, an unknown ``image_id``) are skipped and reported by id in one warning, when
    the file is read; an annotation that is not an object is an error naming its index; crowd annotations, empty
    boxes and persons without labelled keypoints are left out as mmpose leaves them out.
    """
    path = Path(path)
    data = read_json(path, "keypoint annotations")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise ValueError(f"{path}: no '{key}' list; a COCO keypoints file has images, annotations, categories")
    people = [c for c in data["categories"] if isinstance(c, dict) and c.get("keypoints")]
    if not people:
        raise ValueError(f"{path}: no category with 'keypoints' names (COCO's person category has 17)")
    names = [str(n) for n in people[0]["keypoints"]]
    skeleton = [(int(a) - 1, int(b) - 1) for a, b in people[0].get("skeleton", [])]
    try:
        images = {int(im["id"]): (str(im["file_name"]), int(im["width"]), int(im["height"])) for im in data["images"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: an 'images' entry lacks id, file_name, width or height ({exc!r})") from None
    instances, broken = [], []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise ValueError(
                f"{path}: annotations[{i}] is a {_json_type(ann)}, not an object (id, image_id, bbox, keypoints, ...)"
            )
        try:
            if ann.get("iscrowd", 0) or "keypoints" not in ann or ann.get("num_keypoints", 1) == 0:
                continue
            file_name, width, height = images[int(ann["image_id"])]
            if not isinstance(ann["keypoints"], list):
                raise ValueError(f"'keypoints' is {_json_type(ann['keypoints'])}, not a list of x, y, v values")
            keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            if len(keypoints) != len(names):
                raise ValueError(f"{len(keypoints)} keypoints, the category names {len(names)}")
            box = _clean_box(ann["bbox"], width, height)
        except (KeyError, TypeError, ValueError) as exc:
            broken.append(f"annotation {ann.get('id', '?') if isinstance(ann, dict) else '?'} ({exc!r})")
            continue
        if box is None or ("area" in ann and ann["area"] <= 0) or keypoints[:, 2].max() <= 0:
            continue
        keypoints[:, 2] = np.minimum(1, keypoints[:, 2])
        instances.append(Instance(os.path.join(image_dir, file_name), int(ann["image_id"]), box, keypoints))
    if broken:
        logger.warning("%s: %d unusable annotation(s) skipped: %s", path, len(broken), "; ".join(broken[:5]))
    return KeypointFile(path, names, skeleton, images, instances)


def _json_type(value: Any) -> str:
    """How a JSON document spells the type of ``value`` (for messages about a user's file)."""
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(type(value), "number")


def read_detections(
    path: str | os.PathLike[str], keypoints: KeypointFile, image_dir: str | os.PathLike[str], min_score: float = 0.0
) -> list[Instance]:
    """The person boxes of a COCO detection-results file (``[{"image_id", "category_id", "bbox", "score"}]``),
    ``category_id`` 1 with ``score >= min_score``; boxes of images the keypoint file does not list, or malformed,
    are skipped and reported."""
    path = Path(path)
    results = read_json(path, "person boxes")
    if not isinstance(results, list) or not results:
        raise ValueError(f"{path}: expected a non-empty list of detections {{image_id, category_id, bbox, score}}")
    instances, broken = [], []
    for i, det in enumerate(results):
        try:
            if int(det["category_id"]) != 1 or float(det["score"]) < min_score:
                continue
            file_name = keypoints.images[int(det["image_id"])][0]
            x, y, w, h = (float(v) for v in det["bbox"][:4])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            broken.append(f"entry {i} ({exc!r})")
            continue
        instances.append(
            Instance(os.path.join(image_dir, file_name), int(det["image_id"]), (x, y, w, h), None, float(det["score"]))
        )
    if broken:
        logger.warning("%s: %d unusable detection(s) skipped: %s", path, len(broken), "; ".join(broken[:5]))
    if not instances:
        raise ValueError(f"{path}: no person box (category_id 1) with score >= {min_score}")
    return instances
