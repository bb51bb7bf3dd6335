"""ONNX and torch.export files of the dense tasks: parity with PyTorch, dynamic axes, metadata; detection refused.

One export per model (module-scoped): tracing a tiny segmentor with a dynamic height and width takes tens of
seconds on a loaded machine, so the FPN program is traced once for both files.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

import uniformer
from uniformer.deploy.export import dense_config, export_model, export_program, save_onnx, save_program

onnx = pytest.importorskip("onnx", reason="needs the export extra: pip install 'uniformer[export]'")
ort = pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'uniformer[export]'")

TINY = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16)
SEG, UPERNET, POSE = (
    "uniformer_small_fpn_ade20k",
    "uniformer_small_upernet_ade20k",
    "uniformer_small_topdown_coco_256x192",
)
CLASSES = ["sky", "road", "car"]


def _meta(path) -> dict:
    return {prop.key: json.loads(prop.value) for prop in onnx.load(str(path)).metadata_props}


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _close(actual: np.ndarray, expected: torch.Tensor) -> bool:
    expected = expected.numpy()
    return actual.shape == expected.shape and np.abs(actual - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory):
    torch.manual_seed(0)
    model = uniformer.create_model(SEG, num_classes=3, **TINY).eval()
    config = dense_config(model, class_names=CLASSES, input_size=(64, 96))
    config["dynamic_axes"] = ["batch", "height", "width"]  # what export_model records for an FPN model
    program = export_program(model, config, dynamic_size=True)
    folder = tmp_path_factory.mktemp("seg")
    return model, save_onnx(program, config, folder / "seg.onnx"), save_program(program, config, folder / "seg.pt2")


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
    torch.manual_seed(0)
    model = uniformer.create_model(POSE, **TINY).eval()
    path = export_model(model, tmp_path_factory.mktemp("pose") / "pose.onnx", "onnx", input_size=(64, 32))
    return model, path


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (2, 3, 64, 96), (2, 3, 128, 64)])
def test_segmentation_onnx_equals_pytorch_at_any_batch_and_size(segmentation, shape):
    model, onnx_path, _ = segmentation
    session = _session(onnx_path)
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert session.get_outputs()[0].shape == ["batch", 3, "height", "width"]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(shape[0]))
    with torch.no_grad():
        expected = model(x)  # logits at the input size
    (logits,) = session.run(["logits"], {"input": x.numpy()})
    assert _close(logits, expected)


def test_segmentation_metadata_names_classes_colours_and_preprocessing(segmentation):
    model, onnx_path, pt2_path = segmentation
    meta = _meta(onnx_path)
    info = uniformer.model_info(SEG)
    assert meta["task"] == "segmentation" and meta["architecture"] == SEG
    assert meta["class_names"] == CLASSES and len(meta["palette"]) == 3 and all(len(c) == 3 for c in meta["palette"])
    assert meta["mean"] == list(info.mean) and meta["std"] == list(info.std)
    assert meta["input_size"] == [3, 64, 96] and meta["dynamic_axes"] == ["batch", "height", "width"]
    assert meta["scale"] == [2048, 512]  # the test resize (keep ratio) of predict
    assert meta["output"].startswith("logits (B, classes, H, W) at the input size")


def test_segmentation_program_takes_other_sizes(segmentation):
    model, _, pt2_path = segmentation
    extra = {"config.json": ""}
    loaded = torch.export.load(str(pt2_path), extra_files=extra).module()
    assert json.loads(extra["config.json"])["label_names"] == CLASSES
    x = torch.randn(3, 3, 96, 160)
    with torch.no_grad():
        assert _close(loaded(x).numpy(), model(x))


@pytest.mark.parametrize("batch", [1, 2])
def test_pose_onnx_gives_the_plain_heatmaps(pose, batch):
    model, onnx_path = pose
    session = _session(onnx_path)
    assert session.get_inputs()[0].shape == ["batch", 3, 64, 32]  # the crop size is fixed
    x = torch.randn(batch, 3, 64, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model.heatmaps(x)  # stride 4, no flip test
    (heatmaps,) = session.run(["heatmaps"], {"input": x.numpy()})
    assert heatmaps.shape == (batch, 17, 16, 8) and _close(heatmaps, expected)


def test_pose_metadata_names_keypoints_limbs_and_flip_pairs(pose):
    _, onnx_path = pose
    meta = _meta(onnx_path)
    info = uniformer.model_info(POSE)
    assert meta["task"] == "pose" and meta["class_names"] == info.labels  # COCO's 17 keypoint names
    assert meta["flip_pairs"][0] == [1, 2] and len(meta["flip_pairs"]) == 8
    assert [15, 13] in meta["skeleton"] and meta["dynamic_axes"] == ["batch"]
    assert meta["output"].startswith("heatmaps (B, keypoints, H/4, W/4)")


def test_upernet_onnx_is_fixed_size_and_says_why(tmp_path, capsys, caplog):
    """``uniformer export`` of a segmentation checkpoint: its class names inside; UperNet's ONNX file has a fixed
    height and width (its pyramid pooling does not translate at symbolic sizes) and the metadata says so."""
    from uniformer.cli import main

    torch.manual_seed(0)
    model = uniformer.create_model(UPERNET, num_classes=3, **TINY).eval()
    uniformer.save_pretrained(model, tmp_path / "weights", class_names=CLASSES)
    out = tmp_path / "upernet.onnx"
    args = ["export", UPERNET, "--checkpoint", str(tmp_path / "weights"), "--output", str(out)]
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--input-size", "64", "64"]) == 0
    printed = capsys.readouterr()
    assert f"wrote {out} (onnx" in printed.out and "ambiguous" not in printed.err + caplog.text  # no exporter noise
    meta = _meta(out)
    assert meta["class_names"] == CLASSES and meta["dynamic_axes"] == ["batch"]
    assert "pyramid pooling" in meta["fixed_size_reason"]
    session = _session(out)
    assert session.get_inputs()[0].shape == ["batch", 3, 64, 64]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _close(session.run(["logits"], {"input": x.numpy()})[0], model(x))


def test_dense_export_refuses_a_size_off_the_backbone_stride():
    with torch.device("meta"):
        model = uniformer.create_model(POSE, **TINY)
    with pytest.raises(ValueError, match=r"multiples of 32 \(the backbone's stride\), got \[64, 48\]"):
        dense_config(model, input_size=(64, 48))


@pytest.mark.parametrize("size", [(4160, 64), (32, 64)])
def test_a_dynamic_size_export_outside_its_size_range_is_refused_naming_the_rule(tmp_path, size) -> None:
    model = uniformer.create_model(SEG, num_classes=3, **TINY).eval()
    rule = r"multiples of 32 from 64 to 4096 \(the sizes its height and width then take\); got "
    with pytest.raises(ValueError, match=rule + f"{size[0]} x {size[1]}"):
        export_model(model, tmp_path / "seg.pt2", "exported-program", SEG, input_size=size)
    assert not (tmp_path / "seg.pt2").exists()


def test_export_refuses_a_detector_naming_what_is_unsupported(tmp_path, capsys):
    from uniformer.cli import main

    name = "uniformer_small_h14_mask_rcnn_coco_1x"
    with torch.device("meta"):
        model = uniformer.create_model(name, num_classes=2, **TINY)
    with pytest.raises(ValueError, match="batched_nms branches on it"):
        export_model(model, tmp_path / "det.onnx")
    assert main(["export", name, "--output", str(tmp_path / "det.onnx")]) == 2
    err = capsys.readouterr().err
    assert "detection models do not export" in err and "proposal filtering" in err
    assert not (tmp_path / "det.onnx").exists()
