"""Runs in real processes: SIGKILL mid-epoch + ``trainer.resume=auto`` ends bit-identical to an uninterrupted run,
and 2-process DDP (gloo, launched by ``torchrun``) equals 1 process accumulating the same global batch."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
import torch

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "src" / "uniformer" / "configs" / "demo" / "motion_tiny.yaml"

# Kills its own process with SIGKILL when the trainer is about to run optimizer step KILL_AT (0-based), i.e.
# after the checkpoints written so far and in the middle of whatever the run was doing: no chance to clean up.
_KILLER = """
import os, signal, sys
from uniformer.engine import load_config, train
from uniformer.engine.train import Trainer

kill_at = int(os.environ["KILL_AT"])
original = Trainer._step

def step(self, batches):
    if self.state.step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, batches)

Trainer._step = step
train(load_config(sys.argv[1], sys.argv[2:]))
"""

# Every source of randomness on: drop path, Mixup/CutMix, RandAugment, random erasing, EMA, validation.
_RANDOM_RUN = [
    "trainer.max_epochs=2",
    "trainer.checkpoint_every_steps=2",
    "trainer.ema_decay=0.9",
    "mixup.prob=1.0",
    "model.drop_path_rate=0.1",
    "data.rand_augment=rand-m7-n2-mstd0.5-inc1",
    "data.erasing_prob=0.25",
]


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_tensors(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where  # type: ignore[arg-type]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):  # type: ignore[call-overload]
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _records(out: Path) -> list[dict]:
    timing = {"clips_per_s", "data_wait", "epoch_seconds", "train_seconds", "peak_memory_bytes"}
    return [
        {k: v for k, v in r.items() if k not in timing}
        for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    ]


def test_sigkill_mid_epoch_then_resume_auto_is_bit_identical(tmp_path: Path, tiny_overrides, python_runner) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = python_runner(["-m", "uniformer.cli", "train", str(DEMO_CONFIG), *tiny_overrides(straight, *_RANDOM_RUN)])
    assert done.returncode == 0, done.stderr

    script = tmp_path / "killer.py"
    script.write_text(_KILLER)
    # the interrupted run loads with 2 worker processes, the other in-process: the data must not care
    overrides = tiny_overrides(killed, *_RANDOM_RUN, "data.num_workers=2")
    first = python_runner([str(script), str(DEMO_CONFIG), *overrides], env={"KILL_AT": "7"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    left = sorted(p.name for p in (killed / "checkpoints").iterdir())
    assert left == ["best.pt", "checkpoint-00000005.pt", "checkpoint-00000006.pt"]  # epoch 2 at 1/5: mid-epoch
    resumed = python_runner(["-m", "uniformer.cli", "train", str(DEMO_CONFIG), *overrides, "trainer.resume=auto"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "at step 6 (epoch 2)" in resumed.stderr

    a = _load(straight / "checkpoints" / "checkpoint-00000010.pt")
    b = _load(killed / "checkpoints" / "checkpoint-00000010.pt")
    for key in ("model", "model_ema", "optimizer"):
        _assert_same_tensors(a[key], b[key], key)
    state_a, state_b = a["trainer"]["state"], b["trainer"]["state"]
    for key in ("train_seconds",):
        state_a.pop(key), state_b.pop(key)
    assert state_a == state_b
    _assert_same_tensors(
        _load(straight / "checkpoints" / "best.pt")["model"], _load(killed / "checkpoints" / "best.pt")["model"], "best"
    )
    assert _records(straight) == _records(killed)  # the log reads as if the run had never stopped


@pytest.mark.parametrize(
    ("batch", "drop_last"),
    [(4, True), (20, False)],  # 24 items: 6 full steps; or 1 step of 20 plus 4 more spread over its micro-batches
    ids=["full-batches", "every-item-uneven"],
)
def test_two_ddp_processes_equal_one_process_accumulating_the_same_global_batch(
    tmp_path: Path, tiny_overrides, python_runner, train_list_with_broken_videos, batch: int, drop_last: bool
) -> None:
    run = [
        f"data.train_list={train_list_with_broken_videos}",
        f"trainer.batch_size={batch}",
        f"trainer.drop_last={str(drop_last).lower()}",
        "trainer.max_steps=4",
        "mixup.prob=1.0",
        "model.drop_path_rate=0.1",
        "data.val_list=null",
        "optimizer.lr=0.001",
        "scheduler.warmup_epochs=0",
    ]
    ddp = python_runner(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "uniformer.cli",
            "train",
            str(DEMO_CONFIG),
            *tiny_overrides(tmp_path / "ddp", *run),
        ],
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert f"global batch {batch} = 2 process(es) x {batch // 2} x 1 accumulation" in ddp.stderr
    single = python_runner(
        [
            "-m",
            "uniformer.cli",
            "train",
            str(DEMO_CONFIG),
            *tiny_overrides(tmp_path / "single", *run, "trainer.accum_steps=2"),
        ]
    )
    assert single.returncode == 0, single.stderr
    assert f"global batch {batch} = 1 process(es) x {batch // 2} x 2 accumulation" in single.stderr

    a = _load(tmp_path / "ddp" / "checkpoints" / "checkpoint-00000004.pt")["model"]
    b = _load(tmp_path / "single" / "checkpoints" / "checkpoint-00000004.pt")["model"]
    for name, value in a.items():
        if "running_" in name or "num_batches" in name:
            continue  # BatchNorm statistics: DDP keeps rank 0's, which saw one micro-batch per step, not both
        torch.testing.assert_close(value, b[name], rtol=1e-4, atol=2e-5, msg=name)
    losses = [[r["loss"] for r in _records(tmp_path / name) if r["kind"] == "step"] for name in ("ddp", "single")]
    assert len(losses[0]) == 4
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-4, atol=1e-5)
    # only rank 0 wrote: one record per step; it reports the broken videos met by either process
    assert [r["step"] for r in _records(tmp_path / "ddp") if r["kind"] == "step"] == [1, 2, 3, 4]
    summaries = [[r for r in _records(tmp_path / name) if r["kind"] == "summary"][0] for name in ("ddp", "single")]
    assert summaries[0]["skipped_videos"] and summaries[0]["skipped_videos"] == summaries[1]["skipped_videos"]


def test_two_process_evaluation_equals_one_process(trained_run, tiny_overrides, python_runner, tmp_path: Path) -> None:
    out, _ = trained_run
    views = [
        "data.test_clips=2",
        "data.test_crops=3",
        "data.short_side=48",
        f"checkpoint={out / 'checkpoints' / 'best.pt'}",
    ]
    reports = {}
    for name, launcher in (
        ("ddp", ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]),
        ("single", []),
    ):
        args = [*launcher, "-m", "uniformer.cli", "eval", str(DEMO_CONFIG), *tiny_overrides(out), *views]
        done = python_runner([*args, f"eval.output_dir={tmp_path / name}"])
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("top-1") == 1  # rank 0 alone prints
        reports[name] = tmp_path / name
    # each process scored half of the videos; gathered, the report is the one-process report
    for file in ("metrics.json", "confusion_matrix.csv", "per_class.csv"):
        assert (reports["ddp"] / file).read_bytes() == (reports["single"] / file).read_bytes(), file
    rows = {name: list(csv.DictReader((folder / "predictions.csv").open())) for name, folder in reports.items()}
    assert len(rows["ddp"]) == 4
    for a, b in zip(rows["ddp"], rows["single"], strict=True):
        assert float(a.pop("score")) == pytest.approx(float(b.pop("score")), rel=1e-5)
        assert a == b
