"""Every zoo entry by name, gathered from the family modules, and the two ways to look them up."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping
from types import MappingProxyType

from uniformer.models.zoo import detection, image, light, pose, segmentation, video
from uniformer.models.zoo.schema import ModelInfo, Task

__all__ = ["list_models", "model_info"]


def _gather(*families: tuple[ModelInfo, ...]) -> Mapping[str, ModelInfo]:
    entries: dict[str, ModelInfo] = {}
    for info in (info for family in families for info in family):
        if info.name in entries:
            raise RuntimeError(f"duplicate zoo entry {info.name}")
        entries[info.name] = info
    return MappingProxyType(entries)


# the order of `uniformer models` and of the README tables
_MODELS = _gather(image.MODELS, video.MODELS, segmentation.MODELS, pose.MODELS, detection.MODELS, light.MODELS)


def list_models(pattern: str | None = None, task: Task | None = None) -> list[str]:
    """Names of zoo models, optionally filtered by a shell-style ``pattern`` and/or ``task``."""
    names = [n for n, info in _MODELS.items() if task is None or info.task == task]
    return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def model_info(name: str) -> ModelInfo:
    """The zoo entry of ``name``; ``ValueError`` with close matches if there is none."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `uniformer models` lists them"
        raise ValueError(f"unknown model {name!r}{hint}") from None
