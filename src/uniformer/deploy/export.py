"""Zoo models as deployable files: ONNX (for onnxruntime, TensorRT, ...) and ``torch.export`` ``.pt2``.

Classification (image, video), segmentation and pose models export; detection models are refused
(:data:`DETECTION_UNSUPPORTED` says why).

Both start from one ``torch.export`` program of the inference graph (:func:`inference_graph`: eval mode,
BatchNorms folded into the convolutions, fused attention) traced with a dynamic batch axis. The ONNX file is
translated from that program by PyTorch's ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``)
at opset 18: it writes attention (``scaled_dot_product_attention``), the depthwise 3-D convolutions and GELU as
standard ONNX operators, no custom op. The older TorchScript exporter is not used: it writes the channel
LayerNorm's ``movedim(1, -1)`` as a ``Transpose`` with a negative axis, which onnxruntime refuses.

What a consumer needs to feed the file travels in it: the class names and the preprocessing (mean, std, input
size, frames, the full clip specification) as ONNX ``metadata_props`` (JSON values), and the same
``config.json`` as :func:`uniformer.save_pretrained` writes inside the ``.pt2`` archive (``extra_files``).
Dense models carry :func:`dense_config` instead: the names and colours of the classes (segmentation) or the
keypoint names, limbs and flip pairs (pose), the test resize, and what the output is.

Which axes are dynamic: the batch always. Segmentation: height and width too (any multiple of 32 from 64 to
:data:`MAX_SIZE`), except in the ONNX file of a model with pyramid pooling (UperNet's PPM): torch 2.14's ONNX
translation of ``adaptive_avg_pool2d`` to 2, 3 or 6 bins fails at symbolic sizes (``NotImplementedError: Unknown
fx arg type`` in its decomposition), so that file is fixed to the exported size (``.pt2`` stays dynamic) and its
metadata says so. Pose: the crop size is part of the preprocessing, so it is fixed.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn

from uniformer._fileio import atomic_write
from uniformer.deploy.hub import hub_config
from uniformer.models.checkpoint import CheckpointFile
from uniformer.models.optimize import fold_batchnorms
from uniformer.models.uniformer import set_formulation
from uniformer.models.zoo.catalog import model_info
from uniformer.tasks import task_for_model

__all__ = [
    "DETECTION_UNSUPPORTED",
    "FORMATS",
    "OPSET",
    "ExportFormat",
    "dense_config",
    "export_model",
    "exportable_task",
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
MAX_SIZE = 4096  # the largest height / width of a dynamic-size segmentation export
_SIZE_STEP = 32  # the backbone's output stride: dynamic sizes are multiples of it
DETECTION_UNSUPPORTED = (
    "detection models do not export: torch.export of torchvision's Mask R-CNN stops in the RPN's proposal "
    "filtering, where the number of boxes left after the size and score filters depends on the data and "
    "torchvision.ops.batched_nms branches on it (boxes.numel() > 4000: GuardOnDataDependentSymNode in torch "
    f"{torch.__version__.split('+')[0]}), so neither an ONNX file nor a .pt2 program can be traced"
)


def inference_graph(model: nn.Module) -> nn.Module:
    """An eval-mode copy with BatchNorms folded and the ``"fast"`` formulation (fused attention): the graph the
    files hold. It equals the model to float rounding (``tests/models/test_optimize.py``). A pose model's copy
    runs the plain pass (no flip test): the flip test is the consumer's, with the exported ``flip_pairs``."""
    return set_formulation(fold_batchnorms(copy.deepcopy(model).eval()), "fast")


def _input_shape(config: Mapping[str, Any], batch: int) -> tuple[int, ...]:
    return (batch, *config["pretrained_cfg"]["input_size"])


def export_program(
    model: nn.Module, config: Mapping[str, Any], dynamic_size: bool = False
) -> torch.export.ExportedProgram:
    """``torch.export`` of :func:`inference_graph` at the input size of ``config`` (:func:`hub_config` or
    :func:`dense_config`), batch axis dynamic (1 to :data:`MAX_BATCH`); with ``dynamic_size`` the height and
    width too (multiples of 32 up to :data:`MAX_SIZE`; the traced size must be one, at least 64)."""
    graph = inference_graph(model)
    example = torch.zeros(_input_shape(config, _TRACE_BATCH))
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}
    if dynamic_size:
        height, width = example.shape[-2:]
        if (
            height % _SIZE_STEP
            or width % _SIZE_STEP
            or not 2 * _SIZE_STEP <= min(height, width) <= max(height, width) <= MAX_SIZE
        ):
            raise ValueError(
                f"export: a dynamic-size export is traced at an input size whose sides are multiples of {_SIZE_STEP} "
                f"from {2 * _SIZE_STEP} to {MAX_SIZE} (the sizes its height and width then take); "
                f"got {height} x {width}"
            )
        for axis, label in ((-2, "height"), (-1, "width")):
            dims[example.ndim + axis] = _SIZE_STEP * torch.export.Dim(label, min=1, max=MAX_SIZE // _SIZE_STEP)
    with torch.no_grad():
        return torch.export.export(graph, (example,), dynamic_shapes=(dims,))


def _fixed_size_reason(model: nn.Module) -> str | None:
    """Why an ONNX file of ``model`` cannot have a dynamic height and width (see the module docstring)."""
    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1))]
    if pools:
        bins = sorted({m.output_size if isinstance(m.output_size, int) else m.output_size[0] for m in pools})
        return (
            f"adaptive average pooling to {', '.join(map(str, bins))} bins (pyramid pooling) does not translate to "
            f"ONNX at symbolic sizes in torch {torch.__version__.split('+')[0]}; the height and width are fixed"
        )
    return None


def dense_config(
    model: nn.Module,
    model_name: str | None = None,
    *,
    checkpoint: CheckpointFile | None = None,
    class_names: Sequence[str] | None = None,
    input_size: Sequence[int] | None = None,
) -> dict[str, Any]:
    """What travels with an exported segmentation or pose model, in :func:`hub_config`'s shape.

    The names, colours, normalisation and test resize are the ones ``uniformer predict`` uses (the task's
    ``prediction_setup`` over the zoo entry, ``checkpoint`` and ``class_names``, else the names that came with
    the weights). ``input_size`` (H, W) is the exported size: default the ADE20K training crop (512 x 512) for
    segmentation, the test crop of the weights for pose.
    """
    recorded = dict(getattr(model, "zoo_cfg", None) or {})
    name = model_name or recorded.get("name")
    if name is None:
        raise ValueError("export: the model does not record its zoo name (it was not built by create_model); pass it")
    info = model_info(name)
    task = task_for_model(name)
    if task.name not in ("segmentation", "pose"):
        raise ValueError(f"{name}: dense_config describes segmentation and pose models, not {task.name}")
    names = class_names if class_names is not None else recorded.get("classes")
    setup = task.prediction_setup(info, model, checkpoint, names)
    model_args = {k: list(v) if isinstance(v, tuple) else v for k, v in recorded.get("overrides", {}).items()}
    config: dict[str, Any] = dict(architecture=info.name, task=task.name, model_args=model_args)
    if task.name == "segmentation":
        size = list(input_size or (info.release().img_size,) * 2)
        config.update(
            num_classes=len(setup.labels),
            label_names=setup.labels,
            palette=[list(c) for c in setup.palette],
            scale=setup.scale,
            output_name="logits",
            output=(
                "logits (B, classes, H, W) at the input size (the decode head's stride-4 logits resized "
                "bilinearly, align_corners=False; whole-image inference); arg-max over classes is the label map"
            ),
        )
    else:
        size = list(input_size or setup.input_size)
        config.update(
            num_keypoints=len(setup.keypoints),
            label_names=setup.keypoints,
            skeleton=[list(limb) for limb in setup.skeleton],
            flip_pairs=[list(pair) for pair in model.flip_pairs],
            output_name="heatmaps",
            output=(
                "heatmaps (B, keypoints, H/4, W/4) of the plain pass at stride 4; the flip test averages them with "
                "those of the mirrored crop, mirrored back, flip_pairs swapped and shifted one pixel right"
            ),
        )
    if len(size) != 2 or min(size) <= 0 or any(n % _SIZE_STEP for n in size):
        raise ValueError(
            f"export: the input size must be (height, width), multiples of {_SIZE_STEP} (the backbone's stride), "
            f"got {list(size)}"
        )
    config["pretrained_cfg"] = dict(input_size=[3, *size], mean=list(setup.mean), std=list(setup.std))
    return config


def onnx_metadata(config: Mapping[str, Any], opset: int = OPSET) -> dict[str, str]:
    """The ``metadata_props`` of an exported ONNX file: every value JSON-encoded."""
    pre = config["pretrained_cfg"]
    if "task" in config:  # a dense model (dense_config)
        keys = ("task", "palette", "scale", "skeleton", "flip_pairs", "output", "dynamic_axes", "fixed_size_reason")
        dense = {
            "architecture": config["architecture"],
            "class_names": config["label_names"],
            "mean": pre["mean"],
            "std": pre["std"],
            "input_size": pre["input_size"],
            "input_layout": "NCHW",
            "model_args": config.get("model_args") or {},
            "opset": opset,
            **{key: config[key] for key in keys if key in config},
        }
        return {key: json.dumps(value) for key, value in dense.items()}
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


# onnx_ir warns for every attribute given as an empty list (UperNet's pyramid pooling writes a dozen) that it is
# stored as INTS: for an empty list the type carries no value, and the file's outputs equal PyTorch's (tested)
_HARMLESS_EXPORTER_WARNINGS = (("onnx_ir._convenience", "Attribute type is ambiguous because it is an empty sequence"),)


@contextlib.contextmanager
def _without_harmless_exporter_warnings() -> Iterator[None]:
    """The exporter's log messages known to be harmless (:data:`_HARMLESS_EXPORTER_WARNINGS`) dropped while this
    runs; every other message, and these outside it, still reach the user."""

    def keep(record: logging.LogRecord) -> bool:
        return not any(record.getMessage().startswith(text) for _, text in _HARMLESS_EXPORTER_WARNINGS)

    loggers = [logging.getLogger(name) for name, _ in _HARMLESS_EXPORTER_WARNINGS]
    for logger in loggers:
        logger.addFilter(keep)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(keep)


def save_onnx(
    program: torch.export.ExportedProgram, config: Mapping[str, Any], path: str | os.PathLike[str], opset: int = OPSET
) -> Path:
    """Translate ``program`` to ONNX at ``opset`` and write it with :func:`onnx_metadata` to ``path``; the dynamic
    axes of the input and the output are named ``batch`` (and ``height``, ``width`` for a dynamic-size one)."""
    import onnx_ir as ir  # the export extra (onnxscript's IR, which torch.onnx returns)

    output = config.get("output_name", "logits")
    with _without_harmless_exporter_warnings():
        onnx_program = torch.onnx.export(
            program, dynamo=True, opset_version=opset, input_names=["input"], output_names=[output], verbose=False
        )
    graph = onnx_program.model.graph
    for value in (*graph.inputs, *graph.outputs):
        dims = list(value.shape)
        spatial = {len(dims) - 2: "height", len(dims) - 1: "width"}  # symbolic only in a dynamic-size export
        value.shape = ir.Shape(["batch", *(d if isinstance(d, int) else spatial[i] for i, d in enumerate(dims) if i)])
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


def exportable_task(model_name: str) -> str:
    """The task of zoo model ``model_name`` (``classification``, ``segmentation`` or ``pose``); a detection
    model is refused with :data:`DETECTION_UNSUPPORTED`."""
    kind = task_for_model(model_name).name
    if kind == "detection":
        raise ValueError(f"{model_name}: {DETECTION_UNSUPPORTED}")
    return kind


def export_model(
    model: nn.Module,
    output: str | os.PathLike[str],
    format: ExportFormat = "onnx",
    model_name: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    clip: Mapping[str, Any] | None = None,
    checkpoint: CheckpointFile | None = None,
    input_size: Sequence[int] | None = None,
    opset: int = OPSET,
) -> Path:
    """Write ``model`` (built by :func:`uniformer.create_model`, or any zoo architecture with ``model_name``) as
    ``format`` to ``output``; returns the path.

    Classification: the input size is that of the clip (``clip`` over what came with the weights over the zoo's
    test views, as in :func:`uniformer.save_pretrained`): (B, 3, H, W) or (B, 3, T, H, W) with B dynamic.
    Segmentation and pose: (B, 3, H, W) at ``input_size`` with the axes of the module docstring dynamic and
    :func:`dense_config` (from ``checkpoint``, the file the weights came from) inside. Detection is refused.
    """
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {format!r}")
    path = Path(output)
    if path.suffix != _SUFFIXES[format]:
        raise ValueError(f"{path}: an {format} file is written with the suffix {_SUFFIXES[format]}")
    name = model_name or (getattr(model, "zoo_cfg", None) or {}).get("name")
    kind = exportable_task(name) if name else "classification"
    if kind == "classification":
        if input_size is not None:
            raise ValueError(
                f"{name}: a classification model exports at its clip's size (the test views of its weights); "
                "an input size is for segmentation and pose models"
            )
        config = hub_config(model, model_name, class_names=class_names, clip=clip)
        program = export_program(model, config)
    else:
        config = dense_config(model, name, checkpoint=checkpoint, class_names=class_names, input_size=input_size)
        fixed = _fixed_size_reason(model) if format == "onnx" else None
        dynamic = kind == "segmentation" and fixed is None
        config["dynamic_axes"] = ["batch", "height", "width"] if dynamic else ["batch"]
        if kind == "segmentation" and fixed:
            config["fixed_size_reason"] = fixed
        program = export_program(model, config, dynamic_size=dynamic)
    return save_onnx(program, config, path, opset) if format == "onnx" else save_program(program, config, path)
