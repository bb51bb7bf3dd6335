"""Classify files and extract features with a zoo model and its official test views.

Everything a user points at is one *input*: a video file (any container PyAV reads), a folder of frames (one
image per frame, as Something-Something V1 ships) or an image. Videos and frame folders go through the same
test-mode :class:`~uniformer.data.VideoDataset` as ``uniformer eval`` (the model's ``test_clips x test_crops``
views, its sampling and crop) and the same :func:`~uniformer.engine.evaluate.score_videos` loop, so a
prediction is exactly what the multi-view test would score. Images use timm's evaluation transform
(resize by ``crop_pct``, centre crop). An input that cannot be read is reported with its reason, never dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from uniformer.data.decode import IMAGE_EXTENSIONS
from uniformer.engine.evaluate import score_videos
from uniformer.models.registry import ModelInfo, create_model, model_info

__all__ = ["Prediction", "Predictor", "save_features"]


@dataclass
class Prediction:
    """Top classes of one input. ``probabilities`` are softmax(mean of the view logits): the ranking of the
    official sum of logits, as probabilities that sum to one."""

    path: str
    top: list[tuple[int, str, float]]  # (class index, name, probability)
    views: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "views": self.views,
            "error": self.error,
            "top": [{"index": i, "label": name, "probability": p} for i, name, p in self.top],
        }


class _ImageInputs(torch.utils.data.Dataset):
    """Images as test-mode items of the engine's format (one view each; unreadable images marked invalid)."""

    num_views = 1

    def __init__(self, paths: Sequence[str], transform: Any, input_size: int) -> None:
        self.paths, self.transform, self.input_size = list(paths), transform, input_size

    @property
    def num_videos(self) -> int:
        return len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from PIL import Image, UnidentifiedImageError

        item = dict(label=-1, index=index, view=0, path=self.paths[index], valid=True, error="", skipped=[])
        try:
            with Image.open(self.paths[index]) as image:
                item["video"] = self.transform(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            item.update(video=torch.zeros(3, self.input_size, self.input_size), valid=False, error=str(exc))
        return item


class _PooledFeatures(nn.Module):
    """The model's pooled pre-logit features as its output, so the scoring loop averages them over views."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class _StageMaps(nn.Module):
    """The four stage maps, flattened and concatenated into one row per view (split again by the caller)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.model.forward_intermediates(x, intermediates_only=True)
        self.shapes = [tuple(m.shape[1:]) for m in maps]
        return torch.cat([m.flatten(1) for m in maps], dim=1)


class Predictor:
    """A zoo model ready for inference on files.

    Args:
        model_name: a zoo name (``uniformer models``); decides architecture, views, sampling and labels.
        checkpoint: weights to load (official ``.pth``, ``.safetensors`` or a ``uniformer train`` checkpoint);
            the class count is read from its classifier.
        pretrained: fetch the released weights from the Hub instead.
        labels: class names, overriding the zoo's (needed when a checkpoint has another class count and no
            class file of its own).
        precision: ``fp32`` or ``bf16``. :meth:`predict` classifies with an :func:`optimize_for_inference` copy
            in that dtype (the fast path of ``benchmarks/RESULTS.md``; fp32 equals the model to float rounding),
            :meth:`features` runs the model itself under autocast.
        batch_size: views per forward pass.
        num_workers: decoding worker processes.
        overrides: constructor arguments of a reduced or modified architecture (e.g. another depth); a
            ``uniformer train`` checkpoint brings its own ``model.overrides``.
    """

    def __init__(
        self,
        model_name: str,
        checkpoint: str | os.PathLike[str] | None = None,
        *,
        pretrained: bool = False,
        labels: Sequence[str] | None = None,
        precision: str = "fp32",
        batch_size: int = 8,
        num_workers: int = 0,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        from uniformer.models.checkpoint import head_classes, read_checkpoint

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.info: ModelInfo = model_info(model_name)
        num_classes, trained_classes, trained_overrides, container = None, None, {}, {}
        if checkpoint is not None:
            state, container = read_checkpoint(checkpoint)
            num_classes = head_classes(state)
            trained_classes = _training_class_names(container)
            trained_overrides = _training_config(container).get("model", {}).get("overrides") or {}
        self.model = create_model(
            model_name,
            pretrained=pretrained and checkpoint is None,
            checkpoint_path=checkpoint,
            num_classes=num_classes,
            **{**trained_overrides, **(overrides or {})},
        ).eval()
        self.num_classes = self.model.num_classes
        self.labels = _labels(self.info, self.num_classes, labels or trained_classes)
        # the test views: the zoo entry's, or those of the run that trained the checkpoint
        data = _training_config(container).get("data") or {}
        release = self.info.release()
        self.view = dict(
            num_frames=data.get("num_frames") or self.info.num_frames or 1,
            stride=data.get("stride") or self.info.frame_stride,
            sampling=data.get("sampling") or self.info.sampling or "dense",
            crop_size=data.get("crop_size") or release.img_size,
            short_side=data.get("short_side"),
            clips=data.get("test_clips") or self.info.test_clips,
            crops=data.get("test_crops") or self.info.test_crops,
            mean=tuple(data.get("mean") or self.info.mean),
            std=tuple(data.get("std") or self.info.std),
        )
        self.precision, self.batch_size, self.num_workers = precision, batch_size, num_workers
        self._fast: nn.Module | None = None

    # ------------------------------------------------------------------------------------------------------
    def _dataset(self, paths: Sequence[str], *, single_view: bool = False) -> torch.utils.data.Dataset:
        """The test-mode dataset of ``paths``, all of the kind this model takes (videos/folders or images)."""
        from uniformer.data import EvalTransform, VideoDataset, VideoRecord

        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"input not found: {', '.join(missing)}")
        images = [p for p in paths if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
        view = self.view
        if self.info.task == "image":
            others = [p for p in paths if p not in images]
            if others:
                raise ValueError(
                    f"{self.info.name} is an image model; these inputs are not images: {', '.join(others)}"
                )
            from timm.data import create_transform

            transform = create_transform(
                view["crop_size"],
                crop_pct=self.info.release().crop_pct,
                interpolation="bicubic",
                mean=view["mean"],
                std=view["std"],
            )
            return _ImageInputs(paths, transform, view["crop_size"])
        if images:
            raise ValueError(
                f"{self.info.name} is a video model; give it videos or folders of frames, "
                f"not images: {', '.join(images)}"
            )
        crops = 1 if single_view else view["crops"]
        return VideoDataset(
            [VideoRecord(os.fspath(p), -1) for p in paths],
            EvalTransform(
                view["crop_size"], short_side=view["short_side"], num_crops=crops, mean=view["mean"], std=view["std"]
            ),
            mode="test",
            num_frames=view["num_frames"],
            stride=view["stride"],
            sampling=view["sampling"],
            num_clips=1 if single_view else view["clips"],
            num_crops=crops,
        )

    def _score(self, model: nn.Module, dataset: torch.utils.data.Dataset, progress: bool, autocast: bool = True) -> Any:
        return score_videos(
            model,
            dataset,
            batch_size=self.batch_size,
            precision=self.precision if autocast else "fp32",
            num_workers=self.num_workers,
            progress=progress,
        )

    def _classifier(self) -> nn.Module:
        """The inference copy that :meth:`predict` runs (made on first use; it computes in its own dtype)."""
        if self._fast is None:
            from uniformer.models.optimize import optimize_for_inference

            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            self._fast = optimize_for_inference(self.model, dtype=dtype)
        return self._fast

    def predict(
        self, paths: Sequence[str | os.PathLike[str]], topk: int = 5, progress: bool = False
    ) -> list[Prediction]:
        """Top-``topk`` classes of every input, in input order."""
        paths = [os.fspath(p) for p in paths]
        dataset = self._dataset(paths)
        result = self._score(self._classifier(), dataset, progress, autocast=False)
        predictions = []
        k = min(topk, self.num_classes)
        for index, path in enumerate(paths):
            if index in result.failed:
                predictions.append(Prediction(path, [], dataset.num_views, error=result.failed[index]))
                continue
            probs = (result.scores[index] / dataset.num_views).softmax(-1)
            values, classes = probs.topk(k)
            top = [(int(c), self.labels[int(c)], float(v)) for v, c in zip(values, classes, strict=True)]
            predictions.append(Prediction(path, top, dataset.num_views))
        return predictions

    def features(
        self, paths: Sequence[str | os.PathLike[str]], stage_maps: bool = False, progress: bool = False
    ) -> tuple[dict[str, torch.Tensor], dict[int, str]]:
        """Features of every input and the failures (input index -> reason; their rows are NaN).

        Pooled: ``{"features": (N, C)}``, the pre-logit features averaged over the official test views.
        ``stage_maps=True``: ``{"stage1" ... "stage4": (N, C_i, [T_i,] H_i, W_i)}`` of the centre view only
        (maps of different crops and clips do not align, so averaging them would blur them).
        """
        paths = [os.fspath(p) for p in paths]
        if not stage_maps:
            dataset = self._dataset(paths)
            result = self._score(_PooledFeatures(self.model), dataset, progress)
            return {"features": result.scores / dataset.num_views}, result.failed
        wrapper = _StageMaps(self.model)
        result = self._score(wrapper, self._dataset(paths, single_view=True), progress)
        out, offset = {}, 0
        for i, shape in enumerate(wrapper.shapes):
            width = int(torch.tensor(shape).prod())
            out[f"stage{i + 1}"] = result.scores[:, offset : offset + width].reshape(len(paths), *shape).contiguous()
            offset += width
        return out, result.failed


def save_features(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], inputs: Sequence[str], metadata: dict[str, Any]
) -> Path:
    """Write features atomically: ``.safetensors`` (all tensors, input paths in the metadata) or ``.npy``
    (pooled features only, input paths in a ``.paths.txt`` file beside it)."""
    from uniformer._fileio import atomic_write

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        header = {k: json.dumps(v) for k, v in {**metadata, "inputs": list(inputs)}.items()}
        atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=header))
    elif path.suffix == ".npy":
        import numpy as np

        if set(tensors) != {"features"}:
            raise ValueError(f"{path}: .npy holds one array; write stage maps to a .safetensors file")

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, tensors["features"].numpy())

        atomic_write(path, write)
        atomic_write(path.with_suffix(".paths.txt"), lambda tmp: Path(tmp).write_text("\n".join(inputs) + "\n"))
    else:
        raise ValueError(f"{path}: features are written as .safetensors or .npy, not {path.suffix or 'no suffix'}")
    return path


def _labels(info: ModelInfo, num_classes: int, labels: Sequence[str] | None) -> list[str]:
    """Class names: the given ones if their count fits, else the zoo entry's, else numbers."""
    if labels is not None and len(labels) == num_classes:
        return list(labels)
    if labels is not None and num_classes:
        raise ValueError(f"{len(labels)} class names for a {num_classes}-class model")
    if info.num_classes == num_classes:
        return info.labels
    return [f"class {i}" for i in range(num_classes)]


def _training_config(container: dict[str, Any]) -> dict[str, Any]:
    """The resolved config a ``uniformer train`` checkpoint carries (empty for other files)."""
    from uniformer.engine.checkpointing import TRAIN_FORMAT

    return (container.get("config") or {}) if container.get("format") == TRAIN_FORMAT else {}


def _training_class_names(container: dict[str, Any]) -> list[str] | None:
    """Class names of the dataset a ``uniformer train`` checkpoint was trained on, if its class file exists."""
    from uniformer.data import read_classes

    data = _training_config(container).get("data") or {}
    if not data.get("labels_file"):
        return None
    file = Path(data["labels_file"])
    file = file if file.is_absolute() else Path(data.get("root") or ".") / file
    return read_classes(file) if file.is_file() else None
