"""Training, evaluation and prediction, for every task, from one CPU to many GPU nodes.

* :func:`load_config` / :func:`resolve_config`: YAML recipes + dotted overrides, the task's defaults filled in
* :func:`train` / :class:`Trainer`: the training loop (DDP under ``torchrun``, exact resume, NaN guard, signals)
* :func:`evaluate`: ``uniformer eval``; :func:`run_evaluation` is the loop behind it and behind validation
* :class:`Predictor`: a zoo model with its weights, classifying a user's files

The engine sees a task (:mod:`uniformer.tasks`) through its small interface, never a model class.
"""

from uniformer.engine.config import load_config, resolve_config
from uniformer.engine.evaluate import EvalReport, evaluate, run_evaluation
from uniformer.engine.predict import Predictor
from uniformer.engine.train import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult, train

__all__ = [
    "EvalReport",
    "Predictor",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "evaluate",
    "load_config",
    "resolve_config",
    "run_evaluation",
    "train",
]
