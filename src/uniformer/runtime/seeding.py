"""Seeds from integer keys: every generator of a process (Python, NumPy, torch CPU and GPU) seeded from a mix of
integers, so that a random draw is a function of what it belongs to (run seed, step, shard, sample)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["derive_seed", "isolated_rng", "seed_all", "seed_step"]


def derive_seed(*keys: int) -> int:
    """A well-mixed 32-bit seed from any integers (NumPy ``SeedSequence``); nearby keys give unrelated seeds."""
    return int(np.random.SeedSequence([int(k) % 2**63 for k in keys]).generate_state(1)[0])


def _seed_all_cpu(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block with Python/NumPy/torch-CPU generators seeded to ``seed``, then restore their previous state.

    Restoring matters when the DataLoader has no workers and items are made in the training process itself.
    """
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    _seed_all_cpu(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def seed_all(*keys: int) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and every GPU) from ``derive_seed(*keys)``."""
    value = derive_seed(*keys)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def seed_step(seed: int, step: int, shard: int) -> None:
    """Seed all generators for micro-batch ``shard`` of optimizer step ``step``."""
    seed_all(seed, 1, step, shard)  # the constant separates this stream from the per-sample (0) and init (3) ones
