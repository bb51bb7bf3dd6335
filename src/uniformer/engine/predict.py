"""Classify a user's files with a zoo model: its weights (read once), its views, its class names.

The weights file is read once (:func:`uniformer.models.checkpoint.read_checkpoint`); class names and view
settings come from what travels with trained weights (training checkpoints, ``convert``'s metadata), else from
the zoo entry (:func:`uniformer.tasks.classification.config.clip_spec`). The inputs are a test-mode dataset built
by the same builder as ``uniformer eval`` and scored by the same loop, :func:`run_evaluation`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from uniformer.engine.evaluate import feed
from uniformer.models.checkpoint import CheckpointFile, read_checkpoint
from uniformer.models.optimize import optimize_for_inference
from uniformer.models.registry import ModelInfo, create_model, model_info
from uniformer.tasks import task_for_model
from uniformer.tasks.classification.config import ClipSpec, class_names, clip_spec
from uniformer.tasks.classification.data import build_inputs
from uniformer.tasks.classification.metrics import ViewScores
from uniformer.tasks.classification.predict import PooledFeatures, Prediction, StageMaps, predictions_from_scores

__all__ = ["Prediction", "Predictor"]

logger = logging.getLogger("uniformer.engine")


class Predictor:
    """A zoo model ready for inference on files.

    Args:
        model_name: a zoo name (``uniformer models``); decides architecture, views, sampling and labels.
        checkpoint: weights to load (official ``.pth``, ``.safetensors`` or a ``uniformer train`` checkpoint);
            the class count, class names, views and ``model.overrides`` travel with trained weights.
        pretrained: fetch the released weights from the Hub instead.
        labels: class names overriding those of the weights.
        precision: ``fp32`` or ``bf16``. :meth:`predict` classifies with an :func:`optimize_for_inference` copy
            in that dtype (fp32 equals the model to float rounding); :meth:`features` runs the model under autocast.
        batch_size: views per forward pass.
        num_workers: decoding worker processes.
        overrides: constructor arguments of a reduced or modified architecture.
    """

    def __init__(
        self,
        model_name: str,
        checkpoint: str | os.PathLike[str] | CheckpointFile | None = None,
        *,
        pretrained: bool = False,
        labels: Sequence[str] | None = None,
        precision: str = "fp32",
        batch_size: int = 8,
        num_workers: int = 0,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.info: ModelInfo = model_info(model_name)
        self.task = task_for_model(model_name)
        file = (
            checkpoint if isinstance(checkpoint, CheckpointFile) or checkpoint is None else read_checkpoint(checkpoint)
        )
        if file is None and not pretrained:
            logger.warning(
                "%s: no --checkpoint or --pretrained: the weights are random, so the predictions mean nothing",
                model_name,
            )
        self.model: nn.Module = create_model(
            model_name, pretrained=pretrained and file is None, checkpoint_path=file, **(overrides or {})
        ).eval()
        self.num_classes = self.model.num_classes
        if labels is not None and len(labels) != self.num_classes:
            raise ValueError(f"{len(labels)} class names for a {self.num_classes}-class model")
        stored = None if file is None else file.class_names
        self.labels = (
            list(labels) if labels is not None else class_names(self.num_classes, stored=stored, model=model_name)
        )
        overlay = None if file is None else (file.clip or (file.config or {}).get("data"))
        self.spec: ClipSpec = clip_spec(self.info, overlay)
        self.precision, self.batch_size, self.num_workers = precision, batch_size, num_workers
        self._fast: nn.Module | None = None

    @property
    def view(self) -> dict[str, Any]:
        """The view settings as a dict (``num_frames``, ``stride``, ``crop_size``, ``clips``, ...)."""
        return self.spec.to_dict()

    def _score(self, model: nn.Module, dataset: Any, progress: bool, precision: str) -> Any:
        accumulator = ViewScores(dataset)
        feed(
            model,
            dataset,
            accumulator,
            collate=self.task.collate,
            inputs=self.task.model_inputs,
            batch_size=self.batch_size,
            precision=precision,
            num_workers=self.num_workers,
            progress=progress,
        )
        return accumulator.scores()

    def _classifier(self) -> nn.Module:
        """The inference copy that :meth:`predict` runs (made on first use; it computes in its own dtype)."""
        if self._fast is None:
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            self._fast = optimize_for_inference(self.model, dtype=dtype)
        return self._fast

    def predict(
        self, paths: Sequence[str | os.PathLike[str]], topk: int = 5, progress: bool = False
    ) -> list[Prediction]:
        """Top-``topk`` classes of every input, in input order."""
        paths = [os.fspath(p) for p in paths]
        dataset = build_inputs(paths, self.spec, model_name=self.info.name)
        scores = self._score(self._classifier(), dataset, progress, "fp32")
        return predictions_from_scores(scores, paths, self.labels, topk)

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
            dataset = build_inputs(paths, self.spec, model_name=self.info.name)
            scores = self._score(PooledFeatures(self.model), dataset, progress, self.precision)
            return {"features": scores.scores / dataset.num_views}, scores.failed
        wrapper = StageMaps(self.model)
        dataset = build_inputs(paths, self.spec, model_name=self.info.name, single_view=True)
        scores = self._score(wrapper, dataset, progress, self.precision)
        return wrapper.split(scores.scores), scores.failed
