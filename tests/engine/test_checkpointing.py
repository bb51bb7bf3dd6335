"""Checkpoint files: atomic replacement, pruning to the last N while best.pt survives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uniformer._fileio import atomic_write
from uniformer.engine.checkpointing import CheckpointManager


def test_a_write_that_dies_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    torch.save({"step": 1}, target)

    def dies_half_way(tmp: str) -> None:
        Path(tmp).write_bytes(b"partial")
        raise KeyboardInterrupt  # what a Ctrl-C (or any crash) in the middle of torch.save looks like

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies_half_way)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_keep_last_prunes_old_step_files_but_best_survives(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (5, 10, 15, 20):
        manager.save({"step": step}, step, best=step == 5)
    assert [step for step, _ in manager.checkpoints()] == [15, 20]
    assert torch.load(manager.best_path, weights_only=True) == {"step": 5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "checkpoint-00000015.pt", "checkpoint-00000020.pt"]
    assert manager.resume_candidates("auto") == [
        tmp_path / "checkpoint-00000020.pt",
        tmp_path / "checkpoint-00000015.pt",
    ]
    assert manager.resume_candidates(None) == []
    with pytest.raises(FileNotFoundError, match="trainer.resume=.*no such checkpoint file"):
        manager.resume_candidates(str(tmp_path / "nope.pt"))


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Not mkstemp's 0600: a run's checkpoints and reports are readable as any file the user writes."""
    import os

    target = tmp_path / "report.txt"
    old = os.umask(0o022)
    try:
        atomic_write(target, lambda tmp: Path(tmp).write_text("done"))
    finally:
        os.umask(old)
    assert target.read_text() == "done" and (target.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.txt"]
