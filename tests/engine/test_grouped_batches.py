"""Grouped batches (a task's ``batch_groups``, detection's aspect-ratio flag): one group per micro-batch, a
disjoint share per process, one seeded order per epoch, exact resume."""

from __future__ import annotations

import pytest
import torch

from uniformer.engine.loader import BatchPlan, EpochSampler

GROUPS = (torch.arange(41) * 7 % 5 < 2).long().tolist()  # 41 items, 17 in group 1, 24 in group 0


def _ranks(groups: list[int], micro: int = 3, world: int = 2, accum: int = 1, **kwargs) -> list[EpochSampler]:
    plan = BatchPlan(world * accum * micro, world, accum, micro)
    return [EpochSampler(len(groups), plan, rank=r, seed=5, groups=groups, **kwargs) for r in range(world)]


def test_every_micro_batch_holds_one_group() -> None:
    for sampler in _ranks(GROUPS):
        batches = list(sampler)
        assert len(batches) == sampler.steps_per_epoch == 6  # (8 + 5) whole chunks of 3 -> 13 // 2 steps
        assert all(len({GROUPS[i] for i, _, _ in batch}) == 1 for batch in batches)
        assert {GROUPS[batch[0][0]] for batch in batches} == {0, 1}


def test_two_ranks_share_an_epoch_without_overlap_and_cover_every_item_of_whole_chunks() -> None:
    groups = [0] * 12 + [1] * 6  # 6 chunks of 3: 3 steps of 2 ranks, nothing left out
    ranks = _ranks(groups)
    seen = [[i for batch in sampler for i, _, _ in batch] for sampler in ranks]
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(18))
    positions = [p for sampler in ranks for batch in sampler for _, _, p in batch]
    assert sorted(positions) == list(range(18))  # each item has its own augmentation seed
    uneven = [[i for batch in s for i, _, _ in batch] for s in _ranks(GROUPS)]
    assert len(uneven[0] + uneven[1]) == len(set(uneven[0] + uneven[1])) == 36  # 5 left out, none repeated


def test_the_order_is_a_function_of_the_seed_and_epoch_and_resume_gives_the_remaining_batches() -> None:
    first, again = _ranks(GROUPS)[0], _ranks(GROUPS)[0]
    epoch0 = list(first)
    assert list(again) == epoch0
    first.set_epoch(1)
    epoch1 = list(first)
    assert [b[0][0] for b in epoch1] != [b[0][0] for b in epoch0] and epoch1[0][0][1] == 1
    for rank, sampler in enumerate(_ranks(GROUPS)):
        sampler.set_epoch(1)
        full = list(sampler)
        sampler.set_epoch(1, start_step=4)
        assert list(sampler) == full[4:] and len(sampler) == 2
        if rank == 0:
            assert full == epoch1


def test_two_processes_see_what_one_process_accumulating_two_sees() -> None:
    (single,) = _ranks(GROUPS, world=1, accum=2)
    ranks = _ranks(GROUPS, world=2, accum=1)
    one, two = list(single), [list(s) for s in ranks]
    assert one[0::2] == two[0] and one[1::2] == two[1]


def test_bad_groups_are_refused() -> None:
    plan = BatchPlan(4, 1, 1, 4)
    with pytest.raises(ValueError, match="3 group ids for 8 items"):
        EpochSampler(8, plan, groups=[0, 1, 0])
    with pytest.raises(ValueError, match="repeated augmentation"):
        EpochSampler(8, plan, groups=[0] * 8, repeated_aug=2)
    with pytest.raises(ValueError, match="single-group micro-batches"):
        EpochSampler(6, plan, groups=[0, 0, 0, 1, 1, 1])  # no group fills a micro-batch of 4


def test_a_single_group_keeps_the_ungrouped_order() -> None:
    plan = BatchPlan(4, 1, 1, 4)
    grouped, plain = EpochSampler(10, plan, seed=2, groups=[3] * 10), EpochSampler(10, plan, seed=2)
    assert grouped.groups is None and list(grouped) == list(plain)
