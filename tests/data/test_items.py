"""The item envelope, its collate, and the one retry policy every dataset follows."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

from uniformer.data import RetryingDataset, VideoDataset, VideoRecord, collate_items, envelope
from uniformer.data.items import long_tensor


class Sources(RetryingDataset):
    """Source ``i`` is the number ``i``; the names in ``bad`` cannot be read."""

    noun = "number"

    def __init__(self, count: int, bad: set[int], *, train: bool, max_retries: int = 10, seed: int = 0) -> None:
        super().__init__(train=train, max_retries=max_retries, seed=seed)
        self.count, self.bad, self.loads = count, bad, 0

    def __len__(self) -> int:
        return self.count

    @property
    def num_sources(self) -> int:
        return self.count

    def source_path(self, index: int) -> str:
        return f"n{index}"

    def load(self, index: int, view: int) -> int:
        self.loads += 1
        if index in self.bad:
            raise ValueError(f"{index} is bad")
        return index

    def build(self, index: int, view: int, loaded: int) -> dict[str, Any]:
        return {"value": torch.tensor(float(loaded))}

    def blank(self, index: int, view: int) -> dict[str, Any]:
        return {"value": torch.tensor(-1.0)}


def test_collate_batches_the_task_fields_and_the_envelope() -> None:
    items = [
        {"x": torch.ones(2), "n": 3, **envelope(4, "a.png")},
        {"x": torch.zeros(2), "n": 5, **envelope(7, "b.png", valid=False, error="broken", skipped=[("c", "r")])},
    ]
    batch = collate_items(items, {"x": torch.stack, "n": long_tensor})
    assert set(batch) == {"x", "n", "index", "valid", "path", "error", "skipped"}
    assert batch["x"].shape == (2, 2) and batch["n"].tolist() == [3, 5] and batch["n"].dtype == torch.long
    assert batch["index"].dtype == torch.long and batch["index"].tolist() == [4, 7]
    assert batch["valid"].dtype == torch.bool and batch["valid"].tolist() == [True, False]
    assert batch["path"] == ["a.png", "b.png"] and batch["error"] == ["", "broken"]
    assert batch["skipped"] == [("c", "r")]
    with pytest.raises(ValueError, match="empty batch"):
        collate_items([], {"x": torch.stack})


def test_training_replaces_a_bad_source_with_the_seeded_draw(caplog: pytest.LogCaptureFixture) -> None:
    # seed 3, item 5 of 10: torch.Generator().manual_seed(3 * 1_000_003 + 5 * 101 + attempt) draws 1, 6, 5, 5
    dataset = Sources(10, bad={5, 1}, train=True, seed=3)
    with caplog.at_level(logging.WARNING, logger="uniformer.data"):
        item = dataset[5]
    # the envelope describes the source read: the second replacement
    assert item["value"].item() == 6.0 and item["index"] == 6 and item["path"] == "n6"
    assert item["skipped"] == [("n5", "5 is bad"), ("n1", "1 is bad")]
    assert item["valid"] and item["error"] == ""
    assert "skipping number n5 (5 is bad)" in caplog.text
    again = Sources(10, bad={5, 1}, train=True, seed=3)[5]
    assert again["skipped"] == item["skipped"] and torch.equal(again["value"], item["value"])


def test_a_failed_source_is_read_once_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    dataset = Sources(3, bad={1}, train=False)
    with caplog.at_level(logging.WARNING, logger="uniformer.data"):
        first, second = dataset[1], dataset[1]
    assert first == second and dataset.loads == 1 and caplog.text.count("skipping number n1") == 1


def test_evaluation_marks_a_bad_source_invalid_instead_of_replacing_it() -> None:
    item = Sources(4, bad={2}, train=False)[2]
    assert not item["valid"] and item["error"] == "2 is bad" and item["skipped"] == []
    assert item["index"] == 2 and item["path"] == "n2" and item["value"].item() == -1.0


def test_retries_are_bounded_and_the_error_lists_every_failure() -> None:
    with pytest.raises(RuntimeError, match=r"4 numbers in a row could not be read .*n0: 0 is bad"):
        Sources(1, bad={0}, train=True, max_retries=3)[0]
    with pytest.raises(IndexError, match="item 3 out of range for 3 items"):
        Sources(3, bad=set(), train=True)[3]


def test_video_datasets_keep_their_own_replacement_draw() -> None:
    """Python's string-seeded draw, so that video runs replay with the same replacement videos."""
    records = [VideoRecord(f"v{i}.mp4", 0) for i in range(10)]
    dataset = VideoDataset(records, lambda frames: frames, seed=3)
    assert [dataset.replacement(5, attempt) for attempt in range(4)] == [1, 0, 7, 5]
