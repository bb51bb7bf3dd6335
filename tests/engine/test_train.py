"""Training in-process: learning, outputs, the NaN guard, fine-tuning starts, resume file selection."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from uniformer.engine import Trainer, TrainingDiverged, train
from uniformer.engine.config import resolve_config
from uniformer.tasks import get_task


def _records(out: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_loss_decreases_on_the_motion_set(trained_run: tuple[Path, object]) -> None:
    out, result = trained_run
    epochs = _records(out, "epoch")
    assert [r["epoch"] for r in epochs] == [0, 1, 2, 3]
    losses = [r["train_loss"] for r in epochs]
    assert losses[-1] < losses[0] - 0.1, losses
    steps = _records(out, "step")
    assert [r["step"] for r in steps] == list(range(1, 21))
    first, last = sum(r["loss"] for r in steps[:5]) / 5, sum(r["loss"] for r in steps[-5:]) / 5
    assert last < first, (first, last)
    assert result.steps == 20 and result.epochs == 4


def test_a_run_leaves_config_checkpoints_logs_and_curves(trained_run: tuple[Path, object]) -> None:
    out, result = trained_run
    saved = (out / "config.yaml").read_text()
    assert "num_frames: 4" in saved and "test_clips: 2" in saved  # the resolved config
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["best.pt", "checkpoint-00000015.pt", "checkpoint-00000020.pt"]  # keep_last=2 plus best
    best_epoch = max(_records(out, "epoch"), key=lambda r: (r["val_top1"], -r["epoch"]))["epoch"]
    assert result.best_epoch == best_epoch
    best = _load(out / "checkpoints" / "best.pt")
    assert best["trainer"]["state"]["step"] == (best_epoch + 1) * 5
    last = _load(out / "checkpoints" / "checkpoint-00000020.pt")
    assert set(last) >= {"model", "model_ema", "optimizer", "trainer", "config"}
    assert (out / "curves.png").stat().st_size > 10_000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    summary = _records(out, "summary")[0]
    assert summary["best_metric"] == result.best_metric and summary["metric"] == "top1" and summary["clips_per_s"] > 0
    assert "best val top-1 (%)" in result.summary and "items/s" in result.summary and "peak RSS" in result.summary
    assert "train loss" in (out / "train.log").read_text()


class _NaNAt(nn.Module):
    """A model that returns NaN logits on chosen training forward calls (1-based)."""

    def __init__(self, inner: nn.Module, bad_calls: set[int] | Callable[[int], bool]) -> None:
        super().__init__()
        self.inner = inner
        self.bad = bad_calls if callable(bad_calls) else bad_calls.__contains__
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.bad(self.calls):
                return out * float("nan")
        return out


def test_a_nan_step_is_skipped_logged_and_leaves_weights_and_norm_statistics_alone(tmp_path: Path, tiny_config) -> None:
    cfg = resolve_config(tiny_config(tmp_path, "trainer.max_steps=5", "data.val_list=null"))
    model = _NaNAt(get_task("classification").build_model(cfg, 4), {3})
    result = train(cfg, model=model)
    assert result.nan_skips == 1 and result.steps == 5
    skips = _records(tmp_path, "nan_skip")
    assert [(r["step"], r["loss"]) for r in skips] == [(3, "nan")]
    state = _load(tmp_path / "checkpoints" / "checkpoint-00000005.pt")
    assert all(s["step"] == 4 for s in state["optimizer"]["state"].values())  # 5 steps, 4 applied
    tracked = [v for k, v in state["model"].items() if k.endswith("num_batches_tracked")]
    assert tracked and all(int(v) == 4 for v in tracked)  # BatchNorm updates of the skipped step undone
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_repeated_nan_steps_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path: Path, tiny_config) -> None:
    cfg = resolve_config(
        tiny_config(
            tmp_path,
            "trainer.max_steps=10",
            "data.val_list=null",
            "trainer.max_nan_skips=2",
            "trainer.checkpoint_every_steps=1",
        )
    )
    model = _NaNAt(get_task("classification").build_model(cfg, 4), lambda call: call >= 4)
    with pytest.raises(
        TrainingDiverged,
        match=r"stopped at step 6: 3 consecutive steps .*max_nan_skips=2.*last checkpoint: .*checkpoint-00000005\.pt",
    ):
        train(cfg, model=model)
    assert [r["step"] for r in _records(tmp_path, "nan_skip")] == [4, 5, 6]
    kept = _load(tmp_path / "checkpoints" / "checkpoint-00000005.pt")  # skipped steps leave the weights as they were
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("source", ["other_classes", "image"])
def test_fine_tuning_starts_from_a_checkpoint_replacing_the_head_or_inflating(
    tmp_path: Path, tiny_config, source: str
) -> None:
    from uniformer import UniFormer, inflate_2d_to_3d

    widths = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16)
    weights = tmp_path / "start.pth"
    if source == "image":
        donor = UniFormer(**widths, num_classes=4, video=False)
    else:
        donor = UniFormer(**widths, num_classes=7, video=True)
    torch.save({"model": donor.state_dict()}, weights)
    # lr 0: the first step changes no weight, so the checkpoint after it shows what the run started from
    cfg = tiny_config(
        tmp_path / "run",
        f"model.checkpoint={weights}",
        "trainer.max_steps=1",
        "data.val_list=null",
        "optimizer.lr=0.0",
        "scheduler.warmup_lr=0.0",
        "scheduler.min_lr=0.0",
        "mixup.prob=0.0",
    )
    train(cfg)
    started = _load(tmp_path / "run" / "checkpoints" / "checkpoint-00000001.pt")["model"]
    video = get_task("classification").build_model(resolve_config(cfg), 4)
    expected = inflate_2d_to_3d(donor.state_dict(), video) if source == "image" else donor.state_dict()
    params = {name for name, _ in video.named_parameters()}
    for name in params:
        if name.startswith("head."):
            assert started[name].shape[0] == 4  # the run's classes
        else:
            assert torch.equal(started[name], expected[name]), name


def test_resume_auto_falls_back_past_an_unreadable_newest_checkpoint(
    trained_run: tuple[Path, object], tmp_path: Path, tiny_config
) -> None:
    import shutil

    out, _ = trained_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "checkpoints" / "checkpoint-00000099.pt").write_bytes(b"not a checkpoint")
    trainer = Trainer(tiny_config(copy, "trainer.max_epochs=4", "trainer.ema_decay=0.9", "trainer.resume=auto"))
    assert trainer.state.step == 20
    result = trainer.fit()  # nothing left to do: the summary of the finished run
    assert result.steps == 20


def test_unreadable_training_videos_are_replaced_and_reported(
    tmp_path: Path, tiny_config, train_list_with_broken_videos
) -> None:
    cfg = tiny_config(
        tmp_path, f"data.train_list={train_list_with_broken_videos}", "trainer.max_epochs=1", "data.val_list=null"
    )
    result = train(cfg)
    assert result.steps == 6  # every item of the epoch was drawn: broken ones were replaced, not dropped
    assert sorted(Path(p).name for p in result.skipped_videos) == [f"broken_{i}.mp4" for i in range(4)]
    assert all(entry["reason"] and entry["count"] >= 1 for entry in result.skipped_videos.values())
    assert "4 unreadable input(s) replaced" in result.summary
    saved = _load(tmp_path / "checkpoints" / "checkpoint-00000006.pt")["trainer"]["state"]["skipped_videos"]
    assert saved == result.skipped_videos
    assert "broken_0.mp4" in (tmp_path / "train.log").read_text()


def test_bf16_activation_checkpointing_and_layer_decay_train(tmp_path: Path, tiny_config) -> None:
    cfg = tiny_config(
        tmp_path,
        "trainer.precision=bf16",
        "trainer.grad_checkpointing=true",
        "optimizer.layer_decay=0.5",
        "trainer.max_steps=2",
        "data.val_list=null",
    )
    result = train(cfg)
    assert result.steps == 2 and result.nan_skips == 0
    assert all(r["loss"] == r["loss"] for r in _records(tmp_path, "step"))  # finite (NaN != NaN)
    groups = _load(tmp_path / "checkpoints" / "checkpoint-00000002.pt")["optimizer"]["param_groups"]
    scales = sorted({g["lr_scale"] for g in groups})
    assert scales[-1] == 1.0 and scales[0] < 0.5**4  # the stem learns slower than the head
    weight_decays = {g["weight_decay"] for g in groups}
    assert weight_decays == {0.0, 0.05}  # norms and biases are not decayed


def test_a_new_run_refuses_an_output_dir_holding_checkpoints(trained_run: tuple[Path, object], tiny_config) -> None:
    out, _ = trained_run
    with pytest.raises(ValueError, match=r"already holds a run .*pass trainer\.resume=auto to continue it"):
        Trainer(tiny_config(out, "trainer.max_epochs=4"))
    with pytest.raises(ValueError, match="cannot resume with this config"):
        Trainer(
            tiny_config(out, "trainer.max_epochs=4", "trainer.resume=auto", "model.overrides.embed_dim=[16,32,64,256]")
        )
    assert not logging.getLogger("uniformer").handlers  # a failed start leaves no train.log handler behind


def test_resume_from_a_weights_only_file_says_what_to_do(tmp_path: Path, tiny_config) -> None:
    from uniformer import CheckpointError

    weights = tmp_path / "w.pth"
    torch.save({"model": {"x": torch.zeros(1)}}, weights)
    with pytest.raises(CheckpointError, match=r"use model\.checkpoint=PATH instead of trainer\.resume"):
        Trainer(tiny_config(tmp_path, f"trainer.resume={weights}"))


def test_a_batch_that_does_not_split_evenly_is_an_error(tmp_path: Path, tiny_config) -> None:
    with pytest.raises(
        ValueError,
        match=r"trainer.batch_size=6 \(global\) must be divisible by 1 process\(es\) x trainer.accum_steps=4",
    ):
        Trainer(tiny_config(tmp_path, "trainer.batch_size=6", "trainer.accum_steps=4"))
    with pytest.raises(ValueError, match="Mixup/CutMix pairs clips within a micro-batch, which must be even"):
        Trainer(tiny_config(tmp_path, "trainer.batch_size=6", "trainer.accum_steps=2", "mixup.prob=1.0"))
    with pytest.raises(ValueError, match=r"trainer\.precision=fp16 needs a CUDA device"):
        Trainer(tiny_config(tmp_path, "trainer.precision=fp16", "trainer.device=cpu"))
