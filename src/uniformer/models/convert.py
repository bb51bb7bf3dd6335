"""``uniformer convert``: an official checkpoint as a clean ``.safetensors`` file, checked against the zoo.

It lives beside the registry (it may build a zoo model to check the weights) rather than in
:mod:`uniformer.models.checkpoint`, which the registry itself imports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from uniformer._fileio import atomic_write
from uniformer.models.checkpoint import check_fit, read_checkpoint
from uniformer.models.factory import create_model

__all__ = ["convert_checkpoint"]


def convert_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], model_name: str | None = None
) -> dict[str, torch.Tensor]:
    """Write the state dict of a checkpoint as a ``.safetensors`` file; returns the state dict written.

    With ``model_name`` (or the zoo name a training checkpoint records) the weights are first checked strictly
    against that zoo model, so a file that does not fit is refused before anything is written. Class names and
    the clip specification of a training checkpoint travel in the file's metadata, where
    :func:`uniformer.models.checkpoint.read_checkpoint` finds them again.
    """
    file = read_checkpoint(src)
    name = model_name or file.model_name
    if name is not None:
        model = create_model(name, num_classes=file.num_classes, **file.model_overrides)
        check_fit(model, file.state_dict, str(src))
    state = {k: v.contiguous() for k, v in file.state_dict.items()}
    metadata = {"format": "pt", "source": Path(src).name}
    if name is not None:
        metadata["model"] = name
    for key, value in (("classes", file.class_names), ("clip", file.clip), ("overrides", file.model_overrides or None)):
        if value is not None:
            metadata[key] = json.dumps(value)
    atomic_write(Path(dst), lambda tmp: save_file(state, tmp, metadata=metadata))
    return state
