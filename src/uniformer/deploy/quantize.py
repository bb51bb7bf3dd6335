"""int8 models for CPU inference: onnxruntime's post-training static quantization of the exported ONNX file,
calibrated on the user's own files (``uniformer quantize NAME --calibration FILES --output OUT.onnx``).

The fp32 file is the one ``uniformer export`` writes (:func:`uniformer.deploy.export.export_model`). Calibration
runs the files through the task's prediction preprocessing (the inputs ``uniformer predict`` would feed the model:
a classification model's test views, a segmentation model's image at its test scale) and records the model's
inputs; onnxruntime then runs the fp32 file on them to pick each activation's int8 range (min-max) and writes a
QDQ file: int8 weights per output channel, uint8 activations around the convolutions and matrix products, which
its CPU provider runs with integer kernels (VNNI where the CPU has it). The metadata of the fp32 file (class names,
preprocessing) travel unchanged. ``benchmarks/RESULTS.md`` has the speed against ``optimize_for_inference`` fp32
and the agreement with fp32 on the demo tasks' held-out data (``python -m benchmarks.quantization``).

PyTorch's own int8 flow (PT2E with the x86 Inductor quantizer) lives in torchao for torch 2.14 (its
``torch.ao.quantization.quantize_pt2e`` module is gone), which this package does not depend on.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from uniformer._fileio import atomic_write
from uniformer.deploy.export import export_model
from uniformer.engine.predict import Predictor
from uniformer.models.checkpoint import read_checkpoint
from uniformer.models.optimize import optimize_for_inference
from uniformer.runtime import feed

__all__ = ["QUANTIZED_OPS", "calibration_inputs", "quantize_onnx", "quantize_model"]

# The operators given int8 inputs: the convolutions and the matrix products (linear layers and attention).
# LayerNorm, softmax, GELU and the residual sums stay fp32 between a DequantizeLinear and a QuantizeLinear.
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")

_logger = logging.getLogger(__name__)


class _InputRecorder:
    """Forward pre-hook keeping the first ``limit`` input samples of a model (as fp32 NCHW / NCTHW arrays)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.batches, self.count = limit, [], 0

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        if isinstance(x, torch.Tensor) and self.count < self.limit:
            kept = x[: self.limit - self.count].detach().float().contiguous()
            self.batches.append(kept.numpy())
            self.count += kept.shape[0]


def _recorded_inputs(predictor: Predictor, paths: Sequence[str], limit: int) -> tuple[list[np.ndarray], dict[str, str]]:
    """The model inputs of predicting ``paths`` (at most ``limit`` samples) and the unreadable files' reasons."""
    model = optimize_for_inference(predictor.model)  # the copy predict runs; fp32
    recorder = _InputRecorder(limit)
    model.register_forward_pre_hook(recorder)
    task = predictor.task
    run = partial(
        feed, collate=task.collate, inputs=task.model_inputs, batch_size=predictor.batch_size, precision="fp32"
    )
    predictions = task.predict(model, list(paths), predictor.setup, run, topk=1)
    return recorder.batches, {p.path: p.error for p in predictions if p.error is not None}


def calibration_inputs(
    predictor: Predictor, paths: Sequence[str | os.PathLike[str]], *, limit: int = 64
) -> tuple[list[np.ndarray], dict[str, str]]:
    """The model inputs (batches, fp32) that ``predictor`` (its weights, views and preprocessing) makes of the
    first ``limit`` of ``paths`` when it predicts them, at most ``limit`` samples, and the files left out because
    they could not be read (path -> reason; ``predict`` reports the same). None readable is a ``ValueError``
    naming the files."""
    paths = [os.fspath(p) for p in paths[:limit]]
    if not paths:
        raise ValueError("quantize: no calibration files given")
    batches, skipped = _recorded_inputs(predictor, paths, limit)
    if len(skipped) == len(paths):
        shown = ", ".join(f"{path} ({reason})" for path, reason in list(skipped.items())[:3])
        raise ValueError(f"quantize: none of the {len(paths)} calibration files could be read: {shown}")
    if skipped:  # an unreadable input still reaches the model (as a placeholder): record the readable ones alone
        batches, _ = _recorded_inputs(predictor, [p for p in paths if p not in skipped], limit)
    return batches, skipped


def _fit_to(batch: np.ndarray, shape: Sequence[Any]) -> np.ndarray:
    """``batch`` resized (bilinear) to the fixed height and width of an ONNX input ``shape``, if it has them."""
    height, width = shape[-2:]
    if not (isinstance(height, int) and isinstance(width, int)) or batch.shape[-2:] == (height, width):
        return batch
    resized = F.interpolate(torch.from_numpy(batch), size=(height, width), mode="bilinear", align_corners=False)
    return resized.numpy()


def quantize_onnx(
    fp32_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
    *,
    per_channel: bool = True,
    reduce_range: bool = False,
) -> Path:
    """Write the int8 (QDQ) version of the ONNX file ``fp32_path`` to ``output``, activation ranges calibrated on
    the input batches ``calibration`` (min-max over all of them; resized to the file's input size where that is
    fixed); the metadata of the fp32 file is copied. ``per_channel``: one weight scale per output channel.
    ``reduce_range``: 7-bit weights, for CPUs without VNNI where onnxruntime's uint8 x int8 kernels may saturate
    (not needed for the models measured in ``benchmarks/RESULTS.md``)."""
    import onnx  # the export extra
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("quantize: no calibration inputs")
    source = onnx.load(os.fspath(fp32_path), load_external_data=False)
    input_name = source.graph.input[0].name
    dims = source.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: _fit_to(batch, shape)}

    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(os.fspath(fp32_path), os.fspath(prepared))  # shape inference, for per-tensor ranges
        quantize_static(
            os.fspath(prepared),
            os.fspath(quantized),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        model = onnx.load(os.fspath(quantized))
        del model.metadata_props[:]
        model.metadata_props.extend(source.metadata_props)
        atomic_write(output, lambda path: onnx.save(model, path))
    return Path(output)


def quantize_model(
    model_name: str,
    calibration: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    limit: int = 64,
    input_size: Sequence[int] | None = None,
    reduce_range: bool = False,
) -> Path:
    """Export zoo model ``model_name`` with ``checkpoint``'s weights (:func:`~uniformer.deploy.export.export_model`,
    ``input_size`` for segmentation) and write its int8 ONNX file to ``output``, calibrated on up to ``limit``
    samples made from the files ``calibration`` (:func:`calibration_inputs`, :func:`quantize_onnx`)."""
    if Path(output).suffix != ".onnx":
        raise ValueError(f"{output}: the int8 model is an ONNX file; name it with the suffix .onnx")
    file = None if checkpoint is None else read_checkpoint(checkpoint)
    predictor = Predictor(model_name, file)
    batches, skipped = calibration_inputs(predictor, calibration, limit=limit)
    for path, reason in skipped.items():
        _logger.warning("quantize: calibration file %s left out: %s", path, reason)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_model(
            predictor.model, Path(tmp) / "fp32.onnx", "onnx", model_name, checkpoint=file, input_size=input_size
        )
        return quantize_onnx(fp32, output, batches, reduce_range=reduce_range)
