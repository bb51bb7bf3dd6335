"""List formats, train/test datasets, and broken videos in a real DataLoader loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uniformer.data import (
    SkippedInputs,
    VideoDataset,
    VideoRecord,
    build_video_dataset,
    collate_videos,
    read_video_list,
)
from uniformer.models.zoo.datasets import VIDEO_MEAN, VIDEO_STD


class RawClip:
    """Transform that keeps the decoded frames (T, H, W, 3) so tests can read frame numbers back."""

    crop_size = 64

    def __call__(self, frames: torch.Tensor, crop_idx: int | None = None) -> torch.Tensor:
        return frames


def test_kinetics_lists_space_comma_names_and_counts(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("v/a.mp4 3\n\n/abs/b.mp4 0\n")
    (tmp_path / "b.csv").write_text("v/c.mp4,1\n")
    (tmp_path / "c.txt").write_text("f/100 47 5\n")
    (tmp_path / "names.txt").write_text("abseiling\nzumba\n")
    (tmp_path / "d.txt").write_text("v/d.mp4 zumba\n")
    assert read_video_list("kinetics", tmp_path, list_file=tmp_path / "a.txt").records == [
        VideoRecord(str(tmp_path / "v/a.mp4"), 3),
        VideoRecord("/abs/b.mp4", 0),
    ]
    assert read_video_list("kinetics", tmp_path, list_file=tmp_path / "b.csv").records[0].label == 1
    assert read_video_list("kinetics", tmp_path, list_file=tmp_path / "c.txt").records == [
        VideoRecord(str(tmp_path / "f/100"), 5, 47)
    ]
    named = read_video_list("kinetics", tmp_path, list_file=tmp_path / "d.txt", labels_file=tmp_path / "names.txt")
    assert named.records[0].label == 1 and named.classes == ["abseiling", "zumba"] and named.num_classes == 2
    (tmp_path / "bad.txt").write_text("v/a.mp4 3\nv/b.mp4\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 'path label'"):
        read_video_list("kinetics", tmp_path, list_file=tmp_path / "bad.txt")


def test_something_something_v2_json(tmp_path: Path) -> None:
    labels = {"Holding something next to something": "1", "Approaching something with your camera": "0"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    entries = [{"id": "78687", "template": "Holding [something] next to [something]"}, {"id": "42"}]
    (tmp_path / "train.json").write_text(json.dumps(entries))
    videos = read_video_list(
        "ssv2", tmp_path / "v", list_file=tmp_path / "train.json", labels_file=tmp_path / "labels.json"
    )
    assert videos.records == [
        VideoRecord(str(tmp_path / "v/78687.webm"), 1),
        VideoRecord(str(tmp_path / "v/42.webm"), -1),
    ]
    assert videos.classes == ["Approaching something with your camera", "Holding something next to something"]


def test_something_something_v1_csv(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("Holding something\nPushing something from left to right\n")
    (tmp_path / "train.csv").write_text("100218;Pushing something from left to right\n7;Holding something\n")
    videos = read_video_list(
        "ssv1", tmp_path / "frames", list_file=tmp_path / "train.csv", labels_file=tmp_path / "labels.csv"
    )
    assert [(Path(r.path).name, r.label) for r in videos.records] == [("100218", 1), ("7", 0)]


def test_ucf101_split_files(tmp_path: Path) -> None:
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 YoYo\n")
    (tmp_path / "trainlist01.txt").write_text("YoYo/v_YoYo_g08_c01.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n")
    kw = {"labels_file": tmp_path / "classInd.txt"}
    train = read_video_list("ucf101", tmp_path, list_file=tmp_path / "trainlist01.txt", **kw)
    test = read_video_list("ucf101", tmp_path, list_file=tmp_path / "testlist01.txt", **kw)
    assert train.records[0].label == 1 and test.records[0].label == 0 and train.classes == ["ApplyEyeMakeup", "YoYo"]


def test_hmdb51_split_files(tmp_path: Path) -> None:
    (tmp_path / "wave_test_split1.txt").write_text("a.avi 1\nb.avi 2\nc.avi 0\n")
    (tmp_path / "climb_test_split1.txt").write_text("d.avi 2\n")
    test = read_video_list("hmdb51", tmp_path, split="test")
    assert test.classes == ["climb", "wave"]
    assert [(Path(r.path).relative_to(tmp_path).as_posix(), r.label) for r in test.records] == [
        ("climb/d.avi", 0),
        ("wave/b.avi", 1),
    ]
    assert [Path(r.path).name for r in read_video_list("hmdb51", tmp_path, split="train").records] == ["a.avi"]


def test_folder_tree_sorts_classes_and_finds_files_and_frame_folders(media, tmp_path: Path) -> None:
    (tmp_path / "walk").mkdir()
    (tmp_path / "walk" / "x.mp4").write_bytes(b"")
    (tmp_path / "walk" / "notes.txt").write_text("ignored")
    (tmp_path / "jump").mkdir()
    (tmp_path / "jump" / "clip7").symlink_to(media["frames"], target_is_directory=True)
    videos = read_video_list("folder", tmp_path)
    assert videos.classes == ["jump", "walk"]
    assert [(Path(r.path).name, r.label) for r in videos.records] == [("clip7", 0), ("x.mp4", 1)]


def test_segment_test_views_read_the_official_frames_from_a_frame_folder(media, frame_number) -> None:
    dataset = VideoDataset(
        [VideoRecord(str(media["frames"]), 4)],
        RawClip(),
        mode="test",
        num_frames=4,
        sampling="segment",
        stride=None,
        num_clips=2,
        num_crops=3,
    )
    assert (len(dataset), dataset.num_views) == (6, 6)
    # 12 frames, 4 segments: seg 11/4 = 2.75, starts 0 3 6 8 (5.5 -> 6, 8.25 -> 8); offsets int(2.75/3*(k+1)) = 0, 1
    item = dataset[4]  # view 4 = clip 1, crop 1
    assert (item["index"], item["view"], item["label"], item["valid"]) == (0, 4, 4, True)
    assert [frame_number(f) for f in item["video"]] == [1, 4, 7, 9]
    assert [frame_number(f) for f in dataset[0]["video"]] == [0, 3, 6, 8]


def test_training_loop_loses_nothing_but_the_broken_files(media, synth_set: Path) -> None:
    good = read_video_list("kinetics", synth_set, list_file=synth_set / "train.txt").records
    broken = [VideoRecord(str(media[k]), 0) for k in ("truncated", "garbage", "empty", "missing")]
    records = good[:12] + broken + good[12:]
    dataset = build_video_dataset(
        "kinetics",
        synth_set,
        list_file=synth_set / "train.txt",
        num_frames=4,
        stride=2,
        crop_size=32,
        rand_augment=None,
        mean=VIDEO_MEAN,
        std=VIDEO_STD,
    )
    dataset.records = records  # same pipeline, with four unreadable files mixed into the list
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=4,
        shuffle=True,
        num_workers=2,
        collate_fn=collate_videos,
        generator=torch.Generator().manual_seed(0),
    )
    skipped, seen, items = SkippedInputs(), set(), 0
    for batch in loader:
        assert batch["video"].shape[1:] == (3, 4, 32, 32) and batch["valid"].all()
        skipped.update(batch)
        seen.update(batch["index"].tolist())
        items += len(batch["label"])
    bad_paths = {r.path for r in broken}
    assert items == len(records)
    assert set(skipped.reasons) == bad_paths
    assert sum(skipped.occurrences.values()) >= 4
    assert {i for i, r in enumerate(records) if r.path not in bad_paths} <= seen  # every good video was trained on
    assert "empty file" in skipped.reasons[str(media["empty"])]
    assert "no such video file" in skipped.reasons[str(media["missing"])]
    assert skipped.summary().startswith("4 unreadable video(s) skipped:")


def test_replacement_is_deterministic_and_bounded(media) -> None:
    records = [VideoRecord(str(media["garbage"]), 0), VideoRecord(str(media["h264"]), 1)]
    first = VideoDataset(records, RawClip(), num_frames=2, stride=1, seed=5)[0]
    again = VideoDataset(records, RawClip(), num_frames=2, stride=1, seed=5)[0]
    assert first["index"] == again["index"] == 1 and first["skipped"] == again["skipped"]
    assert first["skipped"][0][0] == str(media["garbage"])
    all_bad = VideoDataset([VideoRecord(str(media["empty"]), 0)], RawClip(), num_frames=2, stride=1, max_retries=3)
    with pytest.raises(RuntimeError, match="4 videos in a row could not be read"):
        all_bad[0]


def test_evaluation_reports_every_failed_view(media, synth_set: Path) -> None:
    dataset = build_video_dataset(
        "kinetics",
        synth_set,
        list_file=synth_set / "val.txt",
        split="val",
        num_frames=4,
        stride=2,
        crop_size=32,
        num_clips=2,
        num_crops=3,
        mean=VIDEO_MEAN,
        std=VIDEO_STD,
    )
    dataset.records = dataset.records[:3] + [VideoRecord(str(media["truncated"]), 2)]
    assert (dataset.mode, dataset.num_videos, dataset.num_views, len(dataset)) == ("test", 4, 6, 24)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=0, collate_fn=collate_videos)
    failed = SkippedInputs()
    views = []
    for batch in loader:
        failed.update(batch)
        views += list(zip(batch["index"].tolist(), batch["view"].tolist(), batch["valid"].tolist()))
    assert sorted((i, v) for i, v, _ in views) == [(i, v) for i in range(4) for v in range(6)]
    assert {(i, ok) for i, _, ok in views} == {(0, True), (1, True), (2, True), (3, False)}
    assert list(failed.reasons) == [str(media["truncated"])] and failed.occurrences[str(media["truncated"])] == 6


def test_builder_exposes_what_the_engine_needs(synth_set: Path) -> None:
    dataset = build_video_dataset(
        "kinetics",
        synth_set,
        list_file=synth_set / "train.txt",
        labels_file=synth_set / "classes.txt",
        num_frames=8,
        stride=2,
        crop_size=32,
        mean=VIDEO_MEAN,
        std=VIDEO_STD,
    )
    assert (dataset.num_classes, dataset.num_videos, dataset.num_views, dataset.mode) == (8, 24, 1, "train")
    assert dataset.classes[0] == "moving_right"
    item = dataset[0]
    assert item["video"].shape == (3, 8, 32, 32) and item["video"].dtype == torch.float32
    assert set(item) == {"video", "label", "index", "view", "path", "valid", "error", "skipped"}
