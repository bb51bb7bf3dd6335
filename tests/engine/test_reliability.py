"""What a user relies on after fine-tuning: predict gives what eval measured, names travel with the weights, and
no command destroys a run's files (unreadable checkpoints, a second run, signals), limits and mismatches are said.
"""

from __future__ import annotations

import csv
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import uniformer
from uniformer.cli import main
from uniformer.engine import evaluate, load_config, train
from uniformer.engine.checkpointing import RunLock
from uniformer.engine.predict import Predictor
from uniformer.models.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "src" / "uniformer" / "configs" / "demo" / "motion_tiny.yaml"
MODEL = "uniformer_tiny_motion"
NAMES = ["moving_right", "moving_left", "moving_down", "moving_up"]


def _eval_predictions(out_dir: Path) -> dict[str, int]:
    with open(out_dir / "predictions.csv", newline="") as f:
        return {row["path"]: int(row["prediction"]) for row in csv.DictReader(f)}


def test_fine_tuned_video_model_predicts_what_eval_measured(trained_run, tiny_config, motion_set, tmp_path) -> None:
    out, _ = trained_run
    best = out / "checkpoints" / "best.pt"
    report = evaluate(tiny_config(out, f"eval.checkpoint={best}", f"eval.output_dir={tmp_path / 'eval'}"))
    expected = _eval_predictions(tmp_path / "eval")
    assert len(expected) == 4 and report.metrics.values["videos"] == 4
    predictor = Predictor(MODEL, best)
    assert predictor.model.num_classes == 4 and predictor.setup.labels == NAMES
    saved = read_checkpoint(best).state_dict
    assert torch.equal(predictor.model.head.weight, saved["head.weight"])  # the fine-tuned head, not a new one
    predictions = predictor.predict(sorted(expected), topk=1)
    assert {p.path: p.top[0][0] for p in predictions} == expected


def test_create_model_keeps_a_checkpoint_head_of_the_asked_class_count(trained_run, caplog) -> None:
    best = trained_run[0] / "checkpoints" / "best.pt"
    saved = read_checkpoint(best).state_dict
    with caplog.at_level(logging.WARNING):
        kept = uniformer.create_model(MODEL, checkpoint_path=best, num_classes=4)
        default = uniformer.create_model(MODEL, checkpoint_path=best)
    assert "re-initialised" not in caplog.text
    assert torch.equal(kept.head.weight, saved["head.weight"]) and torch.equal(
        default.head.weight, saved["head.weight"]
    )
    with caplog.at_level(logging.WARNING):
        other = uniformer.create_model(MODEL, checkpoint_path=best, num_classes=6)
    assert other.num_classes == 6 and "re-initialised for 6 classes (the checkpoint's 4-class head" in caplog.text


@pytest.fixture(scope="module")
def image_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of 48 px images told apart by colour: 8 training and 4 validation images each."""
    root = tmp_path_factory.mktemp("images")
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", 8), ("val", 4)):
        for name, base in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                noise = torch.randint(-25, 25, (3,), generator=generator).tolist()
                Image.new("RGB", (56, 48), tuple(c + n for c, n in zip(base, noise, strict=True))).save(
                    folder / f"{i}.png"
                )
    return root


def test_fine_tuned_image_model_predicts_what_eval_measured(image_set: Path, tmp_path: Path) -> None:
    overrides = [
        f"data.root={image_set}",
        f"output_dir={tmp_path / 'run'}",
        "model.name=uniformer_small",
        "model.overrides.depth=[1,1,1,1]",
        "model.overrides.embed_dim=[16,32,64,128]",
        "model.overrides.head_dim=16",
        "model.drop_path_rate=0",
        "data.format=imagefolder",
        "data.crop_size=32",
        "data.rand_augment=null",
        "data.num_workers=0",
        "mixup.prob=0",
        "trainer.batch_size=4",
        "trainer.max_epochs=2",
        "trainer.precision=fp32",
        "trainer.progress=false",
        "trainer.tensorboard=false",
    ]
    config = REPO / "src" / "uniformer" / "configs" / "image" / "in1k_uniformer_small.yaml"
    train(load_config(config, overrides))
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    assert read_checkpoint(best).class_names == ["blue", "red"]  # ImageFolder's sorted class folders
    evaluate(load_config(config, [*overrides, f"eval.checkpoint={best}", f"eval.output_dir={tmp_path / 'eval'}"]))
    expected = _eval_predictions(tmp_path / "eval")
    predictor = Predictor("uniformer_small", best)
    assert predictor.setup.labels == ["blue", "red"] and predictor.setup.spec.crop_size == 32
    assert {p.path: p.top[0][0] for p in predictor.predict(sorted(expected), topk=1)} == expected


def test_class_names_and_views_travel_with_the_weights(trained_run, tmp_path: Path, monkeypatch) -> None:
    best = trained_run[0] / "checkpoints" / "best.pt"
    file = read_checkpoint(best)
    assert file.class_names == NAMES and file.clip["num_frames"] == 4 and file.clip["crop_size"] == 32
    converted = tmp_path / "tiny.safetensors"
    assert main(["convert", str(best), str(converted)]) == 0
    monkeypatch.chdir(tmp_path)  # another directory: nothing is re-read relative to the current one
    for weights in (best, converted):
        predictor = Predictor(MODEL, weights)
        assert predictor.setup.labels == NAMES and predictor.model.embed_dim == (16, 32, 64, 128)
        assert (predictor.setup.spec.num_frames, predictor.setup.spec.stride, predictor.setup.spec.crop_size) == (
            4,
            2,
            32,
        )


def test_a_command_reads_the_checkpoint_once(trained_run, motion_set: Path, monkeypatch, tmp_path: Path) -> None:
    best = trained_run[0] / "checkpoints" / "best.pt"
    reads: list[str] = []
    real_load = torch.load

    def counting_load(path, *args, **kwargs):
        reads.append(str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    video = sorted((motion_set / "videos").glob("*/*_0000.mp4"))[0]
    assert main(["predict", str(video), "--model", MODEL, "--checkpoint", str(best), "--json"]) == 0
    assert reads.count(str(best)) == 1
    reads.clear()
    overrides = [f"data.root={motion_set}", f"output_dir={tmp_path}", "trainer.progress=false", "data.num_workers=0"]
    overrides += ["model.overrides.depth=[1,1,1,1]", "model.overrides.embed_dim=[16,32,64,128]", "data.num_frames=4"]
    overrides += ["model.overrides.head_dim=16", "data.stride=2", "data.crop_size=32", f"checkpoint={best}"]
    assert main(["eval", str(DEMO_CONFIG), *overrides]) == 0
    assert reads.count(str(best)) == 1


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_auto_with_no_readable_checkpoint_stops_and_destroys_nothing(
    trained_run, tiny_overrides, tmp_path, capsys
):
    run = tmp_path / "finished"
    shutil.copytree(trained_run[0], run)
    for path in (run / "checkpoints").glob("checkpoint-*.pt"):
        path.write_bytes(path.read_bytes()[:1000])  # truncated, as by a full disk
    before = _snapshot(run)
    status = main(["train", str(DEMO_CONFIG), *tiny_overrides(run, "trainer.max_epochs=4", "trainer.resume=auto")])
    err = capsys.readouterr().err
    assert status == 2 and "none of the 2 checkpoint(s)" in err
    assert "checkpoint-00000015.pt" in err and "checkpoint-00000020.pt" in err
    after = _snapshot(run)
    after.pop("train.log", None), before.pop("train.log", None)  # the refusal itself is logged
    assert after == before  # metrics.jsonl, best.pt, config.yaml untouched; nothing pruned


def test_a_full_disk_at_a_checkpoint_says_so_and_the_run_resumes_once_there_is_space(
    tiny_overrides, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    save, calls = torch.save, []

    def disk_fills_on_the_second_checkpoint(state: object, handle: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(state, handle)

    monkeypatch.setattr(torch, "save", disk_fills_on_the_second_checkpoint)
    status = main(["train", str(DEMO_CONFIG), *tiny_overrides(tmp_path, "trainer.max_epochs=2")])
    err = capsys.readouterr().err
    folder = tmp_path / "checkpoints"
    assert status == 2 and "Traceback" not in err
    assert f"error: no space left on {folder} while writing checkpoint 10 (checkpoint-00000005.pt is intact)" in err
    assert "free space and resume with trainer.resume=auto" in err
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "checkpoint-00000005.pt"]  # no partial file
    monkeypatch.setattr(torch, "save", save)  # space freed
    resumed = main(
        ["train", str(DEMO_CONFIG), *tiny_overrides(tmp_path, "trainer.max_epochs=2", "trainer.resume=auto")]
    )
    assert resumed == 0 and (folder / "checkpoint-00000010.pt").is_file()


def test_a_new_run_into_a_finished_runs_folder_is_refused(trained_run, tiny_overrides, capsys) -> None:
    out = trained_run[0]
    assert main(["train", str(DEMO_CONFIG), *tiny_overrides(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_a_second_training_into_a_locked_folder_is_refused(tiny_overrides, tmp_path: Path, capsys) -> None:
    lock = RunLock(tmp_path)
    lock.acquire()
    try:
        assert main(["train", str(DEMO_CONFIG), *tiny_overrides(tmp_path, "trainer.max_steps=1")]) == 2
    finally:
        lock.release()
    assert "is in use by process" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()


def _start_training(out: Path, overrides: list[str]) -> subprocess.Popen[str]:
    env = {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.Popen(
        [sys.executable, "-m", "uniformer.cli", "train", str(DEMO_CONFIG), *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_steps(out: Path, steps: int, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        metrics = out / "metrics.jsonl"
        if metrics.is_file() and sum('"kind": "step"' in line for line in metrics.read_text().splitlines()) >= steps:
            return
        time.sleep(0.1)
    stderr = process.stderr.read() if process.poll() is not None and process.stderr else ""
    raise AssertionError(f"training did not reach step {steps} (exit status {process.poll()}): {stderr[-3000:]}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_a_signal_checkpoints_the_step_and_says_how_to_continue(signum, tiny_overrides, tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = tiny_overrides(out, "trainer.max_epochs=4", "data.val_list=null")
    process = _start_training(out, overrides)
    _wait_for_steps(out, 2, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("interrupted at step"))
    step = int(line.split()[3])
    assert line.endswith("continue with trainer.resume=auto") and 2 <= step < 20
    assert (out / "checkpoints" / f"checkpoint-{step:08d}.pt").is_file()
    assert not (out / ".lock").exists()
    if signum == signal.SIGTERM:
        resumed = _start_training(out, [*overrides, "trainer.resume=auto"])
        _, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        assert f"at step {step} " in err and (out / "checkpoints" / "checkpoint-00000020.pt").is_file()


def test_limits_and_class_count_mismatches_are_said(tiny_config, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO):
        result = train(tiny_config(tmp_path / "a", "trainer.max_epochs=4", "trainer.max_steps=6", "data.val_list=null"))
    assert result.steps == 6
    assert "trainer.max_steps=6 ends the run before trainer.max_epochs=4 (4 epochs x 5 steps = 20 steps)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train(tiny_config(tmp_path / "b", "trainer.max_steps=1", "model.num_classes=5", "data.val_list=null"))
    assert "model.num_classes=5 but the training data has 4 classes" in caplog.text
    with pytest.raises(ValueError, match="model.num_classes=3 but the training data has 4 classes"):
        train(tiny_config(tmp_path / "c", "trainer.max_steps=1", "model.num_classes=3", "data.val_list=null"))


def test_eval_of_weights_without_a_classifier_asks_for_the_class_count(
    trained_run, tiny_config, tmp_path: Path
) -> None:
    state = read_checkpoint(trained_run[0] / "checkpoints" / "best.pt").state_dict
    headless = tmp_path / "backbone.pth"
    torch.save({"model": {k: v for k, v in state.items() if not k.startswith("head.")}}, headless)
    with pytest.raises(ValueError, match=r"backbone.pth: no classifier \(head.weight\) in the checkpoint; set model"):
        evaluate(tiny_config(tmp_path, f"eval.checkpoint={headless}"))


def test_eval_refuses_a_test_set_of_other_classes(trained_run, tiny_config, motion_set: Path, tmp_path: Path) -> None:
    best = trained_run[0] / "checkpoints" / "best.pt"
    renamed = tmp_path / "renamed.txt"
    renamed.write_text("\n".join(["right", "left", "down", "up"]) + "\n")
    with pytest.raises(ValueError, match="class names differ from the weights'.*0: 'right' vs 'moving_right'"):
        evaluate(tiny_config(tmp_path, f"eval.checkpoint={best}", f"data.labels_file={renamed}"))
    five = tmp_path / "five.txt"
    five.write_text("\n".join([*NAMES, "spinning"]) + "\n")
    with pytest.raises(ValueError, match="has 4 classes but the test set has 5"):
        evaluate(tiny_config(tmp_path, f"eval.checkpoint={best}", f"data.labels_file={five}"))

    # the same classes in another order: refused as they are, scored by name on request
    order = [3, 2, 1, 0]
    shuffled_names = tmp_path / "reordered.txt"
    shuffled_names.write_text("\n".join(NAMES[i] for i in order) + "\n")
    listing = tmp_path / "val_reordered.txt"
    lines = []
    for line in (motion_set / "val.txt").read_text().splitlines():
        path, label = line.rsplit(" ", 1)
        lines.append(f"{motion_set / path if not Path(path).is_absolute() else path} {order.index(int(label))}")
    listing.write_text("\n".join(lines) + "\n")
    common = [f"eval.checkpoint={best}", f"data.labels_file={shuffled_names}", f"data.val_list={listing}"]
    with pytest.raises(ValueError, match="class names differ"):
        evaluate(tiny_config(tmp_path, *common))
    mapped = evaluate(tiny_config(tmp_path, *common, "eval.match_classes=by_name", f"eval.output_dir={tmp_path / 'm'}"))
    plain = evaluate(tiny_config(tmp_path, f"eval.checkpoint={best}", f"eval.output_dir={tmp_path / 'p'}"))
    assert mapped.metrics.primary == plain.metrics.primary
