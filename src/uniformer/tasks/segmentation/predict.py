"""What a segmentation prediction is for a user: a label map per image, the share of each class, an overlay.

Images go through the evaluation transform (resize keeping the ratio to the configured test scale). A prediction
is a function of its image alone: only images of the same size at the test scale share a batch, so no image is
ever padded. The arg-max is taken at the test scale and the label map resized to the image by its nearest pixel
(mmseg's ``inference_segmentor`` resizes the logits first, which for an ADE20K model on a 12-megapixel photo is a
7 GB tensor): memory is bounded by the test scale, not the photo. ``uniformer eval`` scores the resized logits, as
mmseg does (:func:`~uniformer.tasks.segmentation.metrics.label_maps`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageDraw, ImageFont

from uniformer.data.images import DecodeError, image_files, image_size, read_image
from uniformer.data.transforms import rescale_size
from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.segmentor import MIN_INPUT_SIZE, InferenceConfig
from uniformer.models.zoo.schema import ModelInfo
from uniformer.tasks import base
from uniformer.tasks.segmentation.data import EvalTransform, Pair, SegmentationDataset

__all__ = [
    "SegmentationPredictTask",
    "LabelMaps",
    "Prediction",
    "overlay_image",
    "PredictionSetup",
    "palette_for",
    "write_overlay",
    "resized_label_map",
]


_BAND_ROWS = 256  # rows an overlay blends at once


def palette_for(info: ModelInfo, num_classes: int) -> list[tuple[int, int, int]]:
    """The zoo dataset's colours when the class count is its own, else fixed pseudo-random colours."""
    if num_classes == info.num_classes:
        return info.palette
    rng = np.random.default_rng(0)
    return [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(num_classes)]


@dataclass(frozen=True)
class PredictionSetup:
    """Class names and colours, and the test-time resize and normalisation."""

    labels: list[str]
    palette: list[tuple[int, int, int]]
    scale: list[int]
    mean: list[float]
    std: list[float]
    inference: InferenceConfig = InferenceConfig()  # whole / slide, scales, flip


def _nearest(size: int, source: int) -> torch.Tensor:
    """For each of ``size`` output positions, the source position whose pixel holds its centre (nearest-exact)."""
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) * (source / size)
    return centres.floor().long().clamp_(max=source - 1)


def resized_label_map(logits: torch.Tensor, resized: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """The label map (H, W) of logits (C, h', w') at ``size = (H, W)``: the logits cropped to the image's own
    ``resized = (h, w)``, arg-max, then each pixel of the image takes the label at its centre's position (uint8
    for up to 256 classes). Memory: the logits at the test scale and the label map, never C x H x W."""
    (rh, rw), (height, width) = resized, size
    labels = logits[:, :rh, :rw].argmax(0)
    if logits.shape[0] <= 256:
        labels = labels.to(torch.uint8)
    return labels[_nearest(height, rh)[:, None], _nearest(width, rw)[None, :]].cpu()


class LabelMaps:
    """The accumulator of a prediction run over the dataset items ``indices``: each image's label map, or the
    reason it could not be read."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.items = list(indices)
        self.maps: dict[int, torch.Tensor] = {}
        self.failed: dict[int, str] = {}

    def indices(self, rank: int, world_size: int) -> list[int]:
        return self.items

    def update(self, output: torch.Tensor, batch: dict[str, Any]) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(
                f"the model must return logits (B, classes, H, W) in eval mode; got {type(output).__name__}"
            )
        rows = zip(
            batch["index"].tolist(), output, batch["resized"].tolist(), batch["size"].tolist(), batch["valid"].tolist(),
            batch["error"], strict=True,
        )  # fmt: skip
        for index, logits, resized, size, ok, error in rows:
            if ok:
                self.maps[index] = resized_label_map(logits, resized, size)
            else:
                self.failed[index] = error


def _batches(paths: Sequence[str], setup: PredictionSetup) -> tuple[list[list[int]], dict[int, str]]:
    """The inputs in groups of one size at the test scale (the order of first appearance; an input whose header
    cannot be read alone: reading it says why), and the inputs refused as too small for the model at that scale."""
    groups: dict[object, list[int]] = {}
    refused: dict[int, str] = {}
    for index, path in enumerate(paths):
        try:
            width, height = image_size(path)
        except DecodeError:
            groups[("alone", index)] = [index]
            continue
        resized = rescale_size(height, width, setup.scale)
        smallest = round(min(1.0, *setup.inference.scales) * min(resized))  # never below a blank item's size
        if smallest < MIN_INPUT_SIZE:
            refused[index] = (
                f"{path}: too small: {width}x{height} is {resized[1]}x{resized[0]} at the test scale "
                f"{setup.scale}, and the model needs at least {MIN_INPUT_SIZE} pixels a side"
            )
            continue
        groups.setdefault(resized, []).append(index)
    return list(groups.values()), refused


@dataclass
class Prediction(base.Prediction):
    """One image's label map (H, W) and its classes by share of the pixels, largest first (``top``)."""

    path: str
    label_map: np.ndarray | None
    top: list[tuple[int, str, float]] = field(default_factory=list)  # (class index, name, share of the pixels)
    error: str | None = None

    def ranked(self) -> list[tuple[str, float]]:
        return [(name, share) for _, name, share in self.top]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "error": self.error,
            "top": [{"index": i, "label": name, "share": s} for i, name, s in self.top],
        }


def overlay_image(
    image_path: str | os.PathLike[str],
    label_map: np.ndarray,
    palette: Sequence[tuple[int, int, int]],
    alpha: float = 0.5,
    labels: Sequence[str] | None = None,
) -> Image.Image:
    """The image blended with the class colours of ``label_map`` (``alpha`` of colour); with ``labels``, a
    legend of the classes present (colour and name, largest share first) to its right. Blended in bands of
    rows, so that a photo's float copies never exist whole."""
    image = read_image(image_path).permute(1, 2, 0).numpy()
    if image.shape[:2] != label_map.shape:
        raise ValueError(f"label map {label_map.shape} does not match the image {image.shape[:2]}")
    colours = np.asarray(palette, dtype=np.float32)
    pixels = np.empty(image.shape, np.uint8)
    for top in range(0, image.shape[0], _BAND_ROWS):
        rows = slice(top, top + _BAND_ROWS)
        band = (1 - alpha) * image[rows].astype(np.float32) + alpha * colours[label_map[rows]]
        pixels[rows] = band.round().astype(np.uint8)
    blended = Image.fromarray(pixels)
    return blended if labels is None else _with_legend(blended, label_map, palette, labels)


def write_overlay(
    image_path: str | os.PathLike[str],
    label_map: np.ndarray,
    palette: Sequence[tuple[int, int, int]],
    out: str | os.PathLike[str],
    alpha: float = 0.5,
    labels: Sequence[str] | None = None,
) -> Path:
    """:func:`overlay_image` written as a PNG to ``out``."""
    out = Path(out)
    overlay_image(image_path, label_map, palette, alpha, labels).save(out)
    return out


def _with_legend(
    image: Image.Image, label_map: np.ndarray, palette: Sequence[tuple[int, int, int]], labels: Sequence[str]
) -> Image.Image:
    counts = np.bincount(label_map.ravel(), minlength=len(labels))
    present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    row, font = 14, ImageFont.load_default()
    width = 24 + max(int(ImageDraw.Draw(image).textlength(labels[c], font=font)) for c in present)
    canvas = Image.new("RGB", (image.width + width, max(image.height, row * len(present) + 4)), "white")
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, c in enumerate(present):
        top = 2 + i * row
        draw.rectangle([image.width + 4, top + 1, image.width + 14, top + 11], fill=tuple(palette[c]))
        draw.text((image.width + 18, top), labels[c], fill="black", font=font)
    return canvas


class SegmentationPredictTask(base.PredictTask[PredictionSetup, Prediction]):
    """The prediction half of the segmentation task."""

    def prediction_setup(
        self, info: ModelInfo, model: nn.Module, file: CheckpointFile | None, labels: Sequence[str] | None
    ) -> PredictionSetup:
        """Names (given, else stored with the weights, else the zoo's when the counts match, else numbers), the
        data settings of the weights' training run (else the official ADE20K test scale and the zoo's mean/std) and
        its test mode (``eval.mode``, ``scales``, ``flip``...; else whole-image inference)."""
        num_classes = model.num_classes
        stored = None if file is None else file.class_names
        names = list(labels) if labels is not None else stored
        if names is None:
            names = info.labels if info.num_classes == num_classes else [f"class {i}" for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for a {num_classes}-class model")
        config = (file.config if file is not None else None) or {}
        data, test = config.get("data") or {}, config.get("eval") or {}
        fields = ("mode", "crop_size", "stride", "scales", "flip")
        inference = InferenceConfig(**{k: tuple(v) if k == "scales" else v for k, v in test.items() if k in fields})
        return PredictionSetup(
            labels=list(names),
            palette=palette_for(info, num_classes),
            scale=list(data.get("scale") or [2048, 512]),
            mean=list(data.get("mean") or info.mean),
            std=list(data.get("std") or info.std),
            inference=inference,
        )

    def predict(
        self, model: nn.Module, paths: Sequence[str], setup: PredictionSetup, run: base.Run, topk: int
    ) -> list[Prediction]:
        """The label map of every image and its ``topk`` largest classes, in input order, the model run in the
        setup's test mode (the model's ``test_cfg``) on batches of images of one size at the test scale. An image
        that cannot be read, or is too small for the model at the test scale, gets an ``error`` instead."""
        paths = image_files(paths)  # a folder: its images
        transform = EvalTransform(scale=setup.scale, mean=setup.mean, std=setup.std)
        dataset = SegmentationDataset(
            [Pair(p, None) for p in paths], setup.labels, transform, train=False, require_masks=False
        )
        groups, failed = _batches(paths, setup)
        label_maps: dict[int, torch.Tensor] = {}
        for indices in groups:
            maps = LabelMaps(indices)
            run(model, dataset, maps, options={"test_cfg": setup.inference})
            label_maps.update(maps.maps)
            failed.update(maps.failed)
        out = []
        for index, path in enumerate(paths):
            if index in failed:
                out.append(Prediction(path, None, error=failed[index]))
                continue
            label_map = label_maps[index]
            shares = torch.bincount(label_map.flatten(), minlength=len(setup.labels)).double() / label_map.numel()
            values, classes = shares.topk(min(topk, len(setup.labels)))
            top = [(int(c), setup.labels[int(c)], float(v)) for v, c in zip(values, classes, strict=True) if v > 0]
            out.append(Prediction(path, label_map.numpy().astype(np.uint8), top))
        return out

    def check_out_dir(self, out_dir: Path) -> None:
        """``--out-dir``: a folder (made when missing)."""
        base.check_folder(out_dir, "--out-dir")

    def write_predictions(
        self, predictions: Sequence[Prediction], setup: PredictionSetup, out_dir: str | os.PathLike[str]
    ) -> list[Path]:
        """For each readable image ``NAME``: ``NAME_labels.png`` (the label map, one class index per pixel) and
        ``NAME_overlay.png`` (the colours over the image, with a legend) in ``out_dir``; returns the files written.
        Images of the same name get their input position appended."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stems = [Path(p.path).stem for p in predictions]
        written = []
        for index, (prediction, stem) in enumerate(zip(predictions, stems, strict=True)):
            if prediction.label_map is None:
                continue
            name = stem if stems.count(stem) == 1 else f"{stem}_{index}"
            Image.fromarray(prediction.label_map).save(out / f"{name}_labels.png")
            written.append(out / f"{name}_labels.png")
            overlay = out / f"{name}_overlay.png"
            written.append(
                write_overlay(prediction.path, prediction.label_map, setup.palette, overlay, labels=setup.labels)
            )
        return written

    def draw_prediction(self, prediction: Prediction, setup: PredictionSetup) -> Image.Image:
        """The colour overlay with the legend of the classes present, as ``--out-dir`` writes it."""
        return overlay_image(prediction.path, prediction.label_map, setup.palette, labels=setup.labels)
