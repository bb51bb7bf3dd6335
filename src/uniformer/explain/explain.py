"""Explanations of a classifier's decision on a user's files: maps in the frames' own geometry, with statistics.

:func:`explain` takes a model and decoded inputs (:func:`uniformer.explain.inputs.load_input`);
:func:`explain_files` takes a :class:`uniformer.engine.Predictor` (a zoo model or a trained checkpoint, with the
class names and test views that came with its weights) and file paths. Both return one :class:`Explanation` per
input, in input order; an input that cannot be read comes back with its ``error`` and no map.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from uniformer.data import DecodeError
from uniformer.explain.inputs import ExplainInput, ViewSpec, load_input
from uniformer.explain.maps import (
    GLOBAL_STAGES,
    METHODS,
    attention_received,
    class_activation_map,
    default_stage,
    grad_cam,
    min_max,
    stage_features,
    target_classes,
    upsample,
)

if TYPE_CHECKING:
    from uniformer.engine import Predictor

__all__ = ["Explanation", "explain", "explain_files", "resolve_target"]


@dataclass
class Explanation:
    """The explanation of one input.

    ``map`` is the normalised map ([0, 1], min-max over the whole clip) in the frames' geometry, ``(T, H, W)``
    (``T = 1`` for an image), zero outside the model's view; ``raw`` the map at the resolution of the stage it
    reads, before upsampling and normalisation (``features``: one channel-mean map per stage, and no ``map``).
    ``score`` is the softmax probability of ``target`` from the explained view's logits.
    """

    path: str
    method: str
    target: int = -1
    label: str = ""
    score: float = float("nan")
    stage: int | None = None
    query: tuple[float, float] | None = None
    map: torch.Tensor | None = None
    raw: list[torch.Tensor] = field(default_factory=list)
    frames: torch.Tensor | None = None
    indices: list[int] | None = None
    box: tuple[float, float, float, float] | None = None
    error: str | None = None

    def statistics(self) -> dict[str, Any]:
        """Where the map puts its mass: the raw map's range and mean, and over the frame map its peak (frame,
        y, x in frame pixels) and centre of mass (y, x), with the share of mass in each frame."""
        if self.error is not None:
            return {}
        stats: dict[str, Any] = {
            "raw": [
                {"shape": list(r.shape), "min": float(r.min()), "max": float(r.max()), "mean": float(r.mean())}
                for r in self.raw
            ]
        }
        if self.map is not None:
            m = self.map
            t, y, x = (int(i) for i in torch.unravel_index(m.argmax(), m.shape))
            total = float(m.sum())
            ys = torch.arange(m.shape[1], dtype=torch.float64)[:, None]
            xs = torch.arange(m.shape[2], dtype=torch.float64)[None, :]
            plane = m.sum(0).double()
            centre = [float((plane * ys).sum() / total), float((plane * xs).sum() / total)] if total > 0 else None
            stats.update(
                peak={"frame": t, "y": y, "x": x},
                centre_of_mass=centre,
                mean=float(m.mean()),
                frame_mass=[float(v) / total if total > 0 else 0.0 for v in m.flatten(1).sum(1)],
            )
        return stats

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "method": self.method,
            "target": self.target,
            "label": self.label,
            "score": self.score,
            "stage": self.stage,
            "query": list(self.query) if self.query is not None else None,
            "frame_indices": self.indices,
            "box": list(self.box) if self.box is not None else None,
            "statistics": self.statistics(),
            "error": self.error,
        }


def resolve_target(target: int | str | None, labels: Sequence[str]) -> int | None:
    """``None``/``"top1"`` (each input's top class), a class index, or a class name of ``labels``."""
    if target is None or target == "top1":
        return None
    if isinstance(target, int) or str(target).isdigit():
        index = int(target)
        if not 0 <= index < len(labels):
            raise ValueError(f"--target {index}: class index out of range for a {len(labels)}-class model")
        return index
    if target not in labels:
        raise ValueError(f"--target {target!r}: not a class name of this model (see `uniformer models --labels`)")
    return list(labels).index(target)


def _check_method(method: str, stage: int | None, query: tuple[float, float] | None) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if stage is not None and method in ("cam", "features"):
        reads = "stage 4" if method == "cam" else "every stage"
        raise ValueError(f"--stage applies to gradcam and attention; {method} reads {reads}")
    if stage is not None and method == "attention" and stage not in GLOBAL_STAGES:
        raise ValueError(f"attention: stage must be 3 or 4 (the self-attention stages), got {stage}")
    if query is not None and method != "attention":
        raise ValueError("--query applies to the attention method only")


def _explain_batch(
    model: nn.Module,
    items: Sequence[ExplainInput],
    method: str,
    target: int | None,
    stage: int | None,
    query: tuple[float, float] | None,
    precision: str,
    labels: Sequence[str],
) -> list[Explanation]:
    x = torch.stack([item.view for item in items]).to(next(model.parameters()).device)
    chosen: int | None = stage
    if method == "cam":
        raw, logits, targets = class_activation_map(model, x, target, precision)
        chosen = 4
    elif method == "gradcam":
        chosen = default_stage(x.shape) if stage is None else stage
        raw, logits, targets = grad_cam(model, x, target, chosen, precision)
    elif method == "attention":
        chosen = GLOBAL_STAGES[0] if stage is None else stage
        view_query = None if query is None else items[0].geometry.to_view(*query)
        raw, logits = attention_received(model, x, chosen, view_query, precision)
        targets = target_classes(logits, target)
    else:
        stages, logits = stage_features(model, x, precision)
        targets = target_classes(logits, target)
    probabilities = logits.float().softmax(dim=1)
    out = []
    for i, item in enumerate(items):
        k = int(targets[i])
        common = dict(
            path=item.path,
            method=method,
            target=k,
            label=labels[k] if k < len(labels) else f"class {k}",
            score=float(probabilities[i, k]),
            query=query,
            frames=item.frames,
            indices=item.indices,
            box=item.geometry.box(),
        )
        if method == "features":
            out.append(Explanation(**common, raw=[s[i].cpu() for s in stages]))
            continue
        view_size = item.view.shape[1:]  # ([T,] h, w)
        on_view = min_max(upsample(raw[i : i + 1].cpu(), view_size))[0]
        frame_map = item.geometry.to_frame(on_view if on_view.ndim == 3 else on_view[None])
        out.append(Explanation(**common, stage=chosen, map=frame_map, raw=[raw[i].cpu()]))
    return out


def explain(
    model: nn.Module,
    inputs: Sequence[ExplainInput | Exception],
    method: str = "gradcam",
    *,
    target: int | None = None,
    stage: int | None = None,
    query: tuple[float, float] | None = None,
    labels: Sequence[str] = (),
    precision: str = "fp32",
    batch_size: int = 8,
    paths: Sequence[str] | None = None,
) -> list[Explanation]:
    """Explain each decoded input with ``method`` (``cam``, ``gradcam``, ``attention``, ``features``).

    ``target``: the class to explain (``None``: each input's top-1); ``stage``: Grad-CAM's stage (1-4, default
    :func:`~uniformer.explain.maps.default_stage`) or the attention's (3 or 4, default 3: the finer map, and the
    stage with most attention blocks); ``query``: the attention's query location ``(x, y)`` as fractions of the
    frame's width and height. Inputs of one shape run ``batch_size`` at a time, in ``precision`` (``fp32`` or
    ``bf16`` autocast). An input given as an exception (it could not be read) comes
    back as an :class:`Explanation` with that error; ``paths`` names such inputs.
    """
    _check_method(method, stage, query)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    results: list[Explanation | None] = [None] * len(inputs)
    pending: list[int] = []

    def flush() -> None:
        items = [inputs[i] for i in pending]
        for i, result in zip(pending, _explain_batch(model, items, method, target, stage, query, precision, labels)):
            results[i] = result
        pending.clear()

    for i, item in enumerate(inputs):
        if isinstance(item, Exception):
            name = paths[i] if paths is not None else f"input {i}"
            results[i] = Explanation(path=name, method=method, error=str(item))
            continue
        # the attention query is mapped per input geometry, so those run one at a time
        if pending and (
            len(pending) == batch_size or inputs[pending[0]].view.shape != item.view.shape or query is not None
        ):
            flush()
        pending.append(i)
    if pending:
        flush()
    return [r for r in results if r is not None]


def explain_files(
    predictor: Predictor,
    paths: Sequence[str | os.PathLike[str]],
    method: str = "gradcam",
    *,
    target: int | str | None = None,
    stage: int | None = None,
    query: tuple[float, float] | None = None,
    crop: bool = True,
    batch_size: int | None = None,
    precision: str | None = None,
) -> list[Explanation]:
    """Explain files with a :class:`uniformer.engine.Predictor` of a classification model: its model, its class
    names and its test view (``predictor.setup``), its batch size and precision unless given. ``crop=False``
    explains the whole frame instead of the test crop. Unreadable files are reported, not raised."""
    setup = predictor.setup
    spec: ViewSpec = getattr(setup, "spec", None)
    if spec is None or not hasattr(setup, "labels"):
        raise ValueError(f"{predictor.info.name}: explanations are for image and video classification models")
    _check_method(method, stage, query)
    labels = list(setup.labels)
    index = resolve_target(target, labels)
    names = [os.fspath(p) for p in paths]
    missing = [p for p in names if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"input not found: {', '.join(missing)}")
    inputs: list[ExplainInput | Exception] = []
    for name in names:
        try:
            inputs.append(load_input(name, spec, crop))
        except (DecodeError, OSError) as exc:  # damaged files: reported with their reason, the others go on
            inputs.append(exc)
    return explain(
        predictor.model,
        inputs,
        method,
        target=index,
        stage=stage,
        query=query,
        labels=labels,
        precision=precision or predictor.precision,
        batch_size=batch_size or predictor.batch_size,
        paths=names,
    )
