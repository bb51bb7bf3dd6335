"""What a classification prediction is for a user: top classes with names and probabilities, JSON, features.

Everything a user points at is one *input*: a video file (any container PyAV reads), a folder of frames (one
image per frame, as Something-Something V1 ships) or an image. Inputs go through the same test-mode datasets and
views as ``uniformer eval`` (:func:`uniformer.tasks.classification.data.build_inputs`), so a prediction is
exactly what the multi-view test would score. An input that cannot be read is reported with its reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

from uniformer._fileio import atomic_write
from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.zoo.schema import ModelInfo
from uniformer.tasks import base
from uniformer.tasks.classification.config import ClipSpec, class_names, clip_spec
from uniformer.tasks.classification.data import build_inputs
from uniformer.tasks.classification.metrics import VideoScores, ViewScores

__all__ = [
    "ClassificationPredictTask",
    "PooledFeatures",
    "Prediction",
    "PredictionSetup",
    "StageMaps",
    "predictions_from_scores",
    "save_features",
]

# ``run(model, dataset, accumulator)``: the engine's evaluation loop, handed in (tasks do not import the engine)


@dataclass(frozen=True)
class PredictionSetup:
    """What a classifier needs to describe its outputs: the model's name, class names and test views."""

    model_name: str
    labels: list[str]
    spec: ClipSpec


@dataclass
class Prediction(base.Prediction):
    """Top classes of one input. ``probabilities`` are softmax(mean of the view logits): the ranking of the
    official sum of logits, as probabilities that sum to one."""

    path: str
    top: list[tuple[int, str, float]]  # (class index, name, probability)
    views: int
    error: str | None = None

    def ranked(self) -> list[tuple[str, float]]:
        return [(name, probability) for _, name, probability in self.top]

    def title(self) -> str:
        return f"{self.path}  ({self.views} views)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "views": self.views,
            "error": self.error,
            "top": [{"index": i, "label": name, "probability": p} for i, name, p in self.top],
        }


def predictions_from_scores(
    scores: VideoScores, paths: Sequence[str], labels: Sequence[str], topk: int
) -> list[Prediction]:
    """One :class:`Prediction` per input, in input order, from the per-input sums of view logits."""
    out = []
    k = min(topk, scores.scores.shape[1])
    for index, path in enumerate(paths):
        if index in scores.failed:
            out.append(Prediction(path, [], scores.num_views, error=scores.failed[index]))
            continue
        probs = (scores.scores[index] / scores.num_views).softmax(-1)
        values, classes = probs.topk(k)
        top = [(int(c), labels[int(c)], float(v)) for v, c in zip(values, classes, strict=True)]
        out.append(Prediction(path, top, scores.num_views))
    return out


class PooledFeatures(nn.Module):
    """The model's pooled pre-logit features as its output, so the scoring loop averages them over views."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class StageMaps(nn.Module):
    """The four stage maps, flattened and concatenated into one row per view (split again by :meth:`split`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.model.forward_intermediates(x, intermediates_only=True)
        self.shapes = [tuple(m.shape[1:]) for m in maps]
        return torch.cat([m.flatten(1) for m in maps], dim=1)

    def split(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for i, shape in enumerate(self.shapes):
            width = int(np.prod(shape))
            out[f"stage{i + 1}"] = rows[:, offset : offset + width].reshape(len(rows), *shape).contiguous()
            offset += width
        return out


def save_features(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], inputs: Sequence[str], metadata: dict[str, Any]
) -> Path:
    """Write features atomically: ``.safetensors`` (all tensors, input paths in the metadata) or ``.npy``
    (pooled features only, input paths in a ``.paths.txt`` file beside it)."""
    path = Path(path)
    check_features_path(path, stage_maps=set(tensors) != {"features"})
    if path.suffix == ".safetensors":
        header = {k: json.dumps(v) for k, v in {**metadata, "inputs": list(inputs)}.items()}
        atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=header))
        return path

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, tensors["features"].numpy())

    atomic_write(path, write)
    atomic_write(path.with_suffix(".paths.txt"), lambda tmp: Path(tmp).write_text("\n".join(inputs) + "\n"))
    return path


def check_features_path(path: str | os.PathLike[str], *, stage_maps: bool) -> None:
    """Refuse an output the features cannot be written to, before any model runs."""
    suffix = Path(path).suffix
    if suffix not in (".safetensors", ".npy"):
        raise ValueError(f"{path}: features are written as .safetensors or .npy, not {suffix or 'no suffix'}")
    if suffix == ".npy" and stage_maps:
        raise ValueError(f"{path}: .npy holds one array; write stage maps to a .safetensors file")


class ClassificationPredictTask(base.PredictTask[PredictionSetup, Prediction]):
    """The prediction half of the classification task."""

    def prediction_setup(
        self, info: ModelInfo, model: nn.Module, file: CheckpointFile | None, labels: Sequence[str] | None
    ) -> PredictionSetup:
        """Class names (given, else stored with the weights, else the zoo's, else numbers) and views (stored with the
        weights or their run's config, over the zoo entry's)."""
        num_classes = model.num_classes
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} class names for a {num_classes}-class model")
        stored = None if file is None else file.class_names
        names = list(labels) if labels is not None else class_names(num_classes, stored=stored, model=info.name)
        overlay = None if file is None else (file.clip or (file.config or {}).get("data"))
        return PredictionSetup(info.name, names, clip_spec(info, overlay))

    def predict(
        self, model: nn.Module, paths: Sequence[str], setup: PredictionSetup, run: base.Run, topk: int
    ) -> list[Prediction]:
        """Top-``topk`` classes of every input from the sum of its views' logits, in input order."""
        dataset = build_inputs(paths, setup.spec, model_name=setup.model_name)
        scores = ViewScores(dataset)
        run(model, dataset, scores)
        return predictions_from_scores(scores.scores(), paths, setup.labels, topk)

    def predict_spans(
        self,
        model: nn.Module,
        path: str,
        spans: Sequence[tuple[int, int]],
        setup: PredictionSetup,
        run: base.Run,
        topk: int,
    ) -> list[Prediction]:
        """Top-``topk`` classes of each frame range ``(start, end)`` of the video at ``path`` (a timeline's windows),
        each from one clip of the model's own sampling within the range, centre crop."""
        dataset = build_inputs(
            [path] * len(spans), setup.spec, model_name=setup.model_name, single_view=True, spans=spans
        )
        scores = ViewScores(dataset)
        run(model, dataset, scores)
        return predictions_from_scores(scores.scores(), [path] * len(spans), setup.labels, topk)

    def features(
        self, model: nn.Module, paths: Sequence[str], setup: PredictionSetup, run: base.Run, stage_maps: bool
    ) -> tuple[dict[str, torch.Tensor], dict[int, str]]:
        """Features of every input and the failures (input index -> reason; their rows are NaN).

        Pooled: ``{"features": (N, C)}``, the pre-logit features averaged over the official test views.
        ``stage_maps=True``: ``{"stage1" ... "stage4": (N, C_i, [T_i,] H_i, W_i)}`` of the centre view only
        (maps of different crops and clips do not align, so averaging them would blur them).
        """
        if not stage_maps:
            dataset = build_inputs(paths, setup.spec, model_name=setup.model_name)
            scores = ViewScores(dataset)
            run(PooledFeatures(model), dataset, scores)
            result = scores.scores()
            return {"features": result.scores / dataset.num_views}, result.failed
        wrapper = StageMaps(model)
        dataset = build_inputs(paths, setup.spec, model_name=setup.model_name, single_view=True)
        scores = ViewScores(dataset)
        run(wrapper, dataset, scores)
        result = scores.scores()
        return wrapper.split(result.scores), result.failed
