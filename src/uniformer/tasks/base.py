"""What the engine needs from a task, and nothing more: two narrow seams.

:class:`TrainTask` is what training and evaluation need: the config sections, the datasets and their collate, the
model, the objective, the metric (correct under DDP), what travels with the weights and the report.
:class:`PredictTask` is what prediction needs: the setup beside the model (class names, views...), the options a
task takes (declared as data: :class:`Option`; the CLI parses them), the predict walk over files into typed
:class:`Prediction` objects, the files and pictures a prediction makes, and backbone features. A task package's
``TASK`` is a :class:`Task`, both at once; a new task is one package under :mod:`uniformer.tasks` plus its
configs, and no engine file changes. Demos are not part of the seam (the CLI's ``demo`` command runs them).

Imports point down: the engine imports tasks, tasks import :mod:`uniformer.runtime`, :mod:`uniformer.models` and
:mod:`uniformer.data`, never the engine; a task that uses another model's predictions asks the engine for it
(:class:`PredictorRequest`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Generic, Protocol, TypeVar

import torch
import torch.nn as nn
from omegaconf import DictConfig
from PIL import Image

from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.zoo.schema import ModelInfo
from uniformer.runtime import Accumulator, Batch, DistContext, ModelInput, ModelOutput

__all__ = [
    "LabelMap",
    "MetricAccumulator",
    "Metrics",
    "Objective",
    "Option",
    "PredictTask",
    "Prediction",
    "Predicts",
    "PredictorRequest",
    "Run",
    "Task",
    "TrainTask",
    "check_folder",
    "refuse_other_names",
]


class Run(Protocol):
    """The engine's evaluation loop as a task's prediction receives it: ``model`` over ``dataset`` into
    ``accumulator``; ``options`` are keyword arguments of every model call (test-time options)."""

    def __call__(
        self,
        model: nn.Module,
        dataset: torch.utils.data.Dataset,
        accumulator: Accumulator,
        *,
        options: Mapping[str, object] | None = None,
    ) -> None: ...


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
    def to_dict(self) -> dict[str, object]:
        """The JSON record: ``path``, ``error`` and what was found."""


@dataclass(frozen=True)
class Option:
    """One ``uniformer predict`` option a task takes, as data: ``flag`` (``--score-threshold``), the ``type`` of
    its value, the ``metavar`` its usage shows and a ``help`` line. The CLI parses the words a user gives against
    a task's options; the task receives the values by :attr:`dest`."""

    flag: str
    metavar: str
    help: str
    type: Callable[[str], object] = str

    @property
    def dest(self) -> str:
        """The value's key: the flag without dashes, ``-`` as ``_`` (``score_threshold``)."""
        return self.flag.lstrip("-").replace("-", "_")


class Predicts(Protocol):
    """What the engine answers a :class:`PredictorRequest` with (its ``Predictor``): the other model's setup and
    its predictions of files."""

    @property
    def setup(self) -> object: ...

    def predict(self, paths: Sequence[str], topk: int = 5, progress: bool = False) -> Sequence[Prediction]: ...


@dataclass(frozen=True)
class PredictorRequest:
    """Another zoo model whose predictions a task's prediction uses (pose's person detector, from ``--detector``).

    A task never builds or reaches another task itself: it asks with this request (:meth:`Task.requests`), the
    engine builds the predictor and hands it back (:meth:`Task.attach`). ``task`` is the zoo kind the model must
    be; ``flag`` names the option that asked, for messages; ``options`` are the other task's option values.
    """

    model: str
    task: str
    flag: str
    checkpoint: str | None = None
    options: Mapping[str, object] = field(default_factory=dict)


# what check_eval_data returns and metric takes: the model class of each dataset class (None: the same)
LabelMap = list[int] | None


@dataclass
class Metrics:
    """A finished evaluation: ``primary`` (higher is better, e.g. top-1 in %) is the number that picks
    ``best.pt``; ``values`` become the ``val_*`` fields of the epoch record; ``detail`` is whatever the task's
    report writer needs."""

    primary: float
    values: dict[str, float]
    detail: object = None


class MetricAccumulator(ABC):
    """Collects model outputs batch by batch on each process; :meth:`compute` sums across processes.

    :meth:`indices` says which dataset items this process evaluates, so that items a metric aggregates (the
    views of one video) stay on one process.
    """

    @abstractmethod
    def indices(self, rank: int, world_size: int) -> list[int]: ...

    @abstractmethod
    def update(self, output: ModelOutput, batch: Batch) -> None: ...

    @abstractmethod
    def compute(self, comm: DistContext) -> Metrics: ...


class Objective(ABC):
    """The training signal: batch -> (inputs, targets), the forward pass, and the loss.

    ``item_multiple``: a micro-batch must hold a multiple of this many items (2 where items are mixed in pairs).
    """

    item_multiple: int = 1

    @abstractmethod
    def prepare(self, batch: Batch, device: torch.device) -> tuple[ModelInput, object]: ...

    def forward(self, model: nn.Module, inputs: ModelInput) -> ModelOutput:
        return model(inputs)

    @abstractmethod
    def loss(self, output: ModelOutput, targets: object) -> torch.Tensor: ...


def refuse_other_names(checkpoint: CheckpointFile, names: Sequence[str], noun: str) -> None:
    """Refuse a test set whose ``noun`` (classes, keypoints) are not those stored with the weights: an error with
    both counts and the first places where the names differ. Weights without stored names pass."""
    stored = checkpoint.class_names
    if stored is None or list(stored) == list(names):
        return
    differ = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(names, stored)) if a != b]
    raise ValueError(
        f"checkpoint={checkpoint.path} was trained on {len(stored)} {noun}, the test set has {len(names)}"
        + (f" (test set vs weights: {'; '.join(differ[:5])})" if differ else "")
    )


def check_folder(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as the folder an option (``flag``) names for a task's files: refused, before any work, when it
    exists as something other than a folder."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} {folder}: exists and is not a folder")
    return folder


class TrainTask(ABC):
    """What training and evaluation need of a task (classification, segmentation, ...).

    ``sections`` are the config sections the task owns (name -> structured-config dataclass), merged into the
    schema next to the engine's ``model``, ``optimizer``, ``scheduler``, ``trainer`` and ``eval``.
    """

    name: ClassVar[str]
    sections: ClassVar[dict[str, type]]
    primary_metric: ClassVar[str]  # key of Metrics.values that Metrics.primary is, e.g. "top1"
    metric_label: ClassVar[str]  # how the logs name it, e.g. "top-1 (%)"
    outputs_noun: ClassVar[str] = "classes"  # what the model's outputs are, e.g. "keypoints"

    @abstractmethod
    def resolve(self, cfg: DictConfig) -> None:
        """Fill the task's ``null`` settings from the zoo entry of ``cfg.model.name`` and check them (in place)."""

    @abstractmethod
    def build_dataset(self, cfg: DictConfig, split: str) -> torch.utils.data.Dataset:
        """``"train"``, ``"val"`` (checked during training) or ``"test"`` (``uniformer eval``)."""

    @abstractmethod
    def has_validation(self, cfg: DictConfig) -> bool: ...

    @abstractmethod
    def collate(self, items: Sequence[Mapping[str, object]]) -> Batch: ...

    @abstractmethod
    def num_outputs(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> int:
        """The class count a new model gets (from the config or the data; warns when they disagree)."""

    @abstractmethod
    def build_model(self, cfg: DictConfig, num_outputs: int) -> nn.Module:
        """The architecture of ``cfg.model``, randomly initialised (weights are the engine's business)."""

    @abstractmethod
    def objective(self, cfg: DictConfig, num_outputs: int, micro_batch: int) -> Objective: ...

    def test_options(self, cfg: DictConfig) -> dict[str, object]:
        """Keyword arguments of the model's call in validation and ``uniformer eval`` (test-time options such as
        pose's flip test: arguments of a call, never attributes set on a shared model)."""
        return {}

    def batch_groups(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> Sequence[int] | None:
        """A group id per training item; every training micro-batch then holds items of one group (images of
        one aspect ratio class pad little). ``None`` (default): no grouping."""
        return None

    @abstractmethod
    def metric(
        self, cfg: DictConfig, dataset: torch.utils.data.Dataset, label_map: LabelMap = None
    ) -> MetricAccumulator:
        """A fresh accumulator over ``dataset``; ``label_map`` is what :meth:`check_eval_data` returned."""

    def model_inputs(self, batch: Batch) -> ModelInput:
        """What the model takes from a collated batch: a tensor, or tensors in lists/tuples/dicts (a detector's
        list of images); the evaluation loop moves every tensor in it to the device."""
        return batch["inputs"]

    @abstractmethod
    def weights_metadata(self, cfg: DictConfig, train_set: torch.utils.data.Dataset) -> dict[str, object]:
        """What travels with trained weights so that predict and eval need nothing else (class names, views)."""

    def eval_outputs(self, cfg: DictConfig, checkpoint: CheckpointFile) -> int:
        """The output count of the model that evaluates ``checkpoint``: the config's ``model.num_classes``, else
        what the weights say; an error when neither says."""
        count = cfg.model.get("num_classes") or checkpoint.num_classes
        if count is None:
            raise ValueError(
                f"{checkpoint.path}: the weights do not say how many outputs they have; set model.num_classes"
            )
        return int(count)

    @abstractmethod
    def check_eval_data(
        self, cfg: DictConfig, checkpoint: CheckpointFile, dataset: torch.utils.data.Dataset
    ) -> LabelMap:
        """Refuse a test set that does not match the weights (class count, names); returns the label mapping."""

    @abstractmethod
    def write_report(self, out_dir: Path, metrics: Metrics, cfg: DictConfig) -> str:
        """Write the evaluation report files; returns the one-line summary."""


SetupT = TypeVar("SetupT")
PredictionT = TypeVar("PredictionT", bound=Prediction)


class PredictTask(ABC, Generic[SetupT, PredictionT]):
    """What prediction needs of a task: its setup beside the model (``SetupT``, the task's own frozen dataclass),
    the options it takes, and one ``PredictionT`` per input file."""

    name: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()  # the task's own ``uniformer predict`` options

    @abstractmethod
    def prediction_setup(
        self, info: ModelInfo, model: nn.Module, checkpoint: CheckpointFile | None, labels: Sequence[str] | None
    ) -> SetupT:
        """What :meth:`predict` needs beside the model (class names, views...), from the zoo entry ``info`` and
        the weights' file (``None`` for none); ``labels`` are names given by the user."""

    def prediction_options(self, setup: SetupT, values: Mapping[str, object]) -> SetupT:
        """``setup`` with the task's options applied: ``values`` maps the :attr:`Option.dest` of each option
        given to its value (parsed by the CLI from :attr:`options`)."""
        if values:
            raise ValueError(f"the {self.name} task takes no options; got {', '.join(values)}")
        return setup

    def requests(self, setup: SetupT) -> Sequence[PredictorRequest]:
        """The other models' predictors ``setup`` asks for (built by the engine, given to :meth:`attach`)."""
        return ()

    def attach(self, setup: SetupT, request: PredictorRequest, predictor: Predicts) -> SetupT:
        """``setup`` with ``predictor`` (the engine's ``Predictor``, its answer to one of :meth:`requests`)."""
        raise ValueError(f"the {self.name} task uses no other model's predictions")

    @abstractmethod
    def predict(self, model: nn.Module, paths: Sequence[str], setup: SetupT, run: Run, topk: int) -> list[PredictionT]:
        """One prediction per input file, in input order; ``run`` is the engine's evaluation loop; ``topk`` the
        number of classes a ranking keeps where the prediction keeps only its best ones."""

    def check_out_dir(self, out_dir: Path) -> None:
        """Refuse ``out_dir`` for :meth:`write_predictions` before any model is built or run: a task that writes
        prediction files takes a folder (:func:`check_folder`); by default a task writes none."""
        raise ValueError(f"the {self.name} task writes no prediction files (drop --out-dir)")

    def write_predictions(self, predictions: Sequence[PredictionT], setup: SetupT, out_dir: Path) -> list[Path]:
        """Write the files a prediction makes (e.g. label maps and overlays) into ``out_dir``; returns them. By
        default none (:meth:`check_out_dir` refuses the folder)."""
        self.check_out_dir(out_dir)
        return []

    def draw_prediction(self, prediction: PredictionT, setup: SetupT) -> Image.Image | None:
        """A picture of one readable prediction (the overlay, skeletons or boxes the task's prediction files
        show), for a page such as ``uniformer app``; ``None`` for a task without one."""
        return None

    def features(
        self, model: nn.Module, paths: Sequence[str], setup: SetupT, run: Run, stage_maps: bool
    ) -> tuple[dict[str, torch.Tensor], dict[int, str]]:
        """Backbone features of every input file and the failures (index -> reason)."""
        raise ValueError(f"the {self.name} task does not extract features")


class Task(TrainTask, PredictTask[object, Prediction]):
    """A whole task: what a task package's ``TASK`` is (training, evaluation and prediction)."""
