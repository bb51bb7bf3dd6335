"""Training data order and randomness that do not depend on how the work is split.

Three rules make a run reproducible to the bit on CPU, resumable mid-epoch, and equal across world sizes:

1. **One global order per epoch.** :class:`EpochSampler` draws a permutation from ``(seed, epoch)``, repeats each
   sample ``repeated_aug`` times (consecutively, so the copies share a batch as PySlowFast's ``AUG.NUM_SAMPLE``
   does), and cuts it into global batches. Global batch ``s`` is split into ``world_size x accum_steps``
   consecutive micro-batches ("shards"); process ``r`` takes shards ``r * accum_steps ... + accum_steps - 1``.
   So 2 processes x 1 micro-batch and 1 process x 2 micro-batches see exactly the same micro-batches, and
   BatchNorm statistics match too. Resuming at step ``s`` is just starting the order at global batch ``s``.
   Items that do not fill a last global batch are left out (``drop_last``, the default) or spread over the
   epoch's micro-batches by their position in the global order, which keeps the rule.
   With ``groups`` (a task's :meth:`~uniformer.tasks.base.Task.batch_groups`, e.g. detection's aspect-ratio
   flag), the order is built from single-group chunks of one micro-batch, so every micro-batch holds one group
   (mmdet's ``GroupSampler`` / ``DistributedGroupSampler``) and the rest of the rule is unchanged.
2. **Augmentation seeded per sample.** :class:`SeededItems` seeds Python's, NumPy's and torch's CPU generators
   from ``(seed, epoch, position in the global order)`` around each ``dataset[index]`` call, so a clip's crop,
   flip, RandAugment and erasing do not depend on which worker (or process) loads it.
3. **Model-side randomness seeded per micro-batch.** :func:`uniformer.runtime.seed_step` seeds every generator
   from ``(seed, step, shard)`` before the forward pass, so drop-path masks and Mixup draws are a function of the
   step and shard only: nothing needs saving to continue a stream after a restart.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset, Sampler

from uniformer.runtime.seeding import derive_seed, isolated_rng

__all__ = ["BatchPlan", "EpochSampler", "SeededItems"]


@dataclass(frozen=True)
class BatchPlan:
    """The batch arithmetic of a run, computed and checked once: ``global_batch`` items per optimizer step =
    ``world_size`` processes x ``accum_steps`` micro-batches x ``micro_batch`` items. The sampler and the
    learning-rate scaling both read it."""

    global_batch: int
    world_size: int
    accum_steps: int
    micro_batch: int

    def __post_init__(self) -> None:
        if min(self.world_size, self.accum_steps, self.micro_batch) < 1 or self.global_batch != (
            self.world_size * self.accum_steps * self.micro_batch
        ):
            raise ValueError(
                f"global batch {self.global_batch} is not {self.world_size} process(es) x {self.accum_steps} "
                f"accumulation step(s) x micro-batch {self.micro_batch}"
            )

    @classmethod
    def of(cls, cfg: DictConfig, world_size: int) -> BatchPlan:
        t = cfg.trainer
        if t.batch_size % (world_size * t.accum_steps):
            raise ValueError(
                f"config: trainer.batch_size={t.batch_size} (global) must be divisible by {world_size} process(es) "
                f"x trainer.accum_steps={t.accum_steps}"
            )
        return cls(t.batch_size, world_size, t.accum_steps, t.batch_size // (world_size * t.accum_steps))

    def __str__(self) -> str:
        return (
            f"global batch {self.global_batch} = {self.world_size} process(es) x {self.micro_batch} x "
            f"{self.accum_steps} accumulation"
        )


class SeededItems(Dataset):
    """Wraps a map-style dataset; ``items[(index, epoch, position)]`` is ``dataset[index]`` made under a seed
    derived from ``(seed, epoch, position)`` (see the module docstring). Keys come from :class:`EpochSampler`."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        index, epoch, position = key
        with isolated_rng(derive_seed(self.seed, 0, epoch, position)):
            return self.dataset[index]


class EpochSampler(Sampler[list[tuple[int, int, int]]]):
    """This process's share of one epoch as micro-batches of ``(index, epoch, position)`` keys (a DataLoader
    ``batch_sampler``; see the module docstring).

    Args:
        num_items: dataset length.
        plan: the run's :class:`BatchPlan` (global batch = processes x accumulation steps x micro-batch).
        rank: this process.
        seed: run seed; the order of epoch ``e`` is a function of ``(seed, e)`` only.
        repeated_aug: copies of each sample per epoch, each differently augmented (1 = off).
        subsample: with repeated augmentation, an epoch draws ``num_items`` items (DeiT's RASampler: fewer
            distinct samples per epoch) instead of ``repeated_aug * num_items`` (PySlowFast's NUM_SAMPLE).
        shuffle: random order (training) or dataset order.
        groups: a group id per item; each micro-batch is then drawn from one group: the epoch shuffles each
            group, cuts it into micro-batch chunks and shuffles the chunks of all groups together.

        drop_last: leave out the items that do not fill a last global batch (with ``groups``: nor a last chunk of
            their group), a different set every epoch, as PySlowFast and timm do; mmdet's samplers pad with
            repeated items instead. ``False`` keeps every item exactly once: the leftover items join the epoch's
            micro-batches, ``item_multiple`` at a time, round-robin from the first micro-batch, so no batch is
            padded, none is empty, and a micro-batch grows by at most one ``item_multiple`` per round.
        item_multiple: every micro-batch holds a multiple of this many items (2 when Mixup pairs items).
    """

    def __init__(
        self,
        num_items: int,
        plan: BatchPlan,
        *,
        rank: int = 0,
        seed: int = 0,
        repeated_aug: int = 1,
        subsample: bool = False,
        shuffle: bool = True,
        groups: Sequence[int] | None = None,
        drop_last: bool = True,
        item_multiple: int = 1,
    ) -> None:
        if not 0 <= rank < plan.world_size:
            raise ValueError(f"rank {rank} is outside a world of {plan.world_size} process(es)")
        self.num_items, self.plan, self.rank, self.seed = num_items, plan, rank, seed
        self.repeated_aug, self.subsample, self.shuffle = repeated_aug, subsample, shuffle
        self.drop_last = drop_last
        drawn = num_items if subsample else num_items * repeated_aug
        self.groups: list[torch.Tensor] | None = None
        if groups is not None:
            ids = torch.as_tensor(groups, dtype=torch.long)
            if ids.shape != (num_items,):
                raise ValueError(f"batch groups: {ids.numel()} group ids for {num_items} items")
            if repeated_aug > 1:
                raise ValueError("grouped batches do not combine with repeated augmentation (data.repeated_aug)")
            members = [torch.nonzero(ids == g).flatten() for g in torch.unique(ids)]
            if len(members) > 1:  # one group is no grouping: the same order as without groups
                self.groups = members
                drawn = sum(len(m) // plan.micro_batch for m in members) * plan.micro_batch
        self.steps_per_epoch = drawn // plan.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"trainer.batch_size={plan.global_batch} is larger than one epoch ({drawn} items from {num_items} "
                f"samples{f' x {repeated_aug} repeats' if repeated_aug > 1 and not subsample else ''}"
                f"{' in single-group micro-batches' if groups is not None else ''}); "
                "lower the batch size"
            )
        self.drawn = self.steps_per_epoch * plan.global_batch
        self.extra_units, self.item_multiple = 0, item_multiple
        if not drop_last:
            if self.groups is not None:
                raise ValueError(
                    "config: trainer.drop_last=false cannot keep every item with single-group micro-batches (the "
                    "leftover items of a group may be too few for a micro-batch of their own); keep drop_last"
                )
            leftover = drawn - self.drawn
            if leftover % item_multiple:
                raise ValueError(
                    f"config: trainer.drop_last=false keeps all {drawn} items of an epoch, but micro-batches hold "
                    f"items in multiples of {item_multiple} (Mixup/CutMix pairs); {leftover} are left over after "
                    f"{self.steps_per_epoch} full steps: use an epoch size that fits, or drop_last=true"
                )
            self.drawn, self.extra_units = drawn, leftover // item_multiple
        self.left_out = drawn - self.drawn  # items of each epoch that no batch takes (drop_last)
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Iterate epoch ``epoch`` from global step ``start_step`` of that epoch on (resume)."""
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step must be in [0, {self.steps_per_epoch}], got {start_step}")
        self.epoch, self.start_step = epoch, start_step

    def global_order(self, epoch: int) -> list[int]:
        """Dataset indices of epoch ``epoch`` in the order all processes together consume them."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, 2, epoch))
        if self.groups is not None:
            order = self._grouped_order(self.groups, generator)
        elif self.shuffle:
            order = torch.randperm(self.num_items, generator=generator)
        else:
            order = torch.arange(self.num_items)
        if self.repeated_aug > 1:
            order = order.repeat_interleave(self.repeated_aug)
        return order[: self.drawn].tolist()

    def _grouped_order(self, groups: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Each group shuffled and cut into whole micro-batch chunks; the chunks of all groups shuffled."""
        micro, chunks = self.plan.micro_batch, []
        for members in groups:
            if self.shuffle:
                members = members[torch.randperm(len(members), generator=generator)]
            chunks.append(members[: len(members) // micro * micro].view(-1, micro))
        stacked = torch.cat(chunks)
        if self.shuffle:
            stacked = stacked[torch.randperm(len(stacked), generator=generator)]
        return stacked.flatten()

    def micro_batch_span(self, index: int) -> tuple[int, int]:
        """``(start, end)`` positions in the global order of the epoch's micro-batch ``index`` (global batch
        ``index // (world_size * accum_steps)``, shard ``index % (world_size * accum_steps)``)."""
        shards = self.steps_per_epoch * self.plan.world_size * self.plan.accum_steps
        rounds, first = divmod(self.extra_units, shards)  # every micro-batch gets `rounds` units, the first more
        before = index * rounds + min(index, first)  # units given to the micro-batches ahead of this one
        start = index * self.plan.micro_batch + before * self.item_multiple
        size = self.plan.micro_batch + (rounds + (index < first)) * self.item_multiple
        return start, start + size

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        order, plan = self.global_order(self.epoch), self.plan
        for step in range(self.start_step, self.steps_per_epoch):
            for micro in range(plan.accum_steps):
                start, end = self.micro_batch_span((step * plan.world_size + self.rank) * plan.accum_steps + micro)
                yield [(order[position], self.epoch, position) for position in range(start, end)]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.plan.accum_steps
