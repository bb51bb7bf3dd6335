"""Files to explanations: the view's geometry on the frame, the command's pictures and JSON, unreadable inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uniformer.cli import main
from uniformer.data import EvalTransform, normalize, short_side_resize
from uniformer.data.synth import render_clip, write_video
from uniformer.engine import Predictor
from uniformer.explain import explain_files, load_input
from uniformer.explain.render import write_explanation

SMALL_IMAGE = dict(depth=(1, 1, 1, 1), embed_dim=(32, 64, 128, 256), head_dim=32)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    write_video(path, render_clip("moving_right", np.random.default_rng(0), num_frames=40, size=(64, 96)))
    return path


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "shape.png"
    Image.fromarray(render_clip("moving_up", np.random.default_rng(1), num_frames=2, size=(90, 120))[0]).save(path)
    return path


def _spec(predictor: Predictor):
    return predictor.setup.spec


def test_video_view_is_the_test_crop_and_maps_land_on_it(video: Path) -> None:
    predictor = Predictor("uniformer_tiny_motion")
    spec = _spec(predictor)
    item = load_input(video, spec)
    assert item.frames.shape == (8, 64, 96, 3) and item.view.shape == (3, 8, 64, 64)
    torch.testing.assert_close(item.view, EvalTransform(64, mean=spec.mean, std=spec.std)(item.frames))
    top, left, height, width = item.geometry.window
    resized = short_side_resize(item.frames.permute(0, 3, 1, 2), 64)[..., top : top + height, left : left + width]
    torch.testing.assert_close(item.view, normalize(resized, spec.mean, spec.std).permute(1, 0, 2, 3))
    assert item.geometry.box() == (0.0, 16.0, 64.0, 80.0)
    on_view = torch.zeros(64, 64)
    on_view[10, 20] = 1.0
    frame_map = item.geometry.to_frame(on_view)
    assert frame_map.shape == (64, 96) and frame_map[10, 36] == 1 and frame_map[:, :16].abs().sum() == 0
    assert item.geometry.to_view(0.5, 0.25) == (0.5, 0.25)
    with pytest.raises(ValueError, match="outside the model's view"):
        item.geometry.to_view(0.05, 0.5)
    whole = load_input(video, spec, crop=False)
    assert whole.view.shape == (3, 8, 64, 96) and whole.geometry.box() == (0.0, 0.0, 64.0, 96.0)


def test_image_view_follows_the_timm_evaluation_transform(image: Path) -> None:
    predictor = Predictor("uniformer_small", overrides=SMALL_IMAGE)
    spec = _spec(predictor)
    item = load_input(image, spec)
    # 224 / 0.875 = 256 on the short side: 90 x 120 becomes 256 x 341, the 224 crop starts at (16, 58)
    assert item.geometry.resized_size == (256, 341) and item.geometry.window == (16, 58, 224, 224)
    top, left, bottom, right = item.geometry.box()
    assert (round(top, 2), round(left, 2), round(bottom, 2), round(right, 2)) == (5.62, 20.41, 84.38, 99.24)
    results = explain_files(predictor, [image], "gradcam")
    assert results[0].map.shape == (1, 90, 120) and results[0].stage == 4
    assert float(results[0].map[0, :3].sum()) == 0.0  # rows above the crop: unseen, no map


def test_explain_command_writes_every_method_for_a_video(video: Path, tmp_path: Path, capsys) -> None:
    for method in ("cam", "gradcam", "attention", "features"):
        argv = ["explain", str(video), "--model", "uniformer_tiny_motion", "--method", method, "--out", str(tmp_path)]
        assert main([*argv, "--video-format", "gif", "mp4", "--json"]) == 0
        document = json.loads(capsys.readouterr().out)
        (entry,) = document["explanations"]
        assert entry["method"] == method and 0 < entry["score"] < 1 and entry["label"]
        assert entry["frame_indices"] == [4, 8, 12, 17, 21, 26, 30, 35]
        for name in entry["files"]:
            assert Path(name).stat().st_size > 0
        saved = json.loads((tmp_path / f"clip.{method}.json").read_text())
        assert saved["target"] == entry["target"] and saved["statistics"] == entry["statistics"]
    assert {p.name for p in tmp_path.iterdir()} == {
        *(f"clip.{m}.{ext}" for m in ("cam", "gradcam", "attention") for ext in ("strip.png", "gif", "mp4", "json")),
        "clip.features.png",
        "clip.features.json",
    }
    with Image.open(tmp_path / "clip.gradcam.gif") as gif:
        assert gif.n_frames == 8 and gif.size == (192, 64)  # frame | overlay, per clip frame
    stats = json.loads((tmp_path / "clip.gradcam.json").read_text())["statistics"]
    assert stats["raw"][0]["shape"] == [4, 8, 8] and len(stats["frame_mass"]) == 8
    assert abs(sum(stats["frame_mass"]) - 1) < 1e-6


def test_target_query_and_unreadable_inputs(video: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    argv = ["explain", str(video), str(broken), "--model", "uniformer_tiny_motion", "--out", str(tmp_path / "o")]
    status = main([*argv, "--method", "attention", "--query", "0.5,0.5", "--target", "receding", "--stage", "4"])
    out = capsys.readouterr().out
    assert status == 1 and "broken.mp4: could not be read" in out and "attention stage 4 for receding" in out
    assert json.loads((tmp_path / "o" / "broken.attention.json").read_text())["error"]
    assert main([*argv, "--method", "cam", "--stage", "2"]) == 2
    assert "--stage applies to gradcam and attention" in capsys.readouterr().err
    assert main([*argv, "--target", "flying"]) == 2
    assert "not a class name" in capsys.readouterr().err


def test_image_explanation_picture(image: Path, tmp_path: Path) -> None:
    predictor = Predictor("uniformer_small", overrides=SMALL_IMAGE)
    for method in ("cam", "features"):
        (result,) = explain_files(predictor, [image], method, crop=False)
        written = write_explanation(result, tmp_path, "shape")
        assert [p.name for p in written] == [f"shape.{method}.png", f"shape.{method}.json"]
        with Image.open(written[0]) as picture:
            assert picture.size[0] > picture.size[1]  # panels side by side


def test_batches_give_the_maps_of_one_input_at_a_time(video: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.mp4"
    write_video(other, render_clip("rotating_clockwise", np.random.default_rng(4), num_frames=40, size=(80, 64)))
    predictor = Predictor("uniformer_tiny_motion")
    for method in ("gradcam", "attention"):
        together = explain_files(predictor, [video, other], method, batch_size=2)
        alone = explain_files(predictor, [video, other], method, batch_size=1)
        for a, b in zip(together, alone, strict=True):
            assert a.target == b.target and a.map.shape == b.map.shape
            torch.testing.assert_close(a.map, b.map, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        explain_files(predictor, [video], "features", target=8)
