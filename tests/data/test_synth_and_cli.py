"""Synthetic motion videos, ``uniformer data synth|check`` and ``uniformer benchmark data`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import uniformer.cli as cli
from uniformer.data import MOTIONS, read_frames, render_clip, synthesize, video_info


@pytest.fixture
def run_cli(monkeypatch):
    """``uniformer`` main() with this package's command groups (the models group lives on another branch)."""
    monkeypatch.setattr(cli, "COMMAND_GROUPS", tuple(g for g in cli.COMMAND_GROUPS if g in ("data", "benchmark")))
    return cli.main


@pytest.mark.parametrize(
    ("forward", "backward"),
    [("moving_right", "moving_left"), ("moving_down", "moving_up"), ("approaching", "receding")],
)
def test_opposite_motions_hold_the_same_frames_in_reverse_order(forward: str, backward: str) -> None:
    # Same seed, opposite class: exactly the same set of frames, so no single frame can tell the class apart.
    a = render_clip(forward, np.random.default_rng(11), 16, (64, 64))
    b = render_clip(backward, np.random.default_rng(11), 16, (64, 64))
    assert np.array_equal(a, b[::-1]) and not np.array_equal(a, b)


def test_every_motion_moves_something() -> None:
    for motion in MOTIONS:
        clip = render_clip(motion, np.random.default_rng(2), 24, (64, 64)).astype(int)
        assert np.abs(clip[-1] - clip[0]).sum() > 0, motion


def test_synth_writes_h264_lists_and_is_deterministic(synth_set: Path, tmp_path: Path) -> None:
    train = (synth_set / "train.txt").read_text().splitlines()
    val = (synth_set / "val.txt").read_text().splitlines()
    assert (len(train), len(val)) == (24, 8)
    assert (
        train[0] == "videos/moving_right/moving_right_0000.mp4 0" and val[-1] == "videos/receding/receding_0003.mp4 7"
    )
    assert (synth_set / "classes.txt").read_text().split() == list(MOTIONS)
    info = video_info(synth_set / "videos/approaching/approaching_0001.mp4")
    assert (info.codec, info.num_frames, info.width, info.height) == ("h264", 24, 64, 64)
    synthesize(tmp_path, num_classes=8, videos_per_class=4, num_frames=24, size=64, val_fraction=0.25, seed=3)
    name = "videos/rotating_clockwise/rotating_clockwise_0002.mp4"
    assert (tmp_path / name).read_bytes() == (synth_set / name).read_bytes()
    other = synthesize(
        tmp_path / "other", num_classes=2, videos_per_class=1, num_frames=24, size=64, seed=4, val_fraction=0
    )
    assert not np.array_equal(
        read_frames(Path(other.root) / "videos/moving_right/moving_right_0000.mp4", [0]),
        read_frames(synth_set / "videos/moving_right/moving_right_0000.mp4", [0]),
    )


def test_cli_synth_and_check(run_cli, tmp_path: Path, media, capsys) -> None:
    out = tmp_path / "set"
    assert (
        run_cli(
            [
                "data",
                "synth",
                str(out),
                "--classes",
                "6",
                "--videos-per-class",
                "2",
                "--frames",
                "16",
                "--size",
                "48",
                "64",
                "--val-fraction",
                "0.5",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert "wrote 6 train + 6 val videos (libx264)" in capsys.readouterr().out
    assert video_info(out / "videos/moving_up/moving_up_0000.mp4").height == 48
    report_path = tmp_path / "report.json"
    assert run_cli(["data", "check", str(out / "train.txt"), "--output", str(report_path), "--no-progress"]) == 0
    report = json.loads(report_path.read_text())
    assert (report["total"], report["ok"], report["broken"]) == (6, 6, 0)
    assert report["files"][0]["frames"] == 16

    with open(out / "train.txt", "a") as handle:
        handle.write(f"{media['garbage']} 0\n{media['missing']} 1\n")
    assert (
        run_cli(
            ["data", "check", str(out / "train.txt"), "--output", str(report_path), "--no-progress", "--workers", "2"]
        )
        == 1
    )
    report = json.loads(report_path.read_text())
    assert (report["total"], report["ok"], report["broken"]) == (8, 6, 2)
    broken = {Path(f["path"]).name: f["reason"] for f in report["files"] if f["status"] == "broken"}
    assert set(broken) == {"garbage.mp4", "missing.mp4"} and "FileNotFoundError" in broken["missing.mp4"]
    assert "broken: " in capsys.readouterr().out


def test_cli_check_reports_frame_folder_count_mismatch(run_cli, tmp_path: Path, media) -> None:
    (tmp_path / "list.txt").write_text(f"{media['frames']} 13 0\n")  # the folder holds 12 frames
    assert (
        run_cli(["data", "check", str(tmp_path / "list.txt"), "--output", str(tmp_path / "r.json"), "--no-progress"])
        == 0
    )
    entry = json.loads((tmp_path / "r.json").read_text())["files"][0]
    assert entry["status"] == "mismatch" and entry["reason"] == "list says 13 frames, 12 decode"


def test_cli_errors_are_one_line(run_cli, tmp_path: Path, capsys) -> None:
    assert run_cli(["data", "check", str(tmp_path / "nope.txt"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope.txt'}: no such list file or folder"
    assert run_cli(["data", "synth", str(tmp_path / "s"), "--classes", "9"]) == 2


def test_benchmark_data_reports_rates_and_seek_ratio(run_cli, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert (
        run_cli(
            [
                "benchmark",
                "data",
                "--backends",
                "pyav",
                "--num-frames",
                "4",
                "--stride",
                "2",
                "--crop-size",
                "64",
                "--batch-size",
                "2",
                "--batches",
                "2",
                "--workers",
                "0",
                "--no-rand-augment",
                "--long-frames",
                "240",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["clips_per_s"]["pyav"] > 0
    assert result["long_video"]["frames"] == 240 and result["long_video"]["ratio"] > 0
    assert "sequential / seek" in capsys.readouterr().out
