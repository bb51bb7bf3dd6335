"""ONNX and torch.export files: onnxruntime and the loaded program equal the PyTorch model, metadata travels.

One export per model (module-scoped): each takes several seconds, most of it torch.export's tracing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import uniformer
from uniformer.deploy.export import OPSET, export_model, export_program, save_onnx, save_program
from uniformer.deploy.hub import hub_config

from golden import GOLDEN, assert_close_to_golden, golden_cases, golden_model_kwargs

onnx = pytest.importorskip("onnx", reason="needs the export extra: pip install 'uniformer[export]'")
ort = pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'uniformer[export]'")

TINY = dict(depth=(1, 1, 1, 1), embed_dim=(32, 64, 128, 256), head_dim=32)
CASES = {
    # tiny image model; tiny video model with divided space-time attention; the demo model as the zoo has it
    "image": ("uniformer_small", dict(TINY, num_classes=5), {"crop_size": 64}),
    "video": ("uniformer_small_k400_16x4", dict(TINY, num_classes=4, split=True), {"crop_size": 64, "num_frames": 4}),
    "demo": ("uniformer_tiny_motion", {}, None),
}


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    name, overrides, clip = CASES[request.param]
    torch.manual_seed(0)
    model = uniformer.create_model(name, **overrides).eval()
    folder = tmp_path_factory.mktemp(request.param)
    config = hub_config(model, clip=clip)
    program = export_program(model, config)  # what export_model does, traced once for both files
    onnx_path = save_onnx(program, config, folder / "model.onnx")
    pt2_path = save_program(program, config, folder / "model.pt2")
    return name, model, onnx_path, pt2_path


def _meta(path):
    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize("batch", [1, 2])
def test_onnxruntime_equals_pytorch(exported, batch):
    name, model, onnx_path, _ = exported
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # the batch axis is dynamic
    x = torch.randn(batch, *json.loads(_meta(onnx_path)["input_size"]), generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model(x).numpy()
    (logits,) = session.run(["logits"], {"input": x.numpy()})
    assert logits.shape == expected.shape
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()


def test_onnx_metadata_says_how_to_feed_the_model(exported):
    name, model, onnx_path, _ = exported
    meta = {key: json.loads(value) for key, value in _meta(onnx_path).items()}
    proto = onnx.load(str(onnx_path))
    assert meta["opset"] == OPSET == next(o.version for o in proto.opset_import if o.domain == "")
    assert meta["architecture"] == name and len(meta["class_names"]) == model.num_classes
    info = uniformer.model_info(name)
    assert meta["mean"] == list(info.mean) and meta["std"] == list(info.std)
    expected_size = {
        "uniformer_small": [3, 64, 64],
        "uniformer_small_k400_16x4": [3, 4, 64, 64],
        "uniformer_tiny_motion": [3, 8, 64, 64],
    }[name]
    assert meta["input_size"] == expected_size
    if info.task == "video":
        assert meta["input_layout"] == "NCTHW" and meta["num_frames"] == expected_size[1]
        assert meta["clip"]["sampling"] == info.sampling
    else:
        assert meta["input_layout"] == "NCHW" and meta["num_frames"] is None
    if name == "uniformer_tiny_motion":
        assert meta["class_names"] == info.labels


def test_exported_program_equals_eager(exported):
    name, model, _, pt2_path = exported
    extra = {"config.json": ""}
    loaded = torch.export.load(str(pt2_path), extra_files=extra).module()
    assert json.loads(extra["config.json"])["architecture"] == name
    shape = json.loads(_meta(exported[2])["input_size"])
    for batch in (1, 3):
        x = torch.randn(batch, *shape)
        with torch.no_grad():
            expected = model(x)
            assert (loaded(x) - expected).abs().max() <= 1e-4 * expected.abs().max()


LIGHT_CASES = {  # golden light weights (their token scores are far from ties) in a light zoo entry's architecture
    "light_image_tiny": ("uniformer_xxs_160", {"crop_size": 64}),
    "light_video_tiny_fp32": ("uniformer_xxs_k400_8f_160", {"crop_size": 64, "num_frames": 8}),
}


@pytest.mark.parametrize("case", list(LIGHT_CASES))
def test_a_light_model_exports_with_its_token_selection(case, tmp_path):
    """The gathers, scatters and top-k ranking of the light blocks trace at static token counts: onnxruntime and
    the loaded program reproduce the eager model and the official output, for batches of 1 and 3."""
    golden = {c["name"]: c for c in golden_cases()}[case]
    name, clip = LIGHT_CASES[case]
    model = uniformer.create_model(name, **golden_model_kwargs(golden)).eval()
    uniformer.load_checkpoint(model, GOLDEN / golden["checkpoint"])
    config = hub_config(model, clip=clip)
    program = export_program(model, config)
    session = ort.InferenceSession(
        str(save_onnx(program, config, tmp_path / "model.onnx")), providers=["CPUExecutionProvider"]
    )
    loaded = torch.export.load(str(save_program(program, config, tmp_path / "model.pt2"))).module()
    io = load_file(GOLDEN / golden["io"])
    (logits,) = session.run(["logits"], {"input": io["input"].numpy()})
    assert_close_to_golden(torch.from_numpy(logits), io["output"])
    for batch in (1, 3):
        x = torch.randn(batch, *io["input"].shape[1:], generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x)
            assert (loaded(x) - expected).abs().max() <= 1e-4 * expected.abs().max()
        (logits,) = session.run(["logits"], {"input": x.numpy()})
        assert np.abs(logits - expected.numpy()).max() <= 1e-4 * np.abs(expected.numpy()).max()


def test_export_refuses_a_wrong_suffix_and_format(tmp_path):
    model = uniformer.create_model("uniformer_tiny_motion")
    with pytest.raises(ValueError, match="suffix .onnx"):
        export_model(model, tmp_path / "model.pt2", "onnx")
    with pytest.raises(ValueError, match="export format must be one of onnx, exported-program"):
        export_model(model, tmp_path / "model.onnx", "tflite")


def test_export_command_writes_a_program_of_the_checkpoint(tmp_path, capsys):
    """``uniformer export NAME --checkpoint FOLDER --format exported-program``: the file holds those weights."""
    from uniformer.cli import main

    torch.manual_seed(1)
    model = uniformer.create_model("uniformer_tiny_motion").eval()
    uniformer.save_pretrained(model, tmp_path / "weights")
    out = tmp_path / "motion.pt2"
    args = ["export", "uniformer_tiny_motion", "--checkpoint", str(tmp_path / "weights"), "--output", str(out)]
    assert main([*args, "--format", "exported-program"]) == 0
    assert f"wrote {out} (exported-program" in capsys.readouterr().out
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        expected = model(x)
        assert (torch.export.load(str(out)).module()(x) - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert main([*args, "--format", "onnx"]) == 2  # the suffix says .pt2: refused before any tracing
    assert "an onnx file is written with the suffix .onnx" in capsys.readouterr().err
