"""``uniformer data prepare``: re-encoding, frame extraction and lists, on tiny generated videos."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from uniformer.data import read_video_list, video_info
from uniformer.data.prepare import build_lists, extract_frames, resize_videos, scaled_size
from uniformer.data.synth import write_video


def _clip(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (frames, height, width, 3), dtype=np.uint8)


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    """Two classes of 16-frame videos (one portrait, one at 12 fps, one .avi), a truncated and a junk file."""
    root = tmp_path / "src"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    write_video(root / "a" / "wide.mp4", _clip(16, 32, 48, 0), fps=25)
    write_video(root / "a" / "portrait.mp4", _clip(16, 64, 32, 1), fps=25)
    write_video(root / "b" / "slow.mp4", _clip(16, 32, 32, 2), fps=12)
    write_video(root / "b" / "old.avi", _clip(16, 32, 32, 3), fps=25, codec="mpeg4")
    good = (root / "a" / "wide.mp4").read_bytes()
    (root / "b" / "truncated.mp4").write_bytes(good[: len(good) // 4])
    (root / "b" / "junk.mkv").write_bytes(b"not a video" * 10)
    return root


def test_scaled_size_keeps_aspect_and_even_sides() -> None:
    assert scaled_size(1920, 1080, 320) == (568, 320)
    assert scaled_size(1080, 1920, 320) == (320, 568)
    assert scaled_size(340, 256, 320) == (424, 320)  # 425 rounded to an even width
    with pytest.raises(ValueError, match="not a picture size"):
        scaled_size(0, 10, 320)


def test_resize_keeps_rate_and_duration_and_reports_broken_files(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = resize_videos(source, out, short_side=64, workers=2)
    assert sorted(Path(p).relative_to(out).as_posix() for p in report.written) == [
        "a/portrait.mp4",
        "a/wide.mp4",
        "b/old.mp4",
        "b/slow.mp4",
    ]
    assert sorted(Path(p).name for p, _ in report.failed) == ["junk.mkv", "truncated.mp4"]
    assert all(reason for _, reason in report.failed)
    wide, portrait, slow = (video_info(out / name) for name in ("a/wide.mp4", "a/portrait.mp4", "b/slow.mp4"))
    assert (wide.width, wide.height, wide.num_frames, wide.fps) == (96, 64, 16, 25.0)
    assert (portrait.width, portrait.height, portrait.num_frames) == (64, 128, 16)
    assert (slow.num_frames, slow.fps) == (16, 12.0)
    assert not list(out.rglob("*.part"))


def test_resize_at_constant_fps_keeps_duration(source: Path, tmp_path: Path) -> None:
    report = resize_videos(source / "b", tmp_path / "out", short_side=32, fps=30)
    info = video_info(tmp_path / "out" / "slow.mp4")  # 16 frames at 12 fps = 1.333 s
    assert (info.fps, info.num_frames) == (30.0, 40)
    assert len(report.failed) == 2


def test_rerun_after_a_kill_redoes_only_the_unfinished(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    resize_videos(source, out, short_side=32)
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    # what a kill during the encoding of a/wide.mp4 leaves: its half-written part file, no final file
    (out / "a" / "wide.mp4").unlink()
    (out / "a" / "wide.mp4.part").write_bytes(b"\x00" * 100)
    report = resize_videos(source, out, short_side=32)
    assert [Path(p).name for p in report.written] == ["wide.mp4"]
    assert [Path(p).name for p in report.removed_partial] == ["wide.mp4.part"]
    assert len(report.existing) == 3 and len(report.failed) == 2
    for path, mtime in finished.items():
        if path.name != "wide.mp4":
            assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten"
    assert video_info(out / "a" / "wide.mp4").num_frames == 16


def test_killed_cli_run_then_rerun_finishes(source: Path, tmp_path: Path) -> None:
    """A real kill: the command is stopped while it encodes, then run again to completion."""
    big = tmp_path / "big"
    (big / "c").mkdir(parents=True)
    for i in range(6):
        write_video(big / "c" / f"v{i}.mp4", _clip(48, 96, 128, i), fps=25)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "uniformer", "data", "prepare", "resize", str(big), str(out)]
    command += ["--short-side", "320", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and not list(out.rglob("*.mp4")):
            time.sleep(0.01)  # wait for the first finished file, then kill in the middle of the next ones
        process.kill()
    finally:
        process.wait()
    done_before = sorted(p.name for p in out.rglob("*.mp4"))
    report = resize_videos(big, out, short_side=320)
    assert sorted(Path(p).name for p in report.existing) == done_before
    assert len(report.written) + len(report.existing) == 6 and not report.failed
    assert all(video_info(p).num_frames == 48 for p in out.rglob("*.mp4"))


def test_frames_are_numbered_as_the_lists_expect(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    report = extract_frames(source / "b", out, fps=6)
    assert len(report.written) == 2 and len(report.failed) == 2
    names = sorted(os.listdir(out / "slow"))  # 16 frames at 12 fps kept at 6 fps
    assert names == [f"{i:05d}.jpg" for i in range(1, 9)]
    assert len(os.listdir(out / "old")) == 16 * 6 // 25 + 1
    all_frames = extract_frames(source / "b", tmp_path / "all", fps=None)
    assert len(os.listdir(tmp_path / "all" / "slow")) == 16 and len(all_frames.written) == 2
    again = extract_frames(source / "b", out, fps=6)
    assert not again.written and len(again.existing) == 2


def test_lists_from_class_folders_and_frames(source: Path, tmp_path: Path) -> None:
    shutil.rmtree(source / "b" / "truncated.mp4", ignore_errors=True)
    resize_videos(source, tmp_path / "videos", short_side=32)
    list_path, classes_path, missing = build_lists(tmp_path / "videos", tmp_path / "lists")
    assert not missing and classes_path.read_text() == "a\nb\n"
    videos = read_video_list("kinetics", tmp_path / "videos", list_file=list_path, labels_file=classes_path)
    assert [Path(r.path).name for r in videos.records] == ["portrait.mp4", "wide.mp4", "old.mp4", "slow.mp4"]
    assert [r.label for r in videos.records] == [0, 0, 1, 1]
    extract_frames(tmp_path / "videos", tmp_path / "frames", fps=None)
    frame_list, _, _ = build_lists(tmp_path / "frames", tmp_path / "lists", frames=True, name="frames")
    assert frame_list.read_text().splitlines()[0] == "a/portrait 16 0"


def test_lists_from_a_kinetics_csv(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    (root / "abseiling").mkdir(parents=True)
    write_video(root / "abseiling" / "abc_000010_000020.mp4", _clip(4, 32, 32, 0))
    write_video(root / "zzz_000003_000013.mp4", _clip(4, 32, 32, 1))
    csv = tmp_path / "train.csv"
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,abc,10,20,train\nzumba,zzz,3,13,train\nabseiling,gone,0,10,train\n"
    )
    list_path, classes_path, missing = build_lists(root, tmp_path / "lists", annotations=csv)
    assert list_path.read_text() == "abseiling/abc_000010_000020.mp4 0\nzzz_000003_000013.mp4 1\n"
    assert [clip for clip, _ in missing] == ["gone_000000_000010"] and "train.csv:4" in missing[0][1]
    bad = tmp_path / "bad.csv"
    bad.write_text("youtube_id,label\nabc,abseiling\n")
    with pytest.raises(ValueError, match=r"bad.csv: the header lacks column\(s\) time_start, time_end"):
        build_lists(root, tmp_path / "lists", annotations=bad)


def test_kinetics_classes_take_the_official_order() -> None:
    from uniformer.data.prepare import _package_labels, official_class_order

    k400 = _package_labels("kinetics400.tsv")
    assert official_class_order(reversed(k400)) == k400
    assert official_class_order(["b", "a"]) == ["a", "b"]


def test_prepare_cli(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from uniformer.cli import main

    report = tmp_path / "report.json"
    assert (
        main(
            [
                "data",
                "prepare",
                "resize",
                str(source),
                str(tmp_path / "o"),
                "--short-side",
                "32",
                "--workers",
                "1",
                "--report",
                str(report),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "4 written, 0 already done, 2 failed" in printed
    assert "skipped " + str(source / "b" / "junk.mkv") in printed
    assert '"failed"' in report.read_text()
