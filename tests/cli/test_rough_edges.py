"""The edges a new user hits first: --version, overrides after options, readable errors, early checks, warnings."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import uniformer
from uniformer._progress import progress_enabled
from uniformer.cli import main
from uniformer.data import check_videos

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(REPO / "src" / "uniformer" / "configs" / "demo" / "motion_tiny.yaml")


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"uniformer {uniformer.__version__}"


def test_dry_run_takes_overrides_after_the_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "data"
    (root / "train" / "a").mkdir(parents=True)
    assert main(["train", DEMO_CONFIG, "--dry-run", f"data.root={root}", "data.format=folder"]) == 2
    assert "no videos found" in capsys.readouterr().err  # the override reached the config (an empty folder tree)
    with pytest.raises(SystemExit):
        main(["models", "--dry-run", "x=1"])  # commands without overrides still reject stray arguments


def test_a_wrong_architecture_error_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "small.pth"
    torch.save({"model": uniformer.create_model("uniformer_small").state_dict()}, path)
    with pytest.raises(uniformer.CheckpointError) as err:
        uniformer.create_model("uniformer_base", checkpoint_path=path)
    message = str(err.value)
    assert len(message) < 2500 and "more" in message and "missing keys" in message


def test_features_checks_its_output_before_running_the_model(monkeypatch, tmp_path: Path, capsys) -> None:
    def never(*args, **kwargs):
        raise AssertionError("the model must not be built for an output that cannot be written")

    monkeypatch.setattr("uniformer.engine.predict.Predictor.__init__", never)
    args = ["features", str(tmp_path), "--model", "uniformer_tiny_motion"]
    assert main([*args, "--output", str(tmp_path / "f.txt")]) == 2
    assert "written as .safetensors or .npy" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "f.npy"), "--stage-maps"]) == 2
    assert ".npy holds one array" in capsys.readouterr().err


def test_predicting_with_random_weights_says_so(caplog, tmp_path: Path) -> None:
    from uniformer.engine.predict import Predictor

    with caplog.at_level(logging.WARNING):
        Predictor("uniformer_tiny_motion")
    assert "the weights are random" in caplog.text


def test_progress_bars_only_on_a_terminal(monkeypatch) -> None:
    assert not progress_enabled(True)  # pytest captures stderr: not a terminal
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert progress_enabled(True) and not progress_enabled(False)
    monkeypatch.setenv("UNIFORMER_NO_PROGRESS", "1")
    assert not progress_enabled(True)


def test_data_check_decodes_frame_folders_as_training_does(tmp_path: Path) -> None:
    """Frames of two sizes decode one by one, but no clip can be made of them: broken, with the reason."""
    good, mixed = tmp_path / "good", tmp_path / "mixed"
    for folder, sizes in ((good, [(32, 24)] * 4), (mixed, [(32, 24)] * 3 + [(40, 24)])):
        folder.mkdir()
        for i, size in enumerate(sizes):
            Image.fromarray(np.full((size[1], size[0], 3), 60 * i, np.uint8)).save(folder / f"{i + 1:05d}.jpg")
    report = check_videos(tmp_path, workers=1, progress=False)
    status = {Path(f.path).name: (f.status, f.reason) for f in report.files}
    assert status["good"] == ("ok", "")
    assert status["mixed"][0] == "broken" and "differ in size" in status["mixed"][1]


def test_predict_checks_its_output_folder_before_building_the_model(monkeypatch, tmp_path: Path, capsys) -> None:
    def never(*args, **kwargs):
        raise AssertionError("the model must not be built for an output that cannot be written")

    monkeypatch.setattr("uniformer.engine.predict.create_model", never)
    image, taken = tmp_path / "a.png", tmp_path / "taken"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    taken.write_text("a file")
    for model in ("uniformer_small_fpn_ade20k", "uniformer_small_h14_mask_rcnn_coco_1x"):
        assert main(["predict", str(image), "--model", model, "--out-dir", str(taken)]) == 2
        assert f"--out-dir {taken}: exists and is not a folder" in capsys.readouterr().err
    assert main(["predict", str(image), "--model", "uniformer_small", "--out-dir", str(tmp_path / "o")]) == 2
    assert "the classification task writes no prediction files (drop --out-dir)" in capsys.readouterr().err
