"""``uniformer models`` / ``uniformer info``: the zoo as the registry holds it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import uniformer
from uniformer.cli import main


def test_models_lists_the_filtered_zoo(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "*_k600_*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["model", "dataset", "frames"]
    assert [line.split()[0] for line in out[1:]] == uniformer.list_models("*_k600_*")
    assert main(["models", "nothing*"]) == 2


def test_info_reports_measured_and_published_cost(capsys: pytest.CaptureFixture) -> None:
    assert main(["info", "uniformer_small_k400_16x4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["measured_params"] == 21_400_400
    assert data["measured_gmacs_per_view"] == pytest.approx(41.66, abs=0.01)
    assert data["release"]["gflops"] == 41.75 and data["view_shape"] == [1, 3, 16, 224, 224]
    assert data["test_clips"] == 4 and data["num_classes"] == 400
    assert main(["info", "uniformer_small"]) == 0
    text = capsys.readouterr().out
    assert "3.63 measured (multiply-adds), 3.6 published" in text
    assert "weights 1         Hub Sense-X/uniformer_image/uniformer_small_in1k.pth (downloads automatically)" in text


def test_console_script_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "uniformer", "info", "no_such_model"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "error: unknown model 'no_such_model'" in result.stderr


def test_info_of_a_segmentation_entry_gives_its_miou_and_where_the_weights_are(capsys: pytest.CaptureFixture) -> None:
    assert main(["info", "uniformer_small_h32_upernet_ade20k"]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        key, _, value = line.partition("  ")
        rows[key.strip()] = value.strip()
    assert rows["published mIoU"] == "47.0 single-scale, multi-scale + flip 48.5"
    assert rows["decoder"] == "upernet" and "published top-1" not in rows and "test views" not in rows
    assert rows["GFLOPs per image"].endswith("955 published")
    assert rows["weights 1"].startswith("Hub lllyasviel/Annotators/upernet_global_small.pth (SHA-256 bebfa126")
    assert rows["weights 2"].startswith(
        "Google Drive https://drive.google.com/file/d/13hOneJiFqwEneUz1Zpqo1W2uv7BsoXGF"
    )


@pytest.mark.parametrize(
    "name, key, published",
    [
        ("uniformer_small_h14_mask_rcnn_coco_1x", "published COCO val2017", "box AP 45.6, mask AP 41.6"),
        ("uniformer_small_topdown_coco_256x192", "published COCO val", "AP 74.0, AP50 90.3, AP75 82.2"),
    ],
)
def test_info_of_detection_and_pose_entries_gives_their_published_ap(
    name: str, key: str, published: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(["info", name]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        k, _, value = line.partition("  ")
        rows[k.strip()] = value.strip()
    assert rows[key].startswith(published) and "published top-1" not in rows and "test views" not in rows


@pytest.mark.parametrize(
    "task, first, metric",
    [
        ("pose", "uniformer_small_topdown_coco_256x192", "74.0 AP"),
        ("segmentation", "uniformer_small_upernet_ade20k", "47.6 mIoU"),
        ("detection", "uniformer_small_h14_mask_rcnn_coco_1x", "45.6 box / 41.6 mask AP"),
    ],
)
def test_models_lists_the_zoo_of_one_task(task: str, first: str, metric: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--task", task]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == uniformer.list_models(task=task) and len(rows) >= 6
    assert rows[0].startswith(first) and metric in rows[0]
    assert all(uniformer.model_info(row.split()[0]).task == task for row in rows)
    assert main(["models", "--task", task, "*_base_*"]) == 0
    assert all("_base_" in row.split()[0] for row in capsys.readouterr().out.splitlines()[1:])
