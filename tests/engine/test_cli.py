"""``uniformer train`` / ``uniformer eval`` as a user types them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from uniformer.cli import main

DEMO_CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "demo" / "motion_tiny.yaml")


def test_eval_of_a_training_checkpoint_writes_the_report(
    trained_run, tiny_overrides, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = trained_run
    best = out / "checkpoints" / "best.pt"
    assert main(["eval", DEMO_CONFIG, *tiny_overrides(out), f"checkpoint={best}"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("top-1 ") and "over 4 videos (2x1 views, sum)" in line
    report = json.loads((out / "eval" / "metrics.json").read_text())
    assert report["views_per_video"] == 2 and report["num_scored"] == 4
    rows = list(csv.DictReader((out / "eval" / "predictions.csv").open()))
    assert [r["label_name"] for r in rows] == ["moving_right", "moving_left", "moving_down", "moving_up"]
    for name in ("per_class.csv", "confusion_matrix.csv", "confusion_matrix.png"):
        assert (out / "eval" / name).is_file()


def test_eval_aliases_and_ema_weights(
    trained_run, tiny_overrides, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = trained_run
    last = out / "checkpoints" / "checkpoint-00000020.pt"
    args = [
        *tiny_overrides(out),
        f"checkpoint={last}",
        "aggregate=softmax_mean",
        "eval.ema=true",
        f"eval.output_dir={tmp_path}",
    ]
    assert main(["eval", DEMO_CONFIG, *args]) == 0
    assert "softmax_mean" in capsys.readouterr().out
    assert json.loads((tmp_path / "metrics.json").read_text())["aggregate"] == "softmax_mean"


def test_user_errors_are_one_line_with_exit_status_2(
    tiny_overrides, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", DEMO_CONFIG, *tiny_overrides(tmp_path), "trainer.max_step=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: command line: unknown config key 'trainer.max_step'") and "\n" not in err
    assert main(["eval", DEMO_CONFIG, *tiny_overrides(tmp_path)]) == 2
    assert "eval needs checkpoint=PATH" in capsys.readouterr().err
    assert main(["eval", DEMO_CONFIG, *tiny_overrides(tmp_path), "checkpoint=/nonexistent.pt"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_dry_run_shows_the_resolved_config_and_builds_model_and_data(
    motion_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", DEMO_CONFIG, f"data.root={motion_set}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "num_frames: 8" in out and "mean:" in out and "# model: uniformer_tiny_motion" in out
    assert "# train: VideoDataset(videos=20" in out and "# val:   VideoDataset(videos=4, mode='test', views=1" in out
