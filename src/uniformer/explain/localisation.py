"""Is a map right, not just drawn: the share of its mass on the object that decides the class.

Where the true region of the deciding object is known (the synthetic motion videos' generator knows where its
moving object is in every frame), a map that localises it puts a larger share of its mass there than the region's
share of the frame. :func:`mass_ratio` is that quotient (1 for a map that ignores the content, 1 / share for a map
entirely on the object); :func:`centred_blob` is the content-agnostic baseline a map must beat, since objects tend
to sit away from the frame's edges.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from uniformer.data import MOTIONS, read_kinetics_list, video_info
from uniformer.data.synth import render_scene
from uniformer.explain.explain import explain
from uniformer.explain.inputs import ViewSpec, load_input

__all__ = ["MotionLocalisation", "centred_blob", "mass_ratio", "motion_localisation", "motion_regions"]


def mass_ratio(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Per sample, (share of the map's mass inside ``regions``) / (share of the positions inside ``regions``).

    ``maps`` are non-negative, ``(B, ...)``; ``regions`` boolean of the same shape (every frame of a clip
    together). A sample with an empty region or a zero map scores NaN.
    """
    if maps.shape != regions.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and regions {tuple(regions.shape)} differ in shape")
    if bool((maps < 0).any()):
        raise ValueError("mass_ratio needs non-negative maps (normalise them first)")
    flat, inside = maps.flatten(1).double(), regions.flatten(1).double()
    mass = (flat * inside).sum(1) / flat.sum(1)
    share = inside.mean(1)
    return mass / share


def centred_blob(shape: Sequence[int], sigma: float = 0.25) -> torch.Tensor:
    """A Gaussian at the centre of every frame, standard deviation ``sigma`` times the frame's shorter side:
    a map of the shape ``(..., H, W)`` that knows nothing of the content."""
    height, width = shape[-2:]
    ys = torch.arange(height, dtype=torch.float64) + 0.5 - height / 2
    xs = torch.arange(width, dtype=torch.float64) + 0.5 - width / 2
    spread = sigma * min(height, width)
    blob = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * spread**2)).float()
    return blob.expand(*shape).clone()


def motion_regions(path: str | os.PathLike[str], label: int, seed: int = 0) -> torch.Tensor:
    """Where the moving object is in every frame of a video of :func:`uniformer.data.synthesize` (written with
    ``seed``): ``(T, H, W)`` bool, re-rendered from the generator's seed, class and the video's number
    (``<motion>_NNNN.mp4``). Raises ``ValueError`` for a file that does not follow that naming."""
    path = Path(path)
    found = re.fullmatch(r"(\w+)_(\d{4})", path.stem)
    if found is None or found.group(1) not in MOTIONS or MOTIONS.index(found.group(1)) != label:
        raise ValueError(f"{path}: not a synthetic motion video of class {label} (<motion>_NNNN.mp4)")
    info = video_info(path)
    rng = np.random.default_rng([seed, label, int(found.group(2))])
    _, masks = render_scene(found.group(1), rng, info.num_frames, (info.height, info.width))
    return torch.from_numpy(masks)


@dataclass(frozen=True)
class MotionLocalisation:
    """Mass ratios (:func:`mass_ratio`) per held-out video: of the method's map and of :func:`centred_blob`.

    A map without mass (Grad-CAM where every position argues against the class, all zero after its ReLU) has no
    ratio (NaN): :attr:`mean` leaves it out and :attr:`empty` counts it."""

    method: str
    stage: int | None
    ratios: list[float]
    blob_ratios: list[float]

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.ratios))

    @property
    def empty(self) -> int:
        return int(np.isnan(self.ratios).sum())

    @property
    def blob_mean(self) -> float:
        return float(np.mean(self.blob_ratios))


def motion_localisation(
    model: nn.Module,
    spec: ViewSpec,
    root: str | os.PathLike[str],
    list_file: str = "val.txt",
    method: str = "gradcam",
    stage: int | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> MotionLocalisation:
    """How well ``method`` localises the moving object on the synthetic motion set at ``root`` (written by
    ``uniformer data synth --seed seed``): per video of ``list_file`` (the first ``limit``), the mass ratio of the
    map of the video's true class over the frames the model saw, in the frame's geometry, next to a centred
    blob's on the same frames (both scored over the model's view only)."""
    records = read_kinetics_list(os.path.join(root, list_file), root).records[:limit]
    ratios, blobs = [], []
    for record in records:
        path = record.path
        item = load_input(path, spec)
        (result,) = explain(model, [item], method, target=record.label, stage=stage)
        top, left, bottom, right = (int(round(v)) for v in result.box)  # score inside the model's view only
        regions = motion_regions(path, record.label, seed)[result.indices][:, top:bottom, left:right]
        heat = result.map[:, top:bottom, left:right]
        ratios.append(float(mass_ratio(heat[None], regions[None])))
        blobs.append(float(mass_ratio(centred_blob(heat.shape)[None], regions[None])))
    return MotionLocalisation(method, result.stage, ratios, blobs)
