"""What tasks and the engine share at run time: devices and autocast, seeding, the collectives, the evaluation loop.

This layer sits below :mod:`uniformer.tasks` (mmengine's shape: the runtime below, orchestration above): a task
uses it to run a model over its items, the engine uses it to train and evaluate. It imports neither.

* :class:`DistContext`: where this process sits and the collectives a metric needs (a world of one by default);
  :func:`setup_distributed` / :func:`cleanup_distributed` join and leave the group ``torchrun`` prepared
* :func:`select_device`, :func:`autocast_context`, :func:`to_device`: device, precision and inputs on it
* :func:`derive_seed`, :func:`seed_all`, :func:`seed_step`, :func:`isolated_rng`: seeds from integer keys
* :func:`feed`: the one evaluation loop, a model over a dataset into an accumulator; :data:`Batch`,
  :data:`ModelInput`, :data:`ModelOutput`: what flows through it
"""

from uniformer.runtime.device import autocast_context, select_device, to_device
from uniformer.runtime.distributed import DistContext, cleanup_distributed, setup_distributed
from uniformer.runtime.loop import Accumulator, Batch, ModelInput, ModelOutput, feed
from uniformer.runtime.seeding import derive_seed, isolated_rng, seed_all, seed_step

__all__ = [
    "Accumulator",
    "Batch",
    "DistContext",
    "ModelInput",
    "ModelOutput",
    "autocast_context",
    "cleanup_distributed",
    "derive_seed",
    "feed",
    "isolated_rng",
    "seed_all",
    "seed_step",
    "select_device",
    "setup_distributed",
    "to_device",
]
