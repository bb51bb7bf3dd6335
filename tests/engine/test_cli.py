"""``uniformer train`` / ``uniformer eval`` as a user types them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from uniformer.cli import engine as cli_engine
from uniformer.cli import main

DEMO_CONFIG = str(Path(__file__).resolve().parents[2] / "src" / "uniformer" / "configs" / "demo" / "motion_tiny.yaml")


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


def test_fine_tune_and_eval_on_a_folder_per_class_tree(
    motion_set: Path, tiny_overrides, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's own-videos path: root/{train,val}/<class>/<video>, no list files, names from the folders."""
    tree = tmp_path / "my_videos"
    names = (motion_set / "classes.txt").read_text().split()
    for split, listing in (("train", "train.txt"), ("val", "val.txt")):
        for line in (motion_set / listing).read_text().splitlines():
            relative, label = line.rsplit(" ", 1)
            target = tree / split / f"class_{names[int(label)]}" / Path(relative).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(motion_set / relative)
    out = tmp_path / "run"
    folder = ["data.format=folder", f"data.root={tree}", "data.train_list=null", "data.val_list=null"]
    folder += ["data.labels_file=null"]
    assert main(["train", DEMO_CONFIG, *tiny_overrides(out), *folder, "trainer.max_epochs=1"]) == 0
    checkpoint = out / "checkpoints" / "checkpoint-00000005.pt"  # 20 training videos at batch 4
    capsys.readouterr()
    assert main(["eval", DEMO_CONFIG, *tiny_overrides(out), *folder, f"checkpoint={checkpoint}"]) == 0
    assert "over 4 videos (2x1 views, sum)" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "eval" / "predictions.csv").open()))
    assert sorted(r["label_name"] for r in rows) == sorted(f"class_{n}" for n in names)
    assert {r["prediction_name"] for r in rows} <= {f"class_{n}" for n in names}


def test_demo_without_tasks_runs_every_demo_and_an_unknown_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = []

    def run(name: str, out_dir: Path) -> dict[str, float | str]:
        ran.append(name)
        return {"metric": "m", "value": 0.5, "chance": 0.25, "seconds": 1.0}

    monkeypatch.setattr(cli_engine, "run_task_demo", run)
    assert main(["demo", "--out", str(tmp_path)]) == 0  # `make demo`
    assert ran == list(cli_engine.DEMOS)
    assert main(["demo", "frobnicate"]) == 2
    assert "no demo for frobnicate; demos: classification, segmentation, pose, detection" in capsys.readouterr().err
