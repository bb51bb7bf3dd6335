"""The data order and per-sample seeding that make runs independent of world size, workers and restarts."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from uniformer.engine.loader import EpochSampler, SeededItems, seed_step


def _batches(sampler: EpochSampler) -> list[list[tuple[int, int, int]]]:
    keys = list(sampler)
    b = sampler.micro_batch
    return [keys[i : i + b] for i in range(0, len(keys), b)]


def test_two_processes_see_the_micro_batches_of_one_process_accumulating_two() -> None:
    single = EpochSampler(50, global_batch=8, micro_batch=4, world_size=1, rank=0, seed=3)
    ranks = [EpochSampler(50, global_batch=8, micro_batch=4, world_size=2, rank=r, seed=3) for r in (0, 1)]
    assert single.accum_steps == 2 and ranks[0].accum_steps == 1 and single.steps_per_epoch == 6
    one = _batches(single)
    two = [_batches(s) for s in ranks]
    for step in range(single.steps_per_epoch):
        # micro-batch m of the single process == the batch of rank m, keys (and so augmentation) included
        assert one[2 * step] == two[0][step]
        assert one[2 * step + 1] == two[1][step]


def test_each_epoch_is_a_seeded_permutation_and_resume_starts_mid_epoch() -> None:
    sampler = EpochSampler(10, global_batch=4, micro_batch=4, seed=1)
    epoch0 = [i for i, _, _ in sampler]
    assert len(epoch0) == 8 and len(set(epoch0)) == 8  # 2 full steps, the remainder left out
    sampler.set_epoch(1)
    epoch1 = [i for i, _, _ in sampler]
    assert epoch1 != epoch0
    sampler.set_epoch(1, start_step=1)
    assert [i for i, _, _ in sampler] == epoch1[4:]
    assert len(sampler) == 4
    assert [i for i, _, _ in EpochSampler(10, global_batch=4, micro_batch=4, seed=2)] != epoch0
    assert EpochSampler(10, global_batch=4, micro_batch=4, seed=1).global_order(0) == epoch0


def test_repeated_augmentation_copies_share_a_batch_with_distinct_positions() -> None:
    full = EpochSampler(6, global_batch=4, micro_batch=4, seed=0, repeated_aug=2)
    keys = list(full)
    assert full.steps_per_epoch == 3  # 6 samples x 2 copies = 12 items
    indices = [k[0] for k in keys]
    assert indices[0::2] == indices[1::2]  # consecutive copies
    assert len({k[2] for k in keys}) == 12  # every copy has its own position, hence its own augmentation
    deit = EpochSampler(8, global_batch=4, micro_batch=4, seed=0, repeated_aug=2, subsample=True)
    assert deit.steps_per_epoch == 2  # an epoch draws len(dataset) items


def test_batch_larger_than_an_epoch_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"trainer\.batch_size=16 is larger than one epoch"):
        EpochSampler(10, global_batch=16, micro_batch=16)


class _RandomItems(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_items_depend_on_their_key_not_on_call_order_and_leave_global_rngs_alone() -> None:
    items = SeededItems(_RandomItems(), seed=5)
    torch.manual_seed(0)
    before = torch.rand(())
    torch.manual_seed(0)
    first = [items[(i, 0, p)] for i, p in ((0, 0), (1, 1), (0, 2))]
    assert torch.rand(()) == before  # the training process's generator state is untouched
    again = [items[(i, 0, p)] for i, p in ((0, 2), (1, 1), (0, 0))][::-1]
    assert first == again
    assert first[0] != first[2]  # same video, other position (repeated augmentation): other randomness
    assert items[(0, 1, 0)] != first[0]  # other epoch


def test_step_seeding_is_a_function_of_step_and_shard() -> None:
    seed_step(7, 3, 1)
    a = torch.rand(3), np.random.rand(), random.random()
    torch.rand(100)
    seed_step(7, 3, 1)
    b = torch.rand(3), np.random.rand(), random.random()
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    seed_step(7, 3, 0)
    assert not torch.equal(torch.rand(3), a[0])
