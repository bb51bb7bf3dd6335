"""int8 ONNX files (``uniformer quantize``): calibrated on files through predict's preprocessing, close to fp32."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import uniformer
from uniformer.data.synth import MOTIONS, render_clip, write_video
from uniformer.deploy.quantize import QUANTIZED_OPS, calibration_inputs, quantize_onnx
from uniformer.engine.predict import Predictor

onnx = pytest.importorskip("onnx", reason="needs the export extra: pip install 'uniformer[export]'")
ort = pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'uniformer[export]'")

NAME = "uniformer_tiny_motion"  # the classification demo's model: 8 frames of 64 x 64


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """A random tiny motion model, its fp32 export and its int8 file calibrated on 12 synthetic clips by the
    command line; 8 other clips held out."""
    from uniformer.cli import main

    folder = tmp_path_factory.mktemp("quantize")
    rng = np.random.default_rng(0)
    clips = []
    for i in range(20):
        path = folder / f"clip_{i:02d}.mp4"
        write_video(path, render_clip(MOTIONS[i % len(MOTIONS)], rng, num_frames=24, size=(64, 64)))
        clips.append(str(path))
    torch.manual_seed(0)
    model = uniformer.create_model(NAME).eval()
    uniformer.save_pretrained(model, folder / "weights")
    weights, fp32, int8 = str(folder / "weights"), folder / "fp32.onnx", folder / "int8.onnx"
    assert main(["export", NAME, "--checkpoint", weights, "--output", str(fp32)]) == 0
    listing = folder / "calibration.txt"
    listing.write_text("\n".join(clips[:12]) + "\n")
    args = ["quantize", NAME, "--checkpoint", weights, "--calibration", f"@{listing}", "--output", str(int8)]
    assert main(args) == 0
    predictor = Predictor(NAME, weights)
    held_out, _ = calibration_inputs(predictor, clips[12:])
    return fp32, int8, np.concatenate(held_out), calibration_inputs(predictor, clips[:12])[0]


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def test_int8_file_agrees_with_fp32_on_held_out_clips(quantized, tmp_path):
    """Held-out clips: the int8 logits stay close to fp32, and a file calibrated on the wrong value range (the same
    clips at 1% of their values, so the activations saturate) is several times further off. The random weights
    give logits with little spread between inputs, so top-1 agreement is measured on the trained demo models
    (``benchmarks/RESULTS.md``), not here."""
    fp32, int8, x, calibration = quantized
    assert x.shape[0] % 8 == 0 and x.shape[1:] == (3, 8, 64, 64)  # every test view of the 8 clips
    expected = _run(fp32, x)
    error = np.abs(_run(int8, x) - expected).max() / np.abs(expected).max()
    squeezed = quantize_onnx(fp32, tmp_path / "squeezed.onnx", [batch * 0.01 for batch in calibration])
    wrong = np.abs(_run(squeezed, x) - expected).max() / np.abs(expected).max()
    assert error <= 0.4 and wrong >= 2 * error


def test_int8_file_holds_int8_weights_and_the_fp32_metadata(quantized):
    fp32, int8, _, _ = quantized
    model, source = onnx.load(str(int8)), onnx.load(str(fp32))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    conv_and_matmul = [n for n in source.graph.node if n.op_type in QUANTIZED_OPS]
    assert len(int8_weights) >= sum(n.op_type == "Conv" for n in conv_and_matmul)
    assert {p.key: p.value for p in model.metadata_props} == {p.key: p.value for p in source.metadata_props}
    assert json.loads({p.key: p.value for p in model.metadata_props}["input_size"]) == [3, 8, 64, 64]


def test_quantize_leaves_out_unreadable_calibration_files_and_refuses_a_wrong_suffix(quantized, tmp_path, capsys):
    """A broken file is left out of the calibration inputs and named with its reason (an unreadable input still
    reaches the model as a placeholder in predict, so the readable ones are recorded again alone); none readable,
    an empty list or an output that is not .onnx is an error."""
    from uniformer.cli import main

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    predictor = Predictor(NAME)
    with pytest.raises(ValueError, match=r"none of the 1 calibration files could be read: .*broken.mp4 \("):
        calibration_inputs(predictor, [str(broken)])
    fp32, _, _, _ = quantized
    clip = str(fp32.parent / "clip_00.mp4")
    alone, _ = calibration_inputs(predictor, [clip])
    batches, skipped = calibration_inputs(predictor, [str(broken), clip])
    assert list(skipped) == [str(broken)] and len(batches) == len(alone)
    assert all(np.array_equal(a, b) for a, b in zip(batches, alone, strict=True))
    assert main(["quantize", NAME, "--calibration", clip, "--output", str(tmp_path / "m.pt2")]) == 2
    assert "suffix .onnx" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no calibration inputs"):
        quantize_onnx(tmp_path / "missing.onnx", tmp_path / "out.onnx", [])
