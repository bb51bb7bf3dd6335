"""Videos in, videos out: a dense model's annotated video and frame lines, pose ids, Ctrl-C, a classifier's timeline."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from tests.tasks.test_pose_task import DETECTOR, POSE, _detector_checkpoint, _pose_checkpoint
from uniformer.cli import main
from uniformer.data.decode import read_frames
from uniformer.data.synth import write_video
from uniformer.engine.predict import Predictor
from uniformer.engine.timeline import video_timeline, window_spans
from uniformer.engine.video import predict_video
from uniformer.models.checkpoint import TRAIN_FORMAT
from uniformer.models.detection import UniFormerMaskRCNN
from uniformer.models.factory import create_model

TINY = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16)
TINY_DETECTOR = dict(window_size=2, min_size=(64,), max_size=64, fpn_channels=16, representation_size=32, mask=False)
SEG = "uniformer_small_fpn_ade20k"


def _moving_square(path: Path, count: int = 9, fps: int = 10) -> Path:
    """A white square crossing a grey 64 x 48 frame, 4 pixels a frame."""
    frames = np.full((count, 48, 64, 3), 90, np.uint8)
    for t in range(count):
        frames[t, 12:28, 4 * t : 4 * t + 16] = 250
    write_video(path, frames, fps=fps)
    return path


def _image_mode(predictor: Predictor, video: Path, indices: list[int], folder: Path) -> list[dict]:
    """What ``uniformer predict`` says of the video's decoded frames saved as images (less their paths)."""
    folder.mkdir()
    files = []
    for index, frame in zip(indices, read_frames(video, indices), strict=True):
        files.append(folder / f"{index}.png")
        Image.fromarray(frame.numpy()).save(files[-1])
    records = [p.to_dict() for p in predictor.predict(files)]
    return [json.loads(json.dumps({k: v for k, v in r.items() if k != "path"})) for r in records]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _video(path: Path) -> tuple[int, Fraction, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), stream.average_rate, (stream.width, stream.height)


def test_detection_frames_are_the_image_predictions_and_the_video_keeps_size_and_rate(tmp_path: Path) -> None:
    video = _moving_square(tmp_path / "square.mp4")
    predictor = Predictor(DETECTOR, overrides={**TINY, **TINY_DETECTOR, "num_classes": 2}, labels=["a", "b"])
    predictor.setup = dataclasses.replace(predictor.setup, score_threshold=0.0)  # random weights: keep them all
    predictor.batch_size = 2
    result = predict_video(predictor, video, tmp_path / "out", every=2, progress=False)
    lines = _lines(result.frames)
    assert [line["frame"] for line in lines] == [0, 2, 4, 6, 8] and result.processed == result.wanted == 5
    assert [line["time"] for line in lines] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert all(line["detections"] for line in lines)
    expected = _image_mode(predictor, video, [0, 2, 4, 6, 8], tmp_path / "frames")
    assert [{k: v for k, v in line.items() if k not in ("frame", "time")} for line in lines] == expected
    assert result.video == tmp_path / "out" / "square_annotated.mp4" and result.codec == "libx264"
    assert _video(result.video) == (5, Fraction(5), (64, 48))  # count / K frames at fps / K
    (prediction,) = predictor.predict([tmp_path / "frames" / "4.png"])
    drawn = np.asarray(predictor.task.draw_prediction(prediction, predictor.setup), dtype=np.float32)
    written = read_frames(result.video, [2])[0].numpy().astype(np.float32)
    raw = read_frames(video, [4])[0].numpy().astype(np.float32)
    assert 3 * np.abs(written - drawn).mean() < np.abs(written - raw).mean()  # the drawing, not the bare frame
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["square_annotated.mp4", "square_frames.jsonl"]


def test_segmentation_frames_are_the_image_predictions_drawn_without_the_legend(tmp_path: Path) -> None:
    video = _moving_square(tmp_path / "square.mp4", count=3)
    predictor = Predictor(SEG, overrides={**TINY, "num_classes": 3}, labels=["sky", "road", "car"])
    predictor.setup = dataclasses.replace(predictor.setup, scale=[64, 48])  # the frame's size, not ADE20K's
    result = predict_video(predictor, video, tmp_path / "out", progress=False)
    lines = _lines(result.frames)
    expected = _image_mode(predictor, video, [0, 1, 2], tmp_path / "frames")
    assert [{k: v for k, v in line.items() if k not in ("frame", "time")} for line in lines] == expected
    assert _video(result.video) == (3, Fraction(10), (64, 48))


def _two_figures(path: Path, count: int = 8) -> Path:
    """A red and a blue figure side by side, walking apart 4 pixels a frame each, on a 96 x 64 grey frame."""
    frames = np.full((count, 64, 96, 3), 60, np.uint8)
    for t in range(count):
        frames[t, 14:50, 34 - 4 * t : 46 - 4 * t] = (230, 20, 20)
        frames[t, 14:50, 46 + 4 * t : 58 + 4 * t] = (20, 20, 230)
    write_video(path, frames, fps=8)
    return path


def test_pose_ids_stay_with_two_figures_walking_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def find_figures(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """A detector that sees the figures: the boxes of the red pixels and of the blue ones, both people."""
        found = []
        for image in images:
            boxes = []
            for channel in (0, 2):
                ys, xs = torch.nonzero((image[channel] > 0.6) & (image[1] < 0.3), as_tuple=True)
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            found.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor([2, 2]),
                          "scores": torch.tensor([0.9, 0.8])})  # fmt: skip
        return found

    monkeypatch.setattr(UniFormerMaskRCNN, "forward", find_figures)
    video = _two_figures(tmp_path / "walk.mp4")
    detector = str(_detector_checkpoint(tmp_path / "det.pt"))
    options = {"detector": DETECTOR, "detector_checkpoint": detector}
    predictor = Predictor(POSE, _pose_checkpoint(tmp_path / "pose.pt"), task_options=options, batch_size=3)
    result = predict_video(predictor, video, tmp_path / "out", progress=False)
    lines = _lines(result.frames)
    assert len(lines) == 8 and all(len(line["persons"]) == 2 for line in lines)
    left = {min(line["persons"], key=lambda p: p["box"][0])["id"] for line in lines}
    right = {max(line["persons"], key=lambda p: p["box"][0])["id"] for line in lines}
    assert left == {0} or left == {1}
    assert len(right) == 1 and right != left
    assert lines[-1]["persons"][0]["box"][0] < 10 or lines[-1]["persons"][1]["box"][0] < 10  # they did walk apart
    untracked = [{**line, "persons": [{k: v for k, v in p.items() if k != "id"} for p in line["persons"]]}
                 for line in lines]  # fmt: skip
    expected = _image_mode(predictor, video, list(range(8)), tmp_path / "frames")
    assert [{k: v for k, v in line.items() if k not in ("frame", "time")} for line in untracked] == expected
    assert _video(result.video) == (8, Fraction(8), (96, 64))


def test_ctrl_c_leaves_a_playable_video_and_whole_lines_of_the_frames_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = _moving_square(tmp_path / "square.mp4")
    predictor = Predictor(SEG, overrides={**TINY, "num_classes": 3})
    predictor.setup = dataclasses.replace(predictor.setup, scale=[64, 48])
    predictor.batch_size = 2
    calls, predict = [], predictor.predict

    def stopped_on_the_third_batch(paths, **kwargs):
        calls.append(len(paths))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return predict(paths, **kwargs)

    monkeypatch.setattr(predictor, "predict", stopped_on_the_third_batch)
    result = predict_video(predictor, video, tmp_path / "out", progress=False)
    assert result.interrupted and result.processed == 4 and "interrupted" in "\n".join(result.lines())
    assert [line["frame"] for line in _lines(result.frames)] == [0, 1, 2, 3]
    assert _video(result.video)[0] == 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["square_annotated.mp4", "square_frames.jsonl"]


def _brightness(self, clips: torch.Tensor) -> torch.Tensor:
    """A stand-in for a video classifier's forward whose answer is known: class 1 ("bright") for a bright clip."""
    level = clips.mean(dim=(1, 2, 3, 4))
    return torch.stack([-level, level], dim=1) * 10


def test_the_timeline_shows_a_change_half_way_at_its_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = np.full((100, 32, 48, 3), 30, np.uint8)  # 20 s at 5 fps: dark, then bright from 10 s
    frames[50:] = 220
    write_video(tmp_path / "long.mp4", frames, fps=5)
    predictor = Predictor("uniformer_small_k400_8x8", overrides={**TINY, "num_classes": 2}, labels=["dark", "bright"])
    monkeypatch.setattr(type(predictor.model), "forward", _brightness)
    timeline = video_timeline(predictor, tmp_path / "long.mp4", window=2.0, stride=1.0)
    assert len(timeline.spans) == 19 and timeline.spans[3] == (3.0, 5.0, 15, 25)
    leaders = [timeline.labels[c] for c in timeline.probabilities.argmax(1)]
    change = leaders.index("bright")
    assert set(leaders[:change]) == {"dark"} and set(leaders[change:]) == {"bright"}
    start, end, _, _ = timeline.spans[change]
    assert abs((start + end) / 2 - 10.0) <= 1.0  # the change at 10 s, to a window
    json_path, png_path = timeline.write(tmp_path / "out", topk=1)
    document = json.loads(json_path.read_text())
    assert [w["top"][0]["label"] for w in document["windows"]] == leaders
    assert Image.open(png_path).size[0] > 300


def test_window_spans_cover_the_video_and_a_short_video_is_one_window() -> None:
    assert window_spans(25, 10.0, 1.0, 0.5) == [(0.0, 1.0, 0, 10), (0.5, 1.5, 5, 15), (1.0, 2.0, 10, 20),
                                               (1.5, 2.5, 15, 25)]  # fmt: skip
    assert window_spans(12, 10.0, 2.0, 1.0) == [(0.0, 1.2, 0, 12)]
    with pytest.raises(ValueError, match="--window and --stride must be positive"):
        window_spans(25, 10.0, 0.0, 1.0)


def test_the_command_writes_a_detector_video_and_refuses_video_options_that_do_not_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = _moving_square(tmp_path / "square.mp4", count=6)
    checkpoint = str(_detector_checkpoint(tmp_path / "det.pt"))
    cli = ["predict", str(video), "--model", DETECTOR, "--checkpoint", checkpoint, "--out-dir", str(tmp_path / "o")]
    assert main([*cli, "--every", "3", "--json", "--score-threshold", "0"]) == 0
    (document,) = json.loads(capsys.readouterr().out)["videos"]
    assert (document["processed"], document["fps"], document["skipped"]) == (2, pytest.approx(10 / 3), [])
    assert _video(Path(document["video"]))[0] == 2 and len(_lines(Path(document["frames"]))) == 2
    assert main([*cli, "--timeline"]) == 2 and "not a detection model" in capsys.readouterr().err
    assert main([*cli, "--every", "0"]) == 2 and "--every must be >= 1" in capsys.readouterr().err
    image = tmp_path / "still.png"
    Image.new("RGB", (32, 32)).save(image)
    assert main([*cli[:2], str(image), *cli[2:]]) == 2 and "not video files: " in capsys.readouterr().err


def test_the_command_prints_and_writes_the_timeline_of_a_video_classifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = np.full((40, 32, 48, 3), 30, np.uint8)  # 8 s at 5 fps, bright from 4 s
    frames[20:] = 220
    write_video(tmp_path / "long.mp4", frames, fps=5)
    model = create_model("uniformer_tiny_motion", num_classes=2)
    checkpoint = tmp_path / "motion.pt"
    config = {"model": {"name": "uniformer_tiny_motion"}}
    torch.save({"format": TRAIN_FORMAT, "model": model.state_dict(), "config": config, "classes": ["dark", "bright"]},
               checkpoint)  # fmt: skip
    monkeypatch.setattr(type(model), "forward", _brightness)
    cli = ["predict", str(tmp_path / "long.mp4"), "--model", "uniformer_tiny_motion", "--checkpoint", str(checkpoint)]
    assert main([*cli, "--timeline", "--window", "2", "--stride", "2", "--out-dir", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("long.mp4  (4 windows of 2.0 s)")
    assert [line.split()[1] for line in out[1:5]] == ["dark", "dark", "bright", "bright"]
    assert out[5:] == [
        f"wrote {tmp_path / 'o' / 'long_timeline.json'}",
        f"wrote {tmp_path / 'o' / 'long_timeline.png'}",
    ]
    assert main([*cli, "--window", "2"]) == 2 and "add --timeline" in capsys.readouterr().err
    assert main([*cli, "--timeline", "--every", "2"]) == 2 and "--every K takes videos and a detection" in (
        capsys.readouterr().err
    )
