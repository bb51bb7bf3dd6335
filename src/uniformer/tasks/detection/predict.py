"""What a detection prediction is for a user: boxes, class names, scores and masks per image, and a picture.

A zoo detector sees each image resized to its test scale as mmdet's test pipeline resizes it (the uint8 image,
bilinear, to the rounded size within ``max_size`` x ``min_size``), and its boxes are mapped back to the image; a
detection's mask is pasted into the full-size image only when the detection is kept, one at a time
(:func:`~uniformer.models.detection.paste_mask`). So memory follows the test scale and the kept detections, not the
photo times the detector's hundred candidates (``uniformer eval`` still resizes inside the model and pastes every
mask, as it scores them all).

Only detections scoring above ``score_threshold`` (``uniformer predict --score-threshold T``, default 0.3) are
kept, strictly above as torchvision's ``box_score_thresh`` and mmdet's ``show_result(score_thr)``; a threshold
under the detector's own test threshold (0.05, the config's ``score_thr``) lowers it for the run (an argument of
the model's call: the shared model keeps its own). ``--out-dir`` gets a picture per image drawn with torchvision's
``draw_segmentation_masks`` (in bands of rows) and ``draw_bounding_boxes``, and its detections as JSON (masks as
COCO RLE).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision.models.detection.transform import resize_boxes
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from uniformer._fileio import atomic_write_text
from uniformer.data.images import DecodeError, image_files, image_size, read_image
from uniformer.data.transforms import rescale_size
from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.detection import AssembledRCNN, paste_mask
from uniformer.models.zoo.schema import ModelInfo
from uniformer.tasks import base
from uniformer.tasks.detection.metrics import MASK_THRESHOLD, encode_mask

__all__ = [
    "DetectionPredictTask",
    "Detections",
    "Prediction",
    "PredictionSetup",
    "detections_image",
    "draw_detections",
]

_BAND_ROWS = 256  # rows the masks are blended into at once


@dataclass(frozen=True)
class PredictionSetup:
    """Class names (label ``l`` is ``labels[l - 1]``) and the score detections must exceed to be kept."""

    labels: list[str]
    score_threshold: float = 0.3


@dataclass
class Prediction(base.Prediction):
    """One image's detections above the threshold: boxes (N, 4) x1 y1 x2 y2 in pixels, labels 1 .. C, names,
    scores, and masks (N, H, W) bool for a detector with masks."""

    path: str
    boxes: np.ndarray | None = None
    labels: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    masks: np.ndarray | None = None
    error: str | None = None

    def ranked(self) -> list[tuple[str, float]]:
        return list(zip(self.names, self.scores))

    def to_dict(self) -> dict[str, Any]:
        """``path``, ``error`` and ``detections``: ``label``, ``name``, ``score``, ``box`` (x1 y1 x2 y2) and, for a
        detector with masks, ``mask`` as COCO RLE (``{"size": [H, W], "counts": str}``, pycocotools' encoding)."""
        detections = [
            {"label": label, "name": name, "score": score, "box": [round(float(v), 2) for v in box]}
            for label, name, score, box in zip(
                self.labels, self.names, self.scores, [] if self.boxes is None else self.boxes
            )
        ]
        for detection, mask in zip(detections, [] if self.masks is None else self.masks):
            detection["mask"] = encode_mask(mask)
        return {"path": self.path, "error": self.error, "detections": detections}


class Detections:
    """The accumulator of a prediction run: each image's detections with their boxes in the image's own pixels
    (mapped back from the size the model saw), or why it could not be read."""

    def __init__(self, num_items: int) -> None:
        self.num_items = num_items
        self.outputs: dict[int, dict[str, torch.Tensor]] = {}
        self.sizes: dict[int, tuple[int, int]] = {}
        self.failed: dict[int, str] = {}

    def indices(self, rank: int, world_size: int) -> list[int]:
        return list(range(self.num_items))

    def update(self, output: list[dict[str, torch.Tensor]], batch: dict[str, Any]) -> None:
        rows = zip(
            batch["index"].tolist(), output, batch["images"], batch["targets"], batch["valid"].tolist(), batch["error"],
            strict=True,
        )  # fmt: skip
        for index, detections, image, target, ok, error in rows:
            if not ok:
                self.failed[index] = error
                continue
            found = {k: v.detach().cpu() for k, v in detections.items()}
            size = (int(target["orig_size"][0]), int(target["orig_size"][1]))
            found["boxes"] = resize_boxes(found["boxes"], list(image.shape[-2:]), list(size))
            self.outputs[index], self.sizes[index] = found, size


class _Images(torch.utils.data.Dataset):
    """Image files as the detection task's evaluation items (no annotations), each resized within ``scale``
    (long, short) as mmdet's test ``Resize`` (``None``: at its own size); ``target["orig_size"]`` is the image's
    own (H, W), as torchvision's DETR targets carry it."""

    def __init__(self, paths: Sequence[str], scale: tuple[int, int] | None) -> None:
        self.paths, self.scale = list(paths), scale

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        item = {"image_id": index, "path": path, "index": index, "skipped": []}
        try:
            image = read_image(path)
        except DecodeError as exc:
            blank = {"image": torch.zeros(3, 32, 32), "target": {"orig_size": torch.tensor([32, 32])}}
            return {**item, **blank, "valid": False, "error": f"unreadable image ({exc})"}
        size = (int(image.shape[-2]), int(image.shape[-1]))
        resized = size if self.scale is None else rescale_size(*size, self.scale)
        if resized != size:  # uint8 in, uint8 out: the photo never exists as floats
            image = F.interpolate(image[None], size=resized, mode="bilinear", align_corners=False)[0]
        target = {"orig_size": torch.tensor(size)}
        return {**item, "image": image.float() / 255, "target": target, "valid": True, "error": ""}


def _call_options(model: nn.Module, threshold: float) -> dict[str, object]:
    """The model call's options: a torchvision R-CNN's own test score threshold lowered to ``threshold`` (when
    lower), and a zoo detector's masks left unpasted until the kept ones are known
    (:meth:`~uniformer.models.detection.AssembledRCNN.forward`)."""
    own = getattr(getattr(model, "roi_heads", None), "score_thresh", None)
    options: dict[str, object] = {"score_thresh": threshold} if own is not None and threshold < own else {}
    return {**options, "paste_masks": False} if isinstance(model, AssembledRCNN) else options


def _test_scale(model: nn.Module) -> tuple[int, int] | None:
    """The (long, short) sides a zoo detector resizes an image within at test time (its transform's ``max_size``
    and last ``min_size``); ``None`` for another model, which takes each image at its own size."""
    if not isinstance(model, AssembledRCNN):
        return None
    return model.transform.max_size, model.transform.min_size[-1]


def _kept_masks(found: dict[str, torch.Tensor], keep: torch.Tensor, size: tuple[int, int], pasted: bool) -> np.ndarray:
    """The kept detections' masks (N, H, W) bool: thresholded as given (``pasted``), else each pasted into the
    image of ``size`` by its box."""
    if pasted:
        return (found["masks"][keep, 0] > MASK_THRESHOLD).numpy()
    masks = [
        paste_mask(mask[0], box, size, MASK_THRESHOLD).numpy()
        for mask, box in zip(found["masks"][keep], found["boxes"][keep], strict=True)
    ]
    return np.stack(masks) if masks else np.zeros((0, *size), dtype=bool)


def draw_detections(image_path: str | os.PathLike[str], prediction: Prediction, out: str | os.PathLike[str]) -> Path:
    """:func:`detections_image` written as a PNG to ``out``."""
    out = Path(out)
    detections_image(image_path, prediction).save(out)
    return out


def detections_image(image_path: str | os.PathLike[str], prediction: Prediction) -> Image.Image:
    """The image with the masks (half transparent), boxes and ``name score`` captions."""
    image = read_image(image_path)
    rng = np.random.default_rng(0)
    palette = [tuple(int(v) for v in rng.integers(60, 256, 3)) for _ in range(max(prediction.labels, default=0) + 1)]
    colours = [palette[label] for label in prediction.labels]
    if prediction.masks is not None and len(prediction.masks):
        masks = torch.from_numpy(prediction.masks)
        for top in range(0, image.shape[-2], _BAND_ROWS):  # each pixel its own: the same picture, no whole float copy
            rows = slice(top, top + _BAND_ROWS)
            image[:, rows] = draw_segmentation_masks(image[:, rows], masks[:, rows], alpha=0.5, colors=colours)
    if prediction.boxes is not None and len(prediction.boxes):
        captions = [f"{name} {score:.2f}" for name, score in zip(prediction.names, prediction.scores)]
        image = draw_bounding_boxes(image, torch.from_numpy(prediction.boxes), captions, colors=colours, width=1)
    return Image.fromarray(image.permute(1, 2, 0).numpy())


class DetectionPredictTask(base.PredictTask[PredictionSetup, Prediction]):
    """The prediction half of the detection task."""

    options = (
        base.Option(
            "--score-threshold", "T", "keep the detections scoring above T (in [0, 1], default 0.3)", type=float
        ),
    )

    def prediction_setup(
        self, info: ModelInfo, model: nn.Module, file: CheckpointFile | None, labels: Sequence[str] | None
    ) -> PredictionSetup:
        """Names given, else stored with the weights, else the zoo's (COCO) when the class counts match, else numbers."""
        num_classes = model.num_classes
        names = list(labels) if labels is not None else (None if file is None else file.class_names)
        if names is None:
            names = info.labels if info.num_classes == num_classes else [f"class {i + 1}" for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for a {num_classes}-class detector")
        return PredictionSetup(list(names))

    def prediction_options(self, setup: PredictionSetup, values: Mapping[str, Any]) -> PredictionSetup:
        """``--score-threshold T`` (in [0, 1])."""
        threshold = values.get("score_threshold", setup.score_threshold)
        if not 0 <= threshold <= 1:
            raise ValueError(f"--score-threshold must be in [0, 1]; got {threshold}")
        return replace(setup, score_threshold=threshold)

    def predict(
        self, model: nn.Module, paths: Sequence[str], setup: PredictionSetup, run: base.Run, topk: int
    ) -> list[Prediction]:
        """The detections of every image scoring above ``setup.score_threshold``, best first (all of them:
        ``topk`` cuts the printed listing only)."""
        paths = image_files(paths)  # a folder: its images
        dataset = _Images(paths, _test_scale(model))
        accumulator = Detections(len(dataset))
        options = _call_options(model, setup.score_threshold)
        run(model, dataset, accumulator, options=options)
        pasted = options.get("paste_masks", True)
        out = []
        for index, path in enumerate(paths):
            if index in accumulator.failed:
                out.append(Prediction(path, error=accumulator.failed[index]))
                continue
            found = accumulator.outputs[index]
            keep = found["scores"] > setup.score_threshold
            labels = found["labels"][keep].tolist()
            names = [setup.labels[label - 1] for label in labels]
            scores = found["scores"][keep].tolist()
            masks = _kept_masks(found, keep, accumulator.sizes[index], pasted) if "masks" in found else None
            out.append(Prediction(path, found["boxes"][keep].numpy(), labels, names, scores, masks))
        return out

    def check_out_dir(self, out_dir: Path) -> None:
        """``--out-dir``: a folder (made when missing)."""
        base.check_folder(out_dir, "--out-dir")

    def write_predictions(
        self, predictions: Sequence[Prediction], setup: PredictionSetup, out_dir: str | os.PathLike[str]
    ) -> list[Path]:
        """For each readable image ``NAME``: ``NAME_detections.png`` (:func:`draw_detections`) and
        ``NAME_detections.json`` (:meth:`Prediction.to_dict` with the image size and the threshold) in ``out_dir``;
        returns the files written. Images of the same name get their input position appended."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stems = [Path(p.path).stem for p in predictions]
        written = []
        for index, (prediction, stem) in enumerate(zip(predictions, stems, strict=True)):
            if prediction.error is not None:
                continue
            name = stem if stems.count(stem) == 1 else f"{stem}_{index}"
            picture = draw_detections(prediction.path, prediction, out / f"{name}_detections.png")
            width, height = image_size(picture)
            record = {
                **prediction.to_dict(),
                "width": width,
                "height": height,
                "score_threshold": setup.score_threshold,
            }
            atomic_write_text(out / f"{name}_detections.json", json.dumps(record, indent=1) + "\n")
            written += [picture, out / f"{name}_detections.json"]
        return written

    def draw_prediction(self, prediction: Prediction, setup: PredictionSetup) -> Image.Image:
        """The masks, boxes and ``name score`` captions over the image."""
        return detections_image(prediction.path, prediction)
