"""The multi-view test: views aggregated per video as documented, failed videos reported, metrics and report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from uniformer import UniFormer
from uniformer.engine.config import resolve_config
from uniformer.runtime import feed
from uniformer.tasks.classification import TASK
from uniformer.tasks.classification.metrics import TimeShuffled, VideoScores, ViewScores, compute_metrics, write_report


def score_videos(model, dataset, *, batch_size: int, aggregate: str = "sum") -> VideoScores:
    """The engine's evaluation loop with the classification task's accumulator."""
    scores = ViewScores(dataset, aggregate=aggregate)
    feed(model, dataset, scores, collate=TASK.collate, inputs=TASK.model_inputs, batch_size=batch_size)
    return scores.scores()


@pytest.fixture(scope="module")
def test_set(motion_set: Path, tiny_config, tmp_path_factory: pytest.TempPathFactory):
    """The 4 validation videos plus a broken file, 2 clips x 3 crops each."""
    folder = tmp_path_factory.mktemp("broken")
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00 this is not a video")
    listing = folder / "val_with_broken.txt"
    listing.write_text((motion_set / "val.txt").read_text() + f"{broken} 2\n")
    cfg = resolve_config(
        tiny_config(folder, f"data.val_list={listing}", "data.test_clips=2", "data.test_crops=3", "data.short_side=48")
    )
    return TASK.build_dataset(cfg, "test")


@pytest.fixture(scope="module")
def model() -> UniFormer:
    torch.manual_seed(0)
    return UniFormer(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16, num_classes=4, video=True).eval()


@torch.no_grad()
def _one_by_one(model: UniFormer, dataset, video: int) -> torch.Tensor:
    """The views of ``video`` run one at a time: (views, classes) logits."""
    items = [dataset[video * dataset.num_views + v] for v in range(dataset.num_views)]
    assert [item["view"] for item in items] == list(range(6)) and all(item["index"] == video for item in items)
    return torch.cat([model(item["video"][None]) for item in items])


def test_sum_aggregates_the_logits_of_every_clip_and_crop(test_set, model) -> None:
    assert test_set.num_views == 6 and test_set.num_videos == 5
    result = score_videos(model, test_set, batch_size=4)
    for video in range(4):
        views = _one_by_one(model, test_set, video)
        assert not torch.allclose(views[0], views[3])  # the views really differ
        torch.testing.assert_close(result.scores[video], views.sum(0), rtol=1e-5, atol=1e-5)
    soft = score_videos(model, test_set, batch_size=5, aggregate="softmax_mean")
    torch.testing.assert_close(
        soft.scores[1], _one_by_one(model, test_set, 1).softmax(-1).mean(0), rtol=1e-5, atol=1e-6
    )
    assert result.labels[:4].tolist() == [0, 1, 2, 3] and result.paths[0].endswith(".mp4")


def test_an_unreadable_video_is_reported_not_dropped(test_set, model, tmp_path: Path) -> None:
    result = score_videos(model, test_set, batch_size=4)
    assert list(result.failed) == [4] and "broken.mp4" in result.paths[4] and result.failed[4]
    assert torch.isnan(result.scores[4]).all()
    metrics = compute_metrics(result)
    assert (metrics.num_videos, metrics.num_scored, metrics.num_failed) == (5, 4, 1)
    correct = round(metrics.top1 * 4 / 100)
    assert metrics.top1_counting_failed == pytest.approx(100 * correct / 5)
    paths = write_report(tmp_path, result, metrics, ["right", "left", "down", "up"])
    rows = list(csv.DictReader(paths["predictions.csv"].open()))
    assert len(rows) == 5 and rows[4]["status"].startswith("failed: ") and rows[0]["status"] == "ok"
    assert rows[0]["label_name"] == "right"
    report = json.loads(paths["metrics.json"].read_text())
    assert report["num_failed"] == 1 and list(report["failed_videos"]) == [result.paths[4]]
    assert report["aggregate"] == "sum" and report["views_per_video"] == 6
    assert paths["confusion_matrix.png"].stat().st_size > 5000


def test_metrics_from_known_scores() -> None:
    scores = torch.tensor(
        [
            [9.0, 1, 2, 3, 4, 5],  # label 0: top-1 hit
            [0.0, 1, 2, 3, 4, 5],  # label 1: top-5 hit (2nd lowest), top-1 miss (predicts 5)
            [5.0, 4, 3, 2, 1, 0],  # label 5: miss in top-5 too (lowest score)
            [0.0, 0, 9, 0, 0, 0],  # label 2: hit
            [0.0, 9, 0, 0, 0, 0],  # unlabelled: ignored
        ]
    )
    result = VideoScores(scores, torch.tensor([0, 1, 5, 2, -1]), [f"v{i}" for i in range(5)], {}, "sum", 1)
    metrics = compute_metrics(result, list("abcdef"))
    assert (metrics.num_scored, metrics.num_unlabelled) == (4, 1)
    assert metrics.top1 == 50.0 and metrics.top5 == 75.0
    by_class = {p["name"]: p["accuracy"] for p in metrics.per_class}
    assert by_class == {"a": 100.0, "b": 0.0, "c": 100.0, "d": None, "e": None, "f": 0.0}
    assert metrics.mean_class_accuracy == 50.0
    assert metrics.confusion is not None
    assert metrics.confusion[1, 5] == 1 and metrics.confusion[5, 0] == 1 and metrics.confusion.sum() == 4


def test_time_shuffled_views_hold_the_same_frames_in_another_order(test_set) -> None:
    shuffled = TimeShuffled(test_set, seed=5)
    assert (len(shuffled), shuffled.num_videos, shuffled.num_views) == (len(test_set), 5, 6)
    for index in (0, 7):
        plain, mixed = test_set[index]["video"], shuffled[index]["video"]
        assert not torch.equal(plain, mixed)
        # every frame of the shuffled view is one of the original frames, each used once
        matches = [
            [torch.equal(mixed[:, t], plain[:, s]) for s in range(plain.shape[1])] for t in range(plain.shape[1])
        ]
        assert all(sum(row) >= 1 for row in matches)
        assert sorted(mixed.flatten().tolist()) == sorted(plain.flatten().tolist())
        assert torch.equal(mixed, TimeShuffled(test_set, seed=5)[index]["video"])  # deterministic
    assert shuffled[4 * 6]["valid"] is False  # failures pass through
