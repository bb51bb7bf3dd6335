"""Configs: errors name the file and key, ``base:`` inheritance, registry defaults, learning-rate scaling."""

from __future__ import annotations

from pathlib import Path

import pytest

from uniformer.engine.config import learning_rate, load_config, resolve_config

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_misspelt_keys_are_errors_naming_file_and_key(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.yaml", "model:\n  name: uniformer_small\ntrainer:\n  max_epoch: 3\n")
    with pytest.raises(
        ValueError, match=r"bad\.yaml: unknown config key 'trainer\.max_epoch' \(Did you mean.*max_epochs"
    ):
        load_config(bad)
    good = _write(tmp_path / "good.yaml", "model:\n  name: uniformer_small\n")
    with pytest.raises(
        ValueError, match=r"command line: unknown config key 'trainer\.max_step' \(Did you mean.*max_steps"
    ):
        load_config(good, ["trainer.max_step=5"])
    with pytest.raises(ValueError, match=r"command line: trainer\.batch_size: Value 'lots'"):
        load_config(good, ["trainer.batch_size=lots"])
    with pytest.raises(ValueError, match="overrides must look like key=value"):
        load_config(good, ["trainer.max_steps"])
    with pytest.raises(ValueError, match=r"data\.root is not set"):
        resolve_config(load_config(good))


def test_base_chain_is_merged_base_first_and_output_dir_defaults_to_the_recipe_name(tmp_path: Path) -> None:
    _write(tmp_path / "common.yaml", "seed: 3\ntrainer:\n  max_epochs: 7\n  batch_size: 32\n")
    child = _write(
        tmp_path / "recipe.yaml", "base: common.yaml\nmodel:\n  name: uniformer_small\ntrainer:\n  batch_size: 16\n"
    )
    cfg = load_config(child, ["trainer.max_epochs=2"])
    assert (cfg.seed, cfg.trainer.batch_size, cfg.trainer.max_epochs) == (3, 16, 2)
    assert cfg.output_dir == "runs/recipe"
    loop = _write(tmp_path / "loop.yaml", "base: loop.yaml\n")
    with pytest.raises(ValueError, match="loops back"):
        load_config(loop)


def test_registry_fills_what_the_recipe_leaves_unset() -> None:
    k400 = resolve_config(
        load_config(REPO / "src/uniformer/configs/video/k400_uniformer_small_16x4.yaml", ["data.root=/data"])
    )
    assert (k400.data.num_frames, k400.data.stride, k400.data.sampling) == (16, 4, "dense")
    assert (k400.data.test_clips, k400.data.test_crops, k400.data.crop_size) == (4, 1, 224)
    assert list(k400.data.mean) == [0.45, 0.45, 0.45]
    ssv2 = resolve_config(
        load_config(REPO / "src/uniformer/configs/video/sthv2_uniformer_base_32_prek600.yaml", ["data.root=/data"])
    )
    assert (ssv2.data.num_frames, ssv2.data.stride, ssv2.data.sampling) == (32, None, "segment")
    assert (ssv2.data.test_clips, ssv2.data.test_crops, ssv2.data.flip) == (1, 3, False)
    overridden = resolve_config(
        load_config(
            REPO / "src/uniformer/configs/video/k400_uniformer_small_16x4.yaml",
            ["data.root=/data", "data.test_clips=2"],
        )
    )
    assert overridden.data.test_clips == 2


def test_learning_rate_scales_from_the_official_batch() -> None:
    image = load_config(REPO / "src/uniformer/configs/image/in1k_uniformer_small.yaml")
    assert learning_rate(image, 1024) == pytest.approx(5e-4 * 1024 / 512)
    assert learning_rate(image, 256) == pytest.approx(5e-4 * 256 / 512)
    video = load_config(REPO / "src/uniformer/configs/video/k400_uniformer_small_8x8.yaml")
    assert learning_rate(video, video.trainer.batch_size) == pytest.approx(4e-4)  # SOLVER.BASE_LR at the official batch
    assert (
        learning_rate(
            load_config(REPO / "src/uniformer/configs/video/k400_uniformer_small_8x8.yaml", ["optimizer.lr=0.01"]), 8
        )
        == 0.01
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.precision=fp8", "trainer.precision must be one of fp32, bf16, fp16"),
        ("eval.aggregate=max", "eval.aggregate must be one of sum, softmax_mean"),
        ("data.crop_size=100", "data.crop_size must be a multiple of 32"),
        ("data.format=imagefolder", "data.format .for the video model"),
        ("trainer.batch_size=0", "trainer.batch_size must be > 0"),
    ],
)
def test_bad_values_are_rejected_with_the_key(override: str, message: str) -> None:
    cfg = load_config(
        REPO / "src/uniformer/configs/video/k400_uniformer_small_16x4.yaml", ["data.root=/data", override]
    )
    with pytest.raises(ValueError, match=message):
        resolve_config(cfg)
