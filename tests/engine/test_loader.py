"""The data order and per-sample seeding that make runs independent of world size, workers and restarts."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from uniformer.engine.loader import BatchPlan, EpochSampler, SeededItems
from uniformer.runtime import seed_step


def _sampler(num_items: int, global_batch: int, micro_batch: int, world_size: int = 1, **kwargs) -> EpochSampler:
    plan = BatchPlan(global_batch, world_size, global_batch // (world_size * micro_batch), micro_batch)
    return EpochSampler(num_items, plan, **kwargs)


def _keys(sampler: EpochSampler) -> list[tuple[int, int, int]]:
    return [key for batch in sampler for key in batch]


def test_two_processes_see_the_micro_batches_of_one_process_accumulating_two() -> None:
    single = _sampler(50, 8, 4, world_size=1, rank=0, seed=3)
    ranks = [_sampler(50, 8, 4, world_size=2, rank=r, seed=3) for r in (0, 1)]
    assert single.plan.accum_steps == 2 and ranks[0].plan.accum_steps == 1 and single.steps_per_epoch == 6
    one = list(single)
    two = [list(s) for s in ranks]
    assert all(len(batch) == 4 for batch in one)
    for step in range(single.steps_per_epoch):
        # micro-batch m of the single process == the batch of rank m, keys (and so augmentation) included
        assert one[2 * step] == two[0][step]
        assert one[2 * step + 1] == two[1][step]


def test_each_epoch_is_a_seeded_permutation_and_resume_starts_mid_epoch() -> None:
    sampler = _sampler(10, 4, 4, seed=1)
    epoch0 = [i for i, _, _ in _keys(sampler)]
    assert len(epoch0) == 8 and len(set(epoch0)) == 8  # 2 full steps, the remainder left out
    assert sampler.left_out == 2 and _sampler(10, 4, 4, drop_last=False).left_out == 0
    sampler.set_epoch(1)
    epoch1 = [i for i, _, _ in _keys(sampler)]
    assert epoch1 != epoch0
    sampler.set_epoch(1, start_step=1)
    assert [i for i, _, _ in _keys(sampler)] == epoch1[4:]
    assert len(sampler) == 1  # one micro-batch of 4 left
    assert [i for i, _, _ in _keys(_sampler(10, 4, 4, seed=2))] != epoch0
    assert _sampler(10, 4, 4, seed=1).global_order(0) == epoch0


def test_repeated_augmentation_copies_share_a_batch_with_distinct_positions() -> None:
    full = _sampler(6, 4, 4, seed=0, repeated_aug=2)
    keys = _keys(full)
    assert full.steps_per_epoch == 3  # 6 samples x 2 copies = 12 items
    indices = [k[0] for k in keys]
    assert indices[0::2] == indices[1::2]  # consecutive copies
    assert len({k[2] for k in keys}) == 12  # every copy has its own position, hence its own augmentation
    deit = _sampler(8, 4, 4, seed=0, repeated_aug=2, subsample=True)
    assert deit.steps_per_epoch == 2  # an epoch draws len(dataset) items


@pytest.mark.parametrize("num_items", [50, 53, 95])
def test_keeping_the_remainder_sees_every_item_once_the_same_under_any_split(num_items: int) -> None:
    single = _sampler(num_items, 8, 2, world_size=1, rank=0, seed=4, drop_last=False)
    ranks = [_sampler(num_items, 8, 2, world_size=2, rank=r, seed=4, drop_last=False) for r in (0, 1)]
    one = list(single)
    seen = [i for batch in one for i, _, _ in batch]
    assert sorted(seen) == list(range(num_items))  # every item exactly once, none padded
    assert [p for batch in one for _, _, p in batch] == list(range(num_items))  # global order, contiguous
    sizes = [len(batch) for batch in one]
    assert min(sizes) >= 2 and max(sizes) - min(sizes) <= 1 and len(one) == 4 * (num_items // 8)
    accum = single.plan.accum_steps
    for step in range(single.steps_per_epoch):
        for r, sampler in enumerate(ranks):  # rank r's micro-batches are the single process's shards r*2, r*2+1
            mine = list(sampler)[step * 2 : step * 2 + 2]
            assert mine == one[step * accum + 2 * r : step * accum + 2 * r + 2]
    single.set_epoch(0, start_step=2)  # resume mid-epoch: the rest of the same epoch
    assert list(single) == one[2 * accum :]


def test_keeping_the_remainder_in_pairs_and_its_refusals() -> None:
    paired = _sampler(14, 4, 2, seed=0, drop_last=False, item_multiple=2)
    sizes = [len(batch) for batch in paired]
    assert all(n % 2 == 0 for n in sizes)
    assert sum(sizes) == 14 and sizes.count(4) == 1  # 12 in 3 full steps; one extra pair for the first micro-batch
    with pytest.raises(ValueError, match=r"drop_last=false keeps all 13 items.*multiples of 2"):
        _sampler(13, 4, 2, drop_last=False, item_multiple=2)
    with pytest.raises(ValueError, match=r"drop_last=false cannot keep every item with single-group"):
        _sampler(13, 4, 2, drop_last=False, groups=[i % 2 for i in range(13)])


def test_batch_larger_than_an_epoch_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"trainer\.batch_size=16 is larger than one epoch"):
        _sampler(10, 16, 16)


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
