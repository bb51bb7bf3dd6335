"""Datasets of the classification task, from a resolved config or from a user's files, one builder each way.

Training, validation and ``uniformer eval`` build their sets with :func:`build_dataset`; ``uniformer predict``
builds the test-mode set of a user's files with :func:`build_inputs` from the same :class:`ClipSpec` pieces, so a
prediction sees exactly the views the multi-view test scores.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig

from uniformer.data import (
    IMAGE_FORMAT,
    LIST_FORMATS,
    ImageDataset,
    VideoRecord,
    build_image_dataset,
    build_video_dataset,
    image_transform,
)
from uniformer.data.images import IMAGE_EXTENSIONS
from uniformer.data.remote import is_url, join
from uniformer.tasks.classification.config import ClipSpec

__all__ = ["build_dataset", "build_inputs", "has_validation"]

_FOLDER_FORMATS = ("folder", IMAGE_FORMAT, "hmdb51")


def _under_root(root: str, path: str | None) -> str | None:
    return None if path is None else join(root, path)


def has_validation(cfg: DictConfig) -> bool:
    """A validation set is configured: ``data.val_list``, or a ``<root>/<val_split>`` folder for folder layouts."""
    data = cfg.data
    if data.val_list is not None:
        return True
    return data.format in _FOLDER_FORMATS and os.path.isdir(os.path.join(data.root, data.val_split))


def build_dataset(cfg: DictConfig, split: str) -> torch.utils.data.Dataset:
    """The ``"train"`` set (random augmented clips), the ``"val"`` set (``data.val_clips x val_crops`` views per
    video, for validation during training) or the ``"test"`` set (the same videos with the model's official
    ``test_clips x test_crops`` views, for ``uniformer eval``). ``cfg`` must be resolved."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    data = cfg.data
    train = split == "train"
    list_key = "data.train_list" if train else "data.val_list"
    list_file = data.train_list if train else data.val_list
    if data.format in LIST_FORMATS and list_file is None:
        raise ValueError(
            f"config: {list_key} is not set; the {data.format} format needs a list file (relative to data.root)"
        )
    if not is_url(data.root) and not os.path.isdir(data.root):
        raise FileNotFoundError(f"config: data.root={data.root} is not a folder")
    if data.format == IMAGE_FORMAT:
        return build_image_dataset(
            data.root,
            split="train" if train else data.val_split,
            train=train,
            input_size=data.crop_size,
            rand_augment=data.rand_augment,
            erasing_prob=data.erasing_prob,
            color_jitter=data.color_jitter,
            interpolation=data.interpolation,
            crop_pct=data.crop_pct,
            mean=list(data.mean),
            std=list(data.std),
        )
    clips, crops = {
        "train": (1, 1),
        "val": (data.val_clips, data.val_crops),
        "test": (data.test_clips, data.test_crops),
    }[split]
    return build_video_dataset(
        data.format,
        data.root,
        list_file=_under_root(data.root, list_file),
        labels_file=_under_root(data.root, data.labels_file),
        split="train" if train else data.val_split,
        split_id=data.split_id,
        extension=data.extension,
        mode="train" if train else "test",
        num_frames=data.num_frames,
        stride=data.stride,
        sampling=data.sampling,
        target_fps=data.target_fps,
        crop_size=data.crop_size,
        short_side=data.short_side,
        num_clips=clips,
        num_crops=crops,
        crop=data.train_crop,
        scale=list(data.scale),
        ratio=list(data.ratio),
        jitter_scales=list(data.jitter_scales),
        flip=data.flip,
        rand_augment=data.rand_augment,
        erasing_prob=data.erasing_prob,
        mean=list(data.mean),
        std=list(data.std),
        backend=data.backend,
        max_retries=data.max_retries,
        seed=cfg.seed,
    )


def build_inputs(
    paths: Sequence[str | os.PathLike[str]],
    spec: ClipSpec,
    *,
    model_name: str,
    single_view: bool = False,
    spans: Sequence[tuple[int, int]] | None = None,
) -> torch.utils.data.Dataset:
    """The test-mode dataset of a user's files (videos or frame folders for a video model, images for an image
    model), with the views of ``spec`` (``single_view``: the centre clip and crop only); ``spans`` gives each
    video's frame range ``(start, end)`` to sample from instead of the whole video."""
    paths = [os.fspath(p) for p in paths]
    if spans is not None and (spec.task == "image" or len(spans) != len(paths)):
        raise ValueError(f"{model_name}: frame ranges need a video model and one range per input")
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"input not found: {', '.join(missing)}")
    images = [p for p in paths if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
    if spec.task == "image":
        others = [p for p in paths if p not in images]
        if others:
            raise ValueError(f"{model_name} is an image model; these inputs are not images: {', '.join(others)}")
        transform = image_transform(spec.crop_size, train=False, crop_pct=spec.crop_pct, mean=spec.mean, std=spec.std)
        return ImageDataset([(p, -1) for p in paths], transform, input_size=spec.crop_size)
    if images:
        raise ValueError(
            f"{model_name} is a video model; give it videos or folders of frames, not images: {', '.join(images)}"
        )
    return build_video_dataset(
        "folder",
        "",
        records=[VideoRecord(p, -1, span=span) for p, span in zip(paths, spans or [None] * len(paths), strict=True)],
        mode="test",
        num_frames=spec.num_frames or 1,
        stride=spec.stride,
        sampling=spec.sampling or "dense",
        crop_size=spec.crop_size,
        short_side=spec.short_side,
        num_clips=1 if single_view else spec.clips,
        num_crops=1 if single_view else spec.crops,
        mean=spec.mean,
        std=spec.std,
    )
