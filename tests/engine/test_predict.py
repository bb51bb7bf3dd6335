"""``uniformer predict`` / ``uniformer features``: the model's official test views, class names, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import uniformer
from uniformer.cli import main
from uniformer.data import EvalTransform, clip_indices, read_frames, video_info
from uniformer.engine.predict import Predictor

MODEL = "uniformer_tiny_motion"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"model": uniformer.create_model(MODEL).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def videos(motion_set: Path) -> list[Path]:
    return sorted((motion_set / "videos").glob("*/*_0000.mp4"))


def _reference_logits(path: Path, checkpoint: Path) -> torch.Tensor:
    """The multi-view test spelt out independently: 2 dense clips x 1 centre crop, mean of the logits."""
    info = uniformer.model_info(MODEL)
    model = uniformer.create_model(MODEL, checkpoint_path=checkpoint).eval()
    transform = EvalTransform(64, mean=info.mean, std=info.std)
    length = video_info(path).num_frames
    views = []
    for clip in range(info.test_clips):
        indices = clip_indices(length, num_frames=8, stride=4, mode="dense", clip_idx=clip, num_clips=2)
        views.append(transform(read_frames(path, indices)))
    with torch.no_grad():
        return model(torch.stack(views)).mean(0)


def test_predict_runs_the_official_views_and_names_the_classes(videos: list[Path], checkpoint: Path) -> None:
    predictor = Predictor(MODEL, checkpoint)
    predictions = predictor.predict(videos[:2], topk=3)
    for path, prediction in zip(videos[:2], predictions, strict=True):
        expected = _reference_logits(path, checkpoint).softmax(-1)
        values, classes = expected.topk(3)
        assert prediction.views == 2 and prediction.error is None
        assert [c for c, _, _ in prediction.top] == classes.tolist()
        np.testing.assert_allclose([p for _, _, p in prediction.top], values.numpy(), rtol=1e-4)
        assert [name for _, name, _ in prediction.top] == [uniformer.model_info(MODEL).labels[c] for c in classes]


def test_bf16_predictions_match_fp32(videos: list[Path], checkpoint: Path) -> None:
    fp32 = Predictor(MODEL, checkpoint).predict(videos[:3], topk=3)
    predictor = Predictor(MODEL, checkpoint, precision="bf16")
    bf16 = predictor.predict(videos[:3], topk=3)
    for a, b in zip(fp32, bf16, strict=True):
        assert a.top[0][0] == b.top[0][0]
        np.testing.assert_allclose([p for *_, p in b.top], [p for *_, p in a.top], atol=0.02)
    assert all(p.dtype == torch.float32 for p in predictor.model.parameters())  # the fast copy is separate
    with pytest.raises(ValueError, match="precision"):
        Predictor(MODEL, checkpoint, precision="fp16")


def test_unreadable_inputs_are_reported_not_dropped(videos: list[Path], checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    predictions = Predictor(MODEL, checkpoint).predict([videos[0], broken])
    assert predictions[0].error is None and len(predictions[0].top) == 5
    assert predictions[1].path == str(broken) and predictions[1].error and predictions[1].top == []
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        Predictor(MODEL, checkpoint).predict([tmp_path / "missing.mp4"])
    image = tmp_path / "frame.png"
    Image.new("RGB", (64, 64)).save(image)
    with pytest.raises(ValueError, match="video model.*frame.png"):
        Predictor(MODEL, checkpoint).predict([image])


def test_predict_cli_json_and_exit_status(videos: list[Path], checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(videos[0]), "--model", MODEL, "--checkpoint", str(checkpoint), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    top = out["predictions"][0]["top"]
    assert len(top) == 5 and top[0]["label"] in uniformer.model_info(MODEL).labels
    assert sum(t["probability"] for t in top) <= 1.0 + 1e-6
    assert main(["predict", str(videos[0]), "--model", MODEL, "--checkpoint", str(checkpoint), "--topk", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(2 views)") and lines[1].strip().startswith("1. ") and len(lines) == 3


def test_image_models_classify_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = uniformer.create_model("uniformer_small", depth=(1, 1, 1, 1), num_classes=1000)
    path = tmp_path / "small.pth"
    torch.save(model.state_dict(), path)
    image = tmp_path / "cat.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(image)
    (prediction,) = Predictor("uniformer_small", path, overrides=dict(depth=(1, 1, 1, 1))).predict([image], topk=1)
    assert prediction.views == 1 and prediction.top[0][1] == uniformer.load_labels("imagenet-1k")[prediction.top[0][0]]
    with torch.no_grad():  # timm's evaluation transform: resize to 224 / 0.875, centre crop 224, normalise
        from timm.data import create_transform

        x = create_transform(224, crop_pct=0.875, interpolation="bicubic")(Image.open(image).convert("RGB"))
        expected = model.eval()(x[None]).softmax(-1)[0]
    assert prediction.top[0][0] == int(expected.argmax()) and prediction.top[0][2] == pytest.approx(
        float(expected.max()), rel=1e-4
    )


def test_features_are_view_averaged_pre_logits(videos: list[Path], checkpoint: Path, tmp_path: Path) -> None:
    predictor = Predictor(MODEL, checkpoint)
    tensors, failed = predictor.features(videos[:2])
    assert failed == {} and tensors["features"].shape == (2, 256)
    # the head applied to the mean pooled feature is the mean of the view logits (the head is linear)
    torch.testing.assert_close(
        predictor.model.head(tensors["features"][0]), _reference_logits(videos[0], checkpoint), rtol=1e-4, atol=1e-5
    )
    out = tmp_path / "feats.safetensors"
    assert (
        main(
            ["features", *map(str, videos[:2]), "--model", MODEL, "--checkpoint", str(checkpoint), "--output", str(out)]
        )
        == 0
    )
    torch.testing.assert_close(load_file(out)["features"], tensors["features"])
    with safe_open(out, "pt") as f:
        assert json.loads(f.metadata()["inputs"]) == [str(v) for v in videos[:2]]
    npy = tmp_path / "feats.npy"
    assert (
        main(["features", str(videos[0]), "--model", MODEL, "--checkpoint", str(checkpoint), "--output", str(npy)]) == 0
    )
    assert np.load(npy).shape == (1, 256) and (tmp_path / "feats.paths.txt").read_text().strip() == str(videos[0])


def test_stage_maps_of_the_centre_view(videos: list[Path], checkpoint: Path) -> None:
    tensors, _ = Predictor(MODEL, checkpoint).features(videos[:1], stage_maps=True)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "stage1": (1, 32, 4, 16, 16),
        "stage2": (1, 64, 4, 8, 8),
        "stage3": (1, 128, 4, 4, 4),
        "stage4": (1, 256, 4, 2, 2),
    }


def test_a_training_checkpoint_brings_its_architecture_and_class_names(trained_run, videos: list[Path]) -> None:
    out, _ = trained_run
    predictor = Predictor(MODEL, out / "checkpoints" / "best.pt")
    assert predictor.model.embed_dim == (16, 32, 64, 128)  # the tiny run's model.overrides
    assert predictor.setup.labels == ["moving_right", "moving_left", "moving_down", "moving_up"]  # its classes.txt
    assert (predictor.setup.spec.num_frames, predictor.setup.spec.stride, predictor.setup.spec.crop_size) == (4, 2, 32)
    (prediction,) = predictor.predict(videos[:1], topk=4)
    assert sorted(name for _, name, _ in prediction.top) == sorted(predictor.setup.labels)
