"""Checkpoint files: every official wrapper loads, anything that does not fit is an error that lists it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from uniformer import CheckpointError, UniFormer, load_checkpoint
from uniformer.cli import main
from uniformer.models.checkpoint import read_state_dict

from golden import GOLDEN, golden_cases, golden_model_kwargs

IMAGE_CASE = next(c for c in golden_cases() if c["name"] == "image_tiny")


def _image_state() -> dict[str, torch.Tensor]:
    return torch.load(GOLDEN / "image_tiny.pth", weights_only=True)["model"]


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model": sd, "epoch": 3, "args": __import__("argparse").Namespace(lr=1e-3)},
        lambda sd: {"model_state": sd, "optimizer_state": {}, "cfg": "TRAIN:\n  ENABLE: True\n"},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: sd,
    ],
    ids=["deit-model", "slowfast-model_state", "state_dict-ddp-prefix", "bare"],
)
def test_every_official_wrapper_loads_to_identical_weights(tmp_path: Path, wrap) -> None:
    state = _image_state()
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(state), path)
    model = load_checkpoint(UniFormer(**golden_model_kwargs(IMAGE_CASE)), path)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_safetensors_round_trip_through_convert(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "image_tiny.safetensors"
    assert main(["convert", str(GOLDEN / "image_tiny.pth"), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    converted = load_file(out)
    for key, value in _image_state().items():
        assert torch.equal(converted[key], value), key
    model = load_checkpoint(UniFormer(**golden_model_kwargs(IMAGE_CASE)), out)
    assert torch.equal(model.head.weight, converted["head.weight"])


def test_convert_checks_the_model_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "never.safetensors"
    assert main(["convert", str(GOLDEN / "image_tiny.pth"), str(out), "--model", "uniformer_small"]) == 2
    assert "does not fit" in capsys.readouterr().err
    assert not out.exists() and not any(tmp_path.iterdir())


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": _image_state(), "payload": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refusing to load.*GLOBAL posix\.system") as refused:
        read_state_dict(path)
    assert "weights_only" not in str(refused.value)  # never the advice to load it unsafely


def test_mismatches_are_listed_never_loaded_silently(tmp_path: Path) -> None:
    state = _image_state()
    state.pop("blocks1.0.conv1.weight")
    state["extra.weight"] = torch.zeros(1)
    state["head.weight"] = torch.zeros(3, 128)
    path = tmp_path / "bad.pth"
    torch.save({"model": state}, path)
    model = UniFormer(**golden_model_kwargs(IMAGE_CASE))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, path)
    message = str(err.value)
    assert "1 missing keys: blocks1.0.conv1.weight" in message
    assert "1 unexpected keys: extra.weight" in message
    assert "head.weight: checkpoint (3, 128) vs model (10, 128)" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_an_image_checkpoint_inflates_into_a_video_model() -> None:
    """As the official video code starts from ImageNet: strict loading refuses (with the hint), the default
    inflates; an image classifier of another class count is replaced, every other tensor is the inflated one."""
    from uniformer import create_model, inflate_2d_to_3d

    kwargs = {**golden_model_kwargs(IMAGE_CASE), "video": True}
    image_file = GOLDEN / "image_tiny.pth"
    video = UniFormer(**kwargs)
    with pytest.raises(CheckpointError, match="inflate"):
        load_checkpoint(video, image_file, inflate=False)
    load_checkpoint(video, image_file)
    expected = inflate_2d_to_3d(read_state_dict(image_file), video)
    assert all(torch.equal(v, expected[k]) for k, v in video.state_dict().items())  # same classes: head kept

    arch = {k: kwargs[k] for k in ("depth", "embed_dim", "head_dim", "mlp_ratio", "qkv_bias")}
    zoo = create_model("uniformer_small_k400_16x4", checkpoint_path=image_file, **arch)
    assert zoo.head.weight.shape[0] == 400 != kwargs["num_classes"]
    for key, value in zoo.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, expected[key]), key


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        read_state_dict(junk)
    optimizer_only = tmp_path / "optim.pth"
    torch.save({"optimizer": {"lr": 1.0}}, optimizer_only)
    with pytest.raises(CheckpointError, match="no state dict found"):
        read_state_dict(optimizer_only)


def test_non_strict_loading_is_explicit_and_loads_what_fits(tmp_path: Path) -> None:
    state = _image_state()
    state["head.weight"] = torch.zeros(3, 128)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    model = load_checkpoint(UniFormer(**golden_model_kwargs(IMAGE_CASE)), path, strict=False)
    assert torch.equal(model.state_dict()["blocks1.0.conv1.weight"], state["blocks1.0.conv1.weight"])
    assert model.head.weight.shape == (10, 128)
