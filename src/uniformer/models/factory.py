"""``create_model``: a zoo entry built by its kind's builder, optionally with weights (read once, loaded by one
rule)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from uniformer.models.checkpoint import (
    CheckpointFile,
    is_image_state,
    load_state,
    read_checkpoint,
    read_pretrained,
)
from uniformer.models.download import fetch_release
from uniformer.models.zoo.catalog import model_info
from uniformer.models.zoo.schema import ModelInfo

__all__ = ["create_model"]


def create_model(
    name: str,
    pretrained: bool | str = False,
    checkpoint_path: str | Path | CheckpointFile | None = None,
    num_classes: int | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a zoo model, optionally with weights (read once, loaded by :func:`load_state`'s rule).

    Args:
        name: a zoo name (``uniformer.list_models()``).
        pretrained: ``True``: the released checkpoint, from the first of the release's sources that gives it (a
            Hub file, a URL, a Google Drive file with ``gdown``), verified against its published SHA-256, cached
            (:func:`~uniformer.models.download.fetch_release`);
            ``"local-dir:DIR"`` or ``"hf-hub:ORG/REPO"``: weights saved by :func:`uniformer.save_pretrained` (timm's
            Hub layout, read by :func:`~uniformer.models.checkpoint.read_pretrained`), with their class count,
            architecture overrides, class names and clip settings.
        checkpoint_path: load this file instead (official ``.pth`` layouts, ``.safetensors``, a ``uniformer train``
            checkpoint, or an already read :class:`CheckpointFile`). A training checkpoint brings the
            ``model.overrides`` of its run and the constructor arguments its task recorded (explicit ``overrides``
            win).
        num_classes: classifier size. Default: the checkpoint's class count (a fine-tuned head is kept), or the
            zoo entry's without a checkpoint and for inflated image weights. When it differs from the
            checkpoint's, the classifier is replaced and the log says from what to what.
            (segmentation: the heads' class count; a checkpoint must then fit it).
        overrides: constructor arguments of :class:`UniFormer` (e.g. ``drop_path_rate``; for dense models those
            of the dense backbone, e.g. ``attn_mode``, ``window_size``, and the options of the head or detector the
            entry's builder names), plus ``img_size`` to pick a release (224 or 384 for the token-labeling models).

    Returns what the entry's :class:`~uniformer.models.zoo.schema.ModelKind` builds: a :class:`UniFormer`, a
    :class:`~uniformer.models.segmentor.UniFormerSegmentor`, a :class:`~uniformer.models.pose.TopDownPoseModel`
    (``num_classes``: its keypoint count) or a detector. Its ``zoo_cfg`` records what
    :func:`uniformer.save_pretrained` needs to write it back: the zoo name, the constructor overrides and the class
    names and clip settings that came with the weights (``None`` when they did not).
    """
    info = model_info(name)
    release = info.release(overrides.pop("img_size", None))
    if isinstance(pretrained, str):
        if checkpoint_path is not None:
            raise ValueError(f"{name}: pass either pretrained={pretrained!r} or checkpoint_path, not both")
        checkpoint_path = read_pretrained(pretrained)
        if checkpoint_path.model_name != name:
            raise ValueError(f"{pretrained} holds weights of {checkpoint_path.model_name}, not of {name}")
    elif checkpoint_path is None and pretrained:
        checkpoint_path = fetch_release(name, release)
    file = None
    if checkpoint_path is not None:
        file = checkpoint_path if isinstance(checkpoint_path, CheckpointFile) else read_checkpoint(checkpoint_path)
        overrides = {**_recorded_model_args(info, file), **file.model_overrides, **overrides}
    classes = num_classes
    if classes is None:
        inflating = file is not None and info.kind.inflates_image_weights and is_image_state(file.state_dict)
        classes = info.num_classes if file is None or inflating or file.num_classes is None else file.num_classes
    model = info.kind.build(info, classes, overrides, file)
    if file is not None:
        load_state(model, file.state_dict, str(file.path), head=info.kind.head)
    model.zoo_cfg = dict(
        name=name,
        overrides=dict(overrides),
        classes=None if file is None else file.class_names,
        clip=None if file is None else file.clip,
    )
    return model


def _recorded_model_args(info: ModelInfo, file: CheckpointFile) -> dict[str, Any]:
    """The constructor arguments a training checkpoint's task recorded with the weights (a pose head's width, a
    detector's options); for a checkpoint written before tasks recorded them, what its kind reads from the run's
    config instead."""
    if not file.is_training:
        return {}
    if file.model_args is not None:
        return file.model_args
    return {} if info.kind.old_run_model_args is None else info.kind.old_run_model_args(file.config or {})
