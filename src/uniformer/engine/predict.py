"""Predict with a zoo model on a user's files, for any task: weights read once, the task says the rest.

The weights file is read once (:func:`uniformer.models.checkpoint.read_checkpoint`) and loaded by the one rule of
:func:`uniformer.create_model`; what travels with trained weights (class names, view settings, architecture
overrides) is honoured. The task turns the files into a test-mode dataset (the builder ``uniformer eval`` uses),
scores it with the runtime's evaluation loop (:func:`uniformer.runtime.feed`) and renders one prediction
per input (:meth:`uniformer.tasks.Task.predict`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from uniformer.models.checkpoint import CheckpointFile, read_checkpoint
from uniformer.models.factory import create_model
from uniformer.models.optimize import optimize_for_inference
from uniformer.models.zoo.catalog import model_info
from uniformer.models.zoo.schema import ModelInfo
from uniformer.runtime import Accumulator, feed
from uniformer.tasks import Prediction, PredictorRequest, task_for_model

__all__ = ["Predictor"]

logger = logging.getLogger("uniformer.engine")


class Predictor:
    """A zoo model with its weights, ready for inference on files.

    Args:
        model_name: a zoo name (``uniformer models``); decides architecture, task and the defaults of the views.
        checkpoint: weights to load (official ``.pth``, ``.safetensors``, a ``uniformer train`` checkpoint, or an
            already read :class:`CheckpointFile`).
        pretrained: fetch the released weights from the Hub instead.
        labels: class names overriding those that come with the weights.
        precision: ``fp32`` or ``bf16``. :meth:`predict` runs an :func:`optimize_for_inference` copy in that dtype
            (fp32 equals the model to float rounding); :meth:`features` runs the model itself under autocast.
        batch_size: inputs (views) per forward pass.
        num_workers: decoding worker processes.
        overrides: constructor arguments of a reduced or modified architecture.
        task_options: values of the task's own prediction options by :attr:`~uniformer.tasks.Option.dest` (e.g.
            pose's ``{"boxes": FILE}``), applied by :meth:`~uniformer.tasks.PredictTask.prediction_options`; a model
            another model's setup asks for (:class:`~uniformer.tasks.PredictorRequest`) is built here.
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
        task_options: Mapping[str, Any] | None = None,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.info: ModelInfo = model_info(model_name)
        self.task = task_for_model(model_name)
        file = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
        if file is None and not pretrained:
            logger.warning(
                "%s: no --checkpoint or --pretrained: the weights are random, so the predictions mean nothing",
                model_name,
            )
        self.model: nn.Module = create_model(
            model_name, pretrained=pretrained and file is None, checkpoint_path=file, **(overrides or {})
        ).eval()
        self.precision, self.batch_size, self.num_workers = precision, batch_size, num_workers
        self.setup = self.task.prediction_setup(self.info, self.model, file, labels)  # e.g. class names, views
        self.setup = self.task.prediction_options(self.setup, task_options or {})
        for request in self.task.requests(self.setup):
            self.setup = self.task.attach(self.setup, request, self._requested(request))
        self._fast: nn.Module | None = None

    def _requested(self, request: PredictorRequest) -> Predictor:
        """The predictor of the other zoo model a task asked for (pose's person detector): read as this class
        reads any model, run in fp32 one input per forward pass (a detector's images stay at their own size)."""
        info = model_info(request.model)
        if info.task != request.task:
            raise ValueError(
                f"{request.flag} {request.model}: a {info.task} model, not a {request.task} model (`uniformer models "
                f"--task {request.task}` lists them)"
            )
        return Predictor(
            request.model, request.checkpoint, batch_size=1, num_workers=self.num_workers, task_options=request.options
        )

    def _feed(
        self,
        model: nn.Module,
        dataset: torch.utils.data.Dataset,
        accumulator: Accumulator,
        *,
        precision: str,
        progress: bool,
        options: Mapping[str, object] | None = None,
    ) -> None:
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
            options=options,
        )

    def _inference_copy(self) -> nn.Module:
        """The copy that :meth:`predict` runs (made on first use; it computes in its own dtype)."""
        if self._fast is None:
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            self._fast = optimize_for_inference(self.model, dtype=dtype)
        return self._fast

    def predict(
        self, paths: Sequence[str | os.PathLike[str]], topk: int = 5, progress: bool = False, setup: Any = None
    ) -> list[Prediction]:
        """One prediction per input, in input order (the task's kind: top classes with names for classification).
        ``setup`` replaces :attr:`setup` for this call only (e.g. a web page's own score threshold), so that
        callers sharing one predictor never see each other's choices."""
        run = partial(self._feed, precision="fp32", progress=progress)  # the copy computes in its own dtype
        setup = self.setup if setup is None else setup
        return self.task.predict(self._inference_copy(), [os.fspath(p) for p in paths], setup, run, topk=topk)

    def predict_spans(
        self, path: str | os.PathLike[str], spans: Sequence[tuple[int, int]], topk: int = 5, progress: bool = False
    ) -> list[Prediction]:
        """One prediction per frame range ``(start, end)`` of one video, in order (a video classifier's timeline
        windows; see the classification task's ``predict_spans``)."""
        if not hasattr(self.task, "predict_spans"):
            raise ValueError(
                f"{self.info.name} is a {self.task.name} model; frame ranges are classified by video models"
            )
        run = partial(self._feed, precision="fp32", progress=progress)
        return self.task.predict_spans(self._inference_copy(), os.fspath(path), spans, self.setup, run, topk=topk)

    def features(
        self, paths: Sequence[str | os.PathLike[str]], stage_maps: bool = False, progress: bool = False
    ) -> tuple[dict[str, torch.Tensor], dict[int, str]]:
        """Backbone features of every input and the failures (input index -> reason); see the task's
        :meth:`~uniformer.tasks.Task.features`."""
        run = partial(self._feed, precision=self.precision, progress=progress)
        return self.task.features(self.model, [os.fspath(p) for p in paths], self.setup, run, stage_maps=stage_maps)
