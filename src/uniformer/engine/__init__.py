"""Training and evaluation of UniFormer models with the published recipes, from one CPU to many GPU nodes.

* :func:`load_config` / :func:`resolve_config`: YAML recipes + dotted overrides, registry defaults filled in
* :func:`train` / :class:`Trainer`: the training loop (DDP under ``torchrun``, exact resume, NaN guard)
* :func:`evaluate`: the official multi-view test with a report; :func:`score_videos` is its reusable core
"""

from uniformer.engine.config import Config, load_config, resolve_config
from uniformer.engine.evaluate import (
    EvalMetrics,
    EvalReport,
    VideoScores,
    compute_metrics,
    evaluate,
    score_videos,
    write_report,
)
from uniformer.engine.train import Trainer, TrainingDiverged, TrainResult, train

__all__ = [
    "Config",
    "EvalMetrics",
    "EvalReport",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "VideoScores",
    "compute_metrics",
    "evaluate",
    "load_config",
    "resolve_config",
    "score_videos",
    "train",
    "write_report",
]
