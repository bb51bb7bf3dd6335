"""Tasks: one package each (:mod:`uniformer.tasks.classification`, ...), each a :class:`Task` the engine calls
(a :class:`TrainTask` for training and evaluation, a :class:`PredictTask` for prediction).

:func:`get_task` finds a task by name, :func:`task_for_model` by the zoo entry of a model (whose ``task`` field
says image, video, segmentation, ...).
"""

from __future__ import annotations

import importlib

from uniformer.models.zoo.catalog import model_info
from uniformer.tasks.base import (
    LabelMap,
    MetricAccumulator,
    Metrics,
    Objective,
    Option,
    Prediction,
    PredictorRequest,
    PredictTask,
    Run,
    Task,
    TrainTask,
)

__all__ = [
    "TASKS",
    "LabelMap",
    "MetricAccumulator",
    "Metrics",
    "Objective",
    "Option",
    "PredictTask",
    "Prediction",
    "PredictorRequest",
    "Run",
    "Task",
    "TrainTask",
    "get_task",
    "task_for_model",
]

# task name -> module holding ``TASK``; and the zoo's ``ModelInfo.task`` values each task serves
TASKS: dict[str, str] = {
    "classification": "uniformer.tasks.classification",
    "segmentation": "uniformer.tasks.segmentation",
    "pose": "uniformer.tasks.pose",
    "detection": "uniformer.tasks.detection",
}
_ZOO_TASKS: dict[str, str] = {
    "image": "classification",
    "video": "classification",
    "segmentation": "segmentation",
    "pose": "pose",
    "detection": "detection",
}


def get_task(name: str) -> Task:
    """The task called ``name`` (``uniformer demo`` lists them)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name]).TASK


def task_for_model(model_name: str) -> Task:
    """The task that trains and evaluates zoo model ``model_name``."""
    kind = model_info(model_name).task
    if kind not in _ZOO_TASKS:
        raise ValueError(f"{model_name}: no task handles zoo models of kind {kind!r}")
    return get_task(_ZOO_TASKS[kind])
