"""Learning-rate schedules of ``scheduler.name``: values hand-computed from the formulas they follow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uniformer.engine.build import build_scheduler
from uniformer.engine.config import load_config, resolve_config

UPERNET = Path(__file__).resolve().parents[2] / "src/uniformer/configs/segmentation/upernet_uniformer_small_ade20k.yaml"


def _lrs(overrides: list[str], steps: list[int], total: int = 100, per_epoch: int = 10) -> list[float]:
    cfg = load_config(UPERNET, ["data.root=/data", "optimizer.lr=1.0", *overrides])
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
        ("scheduler.name=step", "scheduler.name must be one of cosine, poly; got 'step'"),
        ("scheduler.power=0", "scheduler.power must be > 0"),
    ],
)
def test_bad_schedule_settings_are_rejected_with_the_key(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_config(load_config(UPERNET, ["data.root=/data", override]))
