"""What every dataset item carries besides its data, how a batch of items is collated, and the retry policy.

An item is a dict: the task's own fields (``video`` and ``label``, ``image`` and ``target``, ...) plus the
:class:`Item` envelope, which says which source (file, pair, person) the item was read from and whether it is
usable. The training loop counts ``skipped`` and evaluation lists the ``valid == False`` items with their
``error``, whatever the task: nothing is dropped silently.

:class:`RetryingDataset` is the one place that decides what happens when a source cannot be read: in training
it is replaced by another source drawn from ``(seed, index, attempt)``, at most ``max_retries`` times, and every
failure travels with the item in ``skipped``; in evaluation the item comes back as a placeholder with
``valid=False`` and the reason in ``error``. The draw depends on nothing but those three numbers, so the same
seed gives the same replacements in every worker process and after a resume.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

import torch

__all__ = ["Collate", "Item", "RetryingDataset", "collate_items", "envelope", "long_tensor"]

logger = logging.getLogger("uniformer.data")


class Item(TypedDict):
    """The envelope of a dataset item; a task's item type adds its own fields to it."""

    index: int  # number, in the dataset's list, of the source this item was read from
    path: str  # that source's file
    valid: bool  # False only for an evaluation item whose source could not be read
    error: str  # the reason, else ""
    skipped: list[tuple[str, str]]  # (path, reason) of every source replaced while producing a training item


def envelope(
    index: int, path: str, *, valid: bool = True, error: str = "", skipped: list[tuple[str, str]] | None = None
) -> Item:
    """An :class:`Item` envelope (``skipped`` defaults to a new empty list)."""
    return Item(index=index, path=path, valid=valid, error=error, skipped=[] if skipped is None else skipped)


Collate = Callable[[list[Any]], Any]
"""Turns the values of one field across a batch's items into the batch's value."""


def long_tensor(values: list[Any]) -> torch.Tensor:
    """A field of Python ints as an int64 tensor (a :data:`Collate`)."""
    return torch.tensor(values, dtype=torch.long)


def collate_items(items: Sequence[Mapping[str, Any]], fields: Mapping[str, Collate]) -> dict[str, Any]:
    """A DataLoader batch: each of the task's ``fields`` collated by its function, then the envelope: ``index``
    an int64 tensor, ``valid`` a bool tensor, ``path`` and ``error`` lists, ``skipped`` the concatenation of the
    items' lists (so failures seen inside a worker process reach the training loop)."""
    if not items:
        raise ValueError("cannot collate an empty batch (a DataLoader batch holds at least one item)")
    batch = {name: collate([item[name] for item in items]) for name, collate in fields.items()}
    batch.update(
        index=long_tensor([item["index"] for item in items]),
        valid=torch.tensor([item["valid"] for item in items], dtype=torch.bool),
        path=[item["path"] for item in items],
        error=[item["error"] for item in items],
        skipped=[entry for item in items for entry in item["skipped"]],
    )
    return batch


class RetryingDataset(torch.utils.data.Dataset, abc.ABC):
    """A dataset whose items are read from sources (files, pairs, persons) that may turn out unreadable; see the
    module docstring for the policy.

    A subclass passes ``train``, ``max_retries`` and ``seed`` to ``__init__``, sets the class attributes ``noun``
    (what a source is, for messages) and ``unreadable`` (the exceptions that mean a source cannot be used), and
    gives :meth:`__len__`, :attr:`num_sources`, :meth:`source_path`, :meth:`load` (only the part that may fail on a
    bad source), :meth:`build` (the task's fields from what :meth:`load` returned) and :meth:`blank` (the
    placeholder fields of a failed evaluation item). A source found unreadable is remembered by path and logged
    once, so the views of one broken file cost one attempt.
    """

    noun: str = "source"
    unreadable: tuple[type[Exception], ...] = (ValueError,)

    def __init__(self, *, train: bool, max_retries: int, seed: int) -> None:
        self.train, self.max_retries, self.seed = train, max_retries, seed
        self._failed: dict[str, str] = {}  # path -> reason, per process

    @abc.abstractmethod
    def __len__(self) -> int:
        """Items in the dataset (a test-mode video set has several views of each source)."""

    @property
    @abc.abstractmethod
    def num_sources(self) -> int:
        """Sources that replacements are drawn from."""

    @abc.abstractmethod
    def source_path(self, index: int) -> str:
        """The file of source ``index`` (the envelope's ``path``, and the key failures are remembered by)."""

    def locate(self, item: int) -> tuple[int, int]:
        """``(source index, view)`` of item number ``item``: one view per source unless a subclass has more."""
        return item, 0

    @abc.abstractmethod
    def load(self, index: int, view: int) -> Any:
        """Read source ``index``; raise one of :attr:`unreadable` when it cannot be used."""

    @abc.abstractmethod
    def build(self, index: int, view: int, loaded: Any) -> dict[str, Any]:
        """The task's fields of the item from what :meth:`load` returned."""

    @abc.abstractmethod
    def blank(self, index: int, view: int) -> dict[str, Any]:
        """The task's fields of an evaluation item whose source could not be read."""

    def reason(self, exc: Exception) -> str:
        """How a failure reads in ``error``, ``skipped`` and the log."""
        return str(exc)

    def replacement(self, index: int, attempt: int) -> int:
        """The source tried after attempt ``attempt`` (0-based) for item ``index`` failed."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index * 101 + attempt)
        return int(torch.randint(self.num_sources, (), generator=generator))

    def _try_load(self, index: int, view: int) -> tuple[Any, str | None]:
        path = self.source_path(index)
        if path in self._failed:
            return None, self._failed[path]
        try:
            return self.load(index, view), None
        except self.unreadable as exc:
            self._failed[path] = self.reason(exc)
            logger.warning("skipping %s %s (%s)", self.noun, path, self._failed[path])
            return None, self._failed[path]

    def __getitem__(self, item: int) -> dict[str, Any]:
        if not 0 <= item < len(self):
            raise IndexError(f"item {item} out of range for {len(self)} items")
        requested, view = self.locate(item)
        index, skipped = requested, []
        for attempt in range(self.max_retries + 1 if self.train else 1):
            loaded, reason = self._try_load(index, view)
            if reason is None:
                return {**self.build(index, view, loaded), **envelope(index, self.source_path(index), skipped=skipped)}
            if not self.train:
                path = self.source_path(index)
                return {**self.blank(index, view), **envelope(index, path, valid=False, error=reason)}
            skipped.append((self.source_path(index), reason))
            index = self.replacement(requested, attempt)
        listed = "; ".join(f"{p}: {r}" for p, r in skipped)
        raise RuntimeError(f"{len(skipped)} {self.noun}s in a row could not be read (is the dataset right?): {listed}")
