"""A run's output folder: its lock, training checkpoints (atomic, the last N kept plus ``best.pt``), resume.

A training checkpoint is one ``torch.save`` dict (``format: "uniformer-train"``) holding the model weights under
``"model"`` (so :func:`uniformer.load_checkpoint` and ``model.checkpoint=`` read it like any official file),
the EMA weights, optimizer and grad-scaler states, the trainer's counters, the resolved config, and what a user
of the weights needs: the class names and the task's view settings. The learning rate schedule is not stored:
it is a function of the config and the step, so a run resumed with a longer ``trainer.max_epochs`` follows the
schedule of its new length (the resume warns about every changed key).

Files are ``OUTPUT_DIR/checkpoints/checkpoint-<step>.pt``, each written to a temporary file and renamed, so a run
killed at any instant leaves the previous checkpoint intact. ``best.pt`` is a hard link to the best epoch's file
(a copy where links are not supported), so it survives pruning without being written twice. Nothing a run did
not write is ever pruned or overwritten: one run owns an output folder at a time (:class:`RunLock`), a new run
refuses a folder that holds another's files, and a resume that finds no readable checkpoint stops.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import torch

from uniformer._fileio import atomic_write
from uniformer.models.checkpoint import CheckpointError, CheckpointFile, read_checkpoint

__all__ = ["CheckpointManager", "DiskFull", "RunLock", "RunLocked", "read_training_checkpoint"]

_PATTERN = re.compile(r"^checkpoint-(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")  # names atomic_write gives its temporary files
logger = logging.getLogger("uniformer.engine")


class RunLocked(RuntimeError):
    """Another live process owns the output folder."""


class DiskFull(OSError):
    """A checkpoint could not be written for lack of space; the checkpoints written before it are intact."""


def read_training_checkpoint(path: str | os.PathLike[str]) -> CheckpointFile:
    """Read a training checkpoint for resuming; a weights-only file is refused with what to do instead."""
    file = read_checkpoint(path)
    if not file.is_training:
        raise CheckpointError(
            f"{path}: not a training checkpoint of this engine (no optimizer state), so a run cannot resume "
            "from it; to start a new run from its weights use model.checkpoint=PATH instead of trainer.resume"
        )
    return file


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    """``OUTPUT_DIR/.lock`` (PID, host, start time): at most one run writes into an output folder.

    A second run refuses with a message naming the holder. A lock left by a dead process on this host (a run
    killed with SIGKILL, a crashed node) is taken over with a warning; one held on another host cannot be
    checked from here, so it is refused with the path to remove once that run is known to be gone.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / ".lock"
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._check_holder(record["host"])
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle)
            self.held = True
            return
        raise RunLocked(f"{self.path}: could not take the lock (another run took it at the same time)")

    def _check_holder(self, host: str) -> None:
        """Refuse if the holder may be alive; remove the lock of a dead process on this host."""
        try:
            holder = json.loads(self.path.read_text())
            pid, holder_host, started = int(holder["pid"]), str(holder["host"]), holder.get("started", "?")
        except (OSError, ValueError, KeyError, TypeError):
            raise RunLocked(
                f"output_dir {self.path.parent} is locked by {self.path}, which is not a readable lock file; "
                "remove it if no run uses this folder"
            ) from None
        if holder_host != host or _process_alive(pid):
            raise RunLocked(
                f"output_dir {self.path.parent} is in use by process {pid} on {holder_host} (started {started}); "
                f"choose another output_dir, or wait for that run to end (if it is gone, remove {self.path})"
            )
        logger.warning(
            "taking over the lock of process %d on %s (started %s), which is no longer running", pid, host, started
        )
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete what interrupted atomic writes left in ``directory`` (call it only while holding the run's lock)."""
    if not directory.is_dir():
        return []
    stale = [directory / name for name in os.listdir(directory) if _TEMPORARY.match(name)]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        logger.info("removed %d temporary file(s) of an interrupted write in %s", len(stale), directory)
    return stale


class CheckpointManager:
    """Writes and finds the checkpoints of one run (only rank 0 should call the writing methods)."""

    def __init__(self, directory: str | os.PathLike[str], keep_last: int = 2) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of the step checkpoints present, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [
            (int(m.group(1)), self.directory / name)
            for name in os.listdir(self.directory)
            if (m := _PATTERN.match(name))
        ]
        return sorted(found)

    def save(self, state: dict[str, Any], step: int, *, best: bool = False) -> Path:
        """Write ``checkpoint-<step>.pt`` atomically, point ``best.pt`` at it if ``best``, and keep the last
        ``keep_last`` checkpoints up to this step (a file of a later step is never pruned)."""
        path = self.directory / f"checkpoint-{step:08d}.pt"
        try:
            atomic_write(path, lambda tmp: _torch_save(state, tmp))
            if best:
                atomic_write(self.best_path, lambda tmp: _link_or_copy(path, Path(tmp)))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            kept = [p.name for _, p in self.checkpoints() if p != path]
            intact = f"{kept[-1]} is intact" if kept else "no earlier checkpoint was written"
            raise DiskFull(
                f"no space left on {self.directory} while writing checkpoint {step} ({intact}); free space and "
                "resume with trainer.resume=auto",
            ) from None
        earlier = [old for old_step, old in self.checkpoints() if old_step <= step]
        for old in earlier[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def find_resume(self, resume: str | None, *, set_aside: bool = True) -> CheckpointFile | None:
        """The checkpoint ``trainer.resume`` designates, read.

        ``None``: a new run, refused when the folder already holds checkpoints. A path: that file. ``"auto"``: the
        newest readable step checkpoint; newer unreadable ones are renamed ``*.unreadable`` (kept, out of the
        way, each named in a warning; only where ``set_aside``, i.e. on rank 0). Checkpoints that exist but none
        of which can be read stop the run with every file and its reason: starting afresh would overwrite the run
        they belong to.
        """
        existing = self.checkpoints()
        if resume is None:
            if existing:
                raise ValueError(
                    f"output_dir={self.directory.parent} already holds a run (latest checkpoint "
                    f"{existing[-1][1].name}); pass trainer.resume=auto to continue it, or choose another output_dir"
                )
            return None
        if resume != "auto":
            if not Path(resume).is_file():
                raise FileNotFoundError(
                    f"trainer.resume={resume}: no such checkpoint file (use trainer.resume=auto to pick the latest)"
                )
            return read_training_checkpoint(resume)
        failures: list[tuple[Path, str]] = []
        for _, path in reversed(existing):
            try:
                file = read_training_checkpoint(path)
            except (CheckpointError, OSError) as exc:
                failures.append((path, str(exc).removeprefix(f"{path}: ")))
                continue
            for bad, reason in failures if set_aside else ():
                aside = bad.with_name(bad.name + ".unreadable")
                bad.rename(aside)
                logger.warning("cannot resume from %s (%s); kept as %s, resuming from %s", bad, reason, aside, path)
            return file
        if failures:
            listing = "\n".join(f"  {path}: {reason}" for path, reason in failures)
            raise CheckpointError(
                f"trainer.resume=auto: none of the {len(failures)} checkpoint(s) in {self.directory} can be read, "
                f"so the run cannot continue (nothing was changed):\n{listing}\nRestore a checkpoint, or train into "
                "another output_dir"
            )
        return None


def _torch_save(state: dict[str, Any], path: str) -> None:
    """``torch.save`` through a Python file, so that a failed write is the ``OSError`` naming its cause (by a path,
    PyTorch's own writer reports any failure as a ``RuntimeError``)."""
    with open(path, "wb") as handle:
        torch.save(state, handle)


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
