"""Checkpoint files: atomic replacement, pruning to the last N while best.pt survives."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from uniformer._fileio import atomic_write, read_json
from uniformer.engine.checkpointing import CheckpointManager, RunLock, RunLocked, remove_stale_temporaries
from uniformer.models.checkpoint import TRAIN_FORMAT, CheckpointError


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


def _training_state(step: int) -> dict:
    return {"format": TRAIN_FORMAT, "model": {"w": torch.full((2,), float(step))}, "trainer": {"step": step}}


def test_keep_last_prunes_old_step_files_but_best_survives(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (5, 10, 15, 20):
        manager.save(_training_state(step), step, best=step == 5)
    assert [step for step, _ in manager.checkpoints()] == [15, 20]
    assert torch.load(manager.best_path, weights_only=True)["trainer"] == {"step": 5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "checkpoint-00000015.pt", "checkpoint-00000020.pt"]
    assert manager.find_resume("auto").path == tmp_path / "checkpoint-00000020.pt"
    with pytest.raises(ValueError, match="already holds a run .*checkpoint-00000020.pt.*trainer.resume=auto"):
        manager.find_resume(None)
    with pytest.raises(FileNotFoundError, match="trainer.resume=.*no such checkpoint file"):
        manager.find_resume(str(tmp_path / "nope.pt"))
    assert CheckpointManager(tmp_path / "empty").find_resume("auto") is None


def test_saving_never_prunes_checkpoints_of_later_steps(tmp_path: Path) -> None:
    """A run resumed from step 10 must not delete the files of steps 15 and 20 when it writes step 11."""
    manager = CheckpointManager(tmp_path, keep_last=1)
    for step in (10, 15, 20):
        torch.save(_training_state(step), tmp_path / f"checkpoint-{step:08d}.pt")
    manager.save(_training_state(11), 11)
    assert [step for step, _ in manager.checkpoints()] == [11, 15, 20]


def test_resume_auto_skips_unreadable_newer_files_and_keeps_them_aside(tmp_path: Path, caplog) -> None:
    manager = CheckpointManager(tmp_path)
    torch.save(_training_state(5), tmp_path / "checkpoint-00000005.pt")
    (tmp_path / "checkpoint-00000010.pt").write_bytes(b"truncated")
    with caplog.at_level("WARNING"):
        found = manager.find_resume("auto")
    assert found.container["trainer"] == {"step": 5}
    assert (tmp_path / "checkpoint-00000010.pt.unreadable").read_bytes() == b"truncated"
    assert "checkpoint-00000010.pt" in caplog.text and "resuming from" in caplog.text


def test_resume_auto_with_only_unreadable_checkpoints_stops_and_changes_nothing(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    (tmp_path / "checkpoint-00000005.pt").write_bytes(b"cut short")
    (tmp_path / "checkpoint-00000010.pt").write_bytes(b"")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CheckpointError) as err:
        manager.find_resume("auto")
    message = str(err.value)
    assert "none of the 2 checkpoint(s)" in message
    assert "checkpoint-00000005.pt: not a readable PyTorch checkpoint" in message
    assert "checkpoint-00000010.pt: not a readable PyTorch checkpoint" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_second_run_is_refused_by_the_lock_and_a_dead_holder_is_taken_over(tmp_path: Path, caplog) -> None:
    first = RunLock(tmp_path)
    first.acquire()
    holder = json.loads((tmp_path / ".lock").read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["started"]
    with pytest.raises(RunLocked, match=f"in use by process {os.getpid()} on {socket.gethostname()}"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / ".lock").exists()

    child = subprocess.Popen(["true"])  # its pid is a process that has surely exited once waited for
    child.wait()
    (tmp_path / ".lock").write_text(json.dumps({"pid": child.pid, "host": socket.gethostname(), "started": "then"}))
    with caplog.at_level("WARNING"):
        RunLock(tmp_path).acquire()
    assert f"taking over the lock of process {child.pid}" in caplog.text
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()

    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "other-node", "started": "then"}))
    with pytest.raises(RunLocked, match="in use by process 1 on other-node"):
        RunLock(tmp_path).acquire()


def test_stale_temporary_files_of_an_interrupted_write_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".checkpoint-00000005.pt.4242.0a1b2c3d.tmp"
    stale.write_bytes(b"partial")
    mine = tmp_path / "notes.tmp"  # not a name atomic_write makes: left alone
    mine.write_text("keep")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and mine.exists()


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


def test_a_users_json_file_that_is_missing_or_malformed_is_named_with_what_it_should_be(tmp_path: Path) -> None:
    (tmp_path / "boxes.json").write_text('{"a.png": [[1, 2, 3, 4]]}')
    assert read_json(tmp_path / "boxes.json", "--boxes") == {"a.png": [[1, 2, 3, 4]]}
    with pytest.raises(FileNotFoundError, match=r"^--boxes .*missing\.json: no such file$"):
        read_json(tmp_path / "missing.json", "--boxes")
    (tmp_path / "bad.json").write_text('{"a.png": [[1, 2, 3, 4]')
    with pytest.raises(ValueError, match=r"^keypoint annotations .*bad\.json: not a readable JSON file \("):
        read_json(tmp_path / "bad.json", "keypoint annotations")
