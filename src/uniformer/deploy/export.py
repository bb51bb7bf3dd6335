"""Classification models as deployable files: ONNX (for onnxruntime, TensorRT, ...) and ``torch.export`` ``.pt2``.

Both start from one ``torch.export`` program of the inference graph (:func:`inference_graph`: eval mode,
BatchNorms folded into the convolutions, fused attention) traced with a dynamic batch axis. The ONNX file is
translated from that program by PyTorch's ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``)
at opset 18: it writes attention (``scaled_dot_product_attention``), the depthwise 3-D convolutions and GELU as
standard ONNX operators, no custom op. The older TorchScript exporter is not used: it writes the channel
LayerNorm's ``movedim(1, -1)`` as a ``Transpose`` with a negative axis, which onnxruntime refuses.

What a consumer needs to feed the file travels in it: the class names and the preprocessing (mean, std, input
size, frames, the full clip specification) as ONNX ``metadata_props`` (JSON values), and the same
``config.json`` as :func:`uniformer.save_pretrained` writes inside the ``.pt2`` archive (``extra_files``).
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn

from uniformer._fileio import atomic_write
from uniformer.deploy.hub import hub_config
from uniformer.models.optimize import fold_batchnorms
from uniformer.models.uniformer import set_formulation

__all__ = [
    "FORMATS",
    "OPSET",
    "ExportFormat",
    "export_model",
    "export_program",
    "inference_graph",
    "onnx_metadata",
    "save_onnx",
    "save_program",
]

ExportFormat = Literal["onnx", "exported-program"]
FORMATS: tuple[str, ...] = ("onnx", "exported-program")
OPSET = 18  # the opset the torch.export-based exporter of torch 2.x targets natively
_SUFFIXES = {"onnx": ".onnx", "exported-program": ".pt2"}
_TRACE_BATCH = 2  # torch.export specialises a traced size of 1, so the batch axis is traced at 2
MAX_BATCH = 1024


def inference_graph(model: nn.Module) -> nn.Module:
    """An eval-mode copy with BatchNorms folded and the ``"fast"`` formulation (fused attention): the graph the
    files hold. It equals the model to float rounding (``tests/models/test_optimize.py``)."""
    return set_formulation(fold_batchnorms(copy.deepcopy(model).eval()), "fast")


def _input_shape(config: Mapping[str, Any], batch: int) -> tuple[int, ...]:
    return (batch, *config["pretrained_cfg"]["input_size"])


def export_program(model: nn.Module, config: Mapping[str, Any]) -> torch.export.ExportedProgram:
    """``torch.export`` of :func:`inference_graph` at the input size of ``config`` (:func:`hub_config`), batch
    axis dynamic (1 to :data:`MAX_BATCH`)."""
    graph = inference_graph(model)
    example = torch.zeros(_input_shape(config, _TRACE_BATCH))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        return torch.export.export(graph, (example,), dynamic_shapes=({0: batch},))


def onnx_metadata(config: Mapping[str, Any], opset: int = OPSET) -> dict[str, str]:
    """The ``metadata_props`` of an exported ONNX file: every value JSON-encoded."""
    pre = config["pretrained_cfg"]
    clip = config.get("clip") or {}
    values = {
        "architecture": config["architecture"],
        "class_names": config["label_names"],
        "mean": pre["mean"],
        "std": pre["std"],
        "input_size": pre["input_size"],
        "input_layout": "NCTHW" if clip.get("num_frames") else "NCHW",
        "num_frames": clip.get("num_frames"),
        "clip": clip or None,
        "model_args": config.get("model_args") or {},
        "opset": opset,
        "output": "logits",
    }
    return {key: json.dumps(value) for key, value in values.items()}


def save_onnx(
    program: torch.export.ExportedProgram, config: Mapping[str, Any], path: str | os.PathLike[str], opset: int = OPSET
) -> Path:
    """Translate ``program`` to ONNX at ``opset`` and write it with :func:`onnx_metadata` to ``path``; the dynamic
    batch axis of the input and the output is named ``batch``."""
    import onnx_ir as ir  # the export extra (onnxscript's IR, which torch.onnx returns)

    onnx_program = torch.onnx.export(
        program, dynamo=True, opset_version=opset, input_names=["input"], output_names=["logits"], verbose=False
    )
    graph = onnx_program.model.graph
    for value in (*graph.inputs, *graph.outputs):
        value.shape = ir.Shape(["batch", *list(value.shape)[1:]])
    onnx_program.model.metadata_props.update(onnx_metadata(config, opset))
    atomic_write(path, lambda tmp: onnx_program.save(tmp))
    return Path(path)


def save_program(
    program: torch.export.ExportedProgram, config: Mapping[str, Any], path: str | os.PathLike[str]
) -> Path:
    """Write ``program`` as a ``.pt2`` archive with ``config`` as its ``config.json`` extra file (read it back with
    ``extra = {"config.json": ""}; torch.export.load(path, extra_files=extra)``)."""
    buffer = io.BytesIO()  # torch.export.save wants a name ending in .pt2; the atomic write's temporary has none
    torch.export.save(program, buffer, extra_files={"config.json": json.dumps(config, indent=2)})
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    return Path(path)


def export_model(
    model: nn.Module,
    output: str | os.PathLike[str],
    format: ExportFormat = "onnx",
    model_name: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    clip: Mapping[str, Any] | None = None,
    opset: int = OPSET,
) -> Path:
    """Write ``model`` (a classification model built by :func:`uniformer.create_model`, or any zoo architecture
    with ``model_name``) as ``format`` to ``output``; returns the path.

    The input size is that of the clip (``clip`` over what came with the weights over the zoo's test views, as in
    :func:`uniformer.save_pretrained`): (B, 3, H, W) or (B, 3, T, H, W) with B dynamic.
    """
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {format!r}")
    path = Path(output)
    if path.suffix != _SUFFIXES[format]:
        raise ValueError(f"{path}: an {format} file is written with the suffix {_SUFFIXES[format]}")
    config = hub_config(model, model_name, class_names=class_names, clip=clip)
    if "clip" not in config:
        raise ValueError(f"{config['architecture']}: export supports the classification models (image and video)")
    program = export_program(model, config)
    return save_onnx(program, config, path, opset) if format == "onnx" else save_program(program, config, path)
