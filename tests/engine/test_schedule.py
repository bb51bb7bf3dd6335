"""Learning-rate schedules of ``scheduler.name``: values hand-computed from the formulas they follow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uniformer.engine.build import build_scheduler
from uniformer.engine.config import load_config, resolve_config

UPERNET = Path(__file__).resolve().parents[2] / "src/uniformer/configs/segmentation/upernet_uniformer_small_ade20k.yaml"


def _lrs(overrides: list[str], steps: list[int], total: int = 100, per_epoch: int = 10) -> list[float]:
    cfg = load_config(UPERNET, ["data.root=/data", "optimizer.lr=1.0", "scheduler.warmup_steps=null", *overrides])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.lr)
    scheduler = build_scheduler(cfg, optimizer, total, per_epoch)
    values = []
    for step in steps:
        scheduler.step_update(step)
        values.append(optimizer.param_groups[0]["lr"])
    return values


def test_poly_decays_linearly_over_the_whole_run_after_a_linear_warmup() -> None:
    # warm-up over 1 epoch = 10 steps from 0 to the peak 1.0, then (1 - t / 100) ** 1 counted from step 0 (mmcv)
    lrs = _lrs(
        ["scheduler.name=poly", "scheduler.warmup_epochs=1", "scheduler.warmup_lr=0", "scheduler.min_lr=0"],
        [0, 5, 10, 55, 99, 100],
    )
    assert lrs == pytest.approx([0.0, 0.5, 0.9, 0.45, 0.01, 0.0])


def test_poly_power_and_floor() -> None:
    lrs = _lrs(
        ["scheduler.name=poly", "scheduler.warmup_epochs=0", "scheduler.power=2", "scheduler.min_lr=0.1"], [0, 50, 100]
    )
    assert lrs == pytest.approx([1.0, 0.1 + 0.9 * 0.25, 0.1])


def test_cosine_starts_after_the_warmup() -> None:
    lrs = _lrs(
        ["scheduler.name=cosine", "scheduler.warmup_epochs=1", "scheduler.warmup_lr=0", "scheduler.min_lr=0"],
        [5, 10, 55, 100],
    )
    assert lrs == pytest.approx([0.5, 1.0, 0.5, 0.0])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("scheduler.name=linear", "scheduler.name must be one of cosine, poly, step; got 'linear'"),
        ("scheduler.power=0", "scheduler.power must be > 0"),
    ],
)
def test_bad_schedule_settings_are_rejected_with_the_key(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_config(load_config(UPERNET, ["data.root=/data", override]))


def test_step_decays_at_the_first_step_of_each_milestone_epoch_after_an_iteration_warmup() -> None:
    # mmdet 1x: x0.1 after epochs 8 and 11 (step=[8, 11]); 10 steps per epoch, so epoch 8 starts at step 80.
    # Warm-up over 4 iterations from 0.25 (warmup_ratio 0.25): 0.25, 0.4375, 0.625, 0.8125, then the peak.
    lrs = _lrs(
        [
            "scheduler.name=step",
            "scheduler.milestones=[8,11]",
            "scheduler.warmup_steps=4",
            "scheduler.warmup_lr=0.25",
        ],
        [0, 1, 3, 4, 79, 80, 109, 110, 119],
        total=120,
    )
    assert lrs == pytest.approx([0.25, 0.4375, 0.8125, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_warmup_steps_count_iterations_whatever_the_epoch_length() -> None:
    cfg = ["scheduler.name=cosine", "scheduler.warmup_steps=20", "scheduler.warmup_lr=0", "scheduler.min_lr=0"]
    assert _lrs(cfg, [10, 20], per_epoch=7) == pytest.approx([0.5, 1.0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["scheduler.name=step"], r"scheduler.milestones must be increasing positive epochs .* got \[\]"),
        (["scheduler.name=step", "scheduler.milestones=[11,8]"], r"got \[11, 8\]"),
        (["scheduler.milestones=[8]"], "scheduler.milestones is set but scheduler.name='poly'"),
        (["scheduler.warmup_epochs=1"], "scheduler.warmup_steps=1500 and scheduler.warmup_epochs=1.0 are both set"),
        (["scheduler.warmup_steps=-1", "scheduler.warmup_epochs=0"], "scheduler.warmup_steps must be >= 0"),
    ],
)
def test_bad_step_and_warmup_settings_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_config(load_config(UPERNET, ["data.root=/data", *overrides]))
