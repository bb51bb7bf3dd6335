"""What the engine needs from a task, and nothing more.

The trainer, the evaluation loop and the predictor (:mod:`uniformer.engine`) are task-agnostic: they hold a
:class:`Task` and call it to build the model and the datasets, to turn a batch into inputs and targets, to
compute the loss, to accumulate a metric that is correct under DDP, and to describe a prediction. A new task is
one package under :mod:`uniformer.tasks` that subclasses :class:`Task`, plus its configs; no engine file changes.

Imports point down: the engine imports tasks, tasks import :mod:`uniformer.models` and :mod:`uniformer.data`,
never the engine; what both need at run time (the collectives, the evaluation loop) is in :mod:`uniformer.runtime`.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
from omegaconf import DictConfig

from uniformer.runtime import DistContext

__all__ = ["MetricAccumulator", "Prediction", "PredictorRequest", "Metrics", "Objective", "Task", "parse_task_options"]


class Prediction(ABC):
    """One input's prediction as a user sees it: what it found ranked best first (:meth:`ranked`), the lines
    ``uniformer predict`` prints (:meth:`lines`) and the JSON record of ``--json`` (:meth:`to_dict`).

    ``path`` is the input; ``error`` says why it could not be read (``None`` when it was).
    """

    path: str
    error: str | None

    @abstractmethod
    def ranked(self) -> list[tuple[str, float]]:
        """What was found, best first: a name and its number (probability, share of the pixels, score)."""

    def title(self) -> str:
        """The first printed line."""
        return self.path

    def lines(self, topk: int) -> list[str]:
        """The title, then why the input could not be read or its ``topk`` best entries, ranked."""
        failed = [f"  could not be read: {self.error}"] if self.error else []
        ranked = [f"  {rank}. {name:<40s} {100 * value:6.2f}%" for rank, (name, value) in enumerate(self.ranked(), 1)]
        return [self.title(), *failed, *ranked[:topk]]

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The JSON record: ``path``, ``error`` and what was found."""


@dataclass(frozen=True)
class PredictorRequest:
    """Another zoo model whose predictions a task's prediction uses (pose's person detector, from ``--detector``).

    A task never builds or reaches another task itself: it asks with this request (:meth:`Task.requests`), the
    engine builds the predictor and hands it back (:meth:`Task.attach`). ``task`` is the zoo kind the model must
    be; ``flag`` names the option that asked, for messages; ``task_args`` are the other task's own options.
    """

    model: str
    task: str
    flag: str
    checkpoint: str | None = None
    task_args: tuple[str, ...] = ()


@dataclass
class Metrics:
    """A finished evaluation: ``primary`` (higher is better, e.g. top-1 in %) is the number that picks
    ``best.pt``; ``values`` become the ``val_*`` fields of the epoch record; ``detail`` is whatever the task's
    report writer needs."""

    primary: float
    values: dict[str, Any]
    detail: Any = None


class MetricAccumulator(ABC):
    """Collects model outputs batch by batch on each process; :meth:`compute` sums across processes.

    :meth:`indices` says which dataset items this process evaluates, so that items a metric aggregates (the
    views of one video) stay on one process.
    """

    @abstractmethod
    def indices(self, rank: int, world_size: int) -> list[int]: ...

    @abstractmethod
    def update(self, output: torch.Tensor, batch: dict[str, Any]) -> None: ...

    @abstractmethod
    def compute(self, comm: DistContext) -> Metrics: ...


class Objective(ABC):
    """The training signal: batch -> (inputs, targets), the forward pass, and the loss."""

    @abstractmethod
    def prepare(self, batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, Any]: ...

    def forward(self, model: nn.Module, inputs: torch.Tensor) -> Any:
        return model(inputs)

    @abstractmethod
    def loss(self, output: Any, targets: Any) -> torch.Tensor: ...


class Task(ABC):
    """One task (classification, segmentation, ...) as the engine sees it.

    ``sections`` are the config sections the task owns (name -> structured-config dataclass), merged into the
    schema next to the engine's ``model``, ``optimizer``, ``scheduler``, ``trainer`` and ``eval``.
    """

    name: ClassVar[str]
    sections: ClassVar[dict[str, type]]
    primary_metric: ClassVar[str]  # key of Metrics.values that Metrics.primary is, e.g. "top1"
    metric_label: ClassVar[str]  # how the logs name it, e.g. "top-1 (%)"

    @abstractmethod
    def resolve(self, cfg: DictConfig) -> None:
        """Fill the task's ``null`` settings from the zoo entry of ``cfg.model.name`` and check them (in place)."""

    @abstractmethod
    def build_dataset(self, cfg: DictConfig, split: str) -> torch.utils.data.Dataset:
        """``"train"``, ``"val"`` (checked during training) or ``"test"`` (``uniformer eval``)."""

    @abstractmethod
    def has_validation(self, cfg: DictConfig) -> bool: ...

    @abstractmethod
    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]: ...

    @abstractmethod
    def num_outputs(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> int:
        """The class count a new model gets (from the config or the data; warns when they disagree)."""

    @abstractmethod
    def build_model(self, cfg: DictConfig, num_outputs: int) -> nn.Module:
        """The architecture of ``cfg.model``, randomly initialised (weights are the engine's business)."""

    @abstractmethod
    def objective(self, cfg: DictConfig, num_outputs: int, micro_batch: int) -> Objective: ...

    def batch_groups(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> Sequence[int] | None:
        """A group id per training item; every training micro-batch then holds items of one group (images of
        one aspect ratio class pad little). ``None`` (default): no grouping."""
        return None

    @abstractmethod
    def metric(self, cfg: DictConfig, dataset: torch.utils.data.Dataset, label_map: Any = None) -> MetricAccumulator:
        """A fresh accumulator over ``dataset``; ``label_map`` is what :meth:`check_eval_data` returned."""

    def model_inputs(self, batch: dict[str, Any]) -> Any:
        """What the model takes from a collated batch: a tensor, or tensors in lists/tuples/dicts (a detector's
        list of images); the evaluation loop moves every tensor in it to the device."""
        return batch["inputs"]

    @abstractmethod
    def weights_metadata(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> dict[str, Any]:
        """What travels with trained weights so that predict and eval need nothing else (class names, views)."""

    def eval_outputs(self, cfg: DictConfig, checkpoint: Any) -> int:
        """The output count of the model that evaluates ``checkpoint`` (a
        :class:`~uniformer.models.checkpoint.CheckpointFile`): the config's ``model.num_classes``, else what the
        weights say; an error when neither says."""
        count = cfg.model.get("num_classes") or checkpoint.num_classes
        if count is None:
            raise ValueError(
                f"{checkpoint.path}: the weights do not say how many outputs they have; set model.num_classes"
            )
        return int(count)

    @abstractmethod
    def check_eval_data(self, cfg: DictConfig, checkpoint: Any, dataset: torch.utils.data.Dataset) -> Any:
        """Refuse a test set that does not match the weights (class count, names); returns the label mapping."""

    @abstractmethod
    def write_report(self, out_dir: Path, metrics: Metrics, cfg: DictConfig) -> str:
        """Write the evaluation report files; returns the one-line summary."""

    @abstractmethod
    def prediction_setup(self, info: Any, model: nn.Module, checkpoint: Any, labels: Sequence[str] | None) -> Any:
        """What :meth:`predict` needs beside the model (class names, views...), from the zoo entry ``info`` and
        the :class:`~uniformer.models.checkpoint.CheckpointFile` the weights came from (``None`` for none)."""

    def prediction_options(self, setup: Any, args: Sequence[str]) -> Any:
        """``setup`` with the task's own ``uniformer predict`` options applied (``args``: the command-line words the
        predict command does not know, e.g. pose's ``--boxes FILE``). Tasks without options refuse any."""
        if args:
            raise ValueError(f"unknown option(s) for {self.name} models: {' '.join(args)}")
        return setup

    def requests(self, setup: Any) -> Sequence[PredictorRequest]:
        """The other models' predictors ``setup`` asks for (built by the engine, given to :meth:`attach`)."""
        return ()

    def attach(self, setup: Any, request: PredictorRequest, predictor: Any) -> Any:
        """``setup`` with ``predictor``, the engine's answer to one of :meth:`requests`, in place of the request."""
        raise ValueError(f"the {self.name} task uses no other model's predictions")

    @abstractmethod
    def predict(self, model: nn.Module, paths: Sequence[str], setup: Any, run: Any, topk: int) -> list[Any]:
        """One prediction per input file. ``run(model, dataset, accumulator)`` is the engine's evaluation loop."""

    def write_predictions(self, predictions: Sequence[Any], setup: Any, out_dir: Path) -> list[Path]:
        """Write the files a prediction makes (e.g. label maps and overlays) into ``out_dir``; returns them."""
        raise ValueError(f"the {self.name} task writes no prediction files (drop --out-dir)")

    def draw_prediction(self, prediction: Any, setup: Any) -> Any:
        """A picture of one readable prediction (a PIL image: the overlay, skeletons or boxes the task's
        prediction files show), for a page such as ``uniformer app``; ``None`` for a task without one."""
        return None

    def features(
        self, model: nn.Module, paths: Sequence[str], setup: Any, run: Any, stage_maps: bool
    ) -> tuple[dict[str, torch.Tensor], dict[int, str]]:
        """Backbone features of every input file and the failures (index -> reason)."""
        raise ValueError(f"the {self.name} task does not extract features")

    @abstractmethod
    def run_demo(self, out_dir: Path) -> dict[str, Any]:
        """The task's end-to-end demo; returns ``{"metric", "value", "chance", "seconds"}`` (fractions)."""


def parse_task_options(
    task: str, args: Sequence[str], usage: str, options: Mapping[str, Mapping[str, Any]]
) -> argparse.Namespace:
    """Parse the words of a ``uniformer predict`` command line that belong to ``task`` (a
    :meth:`Task.prediction_options`): ``options`` maps each flag to its ``add_argument`` keywords. A malformed
    value or a word the task does not take is a ``ValueError`` naming the task; ``usage`` (what the task takes)
    ends the message for unknown words."""
    parser = argparse.ArgumentParser(prog=f"uniformer predict ({task} options)", add_help=False, exit_on_error=False)
    for flag, keywords in options.items():
        parser.add_argument(flag, **keywords)
    try:
        parsed, unknown = parser.parse_known_args(list(args))
    except argparse.ArgumentError as exc:
        raise ValueError(f"{task} options: {exc}") from None
    if unknown:
        raise ValueError(f"unknown option(s) for {task} models: {' '.join(unknown)} ({task} takes {usage})")
    return parsed
