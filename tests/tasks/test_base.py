"""What every task shares at its seam: a test set of other names than the weights' is refused, naming both."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uniformer.models.checkpoint import TRAIN_FORMAT, read_checkpoint
from uniformer.tasks.base import refuse_other_names


def _weights(tmp_path: Path, names: list[str] | None) -> Path:
    path = tmp_path / "run.pt"
    stored = {} if names is None else {"classes": names}
    torch.save({"format": TRAIN_FORMAT, "model": {"w": torch.zeros(1)}, "config": {}, **stored}, path)
    return path


def test_other_names_are_refused_with_both_counts_and_the_first_differences(tmp_path: Path) -> None:
    checkpoint = read_checkpoint(_weights(tmp_path, ["cat", "dog", "cow"]))
    refuse_other_names(checkpoint, ["cat", "dog", "cow"], "classes")  # the same: accepted
    with pytest.raises(
        ValueError,
        match=r"run\.pt was trained on 3 keypoints, the test set has 2 \(test set vs "
        r"weights: 1: 'cow' vs 'dog'\)",
    ):
        refuse_other_names(checkpoint, ["cat", "cow"], "keypoints")


def test_weights_without_names_accept_any_test_set(tmp_path: Path) -> None:
    refuse_other_names(read_checkpoint(_weights(tmp_path, None)), ["a", "b"], "classes")
