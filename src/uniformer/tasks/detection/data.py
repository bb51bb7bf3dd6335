"""COCO-format detection data: ``instances_*.json`` (boxes, optionally polygon/RLE masks) and an image folder.

Annotations are read as mmdet 2.x's ``CocoDataset`` reads them (``mmdet/datasets/coco.py``, ``_parse_ann_info``,
``_filter_imgs``), and every annotation or image left out is counted in :attr:`CocoDetection.report`:

* classes: the file's categories sorted by id are labels 1 .. C (0 is the background), names from the file;
* ``iscrowd=1`` annotations are not training targets (mmdet keeps them as ``gt_bboxes_ignore``, which the
  official assigners never read); the COCO evaluation handles them itself;
* a box is ``[x, y, x + w, y + h]``; an annotation whose box has no overlap with the image, ``area <= 0``,
  ``w < 1`` or ``h < 1`` is degenerate and dropped, as mmdet;
* training skips images without any annotation (mmdet ``filter_empty_gt``); evaluation keeps every image;
* masks (polygons or RLE, via pycocotools) when any annotation of the file has a ``segmentation``; a file
  without any trains a box-only detector. In a file with masks, an annotation without one is dropped (counted);
  so is one whose mask pycocotools cannot draw on its image (a polygon of fewer than 3 points or an odd number of
  values, an RLE whose size is not the image's), reported with its id when the set is read, not when training
  draws the image, and removed from the ground truth the evaluation scores against (pycocotools would fail on it);
* an annotation whose ``image_id`` is not in the images list is dropped and reported with its id; a file that
  is not a COCO object, an image id listed twice, or a box that is not numbers is an error naming the file;
* an image that fails to decode (or whose size is not the annotated one) is replaced by another one in training
  (logged and carried in the batch's ``skipped``), and marked ``valid=False`` in evaluation, where the metric
  lists it (:class:`~uniformer.data.items.RetryingDataset`).

Training augmentation is the official flip (0.5) with torchvision transforms v2, and, for the 3x+MS recipes,
the DETR-style crop (:func:`train_transform`). The final resizing (1333 x 800 keep-ratio, or a random short
side for multi-scale) happens inside the model (torchvision's ``GeneralizedRCNNTransform``), so items keep
their own size.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.transforms import v2

from uniformer._fileio import read_json
from uniformer.data.images import DecodeError, read_image
from uniformer.data.items import RetryingDataset, collate_items

__all__ = ["CocoDetection", "DataReport", "RandomSizeCrop", "collate_detection", "load_coco", "train_transform"]

logger = logging.getLogger(__name__)


@dataclass
class DataReport:
    """What reading the annotation file left out, per reason (annotation or image counts); ``problems`` names
    each annotation left out for a broken mask or a missing image (``"annotation 7: ..."``)."""

    images: int = 0
    annotations: int = 0
    crowd: int = 0
    degenerate: int = 0
    no_mask: int = 0
    bad_mask: int = 0
    orphans: int = 0
    empty_images_skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.images} images, {self.annotations} annotations used; left out: {self.crowd} crowd, "
            f"{self.degenerate} degenerate boxes, {self.no_mask} without a mask, {self.bad_mask} with a broken mask, "
            f"{self.orphans} of images not listed, {self.empty_images_skipped} images without annotations "
            "(training only)"
        )


@dataclass
class _Entry:
    image_id: int
    path: str
    height: int
    width: int
    annotations: list[dict[str, Any]] = field(default_factory=list)


def load_coco(ann_file: str | os.PathLike[str]) -> COCO:
    """The annotation file as a pycocotools ``COCO`` index (its progress prints silenced); a clear error naming
    the file and the field for a file that is missing, not JSON, not a COCO object (its ``images``,
    ``annotations`` and ``categories`` lists of objects with an ``id``), or that lists an image id twice (the
    index would keep one of them silently)."""
    if not os.path.isfile(ann_file):
        raise FileNotFoundError(f"annotation file {ann_file} does not exist")
    data = read_json(ann_file, "annotation file")
    if not isinstance(data, dict):
        raise ValueError(
            f"{ann_file}: not a COCO-format annotation file (a JSON object with images, annotations and categories "
            f"lists; this file holds a {type(data).__name__})"
        )
    for key in ("images", "categories"):
        if key not in data:
            raise ValueError(f"{ann_file}: no {key!r} list (a COCO instances file has images, annotations, categories)")
    first_index: dict[Any, int] = {}
    for key in ("images", "annotations", "categories"):
        records = data.get(key, [])
        if not isinstance(records, list):
            raise ValueError(f"{ann_file}: field {key!r} must be a list; got a {type(records).__name__}")
        for i, record in enumerate(records):
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError(f"{ann_file}: {key}[{i}] is not an object with an 'id'")
            if key == "images":
                if record["id"] in first_index:
                    raise ValueError(
                        f"{ann_file}: images[{i}] repeats the image id {record['id']!r} of images"
                        f"[{first_index[record['id']]}] (each image is listed once)"
                    )
                first_index[record["id"]] = i
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(RetryingDataset):
    """Items ``{"image": (3, H, W) float in [0, 1], "target": {"boxes", "labels"[, "masks"]}, "image_id"}`` in
    the :class:`~uniformer.data.items.Item` envelope, of a COCO-format set (see the module docstring).

    ``crop``: a training transform applied after the flip (:func:`train_transform`'s crop policy); boxes it
    leaves without area are removed with their labels and masks.
    """

    noun = "image"
    unreadable = (DecodeError,)

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        image_dir: str | os.PathLike[str],
        *,
        train: bool,
        flip: float = 0.5,
        crop: v2.Transform | None = None,
        max_retries: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__(train=train, max_retries=max_retries, seed=seed)
        self.coco = load_coco(ann_file)
        self.ann_file, self.image_dir = str(ann_file), str(image_dir)
        self.category_ids = sorted(c["id"] for c in self.coco.dataset["categories"])
        names = {c["id"]: c.get("name", str(c["id"])) for c in self.coco.dataset["categories"]}
        self.classes = [names[i] for i in self.category_ids]
        self.label_of = {cat: i + 1 for i, cat in enumerate(self.category_ids)}
        anns = self.coco.dataset.get("annotations", [])
        self.has_masks = any(a.get("segmentation") for a in anns)
        self.report = report = DataReport()
        self.broken_masks: set[Any] = set()
        self.entries = self._entries()
        if self.broken_masks:  # the mask metric draws every ground-truth mask: those it cannot draw leave the index
            self.coco.dataset["annotations"] = [a for a in anns if a["id"] not in self.broken_masks]
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco.createIndex()
        if report.problems:
            shown = "; ".join(report.problems[:20]) + ("; ..." if len(report.problems) > 20 else "")
            logger.warning("%s: %d annotation(s) left out: %s", self.ann_file, len(report.problems), shown)
        steps = [v2.RandomHorizontalFlip(flip)] if flip > 0 else []
        steps += [crop] if crop is not None else []
        self.transform = v2.Compose(steps) if train and steps else None

    def _entries(self) -> list[_Entry]:
        entries, report = [], self.report
        for ann in self.coco.dataset.get("annotations", []):
            if ann.get("image_id") not in self.coco.imgs:
                report.orphans += 1
                report.problems.append(f"annotation {ann['id']}: image_id {ann.get('image_id')!r} is not in images")
        for image_id in sorted(self.coco.imgs):
            info = self.coco.imgs[image_id]
            for key in ("file_name", "height", "width"):
                if key not in info:
                    raise ValueError(f"{self.ann_file}: image {image_id} has no {key!r}")
            entry = _Entry(image_id, os.path.join(self.image_dir, info["file_name"]), info["height"], info["width"])
            raw = self.coco.imgToAnns.get(image_id, [])
            if self.train and not raw:
                report.empty_images_skipped += 1
                continue
            for ann in raw:
                if ann.get("category_id") not in self.label_of:
                    raise ValueError(
                        f"{self.ann_file}: annotation {ann.get('id')} has category_id {ann.get('category_id')}, "
                        "which is not in the categories list"
                    )
                if ann.get("iscrowd", 0) or ann.get("ignore", False):
                    report.crowd += 1
                    continue
                self._check_numbers(ann)
                problem = _mask_problem(ann.get("segmentation"), entry.height, entry.width) if self.has_masks else None
                if not _usable_box(ann, entry.width, entry.height):
                    report.degenerate += 1
                elif self.has_masks and not ann.get("segmentation"):
                    report.no_mask += 1
                elif problem is not None:
                    report.bad_mask += 1
                    self.broken_masks.add(ann["id"])
                    report.problems.append(f"annotation {ann['id']} (image {image_id}): {problem}")
                else:
                    entry.annotations.append(ann)
            report.annotations += len(entry.annotations)
            entries.append(entry)
        report.images = len(entries)
        return entries

    def _check_numbers(self, ann: dict[str, Any]) -> None:
        """A box or area that is not numbers is an error of the file (a box of another length is degenerate)."""
        bbox, area = ann.get("bbox"), ann.get("area", 1)
        if isinstance(bbox, list) and not all(_is_number(v) for v in bbox):
            raise ValueError(
                f"{self.ann_file}: annotation {ann['id']}: field 'bbox' must be numbers [x, y, width, height]; "
                f"got {bbox!r}"
            )
        if not _is_number(area):
            raise ValueError(f"{self.ann_file}: annotation {ann['id']}: field 'area' must be a number; got {area!r}")

    def aspect_groups(self) -> list[int]:
        """1 for an image wider than tall, else 0, per item (mmdet ``CustomDataset._set_group_flag``: w / h > 1)."""
        return [int(e.width / e.height > 1) for e in self.entries]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"CocoDetection({self.ann_file}: {self.report.summary()}, masks={self.has_masks}, train={self.train})"

    def target(self, entry: _Entry) -> dict[str, torch.Tensor]:
        """The training target of one image: ``boxes`` (N, 4) x1 y1 x2 y2, ``labels`` (N,) 1 .. C, ``masks``
        (N, H, W) uint8 when the set has masks."""
        anns = entry.annotations
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32).reshape(-1, 4)  # fmt: skip
        target = {"boxes": boxes, "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns]).long()}
        if self.has_masks:
            masks = [self.coco.annToMask(a) for a in anns]
            stacked = np.stack(masks) if masks else np.zeros((0, entry.height, entry.width), np.uint8)
            target["masks"] = torch.from_numpy(stacked)
        return target

    @property
    def num_sources(self) -> int:
        return len(self.entries)

    def source_path(self, index: int) -> str:
        return self.entries[index].path

    def load(self, index: int, view: int) -> torch.Tensor:
        entry = self.entries[index]
        image = read_image(entry.path)
        if image.shape[-2:] != (entry.height, entry.width):
            raise DecodeError(
                f"image is {image.shape[2]}x{image.shape[1]}, the annotation file says {entry.width}x{entry.height}"
            )
        return image

    def reason(self, exc: Exception) -> str:
        return f"unreadable image ({exc})"

    def build(self, index: int, view: int, loaded: torch.Tensor) -> dict[str, Any]:
        entry = self.entries[index]
        target = self.target(entry) if self.train else {}
        if self.transform is not None:
            loaded, target = self._augment(loaded, target)
        return {"image": loaded.float() / 255, "target": target, "image_id": entry.image_id}

    def blank(self, index: int, view: int) -> dict[str, Any]:
        return {"image": torch.zeros(3, 32, 32), "target": {}, "image_id": self.entries[index].image_id}

    def _augment(self, image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        size = tuple(image.shape[-2:])
        wrapped = {"boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=size)}
        if "masks" in target:
            wrapped["masks"] = tv_tensors.Mask(target["masks"])
        image, wrapped = self.transform(tv_tensors.Image(image), wrapped)
        boxes = wrapped["boxes"].as_subclass(torch.Tensor)
        # mmdet RandomCrop's rule: keep the boxes with positive width and height after clipping (v2's
        # SanitizeBoundingBoxes needs min_size >= 1 and would also drop sub-pixel boxes mmdet trains on)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out = {"boxes": boxes[keep], "labels": target["labels"][keep]}
        if "masks" in wrapped:
            out["masks"] = wrapped["masks"].as_subclass(torch.Tensor)[keep]
        return image.as_subclass(torch.Tensor), out


class RandomSizeCrop(v2.Transform):
    """mmdet 2.x ``RandomCrop(crop_type="absolute_range", crop_size=(lo, hi), allow_negative_crop=True)`` on
    images, boxes and masks together (mmdet/datasets/pipelines/transforms.py in Sense-X/UniFormer).

    The crop is ``h x w`` with ``h`` uniform in ``[min(H, lo), min(H, hi)]`` and ``w`` likewise from ``W``, at an
    offset uniform over the positions that keep it inside the image; boxes are shifted and clipped to it, masks
    cut with the image. Removing the boxes left without area is :class:`CocoDetection`'s job (the boxes, labels
    and masks are separate inputs here); a crop left without any box is kept (``allow_negative_crop``).
    """

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        if not 0 < min_size <= max_size:
            raise ValueError(f"crop sizes must satisfy 0 < min_size <= max_size; got {min_size}, {max_size}")
        self.min_size, self.max_size = min_size, max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        crop_h = int(torch.randint(min(height, self.min_size), min(height, self.max_size) + 1, ()))
        crop_w = int(torch.randint(min(width, self.min_size), min(width, self.max_size) + 1, ()))
        top = int(torch.randint(height - crop_h + 1, ()))
        left = int(torch.randint(width - crop_w + 1, ()))
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(v2.functional.crop, inpt, **params)


def train_transform(prob: float, scales: Sequence[int], crop_size: Sequence[int], max_size: int) -> v2.Transform:
    """The crop policy of the official 3x+MS recipes (AutoAugment in ``exp/mask_rcnn_3x_ms_hybrid_*/config.py``,
    after DETR): with probability ``prob``, resize the short side to one of ``scales`` (long side at most
    ``max_size``), then :class:`RandomSizeCrop` of ``crop_size`` = (lo, hi). Either way the detector's
    multi-scale resize follows (``detector.min_size``), which is the official other policy and the last step of
    this one (mmdet ``Resize(override=True)``), so both policies end at a short side of 480 .. 800.

    Resizing is bilinear without antialiasing as mmcv's ``imrescale`` (cv2) and torchvision's detector
    transform; masks nearest. Sizes are truncated (``int(side * scale)``) where mmcv rounds.
    """
    if len(crop_size) != 2:
        raise ValueError(f"crop_size must be (min, max); got {list(crop_size)}")
    resize = v2.RandomShortestSize(list(scales), max_size=max_size, antialias=False)
    return v2.RandomApply([v2.Compose([resize, RandomSizeCrop(*crop_size)])], p=prob)


def _usable_box(ann: dict[str, Any], width: int, height: int) -> bool:
    """mmdet's test: the box overlaps the image, its area field is positive and it is at least 1 x 1."""
    bbox = ann.get("bbox")
    if not isinstance(bbox, Sequence) or len(bbox) != 4:
        return False
    x, y, w, h = bbox
    overlap_w = max(0.0, min(x + w, width) - max(x, 0.0))
    overlap_h = max(0.0, min(y + h, height) - max(y, 0.0))
    return overlap_w * overlap_h > 0 and ann.get("area", w * h) > 0 and w >= 1 and h >= 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mask_problem(segmentation: Any, height: int, width: int) -> str | None:
    """Why pycocotools cannot draw ``segmentation`` as a ``height`` x ``width`` mask, or ``None`` when it can (or
    when there is none). Polygons: lists of x, y pairs, at least 3 points each (pycocotools reads 4 values as a
    box and refuses fewer). RLE: ``size`` = [height, width], ``counts`` a compressed string or run lengths
    covering the image."""
    if not segmentation:
        return None
    if isinstance(segmentation, list):
        for i, polygon in enumerate(segmentation):
            if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon):
                return f"segmentation polygon {i} is not a list of numbers"
            if len(polygon) < 6 or len(polygon) % 2:
                return f"segmentation polygon {i} has {len(polygon)} values (x, y pairs of at least 3 points)"
        return None
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if size != [height, width]:
            return f"segmentation RLE size {size!r} is not the image's [{height}, {width}]"
        if isinstance(counts, str):
            return None
        if isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            if sum(counts) != height * width:
                return f"segmentation RLE counts cover {sum(counts)} pixels, not {height} x {width}"
            return None
        return "segmentation RLE counts are neither a string nor a list of run lengths"
    return f"segmentation is a {type(segmentation).__name__}, neither polygons nor an RLE"


def collate_detection(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Lists as torchvision's detectors take them: ``images`` (each (3, H, W), own size), ``targets``,
    ``image_id``; then the envelope (:func:`~uniformer.data.items.collate_items`)."""
    batch = collate_items(items, {"image": list, "target": list, "image_id": list})
    return {"images": batch.pop("image"), "targets": batch.pop("target"), **batch}
